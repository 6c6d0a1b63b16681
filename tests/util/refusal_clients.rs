//! Real clients that print what a refusal says, each configured only by the readiness line's
//! `env` ([`ProxyEnv`]): pip and npm against a package index the policy refuses, wget, and Node's
//! fetch through undici's `EnvHttpProxyAgent` (status, reason phrase, reason header and body).
//! CI installs them (.ci/run); a missing one fails its test loudly.

use std::path::Path;
use std::process::Command;

use super::env_clients::node_modules;
use super::proxy_env::{ProxyEnv, output_within};
use super::{PATIENCE, Run};

/// Prints `STATUS|STATUS TEXT|x-egressd-reason|BODY` for each URL fetched, or `error: CAUSES`.
const NODE: &str = r#"
const { EnvHttpProxyAgent, setGlobalDispatcher } = require("undici");
setGlobalDispatcher(new EnvHttpProxyAgent());
fetch(process.argv[process.argv.length - 1], { signal: AbortSignal.timeout(20000) }).then(
  async (r) => {
    const body = await r.text();
    process.stdout.write([r.status, r.statusText, r.headers.get("x-egressd-reason"), body].join("|"));
  },
  (e) => {
    const chain = [];
    for (let c = e; c; c = c.cause) chain.push(c.message);
    console.error("error:", chain.join(": "));
    process.exitCode = 1;
  },
);
"#;

/// Node's `fetch(url)` through undici's `EnvHttpProxyAgent`.
pub fn node_fetch(env: &ProxyEnv, url: &str) -> Run {
    let mut command = Command::new("node");
    command
        .args(["--no-warnings", "-e", NODE, "--", url])
        .env("NODE_PATH", node_modules());
    env.apply(&mut command);
    output_within(&mut command, PATIENCE)
}

/// `pip download PACKAGE` from the index at `index` (one retry, so pip prints why the first try
/// failed), ignoring the user's and the system's pip configuration.
pub fn pip_download(env: &ProxyEnv, index: &str, scratch: &Path) -> Run {
    let mut command = Command::new("python3");
    command
        .args([
            "-m",
            "pip",
            "download",
            "--isolated",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--retries",
            "1",
            "--timeout",
            "5",
            "--index-url",
            index,
            "--dest",
        ])
        .arg(scratch.join("downloads"))
        .arg("egressd-test-package")
        .env("PIP_CONFIG_FILE", "/dev/null");
    env.apply(&mut command);
    output_within(&mut command, PATIENCE * 3)
}

/// `npm install PACKAGE` from the registry at `registry`, in `scratch` (its own cache, no retry).
pub fn npm_install(env: &ProxyEnv, registry: &str, scratch: &Path) -> Run {
    let mut command = Command::new("npm");
    command
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--fetch-retries=0",
            "--registry",
            registry,
            "--cache",
        ])
        .arg(scratch.join("npm-cache"))
        .arg("egressd-test-package")
        .current_dir(scratch)
        .env("npm_config_userconfig", scratch.join("npmrc"));
    env.apply(&mut command);
    output_within(&mut command, PATIENCE * 3)
}

/// `wget -O - URL`, one try.
pub fn wget(env: &ProxyEnv, url: &str) -> Run {
    let mut command = Command::new("wget");
    command.args([
        "--no-config",
        "-nv",
        "--tries=1",
        "--timeout=20",
        "-O",
        "-",
        url,
    ]);
    env.apply(&mut command);
    output_within(&mut command, PATIENCE)
}

/// `curl -sS -i URL`, configured by the env block alone (its proxy and `CURL_CA_BUNDLE`), ignoring
/// the user's curlrc.
pub fn curl_env(env: &ProxyEnv, url: &str) -> Run {
    let mut command = Command::new("curl");
    command.args(["-q", "-sS", "-i", "--max-time", "20", url]);
    env.apply(&mut command);
    output_within(&mut command, PATIENCE)
}

/// `git ls-remote URL`, configured by the env block alone (its proxy and `GIT_SSL_CAINFO`),
/// ignoring the user's and the system's git configuration.
pub fn git_ls_remote(env: &ProxyEnv, url: &str) -> Run {
    let mut command = Command::new("git");
    command
        .args(["ls-remote", url])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0");
    env.apply(&mut command);
    output_within(&mut command, PATIENCE)
}

/// `cargo search` against the sparse index at `index` (an `https://` URL), configured by the env
/// block alone (its proxy and `CARGO_HTTP_CAINFO`), with `home` as `CARGO_HOME`.
pub fn cargo_search(env: &ProxyEnv, index: &str, home: &Path) -> Run {
    let mut command = Command::new("cargo");
    command
        .args(["search", "--index", &format!("sparse+{index}"), "anything"])
        .env("CARGO_HOME", home)
        .env("CARGO_NET_RETRY", "0")
        .env_remove("CARGO_HTTP_PROXY");
    env.apply(&mut command);
    output_within(&mut command, PATIENCE)
}

/// `wget -O - URL`, one try, reading only the wgetrc at `rc` (`WGETRC`), as docs/tls.md tells a
/// launcher to give it the CA bundle.
pub fn wget_with_rc(env: &ProxyEnv, url: &str, rc: &Path) -> Run {
    let mut command = Command::new("wget");
    command
        .args(["-nv", "--tries=1", "--timeout=20", "-O", "-", url])
        .env("WGETRC", rc)
        .env("HOME", rc.parent().unwrap_or(rc));
    env.apply(&mut command);
    output_within(&mut command, PATIENCE)
}

/// Python's `urllib.request.urlopen(URL)`, configured by the env block alone (its proxy and
/// `SSL_CERT_FILE`): prints `STATUS|REASON PHRASE|x-egressd-reason|BODY`, or `error: ...`.
pub fn python_urlopen(env: &ProxyEnv, url: &str) -> Run {
    let script = r#"
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=20)
    print(r.status)
except urllib.error.HTTPError as e:
    body = e.read().decode()
    print("|".join([str(e.code), e.reason, e.headers.get("x-egressd-reason") or "", body]), end="")
except Exception as e:
    print("error:", e, file=sys.stderr)
    sys.exit(1)
"#;
    let mut command = Command::new("python3");
    command.args(["-c", script, url]);
    env.apply(&mut command);
    output_within(&mut command, PATIENCE)
}
