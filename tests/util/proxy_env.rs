//! Real clients configured the way a launcher configures a sandbox: from the readiness line's
//! `env` block alone. [`ProxyEnv`] clears every proxy variable the test process inherited and sets
//! exactly the block's; [`output_within`] runs the child with a deadline.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use super::Run;

/// Variables that point clients at a proxy (or away from one); none is inherited by a client.
const PROXY_VARIABLES: [&str; 8] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// The readiness line's `env` block.
#[derive(Clone, Debug)]
pub struct ProxyEnv {
    vars: Vec<(String, String)>,
}

impl ProxyEnv {
    /// Every pair of `ready["env"]`.
    pub fn from_ready(ready: &serde_json::Value) -> Self {
        let block = ready["env"].as_object().expect("env is an object");
        let vars = block
            .iter()
            .map(|(name, value)| {
                let value = value.as_str().expect("env values are strings");
                (name.clone(), value.to_owned())
            })
            .collect();
        Self { vars }
    }

    /// The same block with `secret` replaced by `other` wherever it appears.
    pub fn with_secret(&self, secret: &str, other: &str) -> Self {
        let vars = self
            .vars
            .iter()
            .map(|(name, value)| (name.clone(), value.replace(secret, other)))
            .collect();
        Self { vars }
    }

    /// Removes every inherited proxy variable from `command`, then sets the block's.
    pub fn apply<'a>(&self, command: &'a mut Command) -> &'a mut Command {
        for name in PROXY_VARIABLES {
            command.env_remove(name);
        }
        command.envs(self.vars.iter().map(|(n, v)| (n, v)))
    }
}

/// Runs `command` (stdin closed) to completion within `limit`; past that, kills it and whatever it
/// started (its own process group: `go run`, git's remote helpers) and panics.
pub fn output_within(command: &mut Command, limit: Duration) -> Run {
    let mut child = command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?} (.ci/run installs it): {e}"));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a pid fits i32"));
    let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let err_reader = thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        text
    });
    let (done, finished) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stdout.read_to_end(&mut text);
        let status = child.wait();
        let _ = done.send(());
        (text, status)
    });
    if finished.recv_timeout(limit).is_err() {
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let (out, _) = waiter.join().unwrap();
        panic!(
            "{command:?} did not finish within {limit:?}; it wrote:\n{}\n{}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&err_reader.join().unwrap())
        );
    }
    let (out, status) = waiter.join().unwrap();
    let status = status.unwrap();
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned(),
    }
}
