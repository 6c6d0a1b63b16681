//! Process signals, in one place: what the sidecar is asked to do.

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// SIGTERM or SIGINT: stop accepting, drain, exit.
    Shutdown,
    /// SIGHUP: reload the policy.
    Reload,
}

/// Listens for the signals egressd handles.
pub struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers. Must run inside the runtime.
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
                hup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// The next request.
    pub async fn next(&mut self) -> Request {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => Request::Shutdown,
                _ = self.int.recv() => Request::Shutdown,
                _ = self.hup.recv() => Request::Reload,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Request::Shutdown
        }
    }
}
