//! Reading the `--audit-log` file: one JSON event per line, each written when its request or
//! tunnel ends, so tests wait for the count they expect.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::PATIENCE;

/// Waits until the audit log at `path` holds at least `count` events and returns them all;
/// panics after [`PATIENCE`] with what the file held.
pub fn audit_events(path: &Path, count: usize) -> Vec<serde_json::Value> {
    let read = || std::fs::read_to_string(path).unwrap_or_default();
    let deadline = Instant::now() + PATIENCE;
    let mut text = read();
    // Only whole lines: the writer may be part-way through one.
    while text.matches('\n').count() < count {
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {count} audit events in:\n{text}"
        );
        // The file gives no wake-up; a short pause between reads leaves the CPU to egressd.
        thread::sleep(Duration::from_millis(5));
        text = read();
    }
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}
