//! egressd's stdout and stderr, read by one thread each so that egressd never blocks on a full
//! pipe: stdout's first line is the readiness line (the rest is drained), stderr goes line by line
//! to the launcher's [`Stderr`] choice while its last lines are kept for errors.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

/// How many of egressd's last stderr lines are kept for errors and [`Exit`](crate::Exit).
pub const STDERR_TAIL: usize = 16;

/// The longest readiness line read (far above egressd's, which is a few hundred bytes to a few
/// KiB): a program that is not egressd cannot make the launcher buffer without end.
const READY_LINE_LIMIT: u64 = 1 << 20;

/// The longest stderr line kept whole; a longer one is cut into pieces of this size.
const STDERR_LINE_LIMIT: u64 = 64 << 10;

/// Where egressd's stderr (its log, and audit events without `--audit-log`) goes.
#[non_exhaustive]
pub enum Stderr {
    /// To the launcher's own stderr, line by line (the default).
    Forward,
    /// Nowhere (the last lines are still kept for errors).
    Discard,
    /// Appended to a file.
    File(File),
    /// To a function, one line at a time (without its newline), on the reading thread: to route
    /// egressd's log into the launcher's.
    Lines(Box<dyn FnMut(&str) + Send>),
}

impl Stderr {
    fn write(&mut self, line: &str) {
        // A sink that fails (a closed stderr, a full disk) must not stop the reading: egressd
        // would block on a full pipe.
        match self {
            Self::Forward => {
                let _ = writeln!(io::stderr().lock(), "{line}");
            }
            Self::Discard => {}
            Self::File(file) => {
                let _ = writeln!(file, "{line}");
            }
            Self::Lines(f) => f(line),
        }
    }
}

/// The last lines egressd wrote on stderr.
#[derive(Clone, Default)]
pub struct Tail(Arc<Mutex<VecDeque<String>>>);

impl Tail {
    fn push(&self, line: String) {
        let mut lines = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if lines.len() == STDERR_TAIL {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// A copy of the lines.
    pub fn lines(&self) -> Vec<String> {
        let lines = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        lines.iter().cloned().collect()
    }
}

/// Follows stderr on a thread. The receiver reports the end of stderr (egressd exited, or at
/// least closed it) by disconnecting: nothing is ever sent on it.
pub fn follow_stderr(
    stderr: impl Read + Send + 'static,
    mut sink: Stderr,
) -> (Tail, mpsc::Receiver<()>) {
    let tail = Tail::default();
    let kept = tail.clone();
    let (closed, closed_rx) = mpsc::channel::<()>();
    thread::spawn(move || {
        let _closed = closed;
        let mut reader = BufReader::new(stderr);
        while let Ok(Some(line)) = read_line(&mut reader, STDERR_LINE_LIMIT) {
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\r', '\n']);
            sink.write(line);
            if !line.trim().is_empty() {
                kept.push(line.to_owned());
            }
        }
    });
    (tail, closed_rx)
}

/// What stdout's first line turned out to be.
pub enum First {
    /// A line (its newline removed).
    Line(String),
    /// stdout ended (or failed) before a line: egressd is exiting.
    Ended,
    /// Longer than any readiness line.
    TooLong,
}

/// Reads stdout's first line on a thread, then drains the rest.
pub fn follow_stdout(stdout: impl Read + Send + 'static) -> mpsc::Receiver<First> {
    let (first, first_rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let line = match read_line(&mut reader, READY_LINE_LIMIT) {
            Ok(Some(line)) if line.ends_with(b"\n") => {
                First::Line(String::from_utf8_lossy(&line).trim_end().to_owned())
            }
            Ok(Some(line)) if line.len() as u64 == READY_LINE_LIMIT => First::TooLong,
            // A last line without a newline is still the line egressd wrote.
            Ok(Some(line)) => First::Line(String::from_utf8_lossy(&line).trim_end().to_owned()),
            Ok(None) | Err(_) => First::Ended,
        };
        let _ = first.send(line);
        let _ = io::copy(&mut reader, &mut io::sink());
    });
    first_rx
}

/// One line of at most `limit` bytes (with its newline, if it had one); `None` at the end.
fn read_line(reader: &mut impl BufRead, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    reader.by_ref().take(limit).read_until(b'\n', &mut line)?;
    Ok((!line.is_empty()).then_some(line))
}
