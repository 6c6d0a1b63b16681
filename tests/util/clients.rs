//! The clients tests drive through egressd: [`Client`] picks the Rust one (std sockets, always
//! there) or curl (needs curl on the PATH) for one scenario; Python's urllib and dig are real
//! clients of their own for the tests that need them.

use std::net::SocketAddr;
use std::process::Command;

use super::http::{self, Response};

/// Which HTTP client a scenario drives through the proxy. Each scenario runs with [`Client::Rust`]
/// in a plain test, and again with [`Client::Curl`] in a test ignored for needing curl.
#[derive(Clone, Copy, Debug)]
pub enum Client {
    /// The std-socket client in [`http`]: sends the URL exactly as written.
    Rust,
    /// curl, which normalizes some URLs (IPv4 shorthand, for one) before sending them.
    Curl,
}

impl Client {
    /// `GET URL` in absolute form through the proxy.
    pub fn get(self, proxy: SocketAddr, url: &str) -> Response {
        self.get_with(proxy, url, &[])
    }

    /// `GET URL` in absolute form through the proxy, with `headers` ("Name: value") added.
    pub fn get_with(self, proxy: SocketAddr, url: &str, headers: &[&str]) -> Response {
        match self {
            Self::Rust => http::proxy_get(proxy, url, headers),
            Self::Curl => {
                let mut args: Vec<&str> = headers.iter().flat_map(|h| ["-H", h]).collect();
                args.push(url);
                curl(proxy, &args)
            }
        }
    }

    /// `GET URL` inside a CONNECT tunnel through the proxy.
    pub fn tunnel_get(self, proxy: SocketAddr, url: &str) -> Response {
        match self {
            Self::Rust => http::tunnel_get(proxy, url),
            Self::Curl => curl(proxy, &["-p", url]),
        }
    }
}

/// Runs `curl -x PROXY ARGS...` with a bounded time; returns status, response headers and body.
/// When no final response came (a refused CONNECT), the status is the CONNECT answer's.
fn curl(proxy: SocketAddr, args: &[&str]) -> Response {
    let dir = tempfile::tempdir().unwrap();
    let headers_file = dir.path().join("headers");
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-x",
            &format!("http://{proxy}"),
            "-D",
        ])
        .arg(&headers_file)
        .args(["-w", "\n%{http_code} %{http_connect}"])
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
    let (body, codes) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let (http_code, connect_code) = codes.split_once(' ').unwrap_or((codes, "0"));
    let code = |text: &str| text.trim().parse::<u16>().unwrap_or(0);
    let status = match code(http_code) {
        0 => code(connect_code),
        status => status,
    };
    Response {
        status,
        headers: std::fs::read_to_string(&headers_file).unwrap_or_default(),
        body: body.to_owned(),
    }
}

/// Fetches `url` through the proxy with Python's urllib: "STATUS" on success, "STATUS REASON"
/// (the `x-egressd-reason` header) on an HTTP error.
pub fn python_urllib(proxy: SocketAddr, url: &str) -> String {
    let script = r#"
import sys, urllib.request, urllib.error
proxy, url = sys.argv[1], sys.argv[2]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy}))
try:
    print(opener.open(url, timeout=20).status)
except urllib.error.HTTPError as e:
    print(e.code, e.headers.get("x-egressd-reason"))
"#;
    let out = Command::new("python3")
        .args(["-c", script, &format!("http://{proxy}"), url])
        .output()
        .expect("python3 is installed (CI installs it)");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `dig @SERVER NAME` with one bounded try; dig's text output.
pub fn dig(server: SocketAddr, name: &str) -> String {
    let out = Command::new("dig")
        .args([
            &format!("@{}", server.ip()),
            "-p",
            &server.port().to_string(),
            name,
            "+time=5",
            "+tries=1",
        ])
        .output()
        .expect("dig is installed (CI installs dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
