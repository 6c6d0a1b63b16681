//! A log writer that hands lines to a thread of its own, which writes them in batches.
//!
//! Events are formatted where they happen and appended to a shared buffer (one short lock and a
//! copy, no allocation per line). The writer thread sleeps until a line arrives, then lets a
//! batch gather for up to [`GATHER`] (or until [`BATCH_BYTES`] are queued) and writes it with one
//! `write(2)`. Under load that is a few hundred writes and wake-ups a second instead of one per
//! handful of lines, which was a quarter of the DNS stub's cost (docs/benchmarks.md); when idle,
//! the thread sleeps and costs nothing.
//!
//! Nothing is dropped on the way to the writer: past [`MAX_QUEUED`] bytes, whoever logs waits for
//! it, unless the destination has taken nothing for [`STUCK`] (a pipe nobody reads): then lines
//! are counted lost instead of waited for, as if the destination failed (with `OnFailure::Stop`,
//! the process is told to stop), so a stuck reader cannot freeze the sidecar nor keep it from
//! exiting. What the destination refuses (a full disk) is counted and reported
//! ([`crate::output`]). Dropping the [`Guard`] writes out what is queued and stops the thread,
//! waiting at most [`STUCK`] for a destination that takes nothing.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use crate::output::{Destination, OnFailure, Output, StopOnce};
use std::time::{Duration, Instant};

/// How long the writer lets a batch gather after its first line: the most a line waits.
const GATHER: Duration = Duration::from_millis(2);
/// A batch this large is written at once.
const BATCH_BYTES: usize = 64 * 1024;
/// Queued bytes past which logging waits for the writer.
const MAX_QUEUED: usize = 1024 * 1024;
/// A destination that has taken no byte for this long, with lines waiting, is stuck.
const STUCK: Duration = Duration::from_secs(10);

#[derive(Default)]
struct State {
    queued: Vec<u8>,
    /// The writer is waiting for a first line (and must be woken for it).
    writer_idle: bool,
    closed: bool,
    /// While the writer writes: when the destination last took bytes (or the write began).
    writing_since: Option<Instant>,
    /// Lines loggers gave up on because the destination was stuck, not yet reported.
    given_up: u64,
    /// The writer thread has ended.
    finished: bool,
}

impl State {
    fn stuck(&self, after: Duration) -> bool {
        self.writing_since
            .is_some_and(|since| since.elapsed() >= after)
    }
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer: a first line, a full batch, or closing.
    wake: Condvar,
    /// Wakes loggers waiting for room.
    room: Condvar,
    /// Every line the destination could not take, since the start.
    lost: LostCount,
    /// The stop call of `OnFailure::Stop`, for a stuck destination.
    stop: Mutex<Option<StopOnce>>,
    /// [`STUCK`], but for tests.
    stuck_after: Duration,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            wake: Condvar::new(),
            room: Condvar::new(),
            lost: LostCount::default(),
            stop: Mutex::default(),
            stuck_after: STUCK,
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The handle that queues lines for the writer thread. Cheap to clone.
#[derive(Clone)]
pub struct Batched {
    shared: Arc<Shared>,
}

/// Stops the writer thread when dropped, after it has written everything queued.
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Batched {
    /// The count of lines this writer could not write (a full disk, say), since it started.
    pub fn lost(&self) -> LostCount {
        self.shared.lost.clone()
    }
}

/// Lines a writer could not write, counted since it started: what egressd's metrics report as
/// audit events lost. Cheap to clone; clones read the same count.
#[derive(Clone, Debug, Default)]
pub struct LostCount(Arc<AtomicU64>);

impl LostCount {
    /// Lines lost so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn add(&self, lines: u64) {
        self.0.fetch_add(lines, Ordering::Relaxed);
    }
}

/// Starts a writer thread named `name` writing to `out`, doing `on_failure` when it cannot.
pub fn spawn_writer(
    name: &str,
    out: Destination,
    on_failure: OnFailure,
) -> io::Result<(Batched, Guard)> {
    spawn(name, out, on_failure, STUCK)
}

fn spawn(
    name: &str,
    out: Destination,
    on_failure: OnFailure,
    stuck_after: Duration,
) -> io::Result<(Batched, Guard)> {
    let shared = Arc::new(Shared {
        stuck_after,
        ..Shared::default()
    });
    let output = Output::new(name, out, on_failure).counting(shared.lost.clone());
    *shared.stop.lock().unwrap_or_else(PoisonError::into_inner) = output.stop();
    let output = output.on_progress({
        let shared = shared.clone();
        move || shared.lock().writing_since = Some(Instant::now())
    });
    let thread = std::thread::Builder::new().name(name.to_owned()).spawn({
        let shared = shared.clone();
        move || {
            write_batches(&shared, output);
            shared.lock().finished = true;
            shared.room.notify_all();
        }
    })?;
    let guard = Guard {
        shared: shared.clone(),
        thread: Some(thread),
    };
    Ok((Batched { shared }, guard))
}

fn write_batches(shared: &Shared, mut out: Output) {
    let mut batch = Vec::new();
    loop {
        let mut state = shared.lock();
        while state.queued.is_empty() && !state.closed {
            state.writer_idle = true;
            state = shared
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.writer_idle = false;
        let deadline = Instant::now() + GATHER;
        while state.queued.len() < BATCH_BYTES && !state.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = shared
                .wake
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        if state.queued.is_empty() && state.closed {
            out.finish();
            return;
        }
        std::mem::swap(&mut batch, &mut state.queued);
        state.writing_since = Some(Instant::now());
        drop(state);
        shared.room.notify_all();
        out.write(&batch);
        batch.clear();
        let given_up = {
            let mut state = shared.lock();
            state.writing_since = None;
            std::mem::take(&mut state.given_up)
        };
        if given_up > 0 {
            let why = format!(
                "the destination took nothing for {} s",
                shared.stuck_after.as_secs()
            );
            out.gave_up(given_up, &why);
        }
        if batch.capacity() > 4 * BATCH_BYTES {
            batch = Vec::new();
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let shared = &*self.shared;
        let mut state = shared.lock();
        state.closed = true;
        shared.wake.notify_all();
        // Until the writer has written what is queued, or its destination is stuck (then the
        // thread is left behind: it ends with the process).
        while !state.finished && !state.stuck(shared.stuck_after) {
            state = shared
                .room
                .wait_timeout(state, Duration::from_millis(100))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let finished = state.finished;
        drop(state);
        if let Some(thread) = self.thread.take()
            && finished
        {
            let _ = thread.join();
        }
    }
}

impl Batched {
    /// Queues `line` (whole lines: the writer never splits what it is given).
    pub fn push(&self, line: &[u8]) {
        let shared = &*self.shared;
        let mut state = shared.lock();
        while state.queued.len() >= MAX_QUEUED && !state.closed {
            if state.stuck(shared.stuck_after) {
                let lines = line.iter().filter(|&&b| b == b'\n').count() as u64;
                state.given_up += lines;
                drop(state);
                shared.lost.add(lines);
                let stop = shared
                    .stop
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                if let Some(stop) = stop {
                    stop.fire();
                }
                return;
            }
            state = shared
                .room
                .wait_timeout(state, shared.stuck_after.min(Duration::from_secs(1)))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let before = state.queued.len();
        state.queued.extend_from_slice(line);
        // Wake the writer for a first line, and once more when the batch becomes full (the
        // queue only grows until the writer takes it, so it crosses the mark once per batch).
        let wake = (before == 0 && state.writer_idle)
            || (before < BATCH_BYTES && state.queued.len() >= BATCH_BYTES);
        drop(state);
        if wake {
            shared.wake.notify_one();
        }
    }
}

impl Write for Batched {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        self.push(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<Mutex<usize>>,
    }

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.bytes.lock().unwrap().extend_from_slice(b);
            *self.writes.lock().unwrap() += 1;
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A writer to `sink` that keeps serving whatever happens.
    fn writing_to(sink: &Sink) -> (Batched, Guard) {
        spawn_writer(
            "test-log",
            Destination::Stream(Box::new(sink.clone())),
            OnFailure::KeepServing,
        )
        .unwrap()
    }

    #[test]
    fn every_line_arrives_in_order_from_many_threads_and_in_few_writes() {
        let sink = Sink::default();
        let (writer, guard) = writing_to(&sink);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut w = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000 {
                        w.write_all(format!("{t} {i}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let text = String::from_utf8(sink.bytes.lock().unwrap().clone()).unwrap();
        let mut next = [0usize; 4];
        for line in text.lines() {
            let (t, i) = line.split_once(' ').unwrap();
            let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next[t], "thread {t}'s lines out of order or missing");
            next[t] += 1;
        }
        assert_eq!(next, [20_000; 4]);
        let writes = *sink.writes.lock().unwrap();
        assert!(writes < 80_000 / 10, "{writes} writes for 80,000 lines");
    }

    #[test]
    fn a_single_line_is_written_without_more_traffic() {
        let sink = Sink::default();
        let (writer, guard) = writing_to(&sink);
        writer.clone().write_all(b"one\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while sink.bytes.lock().unwrap().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(&*sink.bytes.lock().unwrap(), b"one\n");
        drop(guard);
        assert_eq!(*sink.writes.lock().unwrap(), 1);
    }

    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_destination_never_stalls_logging() {
        let (writer, guard) = spawn_writer(
            "test-log",
            Destination::Stream(Box::new(Broken)),
            OnFailure::KeepServing,
        )
        .unwrap();
        let mut w = writer.clone();
        let line = [b'x'; 1023];
        // Four times what may be queued: this returns only if the writer keeps draining.
        for _ in 0..4 * MAX_QUEUED / 1024 {
            w.write_all(&line).unwrap();
            w.write_all(b"\n").unwrap();
        }
        drop(guard);
    }

    #[test]
    fn dropping_the_guard_writes_what_is_queued() {
        let sink = Sink::default();
        let (writer, guard) = writing_to(&sink);
        let mut w = writer.clone();
        for i in 0..1000 {
            w.write_all(format!("{i}\n").as_bytes()).unwrap();
        }
        drop(guard);
        assert_eq!(
            sink.bytes.lock().unwrap().split(|&b| b == b'\n').count(),
            1001
        );
    }

    /// A destination that takes nothing until `open` is set (a pipe nobody reads).
    #[derive(Clone, Default)]
    struct Unread {
        open: Arc<(Mutex<bool>, Condvar)>,
    }

    impl Write for Unread {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let (lock, opened) = &*self.open;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = opened.wait(open).unwrap();
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Runs `work` on a thread; true if it ended within a minute.
    fn ends(work: impl FnOnce() + Send + 'static) -> bool {
        let (done, ended) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            work();
            let _ = done.send(());
        });
        ended.recv_timeout(Duration::from_secs(60)).is_ok()
    }

    #[test]
    fn a_destination_that_takes_nothing_neither_freezes_the_loggers_nor_the_exit() {
        let unread = Unread::default();
        let stops = Arc::new(Mutex::new(0));
        let counted = stops.clone();
        let (writer, guard) = spawn(
            "test-log",
            Destination::Stream(Box::new(unread.clone())),
            OnFailure::Stop(Box::new(move || *counted.lock().unwrap() += 1)),
            Duration::from_millis(200),
        )
        .unwrap();
        let lost = writer.lost();
        // Four times what may be queued (the writer holds at most twice that: one batch taken,
        // one queued): past the limit, lines are given up once the destination has taken nothing
        // for the stuck time, instead of waited for.
        let logging = writer.clone();
        let logged = ends(move || {
            let line = [b'x'; 1023];
            for _ in 0..4 * MAX_QUEUED / 1024 {
                let mut l = line.to_vec();
                l.push(b'\n');
                logging.push(&l);
            }
        });
        assert!(
            logged,
            "logging waited for a destination that takes nothing"
        );
        assert!(
            lost.get() > 0,
            "lost {} stops {}",
            lost.get(),
            stops.lock().unwrap()
        );
        assert_eq!(*stops.lock().unwrap(), 1, "the stop call is made once");
        // The exit does not wait for it either.
        assert!(ends(move || drop(guard)), "the guard waited for ever");
        // Let the writer thread end.
        *unread.open.0.lock().unwrap() = true;
        unread.open.1.notify_all();
    }
}
