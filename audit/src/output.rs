//! Where the writer thread's batches land, and what happens when they cannot: a line is written
//! whole or not at all, every line that could not be written is counted, each episode of failure
//! is reported on stderr when it starts and when it ends, and the end leaves an audit event saying
//! how many events were lost. With [`OnFailure::Stop`], the first failure also tells the process
//! to stop (fail closed).

use std::fs::File;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use crate::batch::LostCount;
use crate::event::Lost;

/// A destination for audit or log lines.
pub enum Destination {
    /// A file, appended to. A batch that fails part-way is cut back off the file, so no torn
    /// line is ever left in it.
    File(File),
    /// A stream (stdout, stderr, a pipe): what reached it cannot be taken back.
    Stream(Box<dyn Write + Send>),
}

/// What to do when the destination cannot be written.
pub enum OnFailure {
    /// Keep serving; count the lines lost and report them when writing works again.
    KeepServing,
    /// Call this once, at the first failure, so the process stops serving; lines are still
    /// counted.
    Stop(StopCall),
}

/// The [`OnFailure::Stop`] call, shared by the writer thread (a failed write) and the loggers (a
/// destination that takes nothing: [`crate::batch`]); whichever comes first makes it, once.
#[derive(Clone, Default)]
pub(crate) struct StopOnce(Arc<Mutex<Option<StopCall>>>);

/// What [`OnFailure::Stop`] calls.
type StopCall = Box<dyn FnOnce() + Send>;

impl StopOnce {
    /// Makes the call, unless it was made already.
    pub(crate) fn fire(&self) {
        let stop = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(stop) = stop {
            stop();
        }
    }
}

/// The writer thread's end of a destination.
pub(crate) struct Output {
    name: String,
    dest: Destination,
    /// `Some` with [`OnFailure::Stop`].
    stop: Option<StopOnce>,
    episode: Option<Episode>,
    /// Every line lost, across episodes, for whoever reads the count.
    lost_total: LostCount,
    /// Called whenever the destination takes some bytes.
    progress: Box<dyn FnMut() + Send>,
}

struct Episode {
    lost: u64,
    error: String,
    since: SystemTime,
}

impl Output {
    pub(crate) fn new(name: &str, dest: Destination, on_failure: OnFailure) -> Self {
        let stop = match on_failure {
            OnFailure::KeepServing => None,
            OnFailure::Stop(stop) => Some(StopOnce(Arc::new(Mutex::new(Some(stop))))),
        };
        Self {
            name: name.to_owned(),
            dest,
            stop,
            episode: None,
            lost_total: LostCount::default(),
            progress: Box::new(|| {}),
        }
    }

    /// The stop call, for the loggers to make when the destination takes nothing.
    pub(crate) fn stop(&self) -> Option<StopOnce> {
        self.stop.clone()
    }

    /// Calls `progress` whenever the destination takes some bytes.
    pub(crate) fn on_progress(mut self, progress: impl FnMut() + Send + 'static) -> Self {
        self.progress = Box::new(progress);
        self
    }

    /// Counts `lines` the loggers gave up on, as part of an episode (the destination took
    /// nothing for `why`): reported like lines a write lost.
    pub(crate) fn gave_up(&mut self, lines: u64, why: &str) {
        // The total counted them already, when they were given up.
        if lines > 0 {
            self.count_lost(lines, why, false);
        }
    }

    /// Counts every lost line into `total` too.
    pub(crate) fn counting(mut self, total: LostCount) -> Self {
        self.lost_total = total;
        self
    }

    /// Writes `batch` (whole lines), or counts its lines as lost. During an episode, the event
    /// saying how many were lost goes first, in the same write: the episode ends only when both
    /// fit, so a disk with room for the one line but not the batch does not end it.
    pub(crate) fn write(&mut self, batch: &[u8]) {
        let result = match &self.episode {
            None => self.write_whole(batch),
            Some(episode) => {
                let mut both = String::new();
                crate::sink::encode(
                    &mut both,
                    &Lost {
                        count: episode.lost,
                        error: &episode.error,
                        since: episode.since,
                    },
                );
                let lost = episode.lost;
                let mut both = both.into_bytes();
                both.extend_from_slice(batch);
                let result = self.write_whole(&both);
                if result.is_ok() {
                    self.episode = None;
                    self.say(&format!("writing again; {lost} audit events were lost"));
                }
                result
            }
        };
        if let Err(error) = result {
            let lines = batch.iter().filter(|&&b| b == b'\n').count() as u64;
            self.failed(lines, &error);
        }
    }

    /// Called when the thread ends: an episode still under way is reported.
    pub(crate) fn finish(&mut self) {
        if let Some(episode) = self.episode.take() {
            self.say(&format!(
                "{} audit events were lost and could not be written ({})",
                episode.lost, episode.error
            ));
        }
    }

    fn write_whole(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.dest {
            Destination::Stream(out) => {
                write_all(out, bytes, &mut self.progress).and_then(|()| out.flush())
            }
            Destination::File(file) => {
                let before = file.metadata()?.len();
                let written =
                    write_all(file, bytes, &mut self.progress).and_then(|()| file.flush());
                if written.is_err() {
                    // Cut a partly written batch back off, so the file never holds a torn line.
                    if file.metadata().is_ok_and(|m| m.len() > before) {
                        let _ = file.set_len(before);
                    }
                }
                written
            }
        }
    }

    fn failed(&mut self, lines: u64, error: &io::Error) {
        self.lost_total.add(lines);
        self.count_lost(lines, &error.to_string(), true);
    }

    /// Adds `lines` to the episode under way, or starts one (saying so on stderr when `say`, and
    /// making the stop call).
    fn count_lost(&mut self, lines: u64, error: &str, say: bool) {
        match &mut self.episode {
            Some(episode) => episode.lost += lines,
            None => {
                self.episode = Some(Episode {
                    lost: lines,
                    error: error.to_owned(),
                    since: SystemTime::now(),
                });
                let then = match self.stop {
                    Some(_) => "egressd stops serving (fail closed)",
                    None => "egressd keeps serving and counts what is lost",
                };
                if say {
                    self.say(&format!("cannot write audit events ({error}); {then}"));
                }
                if let Some(stop) = &self.stop {
                    stop.fire();
                }
            }
        }
    }

    /// One line on stderr. Not `eprintln!`: it panics when stderr is gone, and this thread must
    /// not die, or loggers would wait on it forever.
    fn say(&self, what: &str) {
        let _ = writeln!(io::stderr(), "egressd: {}: {what}", self.name);
    }
}

/// `write_all`, calling `progress` after every write that took bytes.
fn write_all(out: &mut dyn Write, mut bytes: &[u8], progress: &mut dyn FnMut()) -> io::Result<()> {
    while !bytes.is_empty() {
        match out.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                bytes = bytes.get(n..).unwrap_or_default();
                progress();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts `room` bytes, then fails every write (a disk that fills).
    struct Filling {
        written: Arc<Mutex<Vec<u8>>>,
        room: Arc<Mutex<usize>>,
    }

    impl Write for Filling {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let mut room = self.room.lock().unwrap();
            if *room == 0 {
                return Err(io::Error::other("no space left"));
            }
            let n = b.len().min(*room);
            *room -= n;
            self.written.lock().unwrap().extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_file_that_fills_keeps_whole_lines_only_and_the_gap_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let mut out = Output::new("test", Destination::File(file), OnFailure::KeepServing);
        out.write(b"{\"n\":1}\n");
        // A file cannot be made to fail half-way here; a read-only reopen stands in for a full
        // disk: the batch is refused whole.
        let read_only = std::fs::File::open(&path).unwrap();
        let full = std::mem::replace(&mut out.dest, Destination::File(read_only));
        out.write(b"{\"n\":2}\n{\"n\":3}\n");
        out.write(b"{\"n\":4}\n");
        assert_eq!(out.episode.as_ref().unwrap().lost, 3);
        out.dest = full;
        out.write(b"{\"n\":5}\n");
        assert!(out.episode.is_none());
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0]["n"], 1);
        assert_eq!(lines[1]["message"], Lost::MESSAGE);
        assert_eq!(lines[1][crate::fields::LOST], 3);
        assert_eq!(lines[2]["n"], 5);
    }

    #[test]
    fn a_stream_counts_what_it_could_not_take_and_stop_is_called_once() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let room = Arc::new(Mutex::new(10));
        let stops = Arc::new(Mutex::new(0));
        let counted = stops.clone();
        let stream = Filling {
            written: written.clone(),
            room: room.clone(),
        };
        let mut out = Output::new(
            "test",
            Destination::Stream(Box::new(stream)),
            OnFailure::Stop(Box::new(move || *counted.lock().unwrap() += 1)),
        );
        out.write(b"aaaa\n");
        out.write(b"bbbbbbbb\ncc\n");
        out.write(b"dd\n");
        assert_eq!(*stops.lock().unwrap(), 1);
        assert_eq!(out.episode.as_ref().unwrap().lost, 3);
        *room.lock().unwrap() = 4096;
        out.write(b"ee\n");
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        assert!(text.contains("\"lost\":3"), "{text}");
        assert!(text.ends_with("ee\n"), "{text}");
    }
}
