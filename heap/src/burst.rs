//! When a burst is over: the number of open connections has fallen well below its peak since the
//! last release and stayed there for a while.

use std::time::{Duration, Instant};

/// How long the count must stay low before memory is released: long enough that a lull inside a
/// burst does not trim memory the next wave would allocate again.
pub const QUIET: Duration = Duration::from_secs(3);
/// Connections that must have closed since the peak for a release to be worth its call: under
/// this, what they held (14 KiB an idle keep-alive connection, 54 KiB an inspected session) is a
/// few MiB at most.
const MIN_CLOSED: usize = 128;
/// "Well below the peak": at most this fraction of it (1/4) still open.
const PEAK_DIVISOR: usize = 4;

/// Watches the number of open connections, sampled by the caller, for the end of a burst.
#[derive(Debug, Default)]
pub struct Burst {
    /// The most connections seen open since the last release (or the start).
    peak: usize,
    /// Since when the count has been well below the peak.
    low_since: Option<Instant>,
}

impl Burst {
    /// A watch that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that up to `peak` connections were open at some moment since the last sample: a
    /// burst that opened and closed between two samples counts as one seen, and when it is no
    /// drain, the quiet time starts again.
    pub fn saw_peak(&mut self, peak: usize) {
        self.peak = self.peak.max(peak);
        if peak > self.peak / PEAK_DIVISOR {
            self.low_since = None;
        }
    }

    /// Records that `open` connections were open at `now`. True when now is the time to release
    /// free memory: at least [`MIN_CLOSED`] connections have closed since the peak, at most a
    /// quarter of the peak is still open, and that has held for [`QUIET`]. The watch then starts
    /// again from `open`, so one burst gets one release.
    pub fn observe(&mut self, now: Instant, open: usize) -> bool {
        self.peak = self.peak.max(open);
        let low = self.peak - open >= MIN_CLOSED && open <= self.peak / PEAK_DIVISOR;
        if !low {
            self.low_since = None;
            return false;
        }
        let since = *self.low_since.get_or_insert(now);
        if now.saturating_duration_since(since) < QUIET {
            return false;
        }
        self.peak = open;
        self.low_since = None;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `samples` (open connections, one a second) and returns the seconds at which a
    /// release was called for.
    fn releases(samples: &[usize]) -> Vec<usize> {
        let start = Instant::now();
        let mut burst = Burst::new();
        samples
            .iter()
            .enumerate()
            .filter(|&(second, &open)| {
                burst.observe(start + Duration::from_secs(second as u64), open)
            })
            .map(|(second, _)| second)
            .collect()
    }

    #[test]
    fn a_burst_that_drains_is_released_once_after_the_quiet_time() {
        assert_eq!(releases(&[0, 5000, 10_000, 0, 0, 0, 0, 0, 0, 0]), vec![6]);
    }

    #[test]
    fn each_burst_gets_its_release() {
        assert_eq!(
            releases(&[10_000, 0, 0, 0, 0, 1000, 1000, 0, 0, 0, 0, 0]),
            vec![4, 10]
        );
    }

    #[test]
    fn a_lull_inside_a_burst_is_not_the_end_of_it() {
        assert_eq!(releases(&[10_000, 0, 0, 9000, 0, 0, 10_000, 9000]), vec![]);
    }

    #[test]
    fn a_count_that_stays_above_a_quarter_of_the_peak_is_no_drain() {
        assert_eq!(
            releases(&[4000, 1001, 1001, 1001, 1001, 1001, 1001]),
            vec![]
        );
        assert_eq!(releases(&[4000, 1000, 1000, 1000, 1000]), vec![4]);
    }

    #[test]
    fn a_burst_between_two_samples_is_seen_by_its_peak_and_delays_the_quiet_time() {
        let start = Instant::now();
        let at = |second: u64| start + Duration::from_secs(second);
        let mut burst = Burst::new();
        assert!(!burst.observe(at(0), 0));
        // 1,000 connections opened and closed within the second before the next sample.
        burst.saw_peak(1000);
        let released: Vec<u64> = (1..=5).filter(|&s| burst.observe(at(s), 0)).collect();
        assert_eq!(released, vec![4]);
        // Low since second 5; another short burst at 6 starts the quiet time again.
        assert!(!burst.observe(at(5), 0));
        burst.saw_peak(1000);
        assert!(!burst.observe(at(6), 0));
        assert!(!burst.observe(at(8), 0));
        assert!(burst.observe(at(9), 0));
    }

    #[test]
    fn a_handful_of_connections_closing_is_not_worth_a_release() {
        assert_eq!(releases(&[100, 0, 0, 0, 0, 0, 0]), vec![]);
        assert_eq!(releases(&[128, 0, 0, 0, 0, 0, 0]), vec![4]);
    }
}
