//! The typed options of `egressd run` (docs/launcher.md, "Start"), and how the kit runs it.

use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Error;
use crate::output::Stderr;
use crate::ready::Mode;
use crate::sidecar::Sidecar;

/// egressd's log format on stderr (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (egressd's default).
    Text,
    /// One JSON object a line.
    Json,
}

/// egressd's log level (`--log-level`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// egressd's default.
    Info,
    /// More.
    Debug,
    /// Everything.
    Trace,
}

/// How long egressd may take to print its readiness line, by default.
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(10);

/// egressd's own default `--drain-timeout`.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Sidecar::stop`] waits beyond the drain timeout before it kills egressd: egressd
/// still writes its last audit events and removes its files after the drain.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// How to start egressd: the program, its `egressd run` options, and the kit's own settings
/// (readiness timeout, stderr, stdin). Build it, then [`Launcher::start`].
///
/// The child gets the launcher's environment without any `EGRESSD_*` variable: egressd reads
/// those as flags, and only the options set here should decide how it runs.
pub struct Launcher {
    program: PathBuf,
    args: Vec<OsString>,
    exit_on_stdin_eof: bool,
    readiness_timeout: Duration,
    drain_timeout: Duration,
    stderr: Stderr,
}

impl Launcher {
    /// egressd at `program` (a path, or a name looked up on `PATH`), with egressd's defaults:
    /// the built-in policy, a generated proxy credential, ports picked at start. The kit's own
    /// defaults: egressd exits when the [`Sidecar`] (holding its stdin) goes away
    /// (`--exit-on-stdin-eof`), readiness within [`READINESS_TIMEOUT`], stderr forwarded.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            exit_on_stdin_eof: true,
            readiness_timeout: READINESS_TIMEOUT,
            drain_timeout: DRAIN_TIMEOUT,
            stderr: Stderr::Forward,
        }
    }

    fn flag(mut self, flag: &str) -> Self {
        self.args.push(flag.into());
        self
    }

    fn option(mut self, flag: &str, value: impl AsRef<OsStr>) -> Self {
        self.args.push(flag.into());
        self.args.push(value.as_ref().to_owned());
        self
    }

    /// `--policy FILE`.
    pub fn policy(self, path: impl AsRef<Path>) -> Self {
        self.option("--policy", path.as_ref())
    }

    /// `--sandbox-id ID`: in every audit event, and `{sandbox_id}` in header templates.
    pub fn sandbox_id(self, id: &str) -> Self {
        self.option("--sandbox-id", id)
    }

    /// `--proxy-listen ADDR` (default `127.0.0.1:0`).
    pub fn proxy_listen(self, addr: SocketAddr) -> Self {
        self.option("--proxy-listen", addr.to_string())
    }

    /// `--proxy-unix PATH`: also serve the proxy on a Unix socket.
    pub fn proxy_unix(self, path: impl AsRef<Path>) -> Self {
        self.option("--proxy-unix", path.as_ref())
    }

    /// `--proxy-unix-mode OCTAL`, e.g. `0o660`.
    pub fn proxy_unix_mode(self, mode: u32) -> Self {
        self.option("--proxy-unix-mode", format!("{mode:o}"))
    }

    /// `--dns-listen ADDR` (default `127.0.0.1:0`).
    pub fn dns_listen(self, addr: SocketAddr) -> Self {
        self.option("--dns-listen", addr.to_string())
    }

    /// `--dns-unix PATH`: also serve the DNS stub on a Unix socket.
    pub fn dns_unix(self, path: impl AsRef<Path>) -> Self {
        self.option("--dns-unix", path.as_ref())
    }

    /// `--no-dns`: no DNS stub.
    pub fn no_dns(self) -> Self {
        self.flag("--no-dns")
    }

    /// `--proxy-credential-file FILE`: the credential's secret, chosen by the launcher.
    pub fn proxy_credential_file(self, path: impl AsRef<Path>) -> Self {
        self.option("--proxy-credential-file", path.as_ref())
    }

    /// `--no-proxy-credential`: only when nothing but the sandbox can reach the proxy.
    pub fn no_proxy_credential(self) -> Self {
        self.flag("--no-proxy-credential")
    }

    /// `--danger-listen-non-loopback`: anyone who reaches a non-loopback listener speaks as this
    /// sandbox.
    pub fn danger_listen_non_loopback(self) -> Self {
        self.flag("--danger-listen-non-loopback")
    }

    /// `--mode`: wins over the policy's `defaults.mode`.
    pub fn mode(self, mode: Mode) -> Self {
        self.option("--mode", mode.as_str())
    }

    /// `--metrics-listen ADDR`.
    pub fn metrics_listen(self, addr: SocketAddr) -> Self {
        self.option("--metrics-listen", addr.to_string())
    }

    /// `--header 'NAME: VALUE'`: an attribution header on every forwarded request. Repeatable.
    pub fn header(self, name: &str, value: &str) -> Self {
        self.option("--header", format!("{name}: {value}"))
    }

    /// `--log-format`.
    pub fn log_format(self, format: LogFormat) -> Self {
        let format = match format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        };
        self.option("--log-format", format)
    }

    /// `--log-level`.
    pub fn log_level(self, level: LogLevel) -> Self {
        let level = match level {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        };
        self.option("--log-level", level)
    }

    /// `--audit-log PATH`: audit events appended to a file instead of stderr.
    pub fn audit_log(self, path: impl AsRef<Path>) -> Self {
        self.option("--audit-log", path.as_ref())
    }

    /// `--ready-file PATH`: the readiness line also written there (0600).
    pub fn ready_file(self, path: impl AsRef<Path>) -> Self {
        self.option("--ready-file", path.as_ref())
    }

    /// `--threads N` (`0`: everything on one thread).
    pub fn threads(self, threads: usize) -> Self {
        self.option("--threads", threads.to_string())
    }

    /// `--parent-proxy IP:PORT`.
    pub fn parent_proxy(self, addr: SocketAddr) -> Self {
        self.option("--parent-proxy", addr.to_string())
    }

    /// `--parent-proxy-auth VALUE`, e.g. `Basic dXNlcjpwYXNz`.
    pub fn parent_proxy_auth(self, value: &str) -> Self {
        self.option("--parent-proxy-auth", value)
    }

    /// `--inspect-ca-cert CERT --inspect-ca-key KEY`: the CA to inspect TLS with.
    pub fn inspect_ca(self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        self.option("--inspect-ca-cert", cert.as_ref())
            .option("--inspect-ca-key", key.as_ref())
    }

    /// `--inspect-upstream-roots FILE`.
    pub fn inspect_upstream_roots(self, path: impl AsRef<Path>) -> Self {
        self.option("--inspect-upstream-roots", path.as_ref())
    }

    /// Flags this kit does not type (the limits, say: `--max-connections 512`), passed as they
    /// are, in order with the typed ones. Not `--audit-log -`: stdout after the readiness line is drained
    /// and dropped; use [`Launcher::audit_log`].
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// `--drain-timeout`: how long open connections may finish after a stop (default 10 s).
    /// [`Sidecar::stop`] kills egressd if it has not exited [`STOP_GRACE`] after it.
    pub fn drain_timeout(mut self, drain: Duration) -> Self {
        self.drain_timeout = drain;
        self
    }

    /// Whether egressd exits when the launcher lets go of its stdin (`--exit-on-stdin-eof`, on
    /// by default): the [`Sidecar`] holds the pipe, so if the launcher dies, egressd follows.
    /// Off: egressd's stdin is `/dev/null` and only a signal stops it.
    pub fn exit_on_stdin_eof(mut self, on: bool) -> Self {
        self.exit_on_stdin_eof = on;
        self
    }

    /// How long to wait for the readiness line before killing egressd (default
    /// [`READINESS_TIMEOUT`]).
    pub fn readiness_timeout(mut self, timeout: Duration) -> Self {
        self.readiness_timeout = timeout;
        self
    }

    /// Where egressd's stderr goes (default [`Stderr::Forward`]).
    pub fn stderr(mut self, stderr: Stderr) -> Self {
        self.stderr = stderr;
        self
    }

    /// Starts egressd and waits for its readiness line. `Ok` only once egressd is ready; on any
    /// error no egressd is left running.
    pub fn start(self) -> Result<Sidecar, Error> {
        let mut args = vec![OsString::from("run")];
        args.extend(self.args);
        args.push("--drain-timeout".into());
        args.push(format!("{}ms", self.drain_timeout.as_millis()).into());
        if self.exit_on_stdin_eof {
            args.push("--exit-on-stdin-eof".into());
        }
        Sidecar::start(
            &self.program,
            &args,
            self.exit_on_stdin_eof,
            self.readiness_timeout,
            self.drain_timeout + STOP_GRACE,
            self.stderr,
        )
    }
}
