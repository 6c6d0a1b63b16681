//! Every edge of the proxy answers with egressd's own reason, body and one audit event, through
//! the real binary and raw sockets: heads at and over `--max-header-bytes`, heads hyper refuses,
//! the HTTP/2 preface (and curl's prior knowledge, ignored for needing curl), Content-Length and
//! Transfer-Encoding together (never forwarded ambiguously), malformed and stalled uploads, and
//! egressd running out of descriptors while dialing. The in-process tests in
//! proxy/src/tests/edges.rs cover the same classes case by case, with the clock paused.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use audit::fields as f;

use crate::util::*;

/// A sidecar allowing 127.0.0.1 (and `origin.test`) on `port`, with its audit log in a file.
struct Proxy {
    sidecar: Sidecar,
    audit: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    fn start(port: u16, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let policy = write(dir.path(), "policy.toml", &loopback_policy(&[port], ""));
        let audit = dir.path().join("audit.jsonl");
        let mut all = vec![
            "--policy",
            policy.to_str().unwrap(),
            "--audit-log",
            audit.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        let sidecar = Sidecar::start(&all);
        Self {
            sidecar,
            audit,
            _dir: dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.sidecar.proxy()
    }

    /// The `n`th request event (waits for it).
    fn event(&self, n: usize) -> serde_json::Value {
        request_events(&self.audit, n + 1).swap_remove(n)
    }
}

/// Sends `request` on a new connection and reads until egressd closes it; the write side stays
/// open, as a client waiting for its answer keeps it.
fn exchange(proxy: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(proxy).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    // egressd may answer before it has read everything; the rest is its to drop.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts an answer of egressd's own and its audit event.
#[track_caller]
fn assert_answer(answer: &str, event: &serde_json::Value, status: u16, reason: &str, says: &str) {
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status} ")),
        "want {status}: {answer}"
    );
    let head = answer.split("\r\n\r\n").next().unwrap();
    assert_eq!(
        header_value(head, "x-egressd-reason").as_deref(),
        Some(reason),
        "{answer}"
    );
    assert!(answer.contains(says), "want {says:?}: {answer}");
    assert_eq!(event[f::STATUS], status, "{event}");
    assert_eq!(event[f::REASON], reason, "{event}");
    assert_eq!(event[f::DECISION], "error", "{event}");
}

/// A head of exactly `len` bytes to a loopback port the policy refuses.
fn head_of(len: usize) -> Vec<u8> {
    let start = "GET http://127.0.0.1:22/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: ";
    let end = "\r\n\r\n";
    format!("{start}{}{end}", "a".repeat(len - start.len() - end.len())).into_bytes()
}

#[test]
fn the_head_limit_is_exact() {
    let proxy = Proxy::start(9, &["--max-header-bytes", "8192"]);
    for (n, (len, status)) in [(8191, 403), (8192, 403), (8193, 431)]
        .into_iter()
        .enumerate()
    {
        let answer = text(&exchange(proxy.addr(), &head_of(len)));
        let event = proxy.event(n);
        if status == 403 {
            assert!(answer.starts_with("HTTP/1.1 403 "), "{len}: {answer}");
            assert_eq!(event[f::REASON], "special-range", "{len}");
        } else {
            assert_answer(
                &answer,
                &event,
                431,
                "head-too-large",
                "8192 bytes (--max-header-bytes)",
            );
        }
    }
}

#[test]
fn heads_hyper_refuses_get_egressds_answer() {
    let proxy = Proxy::start(9, &["--max-header-bytes", "131072"]);
    let many_fields: String = (0..150).map(|i| format!("x-{i}: y\r\n")).collect();
    let long_uri = format!(
        "GET http://127.0.0.1:22/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(70_000)
    );
    let cases: Vec<(Vec<u8>, u16, &str, &str)> = vec![
        (
            format!("GET http://127.0.0.1:22/ HTTP/1.1\r\n{many_fields}\r\n").into_bytes(),
            431,
            "head-too-large",
            "more than 100 header fields",
        ),
        (
            long_uri.into_bytes(),
            414,
            "uri-too-long",
            "request target is longer",
        ),
        (
            b"GET http://127.0.0.1:22/ HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".to_vec(),
            400,
            "bad-request",
            "invalid content-length",
        ),
        (
            b"GET\thttp://127.0.0.1:22/ HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
            "bad-request",
            "malformed request head",
        ),
        (
            b"POST http://127.0.0.1:22/ HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(),
            400,
            "bad-request",
            "transfer-encoding",
        ),
    ];
    for (n, (request, status, reason, says)) in cases.iter().enumerate() {
        let answer = text(&exchange(proxy.addr(), request));
        assert_answer(&answer, &proxy.event(n), *status, reason, says);
    }
}

#[test]
fn the_http2_preface_gets_a_goaway_saying_http_1_1() {
    let proxy = Proxy::start(9, &[]);
    let answer = exchange(proxy.addr(), b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    assert_eq!(&answer[..9], &[0, 0, 0, 4, 0, 0, 0, 0, 0], "SETTINGS first");
    assert_eq!(answer[12], 7, "then GOAWAY: {answer:?}");
    assert_eq!(&answer[22..26], &[0, 0, 0, 0xd], "HTTP_1_1_REQUIRED");
    assert!(text(&answer).contains("egressd speaks HTTP/1.1"));
    let event = proxy.event(0);
    assert_eq!(event[f::REASON], "http2-unsupported");
    assert_eq!(event[f::METHOD], "PRI");
}

#[test]
#[ignore = "needs curl: run by .ci/run"]
fn curl_with_http2_prior_knowledge_is_told_to_use_http_1_1() {
    let proxy = Proxy::start(9, &[]);
    let out = std::process::Command::new("curl")
        .args(["-sS", "-v", "--max-time", "20", "--http2-prior-knowledge"])
        .arg(format!("http://{}/", proxy.addr()))
        .output()
        .expect("curl is installed (CI installs it)");
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    // curl names the code (newer versions) or prints its number: 13, HTTP_1_1_REQUIRED.
    assert!(stderr.contains("GOAWAY"), "{stderr}");
    assert!(
        stderr.contains("HTTP_1_1_REQUIRED") || stderr.contains("error=13"),
        "{stderr}"
    );
    assert_eq!(proxy.event(0)[f::REASON], "http2-unsupported");
}

/// A loopback origin that records every byte it receives and, if it answers, answers `ok` once a
/// chunked body has ended; it never closes first.
struct RawOrigin {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
}

impl RawOrigin {
    fn start(answers: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let record = received.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let record = record.clone();
                thread::spawn(move || {
                    stream.set_read_timeout(Some(PATIENCE)).unwrap();
                    let mut buf = [0u8; 4096];
                    let mut answered = false;
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let mut all = record.lock().unwrap();
                        all.extend_from_slice(&buf[..n]);
                        if answers && !answered && all.ends_with(b"0\r\n\r\n") {
                            answered = true;
                            let _ =
                                stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                        }
                    }
                });
            }
        });
        Self { addr, received }
    }

    fn received(&self) -> String {
        text(&self.received.lock().unwrap())
    }
}

#[test]
fn content_length_with_transfer_encoding_is_forwarded_chunked_only_and_the_rest_dropped() {
    for (name, framing) in [
        (
            "length first",
            "Content-Length: 4\r\nTransfer-Encoding: chunked",
        ),
        (
            "chunked first",
            "Transfer-Encoding: chunked\r\nContent-Length: 4",
        ),
    ] {
        let origin = RawOrigin::start(true);
        let port = origin.addr.port();
        let proxy = Proxy::start(port, &[]);
        // Read by its Content-Length, the body would be "0\r\n\r" and the smuggled request would
        // follow it; read as chunked (as egressd reads it), the body is empty.
        let request = format!(
            "POST http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n0\r\n\r\n\
             GET http://127.0.0.1:{port}/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        );
        let answer = text(&exchange(proxy.addr(), request.as_bytes()));
        assert!(answer.starts_with("HTTP/1.1 200 "), "{name}: {answer}");
        assert_eq!(
            answer.matches("HTTP/1.1 ").count(),
            1,
            "{name}: one answer: {answer}"
        );
        let seen = origin.received();
        let head = seen.split("\r\n\r\n").next().unwrap();
        assert_eq!(
            header_value(head, "transfer-encoding").as_deref(),
            Some("chunked"),
            "{name}: {seen}"
        );
        assert!(
            header_value(head, "content-length").is_none(),
            "{name}: {seen}"
        );
        assert!(!seen.contains("smuggled"), "{name}: {seen}");
        assert_eq!(seen.matches("POST ").count(), 1, "{name}: {seen}");
        // One answer, then the connection closed: the smuggled request was never read.
        assert_eq!(proxy.event(0)[f::STATUS], 200, "{name}");
    }
}

#[test]
fn a_malformed_upload_is_400_and_a_stalled_one_408() {
    let origin = RawOrigin::start(false);
    let port = origin.addr.port();
    let proxy = Proxy::start(port, &["--upload-idle-timeout", "1s"]);
    let overflow = format!(
        "POST http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nFFFFFFFFFFFFFFFFFFFFFF\r\n"
    );
    let answer = text(&exchange(proxy.addr(), overflow.as_bytes()));
    assert_answer(
        &answer,
        &proxy.event(0),
        400,
        "bad-request",
        "malformed request body",
    );

    let stalled = format!(
        "POST http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Length: 10\r\n\r\nhe"
    );
    let started = Instant::now();
    let answer = text(&exchange(proxy.addr(), stalled.as_bytes()));
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_answer(
        &answer,
        &proxy.event(1),
        408,
        "upload-timeout",
        "--upload-idle-timeout",
    );
    assert_eq!(proxy.event(1)[f::BYTES_UP], 2);
}

/// Descriptors egressd gets: enough to start, few enough to run out.
const NOFILE: u32 = 64;

#[test]
fn running_out_of_descriptors_to_dial_is_egressds_own_503() {
    let origin = Origin::start(Behaviour::Answer);
    let port = origin.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "p.toml", &loopback_policy(&[port], ""));
    let audit = dir.path().join("audit.jsonl");
    let sidecar = Sidecar::start_with_nofile(
        NOFILE,
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--audit-log",
            audit.to_str().unwrap(),
        ],
    );
    // Hold connections until egressd cannot accept more: every descriptor is taken. The first
    // was accepted long before; a request on it needs one more descriptor to dial.
    let mut held: Vec<TcpStream> = (0..2 * NOFILE)
        .filter_map(|_| TcpStream::connect(sidecar.proxy()).ok())
        .collect();
    sidecar.stderr.wait_for("out of resources", 1);
    let first = &mut held[0];
    first.set_read_timeout(Some(PATIENCE)).unwrap();
    first
        .write_all(
            format!(
                "GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    let mut answer = Vec::new();
    let _ = first.read_to_end(&mut answer);
    let answer = text(&answer);
    drop(held);
    assert_answer(
        &answer,
        &request_events(&audit, 1)[0],
        503,
        "proxy-resources",
        "egressd is out of resources",
    );
}
