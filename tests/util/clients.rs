//! External clients driven through egressd: curl.

use std::process::Command;

/// The outcome of one curl run.
#[derive(Debug)]
pub struct Curl {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

/// Runs `curl -x PROXY ARGS...` with a bounded time; returns status, response headers and body.
pub fn curl(proxy: &str, args: &[&str]) -> Curl {
    let dir = tempfile::tempdir().unwrap();
    let headers_file = dir.path().join("headers");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-x", proxy, "-D"])
        .arg(&headers_file)
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .expect("curl is installed (CI installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    Curl {
        status: code.trim().parse().unwrap_or(0),
        headers: std::fs::read_to_string(&headers_file).unwrap_or_default(),
        body: body.to_owned(),
    }
}
