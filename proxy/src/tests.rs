//! The proxy in-process, on a duplex stream, with tokio's clock paused: timeouts are tested at
//! their real values without waiting for them, and audit events are read back as typed fields.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use audit::{Recorded, Sink, fields as f};
use policy::Policy;
use resolve::{Lookups, Resolver, Settings};
use serve::{Conn, Handler, Peer};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{Limits, Proxy, ProxyConfig};

mod edges;

/// A proxy allowing 127.0.0.1 on `port`, serving one client connection; returns the client end.
fn proxy_for(port: u16) -> (DuplexStream, Recorded) {
    proxy_with(port, Limits::DEFAULT)
}

/// [`proxy_for`] with other limits.
fn proxy_with(port: u16, limits: Limits) -> (DuplexStream, Recorded) {
    let (client, recorded, _proxy) = proxy_kept(port, limits);
    (client, recorded)
}

/// [`proxy_with`], and the proxy itself: its state (the origin connection pool) lives as long as
/// the caller keeps it, as the running sidecar keeps it, not only while the one connection does.
fn proxy_kept(port: u16, limits: Limits) -> (DuplexStream, Recorded, Proxy) {
    let text = format!(
        "version = 1\n[defaults]\naction = \"deny\"\n[[allow]]\ncidr = \"127.0.0.1/32\"\nports = [{port}]\n\
         [[danger_carve_out]]\ncidr = \"127.0.0.1/32\"\nports = [{port}]\n[dns]\nupstreams = [\"127.0.0.1:9\"]\n"
    );
    let policy = Arc::new(Policy::parse(&text, "t.toml").unwrap());
    let resolver = Arc::new(Resolver::new(
        policy,
        &[],
        &Settings::DEFAULT,
        Lookups::new(1),
    ));
    let (sink, recorded) = Sink::memory();
    let config = ProxyConfig {
        limits,
        ..ProxyConfig::default()
    };
    let proxy = Proxy::new(resolver, config, sink);
    let client = client_of(&proxy);
    (client, recorded, proxy)
}

/// A new client connection to `proxy`.
fn client_of(proxy: &Proxy) -> DuplexStream {
    let (client, server_end) = tokio::io::duplex(64 * 1024);
    let permit = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
    let conn = Conn {
        io: server_end,
        peer: Peer::Tcp("127.0.0.1:50000".parse().unwrap()),
        permit,
        shutdown: CancellationToken::new(),
        tasks: TaskTracker::new(),
    };
    tokio::spawn(proxy.clone().serve(conn));
    client
}

/// Reads until the peer closes (or 64 KiB).
async fn read_all(client: &mut DuplexStream) -> String {
    let mut out = Vec::new();
    let _ = client.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn events(recorded: &Recorded) -> Vec<serde_json::Value> {
    recorded
        .lines()
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn an_origin_that_never_answers_gets_504_after_the_response_timeout() {
    // Accepts, reads the request, never answers.
    let origin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = origin.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut stream, _) = origin.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    });
    let (mut client, recorded) = proxy_for(port);
    let started = Instant::now();
    let request =
        format!("GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    client.write_all(request.as_bytes()).await.unwrap();
    let response = read_all(&mut client).await;
    assert!(response.starts_with("HTTP/1.1 504"), "{response}");
    assert!(
        response.contains("x-egressd-reason: upstream-timeout"),
        "{response}"
    );
    let waited = started.elapsed();
    assert!(waited >= Limits::DEFAULT.response_timeout, "{waited:?}");
    assert!(waited < Limits::DEFAULT.response_timeout + Duration::from_secs(1));
    let events = events(&recorded);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0][f::STATUS], 504);
    assert_eq!(events[0][f::REASON], "upstream-timeout");
    assert_eq!(events[0][f::DECISION], "error");
}

#[tokio::test(start_paused = true)]
async fn an_idle_pooled_origin_connection_is_closed_after_the_pool_idle_timeout() {
    // Answers one request and keeps the connection alive; reports when the proxy closes it.
    let origin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = origin.local_addr().unwrap().port();
    let (closed_tx, closed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = origin.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request never came");
            head.extend_from_slice(&buf[..n]);
        }
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .unwrap();
        while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        let _ = closed_tx.send(Instant::now());
    });
    let (mut client, _recorded, _proxy) = proxy_kept(port, Limits::DEFAULT);
    let request =
        format!("GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    client.write_all(request.as_bytes()).await.unwrap();
    let response = read_all(&mut client).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let answered = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(3600), closed).await;
    let Ok(Ok(closed)) = closed else {
        panic!("the pooled connection to the origin was still open an hour later");
    };
    let idle = closed - answered;
    assert!(idle >= Duration::from_secs(90), "closed after {idle:?}");
    assert!(idle < Duration::from_secs(200), "closed after {idle:?}");
}

/// An origin on loopback that answers every request `ok` after `delay`, keeping each connection
/// alive (or closing it after one answer when `once`); counts the connections it accepted.
async fn counting_origin(delay: Duration, once: bool) -> (u16, Arc<AtomicUsize>) {
    let origin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = origin.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = origin.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut head = Vec::new();
                loop {
                    while !head.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                            _ => return,
                        }
                    }
                    head.clear();
                    tokio::time::sleep(delay).await;
                    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    if stream.write_all(answer).await.is_err() || once {
                        return;
                    }
                }
            });
        }
    });
    (port, accepted)
}

/// Sends `request` and reads its `ok` response.
async fn exchange(client: &mut DuplexStream, request: &str) -> Vec<u8> {
    client.write_all(request.as_bytes()).await.unwrap();
    let mut buf = [0u8; 1024];
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\nok") {
        let n = client.read(&mut buf).await.unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&response));
        response.extend_from_slice(&buf[..n]);
    }
    response
}

#[tokio::test(start_paused = true)]
async fn spellings_of_one_origin_share_its_pooled_connection() {
    let (port, accepted) = counting_origin(Duration::ZERO, false).await;
    let (mut client, _recorded, _proxy) = proxy_kept(port, Limits::DEFAULT);
    for spelling in ["user:one@127.0.0.1", "user:two@127.0.0.1", "127.0.0.1"] {
        let request = format!("GET http://{spelling}:{port}/ HTTP/1.1\r\nHost: x\r\n\r\n");
        let response = exchange(&mut client, &request).await;
        assert!(response.starts_with(b"HTTP/1.1 200"));
        // The origin connection goes back to the pool once the response has ended.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn an_origin_that_closed_its_idle_connection_gets_the_next_request_on_a_new_one() {
    let (port, accepted) = counting_origin(Duration::ZERO, true).await;
    let (mut client, recorded, _proxy) = proxy_kept(port, Limits::DEFAULT);
    let request = format!("GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: x\r\n\r\n");
    for _ in 0..3 {
        let response = exchange(&mut client, &request).await;
        assert!(response.starts_with(b"HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    let events = events(&recorded);
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events.iter().all(|e| e[f::STATUS] == 200), "{events:?}");
}

#[tokio::test(start_paused = true)]
async fn requests_at_once_get_a_connection_each_and_later_ones_reuse_them() {
    // Each answer takes a second, so the two first requests overlap.
    let (port, accepted) = counting_origin(Duration::from_secs(1), false).await;
    let (mut one, _, proxy) = proxy_kept(port, Limits::DEFAULT);
    let mut two = client_of(&proxy);
    let request = format!("GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: x\r\n\r\n");
    let (a, b) = tokio::join!(exchange(&mut one, &request), exchange(&mut two, &request));
    assert!(a.starts_with(b"HTTP/1.1 200") && b.starts_with(b"HTTP/1.1 200"));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..2 {
        let (a, b) = tokio::join!(exchange(&mut one, &request), exchange(&mut two, &request));
        assert!(a.starts_with(b"HTTP/1.1 200") && b.starts_with(b"HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_request_head_that_never_ends_gets_408_at_the_header_read_timeout() {
    let (mut client, recorded) = proxy_for(80);
    let started = Instant::now();
    client
        .write_all(b"GET http://127.0.0.1:80/ HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let response = read_all(&mut client).await;
    let waited = started.elapsed();
    assert!(waited >= Limits::DEFAULT.header_read_timeout, "{waited:?}");
    assert!(waited < Limits::DEFAULT.header_read_timeout + Duration::from_secs(1));
    assert!(response.starts_with("HTTP/1.1 408 "), "{response}");
    assert!(
        response.contains("x-egressd-reason: head-timeout\r\n"),
        "{response}"
    );
    assert!(response.contains("--header-read-timeout"), "{response}");
    let events = events(&recorded);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0][f::STATUS], 408);
    assert_eq!(events[0][f::REASON], "head-timeout");
    assert_eq!(events[0][f::METHOD], "");
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_at_the_header_read_timeout_without_a_word() {
    let (mut client, recorded) = proxy_for(80);
    let started = Instant::now();
    let response = read_all(&mut client).await;
    assert!(started.elapsed() >= Limits::DEFAULT.header_read_timeout);
    assert_eq!(response, "");
    assert!(
        recorded.lines().is_empty(),
        "no request was begun, so none is audited"
    );
}

#[tokio::test(start_paused = true)]
async fn a_denied_destination_is_refused_at_once_with_one_event() {
    let (mut client, recorded) = proxy_for(80);
    let started = Instant::now();
    client
        .write_all(b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 512];
    let n = client.read(&mut head).await.unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    // The carve-out opens loopback on the allowed port only.
    assert!(head.contains("x-egressd-reason: special-range"), "{head}");
    assert_eq!(started.elapsed(), Duration::ZERO);
    let events = events(&recorded);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0][f::METHOD], "CONNECT");
    assert_eq!(events[0][f::DESTINATION], "127.0.0.1:22");
    assert_eq!(events[0][f::DECISION], "deny");
    assert_eq!(events[0][f::REASON], "special-range");
    assert_eq!(events[0][f::RULE], "");
}

#[tokio::test(start_paused = true)]
async fn two_host_headers_in_a_plain_request_are_a_bad_request() {
    // Nothing listens: the request must be answered before anything is dialed.
    let (mut client, recorded) = proxy_for(9);
    let request = "GET http://127.0.0.1:9/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\nHost: other.test\r\n\
                   Connection: close\r\n\r\n";
    client.write_all(request.as_bytes()).await.unwrap();
    let response = read_all(&mut client).await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(
        response.contains("x-egressd-reason: bad-request"),
        "{response}"
    );
    assert!(response.contains("more than one Host header"), "{response}");
    let events = events(&recorded);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0][f::STATUS], 400);
    assert_eq!(events[0][f::REASON], "bad-request");
}
