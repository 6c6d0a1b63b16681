//! Raw HTTP/1.1 on std sockets: reading a head, picking header values out of it, and a minimal
//! proxy client that sends exactly the bytes a test means (no URL normalization, unlike curl).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::PATIENCE;

/// A response as a client saw it through the proxy.
#[derive(Debug)]
pub struct Response {
    /// The final status; for a tunnel the proxy refused, the CONNECT answer's. 0: no response.
    pub status: u16,
    /// Every head received, a tunnel's CONNECT answer first (as curl's `-D` writes them).
    pub headers: String,
    pub body: String,
}

/// `GET URL` in absolute form through the proxy at `proxy`, with `headers` ("Name: value")
/// added; `Connection: close` unless `headers` name a Connection of their own.
pub fn proxy_get(proxy: SocketAddr, url: &str, headers: &[&str]) -> Response {
    let (authority, _) = split_url(url);
    let mut stream = connect(proxy);
    let request = request("GET", url, authority, headers);
    stream.write_all(request.as_bytes()).unwrap();
    read_response(&mut stream)
}

/// `CONNECT` to the URL's authority through the proxy at `proxy`, then `GET` its path inside the
/// tunnel, as `curl -p` does.
pub fn tunnel_get(proxy: SocketAddr, url: &str) -> Response {
    let (authority, path) = split_url(url);
    let mut stream = connect(proxy);
    let connect = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    stream.write_all(connect.as_bytes()).unwrap();
    let answer = read_response_head(&mut stream);
    if answer.status != 200 {
        return read_body(&mut stream, answer);
    }
    stream
        .write_all(request("GET", path, authority, &[]).as_bytes())
        .unwrap();
    let inner = read_response(&mut stream);
    Response {
        headers: answer.headers + &inner.headers,
        ..inner
    }
}

/// Reads up to the blank line ending an HTTP head; `None` at EOF.
pub fn read_head(stream: &mut impl Read) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
        if head.len() > 64 * 1024 {
            return None;
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// The first value of header `name` (case-insensitive) in a raw head.
pub fn header_value(head: &str, name: &str) -> Option<String> {
    header_values(head, name).into_iter().next()
}

/// Every value of header `name` in a raw head.
pub fn header_values(head: &str, name: &str) -> Vec<String> {
    head.lines()
        .skip(1)
        .filter_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
        .collect()
}

/// `http://AUTHORITY/PATH` split into the authority and the path ("/" when absent).
pub(super) fn split_url(url: &str) -> (&str, &str) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("the test client speaks http:// only: {url}"));
    match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, "/"),
    }
}

fn connect(proxy: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&proxy, PATIENCE).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    stream
}

pub(super) fn request(method: &str, target: &str, authority: &str, headers: &[&str]) -> String {
    let mut request = format!("{method} {target} HTTP/1.1\r\nHost: {authority}\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    if !headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("connection:"))
    {
        request.push_str("Connection: close\r\n");
    }
    request.push_str("\r\n");
    request
}

pub(super) fn read_response(stream: &mut TcpStream) -> Response {
    let head = read_response_head(stream);
    read_body(stream, head)
}

/// The status and head, or status 0 and no head when the connection closed first.
pub(super) fn read_response_head(stream: &mut impl Read) -> Response {
    let Some(head) = read_head(stream) else {
        return Response {
            status: 0,
            headers: String::new(),
            body: String::new(),
        };
    };
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response head: {head}"));
    Response {
        status,
        headers: head,
        body: String::new(),
    }
}

/// The body after `head`: Content-Length bytes, or up to the close.
fn read_body(stream: &mut TcpStream, head: Response) -> Response {
    if head.status == 0 || header_value(&head.headers, "content-length").is_some() {
        return read_sized_body(stream, head);
    }
    let mut body = Vec::new();
    stream.read_to_end(&mut body).unwrap();
    Response {
        body: String::from_utf8_lossy(&body).into_owned(),
        ..head
    }
}

/// The body after `head` when it has a `Content-Length` (egressd's own answers do), none
/// otherwise: the connection stays usable (a CONNECT's `200` has no body; the tunnel follows).
pub(super) fn read_sized_body(stream: &mut impl Read, head: Response) -> Response {
    if head.status == 0 {
        return head;
    }
    assert!(
        header_value(&head.headers, "transfer-encoding").is_none(),
        "this test client reads Content-Length bodies only: {}",
        head.headers
    );
    let length = header_value(&head.headers, "content-length").map_or(0, |n| n.parse().unwrap());
    let mut body = vec![0; length];
    stream.read_exact(&mut body).unwrap();
    Response {
        body: String::from_utf8_lossy(&body).into_owned(),
        ..head
    }
}
