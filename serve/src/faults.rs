//! Errors from `accept` and `recv_from`: which concern one connection, which are a passing
//! shortage of the process's resources, and which mean the socket itself is broken. A shortage is
//! an episode: logged once when it starts and once when it ends, with growing pauses between
//! tries, while the connections already open keep being served.

use std::io;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// First pause after a resource error; doubled per error up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// Longest pause between tries while resources are short.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// What an I/O error on a listening socket means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// One connection or datagram failed (reset before accept, an ICMP error from an earlier
    /// send): carry on at once.
    Connection,
    /// The process or system is short of descriptors, buffers or memory: pause, then carry on.
    Resources,
    /// The socket is unusable (closed, not listening): stop.
    Fatal,
}

impl Fault {
    /// Classifies `error`. Only errors that say the socket itself is gone are fatal; anything
    /// unknown is treated as a shortage, so a surprise costs a pause, never the sidecar.
    pub fn of(error: &io::Error) -> Self {
        if is_shortage(error) {
            return Self::Resources;
        }
        match error.raw_os_error() {
            Some(libc::EBADF | libc::EINVAL | libc::ENOTSOCK | libc::EOPNOTSUPP | libc::EFAULT) => {
                Self::Fatal
            }
            _ => match error.kind() {
                io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionRefused
                | io::ErrorKind::Interrupted
                | io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut => Self::Connection,
                _ => Self::Resources,
            },
        }
    }
}

/// True when `error` says the process or the system is short of descriptors, buffers or memory
/// (EMFILE, ENFILE, ENOBUFS, ENOMEM): egressd's own resources, not the peer's fault. The one list
/// of these errnos, for accept and receive here and for the proxy's outbound connections.
pub fn is_shortage(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Tracks errors of one listening socket.
#[derive(Debug)]
pub struct Faults {
    what: &'static str,
    episode: Option<Episode>,
}

#[derive(Debug)]
struct Episode {
    started: Instant,
    errors: u64,
    pause: Duration,
}

impl Faults {
    /// For the socket named `what` in logs (`proxy`, `dns tcp`, ...).
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            episode: None,
        }
    }

    /// Records a failed accept or receive. `Ok(pause)`: wait that long (zero: not at all), then
    /// try again. `Err`: the socket is broken and the caller should stop.
    pub fn failed(&mut self, error: io::Error) -> Result<Duration, io::Error> {
        match Fault::of(&error) {
            Fault::Fatal => Err(error),
            Fault::Connection => {
                tracing::debug!(listener = self.what, %error, "one connection failed before it was served");
                Ok(Duration::ZERO)
            }
            Fault::Resources => {
                let episode = self.episode.get_or_insert_with(|| {
                    tracing::warn!(
                        listener = self.what,
                        %error,
                        "out of resources; pausing new connections, open ones are still served"
                    );
                    Episode {
                        started: Instant::now(),
                        errors: 0,
                        pause: FIRST_PAUSE,
                    }
                });
                episode.errors += 1;
                let pause = episode.pause;
                episode.pause = (pause * 2).min(MAX_PAUSE);
                Ok(pause)
            }
        }
    }

    /// Records a failed accept or receive and waits out the pause it calls for. `Ok(true)`: try
    /// again; `Ok(false)`: shutdown was asked during the pause; `Err`: the socket is broken.
    pub async fn recover(
        &mut self,
        error: io::Error,
        shutdown: &CancellationToken,
    ) -> io::Result<bool> {
        let pause = self.failed(error)?;
        if pause.is_zero() {
            return Ok(true);
        }
        tokio::select! {
            () = shutdown.cancelled() => Ok(false),
            () = tokio::time::sleep(pause) => Ok(true),
        }
    }

    /// Records a successful accept or receive: ends a shortage episode, if one was under way.
    pub fn succeeded(&mut self) {
        if let Some(episode) = self.episode.take() {
            tracing::warn!(
                listener = self.what,
                errors = episode.errors,
                lasted_ms = episode.started.elapsed().as_millis() as u64,
                "resources back; accepting again"
            );
        }
    }

    /// True while a shortage episode is under way.
    pub fn in_episode(&self) -> bool {
        self.episode.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    #[test]
    fn errors_are_classified_by_what_they_say_about_the_socket() {
        let cases = [
            (os(libc::EMFILE), Fault::Resources),
            (os(libc::ENFILE), Fault::Resources),
            (os(libc::ENOBUFS), Fault::Resources),
            (os(libc::ENOMEM), Fault::Resources),
            (os(libc::ECONNABORTED), Fault::Connection),
            (os(libc::ECONNREFUSED), Fault::Connection),
            (os(libc::EINTR), Fault::Connection),
            (os(libc::EBADF), Fault::Fatal),
            (os(libc::EINVAL), Fault::Fatal),
            (os(libc::ENOTSOCK), Fault::Fatal),
            (os(libc::EPERM), Fault::Resources),
            (io::Error::other("surprise"), Fault::Resources),
        ];
        for (error, want) in cases {
            assert_eq!(Fault::of(&error), want, "{error}");
        }
    }

    #[test]
    fn only_the_four_shortage_errnos_are_shortages() {
        for code in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(is_shortage(&os(code)), "{code}");
        }
        // A connect that fails for the peer's or the network's reasons is not egressd's shortage,
        // although accept treats unknown errors as one.
        for code in [
            libc::ECONNREFUSED,
            libc::EHOSTUNREACH,
            libc::ENETUNREACH,
            libc::EPERM,
        ] {
            assert!(!is_shortage(&os(code)), "{code}");
        }
        assert!(!is_shortage(&io::Error::other("surprise")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_shortage_pauses_longer_each_time_and_ends_with_a_success() {
        let mut faults = Faults::new("test");
        let pauses: Vec<Duration> = (0..9)
            .map(|_| faults.failed(os(libc::EMFILE)).unwrap())
            .collect();
        assert_eq!(pauses[0], FIRST_PAUSE);
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*pauses.last().unwrap(), MAX_PAUSE);
        assert!(faults.in_episode());
        assert_eq!(
            faults.failed(os(libc::ECONNABORTED)).unwrap(),
            Duration::ZERO
        );
        faults.succeeded();
        assert!(!faults.in_episode());
        assert_eq!(faults.failed(os(libc::EMFILE)).unwrap(), FIRST_PAUSE);
        assert!(faults.failed(os(libc::EBADF)).is_err());
    }
}
