//! egressd's one serve loop, used by every listener of the proxy and the DNS stub: accept, back
//! off from transient errors (never fatal), hold a connection permit, hand the connection to a
//! [`Handler`] on a tracked task, and drain on shutdown. A fix here (an accept error, a drain
//! rule) lands once for every server.
//!
//! Also here: [`Snapshot`], the atomic swap of a policy generation that every server reads per
//! request, and [`Faults`], the transient-error classifier and episode logger that the stub's UDP
//! receive loops share with the accept loop.
//!
//! What this crate does not do: protocols. A handler owns its connection from accept to close.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod faults;
mod listener;
mod reserve;
mod server;
mod snapshot;

pub use faults::{Fault, Faults, is_shortage};
pub use listener::{Listener, Peer};
pub use server::{Conn, Drained, Handler, Server};
pub use snapshot::Snapshot;
