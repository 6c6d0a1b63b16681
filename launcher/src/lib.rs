//! Start egressd from a Rust launcher, know when it is ready, point a job at it, and stop it:
//! the launcher contract of docs/launcher.md in one crate, so that no launcher gets it wrong.
//!
//! - [`Launcher`]: `egressd run`'s options, typed, and the kit's own (readiness timeout, where
//!   egressd's stderr goes, whether the launcher holds its stdin).
//! - [`Launcher::start`] spawns egressd and returns a [`Sidecar`] only once the readiness line is
//!   out, parsed into a [`Ready`] (proxy URL, DNS address, CA, the `env` block). It **fails
//!   closed**: an exit before readiness is [`Error::EarlyExit`] with the exit [`Status`] (2 bad
//!   input, 3 start-up failed) and egressd's last stderr line; no line within the timeout is
//!   [`Error::ReadinessTimeout`], and egressd is killed. No error leaves egressd running.
//! - The [`Sidecar`] holds egressd's stdin (`--exit-on-stdin-eof`): if the launcher dies, egressd
//!   follows. [`Sidecar::stop`] sends SIGTERM, waits for the drain (`--drain-timeout`) and a
//!   grace, then kills; a second stop returns the same [`Exit`]. Dropping a `Sidecar` stops it
//!   too (with a short grace), so egressd never outlives it.
//!
//! Blocking, on threads (two per egressd, reading its stdout and stderr so that it never blocks
//! on a full pipe): no async runtime is imposed. From async code, call `start` and `stop` in
//! `spawn_blocking`.
//!
//! What it does not do: confine the job. The job gets the `env` block; the host firewall rules
//! (`egressd pf`, `egressd nft`, `egressd sbpl`) are what keep a job that ignores it off the
//! network (docs/pf.md).
//!
//! # Example
//!
//! Start egressd with a policy, run a job with the env block, and stop egressd after it; a job
//! never starts without a ready proxy, and a sidecar that died during the job fails the run.
//!
//! ```no_run
//! use std::process::Command;
//! use std::time::Duration;
//!
//! use egressd_launcher::{Launcher, Stderr};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut egressd = Launcher::new("/usr/local/bin/egressd")
//!     .policy("/etc/egressd/ci.toml")
//!     .sandbox_id("job-42")
//!     .audit_log("/var/log/egressd/job-42.jsonl")
//!     .drain_timeout(Duration::from_secs(5))
//!     .readiness_timeout(Duration::from_secs(10))
//!     .stderr(Stderr::Forward)
//!     .start()?; // Err: egressd is not running, and the job must not start.
//!
//! let ready = egressd.ready();
//! println!("proxy {} dns {:?}", ready.proxy, ready.dns);
//! let job = Command::new("curl")
//!     .args(["-sS", "https://example.org/"])
//!     .envs(&ready.env) // HTTP_PROXY, HTTPS_PROXY, ALL_PROXY (with the credential), NO_PROXY
//!     .status()?;
//!
//! // SIGTERM, drain, then SIGKILL at the deadline.
//! let exit = egressd.stop()?;
//! if !exit.is_clean() {
//!     // Exit 4 while running (the job lost its proxy), or killed (events may be missing).
//!     eprintln!("egressd: {} ({:?})", exit.status, exit.last_stderr_line());
//! }
//! println!("job: {job}");
//! # Ok(())
//! # }
//! ```
//!
//! The crate's `examples/curl.rs` does the same against a loopback origin it starts itself.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod exit;
mod options;
mod output;
mod ready;
mod sidecar;

pub use error::Error;
pub use exit::{Exit, Status};
pub use options::{DRAIN_TIMEOUT, Launcher, LogFormat, LogLevel, READINESS_TIMEOUT, STOP_GRACE};
pub use output::{STDERR_TAIL, Stderr};
pub use ready::{CredentialSource, Mode, PolicyInfo, Ready};
pub use sidecar::{DROP_GRACE, Sidecar};
