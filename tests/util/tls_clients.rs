//! Real HTTPS clients for the inspection tests: curl, Python `requests`, Go's `net/http` and
//! Node's fetch (through undici's `EnvHttpProxyAgent`), each run with an environment made of
//! nothing but `PATH`, `HOME` (and the toolchains' own variables) and the readiness line's `env`
//! block: they find the proxy and trust egressd's CA only through it. Each needs its tool on the
//! PATH (`.ci/run` installs them), so the tests using them are ignored in the plain run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Which client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsClient {
    Curl,
    Requests,
    Go,
    Node,
}

/// What a client reported: a response (status, `x-egressd-reason`, body), or why it had none.
#[derive(Debug)]
pub struct Outcome {
    pub status: u16,
    pub reason: String,
    pub body: String,
    pub error: String,
}

const PYTHON: &str = r#"
import json, sys, requests
method, url, *hs = sys.argv[1:]
headers = dict(h.split(": ", 1) for h in hs)
try:
    r = requests.request(method, url, headers=headers, timeout=20)
    print(json.dumps({"status": r.status_code, "reason": r.headers.get("x-egressd-reason", ""), "body": r.text}))
except Exception as e:
    print(json.dumps({"error": repr(e)}))
"#;

const NODE: &str = r#"
const { EnvHttpProxyAgent, fetch } = require('undici');
const [method, url, ...hs] = process.argv.slice(2);
const headers = Object.fromEntries(hs.map((h) => { const i = h.indexOf(': '); return [h.slice(0, i), h.slice(i + 2)]; }));
fetch(url, { method, headers, dispatcher: new EnvHttpProxyAgent(), signal: AbortSignal.timeout(20000) })
  .then(async (r) => console.log(JSON.stringify({ status: r.status, reason: r.headers.get('x-egressd-reason') || '', body: await r.text() })))
  .catch((e) => console.log(JSON.stringify({ error: String(e) + ' ' + String(e.cause) })));
"#;

const GO: &str = r#"package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	req, _ := http.NewRequest(os.Args[1], os.Args[2], nil)
	for _, h := range os.Args[3:] {
		kv := strings.SplitN(h, ": ", 2)
		req.Header.Set(kv[0], kv[1])
	}
	client := &http.Client{Timeout: 20 * time.Second}
	out := map[string]interface{}{}
	resp, err := client.Do(req)
	if err != nil {
		out["error"] = err.Error()
	} else {
		body, _ := io.ReadAll(resp.Body)
		out["status"] = resp.StatusCode
		out["reason"] = resp.Header.Get("X-Egressd-Reason")
		out["body"] = string(body)
	}
	encoded, _ := json.Marshal(out)
	fmt.Println(string(encoded))
}
"#;

impl TlsClient {
    /// `METHOD URL` with `headers` ("Name: value"), in an environment of `env` (the readiness
    /// line's block) and the bare necessities.
    pub fn fetch(
        self,
        env: &serde_json::Value,
        method: &str,
        url: &str,
        headers: &[&str],
    ) -> Outcome {
        let dir = tempfile::tempdir().unwrap();
        let mut command = match self {
            Self::Curl => {
                let mut c = Command::new("curl");
                c.args(["-sS", "--max-time", "20", "-X", method, "-D"]);
                c.arg(dir.path().join("headers"));
                c.args(["-w", "\n%{http_code}"]);
                for h in headers {
                    c.args(["-H", h]);
                }
                c.arg(url);
                c
            }
            Self::Requests => {
                let mut c = Command::new("python3");
                c.args(["-c", PYTHON, method, url]).args(headers);
                c
            }
            Self::Node => {
                let script = super::write(dir.path(), "fetch.js", NODE);
                let mut c = Command::new("node");
                c.arg(script).args([method, url]).args(headers);
                c
            }
            Self::Go => {
                let mut c = Command::new(go_binary());
                c.args([method, url]).args(headers);
                c
            }
        };
        command.env_clear();
        if self == Self::Node {
            command.env("NODE_PATH", super::env_clients::node_modules());
        }
        for var in [
            "PATH",
            "HOME",
            "GOCACHE",
            "GOPATH",
            "GOROOT",
            "PYENV_ROOT",
            "PYENV_VERSION",
        ] {
            if let Some(value) = std::env::var_os(var) {
                command.env(var, value);
            }
        }
        for (name, value) in env.as_object().expect("an env block").iter() {
            command.env(name, value.as_str().unwrap());
        }
        let out = command
            .output()
            .unwrap_or_else(|e| panic!("{self:?} runs (.ci/run installs it): {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if self == Self::Curl {
            return curl_outcome(&stdout, &stderr, &dir.path().join("headers"));
        }
        let line = stdout.lines().last().unwrap_or("");
        let parsed: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|_| panic!("{self:?} printed no JSON: {stdout}\n{stderr}"));
        Outcome {
            status: parsed["status"].as_u64().unwrap_or(0) as u16,
            reason: parsed["reason"].as_str().unwrap_or("").to_owned(),
            body: parsed["body"].as_str().unwrap_or("").to_owned(),
            error: parsed["error"].as_str().unwrap_or("").to_owned(),
        }
    }
}

fn curl_outcome(stdout: &str, stderr: &str, headers: &Path) -> Outcome {
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", stdout));
    let status = code.trim().parse().unwrap_or(0);
    let heads = std::fs::read_to_string(headers).unwrap_or_default();
    let reason = heads
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case("x-egressd-reason"))
        .map(|(_, v)| v.trim().to_owned())
        .next_back()
        .unwrap_or_default();
    Outcome {
        status,
        reason,
        body: body.to_owned(),
        error: if status == 0 {
            stderr.to_owned()
        } else {
            String::new()
        },
    }
}

/// The Go client, built once per test run.
fn go_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("egressd-test-go-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let source = super::write(&dir, "main.go", GO);
            let binary = dir.join("fetch");
            let out = Command::new("go")
                .arg("build")
                .arg("-o")
                .arg(&binary)
                .arg(&source)
                .env("GO111MODULE", "off")
                .output()
                .expect("go is installed (.ci/run installs golang)");
            assert!(
                out.status.success(),
                "go build: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            binary
        })
        .clone()
}
