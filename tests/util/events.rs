//! Reading audit events: one JSON object per line, each written when its request, tunnel or query
//! ends, so tests wait for the count they expect. Fields are read by the audit crate's constants.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::PATIENCE;

/// The audit events of kind `message` (`audit::Request::MESSAGE`, ...) among the lines of `text`
/// (an audit log, or stderr where audit lines sit among log lines).
pub fn events_of(text: &str, message: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v[audit::fields::MESSAGE] == message)
        .collect()
}

/// Waits until the audit log at `path` holds at least `count` request events (lifecycle events
/// are not counted) and returns them; panics after [`PATIENCE`] with what the file held.
pub fn request_events(path: &Path, count: usize) -> Vec<serde_json::Value> {
    wait_for_events(path, audit::Request::MESSAGE, count)
}

/// [`request_events`] for the SOCKS listener's events.
pub fn socks_events(path: &Path, count: usize) -> Vec<serde_json::Value> {
    wait_for_events(path, audit::Socks::MESSAGE, count)
}

/// [`request_events`] for the DNS stub's query events.
pub fn dns_events(path: &Path, count: usize) -> Vec<serde_json::Value> {
    wait_for_events(path, audit::DnsQuery::MESSAGE, count)
}

fn wait_for_events(path: &Path, message: &str, count: usize) -> Vec<serde_json::Value> {
    let read = || std::fs::read_to_string(path).unwrap_or_default();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = read();
        // Only whole lines: the writer may be part-way through one.
        let whole = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
        let events = events_of(whole, message);
        if events.len() >= count {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {count} {message} events in:\n{text}"
        );
        // The file gives no wake-up; a short pause between reads leaves the CPU to egressd.
        thread::sleep(Duration::from_millis(5));
    }
}
