//! What asks the sidecar to stop or reload, in one place: signals, and the launcher's stdin pipe.
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
}

impl Requests {
    /// Installs the signal handlers, and watches stdin when asked. Must run inside the runtime.
    pub fn install(watch_stdin: bool) -> io::Result<Self> {
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
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self { stdin })
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
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => Request::Shutdown("SIGTERM"),
                _ = self.int.recv() => Request::Shutdown("SIGINT"),
                _ = self.hup.recv() => Request::Reload,
                () = stdin => Request::Shutdown("stdin closed; the launcher is gone"),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => Request::Shutdown("Ctrl-C"),
                () = stdin => Request::Shutdown("stdin closed; the launcher is gone"),
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
