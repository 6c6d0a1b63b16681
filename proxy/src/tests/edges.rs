//! The edges of the HTTP layer, in-process with the clock paused: request heads hyper refuses on
//! its own (too large, malformed, the HTTP/2 preface), request bodies that break, and the upload
//! and response clocks against slow clients and slow origins. Every case checks what the client
//! reads (status, reason header, body) and the one audit event.

use std::future::Future;

use tokio::io::AsyncRead;
use tokio::net::{TcpSocket, TcpStream};

use super::*;

/// The policy of [`proxy_with`] refuses this port on 127.0.0.1: a head that parses gets 403.
const REFUSED: &str = "http://127.0.0.1:22/";

fn limits(max_header_bytes: usize) -> Limits {
    Limits {
        max_header_bytes,
        ..Limits::DEFAULT
    }
}

/// Sends `request` on a new connection (in `pieces` writes) and returns what the proxy wrote
/// until it closed, and the audit events.
async fn send(limits: Limits, request: &[u8], pieces: usize) -> (String, Vec<serde_json::Value>) {
    let (client, recorded) = proxy_with(80, limits);
    let (mut reader, mut writer) = tokio::io::split(client);
    let request = request.to_vec();
    tokio::spawn(async move {
        let size = request.len().div_ceil(pieces.max(1)).max(1);
        for piece in request.chunks(size) {
            if writer.write_all(piece).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
        // Hold the write side open, as a client waiting for its answer does.
        std::future::pending::<()>().await;
    });
    let response = read_to_close(&mut reader).await;
    // The audit event is written as the answer goes out; give its task a turn.
    tokio::task::yield_now().await;
    (response, events(&recorded))
}

async fn read_to_close(reader: &mut (impl AsyncRead + Unpin)) -> String {
    let mut out = Vec::new();
    let _ = reader.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A request head of exactly `len` bytes to [`REFUSED`].
fn head_of(len: usize) -> Vec<u8> {
    let start = format!("GET {REFUSED} HTTP/1.1\r\nHost: x\r\nX-Pad: ");
    let end = "\r\n\r\n";
    let pad = len - start.len() - end.len();
    format!("{start}{}{end}", "a".repeat(pad)).into_bytes()
}

/// A head to [`REFUSED`] with `fields` header fields in all.
fn head_with_fields(fields: usize) -> Vec<u8> {
    let mut head = format!("GET {REFUSED} HTTP/1.1\r\nHost: x\r\n");
    for i in 1..fields {
        head.push_str(&format!("x-{i}: y\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Asserts an answer of egressd's own: status line, reason header, body text, and one event.
#[track_caller]
fn assert_refused(
    (response, events): &(String, Vec<serde_json::Value>),
    status: u16,
    reason: &str,
    text: &str,
) {
    assert!(
        response.starts_with(&format!("HTTP/1.1 {status} ")),
        "want {status}: {response}"
    );
    assert!(
        response.contains(&format!("x-egressd-reason: {reason}\r\n")),
        "want {reason}: {response}"
    );
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert!(
        body.starts_with(&format!("egressd: {status} ")) && body.contains(text),
        "want {text:?} in the body: {response}"
    );
    assert_eq!(events.len(), 1, "one event: {events:?}");
    assert_eq!(events[0][f::STATUS], status, "{events:?}");
    assert_eq!(events[0][f::REASON], reason, "{events:?}");
    assert_eq!(events[0][f::DECISION], "error", "{events:?}");
}

#[tokio::test(start_paused = true)]
async fn the_head_limit_is_exact_whole_or_in_pieces() {
    for limit in [8192, Limits::DEFAULT.max_header_bytes] {
        for pieces in [1, 3] {
            for (len, passes) in [(limit - 1, true), (limit, true), (limit + 1, false)] {
                let answer = send(limits(limit), &head_of(len), pieces).await;
                let case = format!("limit {limit}, head {len}, {pieces} pieces");
                if passes {
                    assert!(
                        answer.0.starts_with("HTTP/1.1 403 "),
                        "{case}: {}",
                        answer.0
                    );
                    assert_eq!(answer.1[0][f::REASON], "special-range", "{case}");
                } else {
                    assert_refused(&answer, 431, "head-too-large", &format!("{limit} bytes"));
                }
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn giant_heads_and_many_small_fields_get_431() {
    let giant = head_of(1024 * 1024);
    assert_refused(
        &send(Limits::DEFAULT, &giant, 16).await,
        431,
        "head-too-large",
        "--max-header-bytes",
    );
    // A head that never ends is refused at the limit, not at the timeout.
    let endless = format!("GET {REFUSED} HTTP/1.1\r\nX-Pad: {}", "a".repeat(70_000));
    let started = Instant::now();
    assert_refused(
        &send(Limits::DEFAULT, endless.as_bytes(), 1).await,
        431,
        "head-too-large",
        "--max-header-bytes",
    );
    assert!(started.elapsed() < Limits::DEFAULT.header_read_timeout);
    let fields = crate::error::MAX_HEAD_FIELDS;
    let at_limit = send(Limits::DEFAULT, &head_with_fields(fields), 1).await;
    assert!(at_limit.0.starts_with("HTTP/1.1 403 "), "{}", at_limit.0);
    assert_refused(
        &send(Limits::DEFAULT, &head_with_fields(fields + 1), 1).await,
        431,
        "head-too-large",
        &format!("more than {fields} header fields"),
    );
    let tiny = "a:\r\n".repeat(5000);
    let many_tiny = format!("GET {REFUSED} HTTP/1.1\r\n{tiny}\r\n");
    assert_refused(
        &send(Limits::DEFAULT, many_tiny.as_bytes(), 1).await,
        431,
        "head-too-large",
        "header fields",
    );
}

#[tokio::test(start_paused = true)]
async fn an_absurd_uri_gets_414_or_431_whichever_limit_it_passes_first() {
    let path = "a".repeat(crate::error::MAX_URI_BYTES);
    let request = format!("GET http://127.0.0.1:22/{path} HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_refused(
        &send(limits(256 * 1024), request.as_bytes(), 1).await,
        414,
        "uri-too-long",
        "request target is longer",
    );
    assert_refused(
        &send(Limits::DEFAULT, request.as_bytes(), 1).await,
        431,
        "head-too-large",
        "--max-header-bytes",
    );
}

#[tokio::test(start_paused = true)]
async fn malformed_heads_get_400_bad_request() {
    let cases: &[(&str, &[u8])] = &[
        ("two spaces", b"GET  http://127.0.0.1:22/ HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("tab for space", b"GET\thttp://127.0.0.1:22/ HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("leading space", b" GET http://127.0.0.1:22/ HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("space in target", b"GET http://127.0.0.1:22/a b HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("trailing word", b"GET http://127.0.0.1:22/ HTTP/1.1 x\r\nHost: x\r\n\r\n"),
        ("unknown version", b"GET http://127.0.0.1:22/ HTTP/9.9\r\nHost: x\r\n\r\n"),
        ("no version", b"GET http://127.0.0.1:22/\r\nHost: x\r\n\r\n"),
        ("bad method token", b"G(T http://127.0.0.1:22/ HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("binary", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"),
        ("field without colon", b"GET http://127.0.0.1:22/ HTTP/1.1\r\nHost\r\n\r\n"),
        ("space before colon", b"GET http://127.0.0.1:22/ HTTP/1.1\r\nHost : x\r\n\r\n"),
        ("obs-fold", b"GET http://127.0.0.1:22/ HTTP/1.1\r\nHost: x\r\n y\r\n\r\n"),
        ("NUL in value", b"GET http://127.0.0.1:22/ HTTP/1.1\r\nHost: x\x00y\r\n\r\n"),
        ("negative length", b"POST http://127.0.0.1:22/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
        ("signed length", b"POST http://127.0.0.1:22/ HTTP/1.1\r\nContent-Length: +5\r\n\r\n"),
        ("word length", b"POST http://127.0.0.1:22/ HTTP/1.1\r\nContent-Length: five\r\n\r\n"),
        (
            "overflowing length",
            b"POST http://127.0.0.1:22/ HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        ),
        (
            "two lengths",
            b"POST http://127.0.0.1:22/ HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        ),
        ("length list", b"POST http://127.0.0.1:22/ HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n"),
        (
            "chunked not last",
            b"POST http://127.0.0.1:22/ HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        ),
        (
            "unknown coding",
            b"POST http://127.0.0.1:22/ HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
        ),
        (
            "chunked in HTTP/1.0",
            b"POST http://127.0.0.1:22/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ),
    ];
    for (name, request) in cases {
        let answer = send(Limits::DEFAULT, request, 1).await;
        assert!(
            answer.0.starts_with("HTTP/1.1 400 "),
            "{name}: {}",
            answer.0
        );
        assert_refused(&answer, 400, "bad-request", "malformed request head");
        assert_eq!(answer.1[0][f::METHOD], "", "{name}: no request was read");
        assert_eq!(answer.1[0][f::DESTINATION], "", "{name}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_head_cut_short_by_the_client_gets_400() {
    let (client, recorded) = proxy_for(80);
    let (mut reader, mut writer) = tokio::io::split(client);
    writer
        .write_all(b"GET http://127.0.0.1:22/ HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    writer.shutdown().await.unwrap();
    let response = read_to_close(&mut reader).await;
    tokio::task::yield_now().await;
    assert_refused(
        &(response, events(&recorded)),
        400,
        "bad-request",
        "closed in the middle of the request head",
    );
}

/// The server preface (an empty SETTINGS frame) and a GOAWAY frame with HTTP_1_1_REQUIRED.
#[track_caller]
fn assert_goaway((response, events): &(String, Vec<serde_json::Value>)) {
    let bytes = response.as_bytes();
    assert!(bytes.starts_with(&[0, 0, 0, 4, 0, 0, 0, 0, 0]), "{bytes:?}");
    assert_eq!(bytes[12], 0x7, "GOAWAY: {bytes:?}");
    assert_eq!(&bytes[22..26], &[0, 0, 0, 0xd], "HTTP_1_1_REQUIRED");
    assert!(response.contains("egressd speaks HTTP/1.1"), "{response}");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0][f::METHOD], "PRI");
    assert_eq!(events[0][f::STATUS], 505);
    assert_eq!(events[0][f::REASON], "http2-unsupported");
}

#[tokio::test(start_paused = true)]
async fn the_http2_preface_gets_a_goaway_saying_http_1_1_whole_or_in_pieces() {
    let preface: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let settings: &[u8] = &[0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100];
    let with_settings = [preface, settings].concat();
    for (request, pieces) in [
        (preface, 1),
        (preface, 2),
        (&with_settings[..], 1),
        (&preface[..18], 1),
        (&preface[..12], 1),
    ] {
        assert_goaway(&send(Limits::DEFAULT, request, pieces).await);
    }
    // PRI over HTTP/1.1 is a well-formed (if odd) HTTP/1.1 request: refused as one.
    let answer = send(Limits::DEFAULT, b"PRI * HTTP/1.1\r\nHost: x\r\n\r\n", 1).await;
    assert!(answer.0.starts_with("HTTP/1.1 400 "), "{}", answer.0);
    assert_eq!(answer.1[0][f::METHOD], "PRI");
}

#[tokio::test(start_paused = true)]
async fn a_refused_head_after_a_served_request_is_answered_by_egressd() {
    let mut requests = head_of(200);
    requests.extend_from_slice(b"GET  http://127.0.0.1:22/ HTTP/1.1\r\n\r\n");
    let (response, events) = send(Limits::DEFAULT, &requests, 1).await;
    let second = response.find("HTTP/1.1 400 ").expect("a second answer");
    assert!(response.starts_with("HTTP/1.1 403 "), "{response}");
    assert!(
        response[second..].contains("x-egressd-reason: bad-request\r\n"),
        "{response}"
    );
    assert_eq!(response.matches("HTTP/1.1 ").count(), 2, "{response}");
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1][f::REASON], "bad-request");
}

// ---- request bodies and the clocks around them: a loopback origin the test scripts ----

/// A loopback origin that serves its first connection with `serve`; returns its port.
async fn origin<F, Fut>(serve: F) -> u16
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    origin_on(TcpSocket::new_v4().unwrap(), serve).await
}

async fn origin_on<F, Fut>(socket: TcpSocket, serve: F) -> u16
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(8).unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        serve(stream).await;
    });
    port
}

/// Reads up to the end of a head.
async fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
            break;
        }
        head.push(byte[0]);
    }
    head
}

/// Reads until the peer closes; keeps nothing.
async fn read_forever(stream: &mut TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {}
}

fn post(port: u16, framing: &str) -> String {
    format!(
        "POST http://127.0.0.1:{port}/up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{framing}\r\n\r\n"
    )
}

#[tokio::test(start_paused = true)]
async fn a_malformed_body_is_the_clients_error_400_never_502() {
    let cases: &[(&str, &str, &[u8], bool)] = &[
        (
            "bad chunk size",
            "Transfer-Encoding: chunked",
            b"5\r\nhello\r\nzz\r\n",
            false,
        ),
        (
            "chunk size overflow",
            "Transfer-Encoding: chunked",
            b"5\r\nhello\r\nFFFFFFFFFFFFFFFFFFFFFF\r\n",
            false,
        ),
        (
            "chunk longer than said",
            "Transfer-Encoding: chunked",
            b"2\r\nhello\r\n",
            false,
        ),
        (
            "chunked, then closed",
            "Transfer-Encoding: chunked",
            b"5\r\nhel",
            true,
        ),
        (
            "shorter than its length, then closed",
            "Content-Length: 10",
            b"hello",
            true,
        ),
    ];
    for (name, framing, body, close) in cases {
        let port = origin(|mut stream| async move {
            read_head(&mut stream).await;
            read_forever(&mut stream).await;
        })
        .await;
        let (client, recorded) = proxy_for(port);
        let (mut reader, mut writer) = tokio::io::split(client);
        writer
            .write_all(post(port, framing).as_bytes())
            .await
            .unwrap();
        writer.write_all(body).await.unwrap();
        if *close {
            writer.shutdown().await.unwrap();
        }
        let response = read_to_close(&mut reader).await;
        tokio::task::yield_now().await;
        let answer = (response, events(&recorded));
        assert!(
            answer.0.starts_with("HTTP/1.1 400 "),
            "{name}: {}",
            answer.0
        );
        assert_refused(&answer, 400, "bad-request", "malformed request body");
        assert_eq!(answer.1[0][f::METHOD], "POST", "{name}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_malformed_body_after_the_response_started_cuts_the_connection_and_says_why() {
    let port = origin(|mut stream| async move {
        read_head(&mut stream).await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            .await
            .unwrap();
        read_forever(&mut stream).await;
    })
    .await;
    let (client, recorded) = proxy_for(port);
    let (mut reader, mut writer) = tokio::io::split(client);
    writer
        .write_all(post(port, "Transfer-Encoding: chunked").as_bytes())
        .await
        .unwrap();
    writer.write_all(b"3\r\nabc\r\n").await.unwrap();
    let mut head = [0u8; 256];
    let n = reader.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200 "));
    writer.write_all(b"zz\r\n").await.unwrap();
    let rest = read_to_close(&mut reader).await;
    assert!(
        !rest.contains("0\r\n\r\n"),
        "the response must not look complete: {rest}"
    );
    tokio::task::yield_now().await;
    let events = events(&recorded);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0][f::STATUS], 200, "the status sent");
    assert_eq!(events[0][f::DECISION], "error");
    assert_eq!(events[0][f::REASON], "bad-request");
    assert_eq!(events[0][f::BYTES_UP], 3);
}

/// An origin that reads a `Content-Length: n` request whole, then answers `ok`.
async fn answers_after_the_body(mut stream: TcpStream, n: usize) {
    read_head(&mut stream).await;
    let mut body = vec![0u8; n];
    stream.read_exact(&mut body).await.unwrap();
    stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        .await
        .unwrap();
    read_forever(&mut stream).await;
}

#[tokio::test(start_paused = true)]
async fn an_upload_slower_than_the_response_timeout_is_served() {
    let port = origin(|stream| answers_after_the_body(stream, 5)).await;
    let (client, recorded) = proxy_for(port);
    let (mut reader, mut writer) = tokio::io::split(client);
    let started = Instant::now();
    writer
        .write_all(post(port, "Content-Length: 5").as_bytes())
        .await
        .unwrap();
    // 250 s in all, each byte within the upload idle timeout.
    let gap = Limits::DEFAULT.upload_idle_timeout - Duration::from_secs(10);
    for byte in b"hello" {
        tokio::time::sleep(gap).await;
        writer.write_all(&[*byte]).await.unwrap();
    }
    let mut head = [0u8; 256];
    let n = reader.read(&mut head).await.unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(started.elapsed() > 4 * Limits::DEFAULT.response_timeout);
    drop(writer);
    drop(reader);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let events = events(&recorded);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0][f::STATUS], 200);
    assert_eq!(events[0][f::REASON], "allow-rule");
    assert_eq!(events[0][f::BYTES_UP], 5);
}

#[tokio::test(start_paused = true)]
async fn an_upload_the_client_stops_gets_408_after_the_upload_idle_timeout() {
    let port = origin(|stream| answers_after_the_body(stream, 5)).await;
    let (client, recorded) = proxy_for(port);
    let (mut reader, mut writer) = tokio::io::split(client);
    writer
        .write_all(post(port, "Content-Length: 5").as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    writer.write_all(b"he").await.unwrap();
    let last_byte = Instant::now();
    let response = read_to_close(&mut reader).await;
    let waited = last_byte.elapsed();
    let idle = Limits::DEFAULT.upload_idle_timeout;
    assert!(
        waited >= idle && waited < idle + Duration::from_secs(1),
        "{waited:?}"
    );
    tokio::task::yield_now().await;
    let answer = (response, events(&recorded));
    assert_refused(&answer, 408, "upload-timeout", "--upload-idle-timeout");
    assert_eq!(answer.1[0][f::BYTES_UP], 2);
}

#[tokio::test(start_paused = true)]
async fn an_upload_ending_in_trailers_starts_the_response_timeout() {
    // Reads the chunked body up to its trailers' end, then never answers.
    let port = origin(|mut stream| async move {
        read_head(&mut stream).await;
        let mut body = Vec::new();
        let mut byte = [0u8; 1];
        while !body.ends_with(b"x-sum: 2\r\n\r\n") {
            if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                return;
            }
            body.push(byte[0]);
        }
        read_forever(&mut stream).await;
    })
    .await;
    let (client, recorded) = proxy_for(port);
    let (mut reader, mut writer) = tokio::io::split(client);
    writer
        .write_all(post(port, "Transfer-Encoding: chunked\r\nTE: trailers").as_bytes())
        .await
        .unwrap();
    writer
        .write_all(b"2\r\nhi\r\n0\r\nx-sum: 2\r\n\r\n")
        .await
        .unwrap();
    let sent = Instant::now();
    let response = read_to_close(&mut reader).await;
    let waited = sent.elapsed();
    let timeout = Limits::DEFAULT.response_timeout;
    assert!(
        waited >= timeout && waited < timeout + Duration::from_secs(1),
        "{waited:?}"
    );
    tokio::task::yield_now().await;
    assert_refused(
        &(response, events(&recorded)),
        504,
        "upstream-timeout",
        "response timed out",
    );
}

#[tokio::test(start_paused = true)]
async fn the_response_timeout_runs_from_the_end_of_the_upload_to_the_whole_head() {
    // Reads the body, then drips its head one line every 10 s, forever.
    let port = origin(|mut stream| async move {
        read_head(&mut stream).await;
        let mut body = [0u8; 2];
        stream.read_exact(&mut body).await.unwrap();
        stream.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            if stream.write_all(b"X-Drip: 1\r\n").await.is_err() {
                return;
            }
        }
    })
    .await;
    let (client, recorded) = proxy_for(port);
    let (mut reader, mut writer) = tokio::io::split(client);
    writer
        .write_all(post(port, "Content-Length: 2").as_bytes())
        .await
        .unwrap();
    // A 100 s upload: the response clock must not run during it.
    tokio::time::sleep(Duration::from_secs(50)).await;
    writer.write_all(b"h").await.unwrap();
    tokio::time::sleep(Duration::from_secs(50)).await;
    writer.write_all(b"i").await.unwrap();
    let sent = Instant::now();
    let response = read_to_close(&mut reader).await;
    let waited = sent.elapsed();
    let timeout = Limits::DEFAULT.response_timeout;
    assert!(
        waited >= timeout && waited < timeout + Duration::from_secs(1),
        "{waited:?}"
    );
    tokio::task::yield_now().await;
    assert_refused(
        &(response, events(&recorded)),
        504,
        "upstream-timeout",
        "response timed out",
    );
}

#[tokio::test(start_paused = true)]
async fn an_origin_that_stops_reading_the_upload_gets_504_after_the_upload_idle_timeout() {
    // A small receive window, read by nobody once the head is in.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let port = origin_on(socket, |mut stream| async move {
        read_head(&mut stream).await;
        std::future::pending::<()>().await;
    })
    .await;
    let (client, recorded) = proxy_for(port);
    let (mut reader, mut writer) = tokio::io::split(client);
    let length = 256 * 1024 * 1024;
    let head = post(port, &format!("Content-Length: {length}"));
    tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        while writer.write_all(&chunk).await.is_ok() {}
    });
    let response = read_to_close(&mut reader).await;
    tokio::task::yield_now().await;
    let answer = (response, events(&recorded));
    assert_refused(
        &answer,
        504,
        "upstream-timeout",
        "read none of the request for",
    );
    let up = answer.1[0][f::BYTES_UP].as_u64().unwrap();
    assert!(up > 0 && up < length, "{up}");
}

// ---- response bodies: the idle timeout, and how each ended ----

fn get(port: u16) -> String {
    format!("GET http://127.0.0.1:{port}/file HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
}

/// Sends [`get`], reads until the proxy closes, and returns what came back, how long after the
/// request it closed, and the one audit event.
async fn fetch_to_close(port: u16) -> (String, Duration, serde_json::Value) {
    let (mut client, recorded) = proxy_for(port);
    let started = Instant::now();
    client.write_all(get(port).as_bytes()).await.unwrap();
    let response = read_all(&mut client).await;
    let took = started.elapsed();
    tokio::task::yield_now().await;
    let mut events = events(&recorded);
    assert_eq!(events.len(), 1, "{events:?}");
    (response, took, events.remove(0))
}

#[tokio::test(start_paused = true)]
async fn a_body_the_origin_stops_sending_is_cut_after_the_response_idle_timeout() {
    // Head and 100 bytes of a 1,000-byte body, then silence (the connection stays open).
    let port = origin(|mut stream| async move {
        read_head(&mut stream).await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            .await
            .unwrap();
        stream.write_all(&[b'x'; 100]).await.unwrap();
        read_forever(&mut stream).await;
    })
    .await;
    let (response, took, event) = fetch_to_close(port).await;
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    let body = response.split_once("\r\n\r\n").unwrap().1;
    assert_eq!(
        body.len(),
        100,
        "the client sees the body end short: {response}"
    );
    let idle = Limits::DEFAULT.response_idle_timeout;
    assert!(
        took >= idle && took < idle + Duration::from_secs(1),
        "{took:?}"
    );
    assert_eq!(event[f::STATUS], 200);
    assert_eq!(event[f::RESPONSE_END], "cut-by-stall");
    assert_eq!(event[f::BYTES_DOWN], 100);
}

#[tokio::test(start_paused = true)]
async fn a_slow_body_that_keeps_coming_is_served_whole() {
    // One chunk every idle timeout less 10 s, four times: far longer than the timeout in all.
    let gap = Limits::DEFAULT.response_idle_timeout - Duration::from_secs(10);
    let port = origin(move |mut stream| async move {
        read_head(&mut stream).await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        for _ in 0..4 {
            tokio::time::sleep(gap).await;
            stream.write_all(b"2\r\nab\r\n").await.unwrap();
        }
        stream.write_all(b"0\r\n\r\n").await.unwrap();
        read_forever(&mut stream).await;
    })
    .await;
    let (response, took, event) = fetch_to_close(port).await;
    assert!(response.ends_with("0\r\n\r\n"), "{response}");
    assert!(took >= 4 * gap, "{took:?}");
    assert_eq!(event[f::RESPONSE_END], "complete");
    assert_eq!(event[f::BYTES_DOWN], 8);
}

#[tokio::test(start_paused = true)]
async fn a_chunked_body_with_trailers_is_audited_as_complete() {
    let port = origin(|mut stream| async move {
        read_head(&mut stream).await;
        stream
            .write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n\
                  2\r\nab\r\n0\r\nx-sum: 2\r\n\r\n",
            )
            .await
            .unwrap();
        read_forever(&mut stream).await;
    })
    .await;
    let (response, _, event) = fetch_to_close(port).await;
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    assert!(response.ends_with("\r\n\r\n"), "{response}");
    assert_eq!(event[f::RESPONSE_END], "complete", "{response}");
    assert_eq!(event[f::BYTES_DOWN], 2);
}

#[tokio::test(start_paused = true)]
async fn a_body_the_origin_cuts_short_is_audited_as_cut_by_the_origin() {
    // Content-Length says 1,000; 10 bytes come, then the origin closes.
    let by_length = origin(|mut stream| async move {
        read_head(&mut stream).await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
            .await
            .unwrap();
    })
    .await;
    // Chunked: one chunk, then the origin closes before the last chunk.
    let by_chunks = origin(|mut stream| async move {
        read_head(&mut stream).await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n")
            .await
            .unwrap();
    })
    .await;
    for port in [by_length, by_chunks] {
        let (response, _, event) = fetch_to_close(port).await;
        assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
        assert!(
            !response.ends_with("0\r\n\r\n"),
            "the response must not look complete: {response}"
        );
        assert_eq!(event[f::RESPONSE_END], "cut-by-origin", "{response}");
        assert_eq!(event[f::BYTES_DOWN], 10);
    }
}

#[tokio::test(start_paused = true)]
async fn a_client_that_leaves_mid_body_is_audited_as_cut_by_the_client() {
    let port = origin(|mut stream| async move {
        read_head(&mut stream).await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
            .await
            .unwrap();
        read_forever(&mut stream).await;
    })
    .await;
    let (mut client, recorded) = proxy_for(port);
    client.write_all(get(port).as_bytes()).await.unwrap();
    let mut start = [0u8; 64];
    let n = client.read(&mut start).await.unwrap();
    assert!(start[..n].starts_with(b"HTTP/1.1 200 "));
    drop(client);
    // Well within the idle timeout: the client, not the clock, ended it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let events = events(&recorded);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0][f::RESPONSE_END], "cut-by-client");
}

#[tokio::test(start_paused = true)]
async fn a_whole_response_is_audited_as_complete_and_a_refusal_has_no_response_end() {
    let port = origin(|stream| answers_after_the_body(stream, 0)).await;
    let (response, _, event) = fetch_to_close(port).await;
    assert!(response.ends_with("\r\n\r\nok"), "{response}");
    assert_eq!(event[f::RESPONSE_END], "complete");
    let (refused, refusals) = send(
        Limits::DEFAULT,
        format!("GET {REFUSED} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        1,
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert_eq!(refusals[0][f::RESPONSE_END], "");
}
