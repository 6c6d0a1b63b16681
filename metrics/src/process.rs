//! The `process_*` metrics every Prometheus client exports (CPU time, resident memory, open file
//! descriptors, start time), read at each scrape.
//!
//! On Linux they come from `/proc/self` (the Prometheus client libraries' own source). Elsewhere
//! (macOS first) the portable reading is used: CPU time from `getrusage(2)`, the peak resident set
//! from the same call (the current one needs a Mach call this crate does not make), open
//! descriptors counted in `/dev/fd`, and the start time taken when the registry was built, at
//! start-up. A value that cannot be read is left out of that scrape, never guessed.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// One reading of the process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Reading {
    pub(crate) cpu_seconds: Option<f64>,
    pub(crate) resident_bytes: Option<f64>,
    pub(crate) open_fds: Option<f64>,
    pub(crate) start_time: Option<f64>,
}

/// The collector: reads the process at each scrape.
pub(crate) struct Process {
    /// When the registry was built: the start time where the system does not say.
    built: SystemTime,
}

impl Process {
    pub(crate) fn new() -> Self {
        Self {
            built: SystemTime::now(),
        }
    }

    fn read(&self) -> Reading {
        #[cfg(target_os = "linux")]
        let reading = linux::read();
        #[cfg(not(target_os = "linux"))]
        let reading = portable::read();
        Reading {
            start_time: reading.start_time.or_else(|| seconds(self.built)),
            ..reading
        }
    }
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Process")
    }
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let reading = self.read();
        if let Some(cpu) = reading.cpu_seconds {
            let counter = ConstCounter::new(cpu);
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                counter.metric_type(),
            )?;
            counter.encode(metric)?;
        }
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes (on macOS: the peak)",
                reading.resident_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                reading.open_fds,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                reading.start_time,
            ),
        ] {
            if let Some(value) = value {
                let gauge = ConstGauge::new(value);
                let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
                gauge.encode(metric)?;
            }
        }
        Ok(())
    }
}

fn seconds(time: SystemTime) -> Option<f64> {
    time.duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs_f64())
}

/// `/proc/self`: stat (CPU ticks, start ticks since boot), status (VmRSS), fd; `/proc/stat`
/// (boot time).
#[cfg(target_os = "linux")]
mod linux {
    use super::Reading;

    /// The kernel reports CPU and start times in USER_HZ ticks, which is 100 on every Linux ABI
    /// (the Prometheus clients assume the same).
    const TICKS_PER_SECOND: f64 = 100.0;

    pub(super) fn read() -> Reading {
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        // Fields after the command name, which is in parentheses and may hold spaces: field 3
        // (state) is the first after the last ')'.
        let fields: Vec<&str> = stat
            .as_deref()
            .and_then(|s| s.rsplit_once(')'))
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // utime is field 14 and stime 15, starttime 22; `fields[0]` is field 3.
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        let cpu_seconds = field(14)
            .zip(field(15))
            .map(|(user, system)| (user + system) / TICKS_PER_SECOND);
        let start_time = field(22)
            .zip(boot_time())
            .map(|(ticks, boot)| boot + ticks / TICKS_PER_SECOND);
        let resident_bytes = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
                let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kib * 1024.0)
            });
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|dir| dir.count() as f64);
        Reading {
            cpu_seconds,
            resident_bytes,
            open_fds,
            start_time,
        }
    }

    fn boot_time() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let line = stat.lines().find(|l| l.starts_with("btime "))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

/// `getrusage(2)` and `/dev/fd`: what every Unix has. Built on Linux too, so its test runs
/// everywhere the suite does.
#[cfg(unix)]
#[cfg_attr(target_os = "linux", allow(dead_code))]
mod portable {
    use nix::sys::resource::{UsageWho, getrusage};

    use super::Reading;

    pub(super) fn read() -> Reading {
        let usage = getrusage(UsageWho::RUSAGE_SELF).ok();
        let time = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        // ru_maxrss is in bytes on macOS and in KiB on Linux and the BSDs.
        let unit = if cfg!(target_vendor = "apple") {
            1.0
        } else {
            1024.0
        };
        Reading {
            cpu_seconds: usage.map(|u| time(u.user_time()) + time(u.system_time())),
            resident_bytes: usage.map(|u| u.max_rss() as f64 * unit),
            open_fds: std::fs::read_dir("/dev/fd").ok().map(|d| d.count() as f64),
            start_time: None,
        }
    }

    #[cfg(test)]
    #[test]
    fn the_portable_reading_has_every_value_but_the_start() {
        let reading = read();
        assert!(reading.cpu_seconds.is_some_and(|s| s >= 0.0));
        assert!(reading.resident_bytes.is_some_and(|b| b > 0.0));
        assert!(reading.open_fds.is_some_and(|n| n >= 3.0));
    }
}

#[cfg(not(unix))]
mod portable {
    use super::Reading;

    pub(super) fn read() -> Reading {
        Reading::default()
    }
}
