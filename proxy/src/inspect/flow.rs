//! HTTP/2's memory bounds in an inspected session, one place for both sides (docs/tls.md,
//! "HTTP/2"). What egressd can hold for one session is set here, not by the peers:
//!
//! - **Toward the client** (egressd serves h2): at most [`MAX_STREAMS`] streams at once (a client
//!   with more waits, as SETTINGS_MAX_CONCURRENT_STREAMS tells it); each response buffers at most
//!   [`SEND_BUFFER`] waiting for the client's window; request bodies may arrive
//!   [`STREAM_WINDOW`] per stream and [`CONNECTION_WINDOW`] in all before egressd has passed
//!   them on.
//! - **Toward an h2 origin**: the same windows bound what the origin may send before egressd has
//!   passed it on to the client ([`CONNECTION_WINDOW`] for the whole connection), and the same
//!   send buffer bounds each upload.
//! - **Toward an HTTP/1.1 origin**: one connection per stream in flight, each reading at most
//!   [`ORIGIN_READ_BUFFER`] ahead.
//!
//! Windows are fixed (no adaptive window): a fast origin and a slow client cannot grow them.

use std::future::Future;

use hyper::client::conn::http2 as client;
use hyper::server::conn::http2 as server;
use tokio_util::task::TaskTracker;

use crate::limits::Limits;

/// Streams a client may have open at once in one session.
pub(crate) const MAX_STREAMS: u32 = 128;
/// Each stream's flow-control window, both sides.
pub(crate) const STREAM_WINDOW: u32 = 256 * 1024;
/// Each connection's flow-control window, both sides.
pub(crate) const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// What one stream may buffer on its way out, both sides.
pub(crate) const SEND_BUFFER: usize = 64 * 1024;
/// An HTTP/1.1 origin connection's read buffer.
pub(crate) const ORIGIN_READ_BUFFER: usize = 64 * 1024;

/// Runs HTTP/2's per-stream tasks on the connection's task tracker, so a drain waits for them.
#[derive(Clone)]
pub(crate) struct Tracked(pub(crate) TaskTracker);

impl<F> hyper::rt::Executor<F> for Tracked
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        self.0.spawn(future);
    }
}

/// The bounds on the client side of a session.
pub(crate) fn client_facing(builder: &mut server::Builder<Tracked>, limits: &Limits) {
    builder
        .max_concurrent_streams(MAX_STREAMS)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .adaptive_window(false)
        .max_send_buf_size(SEND_BUFFER)
        .max_header_list_size(header_list_size(limits));
}

/// The bounds on an h2 origin connection.
pub(crate) fn origin(builder: &mut client::Builder<Tracked>, limits: &Limits) {
    builder
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .adaptive_window(false)
        .max_send_buf_size(SEND_BUFFER)
        .max_header_list_size(header_list_size(limits));
}

/// The request-head limit (`--max-header-bytes`) as HTTP/2's header list size.
fn header_list_size(limits: &Limits) -> u32 {
    u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX)
}
