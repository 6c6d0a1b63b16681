//! The state a server reads per request (policy, resolver, attribution), swapped whole on reload.

use std::sync::Arc;

use arc_swap::ArcSwap;

/// One generation of `T` at a time: readers take the current one and keep it for as long as they
/// need it (a request decided under the old policy finishes under it); a reload stores a new one
/// atomically.
pub struct Snapshot<T> {
    current: ArcSwap<T>,
}

impl<T> Snapshot<T> {
    /// Starts with `first` (a value, or an `Arc` shared with other servers).
    pub fn new(first: impl Into<Arc<T>>) -> Self {
        Self {
            current: ArcSwap::new(first.into()),
        }
    }

    /// The generation in force now.
    pub fn load(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Puts `next` in force for every later [`Snapshot::load`].
    pub fn store(&self, next: impl Into<Arc<T>>) {
        self.current.store(next.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_keeps_its_generation_across_a_store() {
        let snapshot = Snapshot::new(1);
        let held = snapshot.load();
        snapshot.store(2);
        assert_eq!((*held, *snapshot.load()), (1, 2));
    }
}
