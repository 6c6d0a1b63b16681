//! How far a request body has got, shared by the body on its way (`upload.rs`),
//! the request's task waiting for the response, and the request's audit record.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::Failure;

/// What the request's task and its audit record know of an upload in flight.
pub struct Progress {
    start: Instant,
    /// Nanoseconds from `start` to the end of the body; `u64::MAX` while sending.
    sent: AtomicU64,
    failure: OnceLock<Failure>,
    /// Notified when the body ends or fails.
    pub(crate) ended: Notify,
}

impl Progress {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
            sent: AtomicU64::new(u64::MAX),
            failure: OnceLock::new(),
            ended: Notify::new(),
        }
    }

    /// Why the upload failed, if it did.
    pub fn failure(&self) -> Option<&Failure> {
        self.failure.get()
    }

    fn since_start(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
    }

    pub(crate) fn finish(&self) {
        self.sent.store(self.since_start(), Ordering::Relaxed);
        self.ended.notify_one();
    }

    pub(crate) fn fail(&self, failure: Failure) -> Failure {
        let _ = self.failure.set(failure.clone());
        self.ended.notify_one();
        failure
    }

    pub(crate) fn sent_at(&self) -> Option<Instant> {
        match self.sent.load(Ordering::Relaxed) {
            u64::MAX => None,
            nanos => Some(self.start + Duration::from_nanos(nanos)),
        }
    }
}
