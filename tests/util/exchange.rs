//! One HTTP/1.1 exchange at a time on a stream the test keeps open (TCP or Unix): several requests
//! on one keep-alive connection, a CONNECT answer read before the tunnel is used, requests with
//! exactly the headers a test means. [`super::http`] opens a connection per request instead.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::PATIENCE;
use super::http::{Response, read_response_head, read_sized_body};

/// A TCP connection to `addr` with [`PATIENCE`] for every read and write.
pub fn connect_tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, PATIENCE).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// A request head: `METHOD TARGET HTTP/1.1`, `Host: HOST`, then `headers` ("Name: value") as
/// given. No `Connection` header is added: the connection stays open for the next request.
pub fn request_head(method: &str, target: &str, host: &str, headers: &[&str]) -> String {
    let mut text = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
    for header in headers {
        text.push_str(header);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text
}

/// Sends `request` and reads one response: its head, and its body when it has a
/// `Content-Length` (egressd's own answers do; a CONNECT's `200` has no body, and the stream then
/// carries the tunnel). Status 0 when the connection closed before a response head.
pub fn exchange(stream: &mut (impl Read + Write), request: &str) -> Response {
    stream.write_all(request.as_bytes()).unwrap();
    let head = read_response_head(stream);
    read_sized_body(stream, head)
}
