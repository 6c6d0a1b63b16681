//! A running egressd: started, ready, and stopped exactly once.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::exit::{Exit, Status};
use crate::output::{First, Stderr, Tail, follow_stderr, follow_stdout};
use crate::ready::Ready;

/// How long dropping a [`Sidecar`] that was not stopped waits after SIGTERM before SIGKILL.
pub const DROP_GRACE: Duration = Duration::from_secs(2);

/// A ready egressd. Stop it with [`Sidecar::stop`] (SIGTERM, the drain, then SIGKILL at the
/// deadline); stopping again returns the same [`Exit`]. Dropping it without a stop sends SIGTERM
/// and kills egressd if it has not exited within [`DROP_GRACE`]: a `Sidecar` never leaves egressd
/// running, but only an explicit stop waits for the whole drain.
pub struct Sidecar {
    child: Child,
    stdin: Option<ChildStdin>,
    ready: Ready,
    stderr: Tail,
    /// Disconnects when egressd's stderr closes: it exited.
    stderr_closed: mpsc::Receiver<()>,
    stop_deadline: Duration,
    exit: Option<Exit>,
}

impl Sidecar {
    pub(crate) fn start(
        program: &Path,
        args: &[OsString],
        hold_stdin: bool,
        readiness_timeout: Duration,
        stop_deadline: Duration,
        stderr: Stderr,
    ) -> Result<Self, Error> {
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(if hold_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("EGRESSD_") {
                command.env_remove(name);
            }
        }
        let deadline = Instant::now() + readiness_timeout;
        let mut child = command.spawn().map_err(|source| Error::Spawn {
            program: program.to_owned(),
            source,
        })?;
        let stdin = child.stdin.take();
        // Both were asked for as pipes just above, so spawn made them.
        let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Wait(std::io::Error::other("no pipes to egressd")));
        };
        let (tail, stderr_closed) = follow_stderr(err, stderr);
        let first = follow_stdout(out);
        let mut unready = Unready {
            child: Some(child),
            stderr_closed,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match first.recv_timeout(left) {
            Ok(First::Line(line)) => line,
            Ok(First::TooLong) => {
                unready.kill();
                return Err(Error::BadReadiness {
                    reason: "it is longer than any readiness line".to_owned(),
                });
            }
            Ok(First::Ended) | Err(RecvTimeoutError::Disconnected) => {
                // stdout closed without a line: egressd is exiting. Its status, once stderr has
                // closed too (so that its last words are in the tail), within the same deadline.
                let status = unready.exit_status(deadline)?;
                return Err(match status {
                    Some(status) => Error::EarlyExit {
                        status,
                        stderr: tail.lines(),
                    },
                    None => Error::ReadinessTimeout {
                        after: readiness_timeout,
                        stderr: tail.lines(),
                    },
                });
            }
            Err(RecvTimeoutError::Timeout) => {
                unready.kill();
                return Err(Error::ReadinessTimeout {
                    after: readiness_timeout,
                    stderr: tail.lines(),
                });
            }
        };
        let ready = match Ready::parse(&line) {
            Ok(ready) => ready,
            Err(error) => {
                unready.kill();
                return Err(error);
            }
        };
        // Taken only on the ways out above, which all return.
        let child = unready
            .child
            .take()
            .ok_or_else(|| Error::Wait(std::io::Error::other("egressd was already reaped")))?;
        // Disconnected at once: the placeholder's sender is dropped with it.
        let stderr_closed = std::mem::replace(&mut unready.stderr_closed, mpsc::channel().1);
        Ok(Self {
            child,
            stdin,
            ready,
            stderr: tail,
            stderr_closed,
            stop_deadline,
            exit: None,
        })
    }

    /// The readiness line.
    pub fn ready(&self) -> &Ready {
        &self.ready
    }

    /// egressd's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// egressd's last lines on stderr so far.
    pub fn stderr_tail(&self) -> Vec<String> {
        self.stderr.lines()
    }

    /// How egressd ended, if it has already (without waiting). A launcher checks this when its
    /// job ends, or while it runs: egressd that exited 4 while running left the sandbox without
    /// its proxy.
    pub fn try_exit(&mut self) -> Result<Option<Exit>, Error> {
        if self.exit.is_none()
            && let Some(status) = self.child.try_wait().map_err(Error::Wait)?
        {
            self.finish(status, false);
        }
        Ok(self.exit.clone())
    }

    /// Lets go of egressd's stdin: with `--exit-on-stdin-eof` (the default) egressd then stops
    /// as on SIGTERM. Wait for it with [`Sidecar::stop`] or [`Sidecar::wait_within`].
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends SIGTERM (egressd stops accepting and drains), without waiting. Harmless once egressd
    /// has exited. On platforms without signals it kills egressd.
    pub fn terminate(&mut self) -> Result<(), Error> {
        if self.exit.is_some() {
            return Ok(());
        }
        self.signal_term()
    }

    #[cfg(unix)]
    fn signal_term(&mut self) -> Result<(), Error> {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let pid = self.child.id();
        let raw = i32::try_from(pid).map_err(|_| Error::Signal {
            pid,
            source: std::io::Error::other("pid out of range"),
        })?;
        // The child is not reaped until `finish`, so the pid is still egressd's (a zombie at
        // worst, for which the signal is a no-op).
        kill(Pid::from_raw(raw), Signal::SIGTERM).map_err(|errno| Error::Signal {
            pid,
            source: errno.into(),
        })
    }

    #[cfg(not(unix))]
    fn signal_term(&mut self) -> Result<(), Error> {
        let pid = self.child.id();
        self.child
            .kill()
            .map_err(|source| Error::Signal { pid, source })
    }

    /// Stops egressd: SIGTERM, then waits for the drain (`--drain-timeout`) plus [`STOP_GRACE`],
    /// then SIGKILL. A second stop returns the first one's [`Exit`].
    ///
    /// [`STOP_GRACE`]: crate::STOP_GRACE
    pub fn stop(&mut self) -> Result<Exit, Error> {
        self.stop_within(self.stop_deadline)
    }

    /// Stops egressd as [`Sidecar::stop`] does, killing it if it has not exited within
    /// `deadline` of the SIGTERM.
    pub fn stop_within(&mut self, deadline: Duration) -> Result<Exit, Error> {
        if let Some(exit) = &self.exit {
            return Ok(exit.clone());
        }
        self.terminate()?;
        self.wait_within(deadline)
    }

    /// Waits for egressd to exit (after [`Sidecar::terminate`] or [`Sidecar::close_stdin`]),
    /// killing it if it has not within `deadline`.
    pub fn wait_within(&mut self, deadline: Duration) -> Result<Exit, Error> {
        if let Some(exit) = &self.exit {
            return Ok(exit.clone());
        }
        let killed = match self.stderr_closed.recv_timeout(deadline) {
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                true
            }
            Ok(()) | Err(RecvTimeoutError::Disconnected) => false,
        };
        let status = self.child.wait().map_err(Error::Wait)?;
        // Killed: the stderr thread ends now; let it put egressd's last lines in the tail.
        let _ = self.stderr_closed.recv_timeout(DROP_GRACE);
        Ok(self.finish(status, killed))
    }

    fn finish(&mut self, status: std::process::ExitStatus, killed: bool) -> Exit {
        self.stdin = None;
        let exit = Exit {
            status: Status::of(status),
            killed,
            stderr: self.stderr.lines(),
        };
        self.exit = Some(exit.clone());
        exit
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if self.exit.is_some() {
            return;
        }
        if self.terminate().is_err() {
            let _ = self.child.kill();
        }
        let _ = self.wait_within(DROP_GRACE);
    }
}

/// egressd before its readiness line: killed and reaped on every way out but success.
struct Unready {
    child: Option<Child>,
    stderr_closed: mpsc::Receiver<()>,
}

impl Unready {
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The status of an egressd that is exiting, waited for until `deadline`; `None` if it was
    /// still running then (it is killed).
    fn exit_status(&mut self, deadline: Instant) -> Result<Option<Status>, Error> {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Err(RecvTimeoutError::Timeout) = self.stderr_closed.recv_timeout(left) {
            self.kill();
            return Ok(None);
        }
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        let status = child.wait().map_err(Error::Wait)?;
        Ok(Some(Status::of(status)))
    }
}

impl Drop for Unready {
    fn drop(&mut self) {
        self.kill();
    }
}
