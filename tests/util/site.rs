//! A loopback HTTP/1.1 origin that serves fixed files by path (a dumb-HTTP git repository's
//! `info/refs`, say) and records every request head, for clients that need more than the one body
//! [`super::Origin`] answers with.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use super::PATIENCE;
use super::http::{header_value, read_head};

/// The origin: `files` maps a path (the request target without its query) to a body; any other
/// path is 404.
pub struct Site {
    pub addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Site {
    /// Binds 127.0.0.1:0 and serves `files` (path, body).
    pub fn start(files: &[(&str, &str)]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let files: Arc<BTreeMap<String, String>> = Arc::new(
            files
                .iter()
                .map(|(path, body)| ((*path).to_owned(), (*body).to_owned()))
                .collect(),
        );
        let heads = Arc::new(Mutex::new(Vec::new()));
        let log = heads.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (files, log) = (files.clone(), log.clone());
                thread::spawn(move || serve(stream, &files, &log));
            }
        });
        Self { addr, heads }
    }

    /// The request heads seen so far.
    pub fn seen(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// Answers GET requests (bodiless) until the client closes the connection.
fn serve(mut stream: TcpStream, files: &BTreeMap<String, String>, log: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(PATIENCE));
    while let Some(head) = read_head(&mut stream) {
        log.lock().unwrap().push(head.clone());
        let target = head.split(' ').nth(1).unwrap_or("");
        let path = target.split('?').next().unwrap_or("");
        let (status, body) = match files.get(path) {
            Some(body) => ("200 OK", body.as_str()),
            None => ("404 Not Found", "not found\n"),
        };
        let close =
            header_value(&head, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).is_err() || close {
            return;
        }
    }
}
