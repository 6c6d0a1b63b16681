//! Real HTTP clients, each configured only by the proxy variables of the readiness line's `env`
//! block ([`ProxyEnv`]), as a sandboxed job would be. Each fetches one `http://` URL, prints the
//! body on stdout on success, and otherwise says why on stderr (with the status, where it has one)
//! and exits non-zero. CI installs them (.ci/run); a missing one fails its test loudly.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::proxy_env::{ProxyEnv, output_within};
use super::{PATIENCE, Run};

/// A client that reads its proxy from the environment.
#[derive(Clone, Copy, Debug)]
pub enum EnvClient {
    /// `curl -f URL`: `http_proxy`.
    Curl,
    /// Python's `urllib.request.urlopen`: its default opener's `ProxyHandler` reads the variables.
    Urllib,
    /// Python's `requests.get` (`trust_env`).
    Requests,
    /// Go's `http.Get`: the default transport's `ProxyFromEnvironment`.
    Go,
    /// Node's global `fetch` after `setGlobalDispatcher(new EnvHttpProxyAgent())` (undici).
    NodeFetch,
    /// `wget -O - URL`.
    Wget,
    /// `git ls-remote URL` (the URL names a repository; stdout lists its refs).
    Git,
}

const URLLIB: &str = r#"
import sys, urllib.request, urllib.error
try:
    sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=20).read().decode())
except urllib.error.HTTPError as e:
    sys.exit("HTTP %d %s" % (e.code, e.headers.get("x-egressd-reason")))
"#;

const REQUESTS: &str = r#"
import sys, requests
r = requests.get(sys.argv[1], timeout=20)
if r.status_code != 200:
    sys.exit("HTTP %d %s" % (r.status_code, r.headers.get("x-egressd-reason")))
sys.stdout.write(r.text)
"#;

const GO: &str = r#"package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	client := &http.Client{Timeout: 20 * time.Second} // the default transport: proxy from the environment
	resp, err := client.Get(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		fmt.Fprintln(os.Stderr, "HTTP", resp.StatusCode, resp.Header.Get("x-egressd-reason"))
		os.Exit(1)
	}
	os.Stdout.Write(body)
}
"#;

const NODE: &str = r#"
const { EnvHttpProxyAgent, setGlobalDispatcher } = require("undici");
setGlobalDispatcher(new EnvHttpProxyAgent());
fetch(process.argv[process.argv.length - 1], { signal: AbortSignal.timeout(20000) }).then(
  async (r) => {
    const body = await r.text();
    if (r.status !== 200) {
      console.error("HTTP", r.status, r.headers.get("x-egressd-reason"));
      process.exitCode = 1;
    } else {
      process.stdout.write(body);
    }
  },
  (e) => {
    // Node's fetch wraps the dispatcher's error (which has the status) in causes.
    const chain = [];
    for (let c = e; c; c = c.cause) chain.push(c.message);
    console.error("error:", chain.join(": "));
    process.exitCode = 1;
  },
);
"#;

impl EnvClient {
    /// Fetches `url` (for [`EnvClient::Git`], lists the refs of the repository at `url`) with the
    /// proxy variables of `env` only, within [`PATIENCE`].
    pub fn fetch(self, env: &ProxyEnv, url: &str) -> Run {
        let scratch = tempfile::tempdir().unwrap();
        let mut command = self.command(scratch.path(), url);
        env.apply(&mut command);
        output_within(&mut command, PATIENCE)
    }

    fn command(self, scratch: &Path, url: &str) -> Command {
        let mut command;
        match self {
            Self::Curl => {
                command = Command::new("curl");
                // -q: no ~/.curlrc; -f: an HTTP error is an error (exit 22, status on stderr).
                command.args(["-q", "-sS", "-f", "--max-time", "20", url]);
            }
            Self::Urllib | Self::Requests => {
                let script = if matches!(self, Self::Urllib) {
                    URLLIB
                } else {
                    REQUESTS
                };
                command = Command::new("python3");
                command.args(["-c", script, url]);
            }
            Self::Go => {
                let main = scratch.join("main.go");
                std::fs::write(&main, GO).unwrap();
                command = Command::new("go");
                command.arg("run").arg(main).arg(url);
                // Standard library only: nothing to download, and no module proxy to ask. The
                // build cache under target/, so no HOME is needed.
                command.env("GOPROXY", "off").env(
                    "GOCACHE",
                    Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-build"),
                );
            }
            Self::NodeFetch => {
                command = Command::new("node");
                command.args(["-e", NODE, "--", url]);
                command.env("NODE_PATH", node_modules());
            }
            Self::Wget => {
                command = Command::new("wget");
                command.args([
                    "--no-config",
                    "-nv",
                    "--tries=1",
                    "--timeout=20",
                    "-O",
                    "-",
                    url,
                ]);
            }
            Self::Git => {
                command = Command::new("git");
                command.args(["-c", "credential.helper=", "ls-remote", url]);
                // No user or system configuration, no credential prompt: the environment only.
                command
                    .env("GIT_CONFIG_GLOBAL", "/dev/null")
                    .env("GIT_CONFIG_NOSYSTEM", "1")
                    .env("GIT_TERMINAL_PROMPT", "0")
                    .env_remove("GIT_ASKPASS")
                    .env_remove("SSH_ASKPASS");
            }
        }
        command
    }
}

/// Where .ci/run installs the `undici` npm package (`npm install --prefix DIR undici@6`, DIR being
/// `target/tmp/undici`; major 6 is the undici Node 20 bundles, and runs on Node 18 too); panics,
/// saying so, when it is not there.
pub(super) fn node_modules() -> PathBuf {
    let prefix = Path::new(env!("CARGO_TARGET_TMPDIR")).join("undici");
    let modules = prefix.join("node_modules");
    assert!(
        modules.join("undici/package.json").exists(),
        "the undici npm package is not installed under {}: run .ci/run, or \
         npm install --prefix {} undici@6",
        prefix.display(),
        prefix.display()
    );
    modules
}
