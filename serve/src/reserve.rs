//! One descriptor held back for the moment the process runs out. While descriptors are exhausted
//! a connection waits in the listen queue, its client hears nothing, and the accept loop can only
//! pause and try again: a DNS or proxy client sees silence for as long as the shortage lasts.
//! Giving the reserve up lets the loop accept one waiting connection and tell it (the handler's
//! [`crate::Handler::exhausted`]: the DNS stub's SERVFAIL, the proxy's 503) instead; the
//! descriptor is taken back once that connection has closed. The same trick as nginx's and libev's idle descriptor.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// The held-back descriptor of one server (none for a server made without one).
pub struct Reserve {
    enabled: bool,
    held: Mutex<Option<std::fs::File>>,
    /// Signalled when a connection accepted with the reserve has closed, so a loop pausing
    /// through the shortage tries again at once.
    freed: Notify,
    /// Connections accepted with the reserve and not closed yet.
    turning_away: AtomicUsize,
}

impl Reserve {
    /// Takes a descriptor now if `enabled`; without, the reserve never holds one.
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            held: Mutex::new(if enabled { open() } else { None }),
            freed: Notify::new(),
            turning_away: AtomicUsize::new(0),
        }
    }

    /// Gives the descriptor up, so an accept can use it. False when none was held.
    pub fn release(&self) -> bool {
        self.lock().take().is_some()
    }

    /// A connection was accepted with the reserve, to be turned away.
    pub fn turning_away(&self) {
        self.turning_away.fetch_add(1, Ordering::Relaxed);
    }

    /// True while the reserve is held and no connection accepted with it is still open: only
    /// then does a successful accept mean resources are back.
    pub fn settled(&self) -> bool {
        !self.enabled || (self.turning_away.load(Ordering::Relaxed) == 0 && self.lock().is_some())
    }

    /// Takes a descriptor back if none is held (it fails quietly while they are all in use).
    pub fn restore(&self) {
        if !self.enabled {
            return;
        }
        let mut held = self.lock();
        if held.is_none() {
            *held = open();
        }
    }

    /// Says a connection accepted with the reserve has closed.
    pub fn closed(&self) {
        self.turning_away.fetch_sub(1, Ordering::Relaxed);
        self.freed.notify_one();
    }

    /// Waits until [`Reserve::closed`] is called.
    pub async fn wait_closed(&self) {
        self.freed.notified().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<std::fs::File>> {
        // A panic while holding this lock leaves only an `Option<File>` behind: still usable.
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Any descriptor will do; `/dev/null` exists on every Unix.
#[cfg(unix)]
fn open() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

/// No reserve elsewhere: the loop only pauses, as it always did.
#[cfg(not(unix))]
fn open() -> Option<std::fs::File> {
    None
}
