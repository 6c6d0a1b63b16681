//! The `egressd run` child process harness (hickory's `server_harness.rs` shape): start the real
//! binary with port 0, wait for its readiness line, follow its output, and kill it on drop,
//! printing its log when the test failed.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub use nix::sys::signal::Signal;

use super::{PATIENCE, Run, egressd};

/// Text that grows as a child writes it, with waiting for a line to appear.
#[derive(Clone, Default)]
pub struct Captured(Arc<(Mutex<String>, Condvar)>);

impl Captured {
    fn follow(reader: impl Read + Send + 'static) -> Self {
        let captured = Self::default();
        let sink = captured.clone();
        thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                let (text, changed) = &*sink.0;
                let mut text = text.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
                changed.notify_all();
            }
        });
        captured
    }

    /// Everything so far.
    pub fn text(&self) -> String {
        self.0.0.lock().unwrap().clone()
    }

    /// Waits until `needle` has appeared `count` times in all; panics after [`PATIENCE`].
    pub fn wait_for(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + PATIENCE;
        let (text, changed) = &*self.0;
        let mut guard = text.lock().unwrap();
        while guard.matches(needle).count() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "gave up waiting for {needle:?} x{count} in:\n{guard}"
            );
            guard = changed.wait_timeout(guard, left).unwrap().0;
        }
    }
}

/// A running `egressd run`, killed on drop (its stderr is printed if the test failed).
pub struct Sidecar {
    child: Option<Child>,
    pub ready: serde_json::Value,
    pub stderr: Captured,
    pub stdout: Captured,
    stdin: Option<std::process::ChildStdin>,
}

/// Flags that say how the proxy credential is set; without one, the harness adds
/// `--no-proxy-credential` (see [`Sidecar::try_start`]).
const CREDENTIAL_FLAGS: [&str; 3] = [
    "--no-proxy-credential",
    "--proxy-credential-file",
    "--proxy-credential-default",
];

impl Sidecar {
    /// Asserts that none of `values` is in what egressd wrote so far to its audit log at
    /// `audit` or to its stderr: a brokered or secret value never reaches a log.
    pub fn assert_never_logged(&self, audit: &std::path::Path, values: &[&str]) {
        let logs = std::fs::read_to_string(audit).unwrap_or_default() + &self.stderr.text();
        for value in values {
            assert!(!logs.contains(value), "{value:?} was logged:\n{logs}");
        }
    }

    /// Starts `egressd run ARGS...` and waits for its readiness line.
    pub fn start(args: &[&str]) -> Self {
        match Self::try_start(args) {
            Ok(sidecar) => sidecar,
            Err(run) => panic!("egressd run did not become ready: {run:?}"),
        }
    }

    /// Starts `egressd run ARGS...`; `Err` with its output if it exits instead of becoming ready.
    ///
    /// Tests of what the proxy does with a request (most of them) send raw requests without a
    /// proxy credential, so the harness starts egressd with `--no-proxy-credential` unless ARGS
    /// say otherwise. `--proxy-credential-default` (a harness word, removed before egressd sees
    /// it) keeps egressd's default: a generated credential, as launchers run it; the credential
    /// tests (tests/credential.rs) use it.
    pub fn try_start(args: &[&str]) -> Result<Self, Run> {
        Self::launch(egressd(), args)
    }

    /// [`Sidecar::try_start`] with `env` set in egressd's environment (the EGRESSD_* twins of
    /// flags).
    pub fn try_start_with_env(env: &[(&str, &str)], args: &[&str]) -> Result<Self, Run> {
        let mut command = egressd();
        command.envs(env.iter().copied());
        Self::launch(command, args)
    }

    /// Starts `egressd run ARGS...` with at most `nofile` open descriptors (`ulimit -n` in `sh`,
    /// which every Unix has), to run it out of descriptors on purpose.
    pub fn start_with_nofile(nofile: u32, args: &[&str]) -> Self {
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_egressd"));
        match Self::launch(sh, args) {
            Ok(sidecar) => sidecar,
            Err(run) => panic!("egressd run did not become ready: {run:?}"),
        }
    }

    fn launch(mut command: Command, args: &[&str]) -> Result<Self, Run> {
        let mut args: Vec<&str> = args.to_vec();
        if !args.iter().any(|a| CREDENTIAL_FLAGS.contains(a)) {
            args.push("--no-proxy-credential");
        }
        args.retain(|a| *a != "--proxy-credential-default");
        let mut child = command
            .arg("run")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("egressd starts");
        let stderr = Captured::follow(child.stderr.take().unwrap());
        let stdout = Captured::follow(child.stdout.take().unwrap());
        let stdin = child.stdin.take();
        // Wait for the first stdout line, or for the process to exit.
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = stdout.text();
            if let Some(line) = text.lines().next() {
                let ready = serde_json::from_str(line).expect("the readiness line is JSON");
                return Ok(Self {
                    child: Some(child),
                    ready,
                    stderr,
                    stdout,
                    stdin,
                });
            }
            if let Some(status) = child.try_wait().unwrap() {
                let code = status.code().unwrap_or(-1);
                // Let the reader threads drain what the process wrote.
                let (out, err) = (wait_closed(&stdout), wait_closed(&stderr));
                return Err(Run {
                    code,
                    stdout: out,
                    stderr: err,
                });
            }
            assert!(
                Instant::now() < deadline,
                "no readiness line; stderr:\n{}",
                stderr.text()
            );
            let (lock, changed) = &*stdout.0;
            let guard = lock.lock().unwrap();
            if guard.is_empty() {
                let _ = changed
                    .wait_timeout(guard, Duration::from_millis(50))
                    .unwrap();
            }
        }
    }

    /// The proxy's TCP address from the readiness line.
    pub fn proxy(&self) -> SocketAddr {
        self.ready["proxy"].as_str().unwrap().parse().unwrap()
    }

    /// `http://` URL of the proxy.
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.proxy())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.pid()).expect("a pid fits i32");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).unwrap();
    }

    /// Closes egressd's stdin.
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// The exit status if the process has exited, `None` while it runs.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().unwrap())
    }

    /// Waits for the process to exit, up to [`PATIENCE`].
    pub fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let waiter = thread::spawn(move || {
            let status = child.wait();
            let _ = tx.send(());
            (child, status)
        });
        if rx.recv_timeout(PATIENCE).is_err() {
            panic!("egressd did not exit; stderr:\n{}", self.stderr.text());
        }
        let (_, status) = waiter.join().unwrap();
        status.unwrap()
    }
}

fn wait_closed(captured: &Captured) -> String {
    // The reader thread ends at EOF, which follows process exit closely; a short bounded wait.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut last = captured.text();
    while Instant::now() < deadline {
        let (lock, changed) = &*captured.0;
        let guard = lock.lock().unwrap();
        let (guard, timeout) = changed
            .wait_timeout(guard, Duration::from_millis(100))
            .unwrap();
        if timeout.timed_out() && *guard == last {
            break;
        }
        last = guard.clone();
    }
    last
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!("--- egressd stderr ---\n{}", self.stderr.text());
        }
    }
}
