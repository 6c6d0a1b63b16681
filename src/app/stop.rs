//! What asks the sidecar to stop or reload, in one place: signals, the launcher's stdin pipe, and
//! (with `--on-audit-failure stop`) an audit log that cannot be written.
//!
//! stdin is watched by a plain thread of its own, never joined: a blocking read cannot be
//! cancelled, and a runtime's blocking pool would keep the process alive until the launcher closed
//! the pipe, even after SIGTERM (docs/launcher.md, "Lifetime").

use std::io::{self, Read};

use tokio::sync::oneshot;

/// What the sidecar is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Stop accepting, drain, exit; the text says who asked.
    Shutdown(&'static str),
    /// Reload the policy (SIGHUP).
    Reload,
    /// Stop at once and exit 4: something egressd must not run without is gone.
    Fail(&'static str),
}

/// Listens for every stop and reload request.
pub struct Requests {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
    stdin: Option<oneshot::Receiver<()>>,
    audit_failed: Option<oneshot::Receiver<()>>,
}

impl Requests {
    /// Installs the signal handlers, and watches stdin when asked, and the audit writer when it
    /// can say it failed. Must run inside the runtime.
    pub fn install(
        watch_stdin: bool,
        audit_failed: Option<oneshot::Receiver<()>>,
    ) -> io::Result<Self> {
        let stdin = if watch_stdin {
            Some(watch_for_eof()?)
        } else {
            None
        };
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
                hup: signal(SignalKind::hangup())?,
                stdin,
                audit_failed,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {
                stdin,
                audit_failed,
            })
        }
    }

    /// The next request.
    pub async fn next(&mut self) -> Request {
        let stdin = async {
            match &mut self.stdin {
                Some(eof) => {
                    let _ = eof.await;
                    self.stdin = None;
                }
                None => std::future::pending().await,
            }
        };
        let audit_failed = async {
            if let Some(failed) = &mut self.audit_failed {
                let said = failed.await;
                self.audit_failed = None;
                // A writer that ended without failing (at exit) says nothing: no request.
                if said.is_ok() {
                    return;
                }
            }
            std::future::pending().await
        };
        const AUDIT_FAILED: &str =
            "audit events cannot be written; failing closed (--on-audit-failure stop)";
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => Request::Shutdown("SIGTERM"),
                _ = self.int.recv() => Request::Shutdown("SIGINT"),
                _ = self.hup.recv() => Request::Reload,
                () = stdin => Request::Shutdown("stdin closed; the launcher is gone"),
                () = audit_failed => Request::Fail(AUDIT_FAILED),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => Request::Shutdown("Ctrl-C"),
                () = stdin => Request::Shutdown("stdin closed; the launcher is gone"),
                () = audit_failed => Request::Fail(AUDIT_FAILED),
            }
        }
    }
}

/// Starts a thread that reads stdin to its end (or a read error) and then says so.
fn watch_for_eof() -> io::Result<oneshot::Receiver<()>> {
    let (eof, watched) = oneshot::channel();
    std::thread::Builder::new()
        .name("egressd-stdin".to_owned())
        .spawn(move || {
            let mut stdin = io::stdin().lock();
            let mut buf = [0u8; 256];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = eof.send(());
        })?;
    Ok(watched)
}
