//! CONNECT tunnels and `--tunnel-idle-timeout`: a tunnel with no bytes either way for that long is
//! closed by egressd, one that keeps moving bytes is not, and each writes its audit event when it
//! ends.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::*;

/// Short, so the test is quick, yet long enough that a busy machine delaying one of the busy
/// tunnel's sends (spaced a third of it apart) by a few hundred ms does not fail it.
const IDLE: Duration = Duration::from_millis(500);
const SENDS: u32 = 6;

/// Opens a CONNECT tunnel through `proxy` to `origin.test:PORT` and checks it was answered 200.
fn open_tunnel(proxy: SocketAddr, port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(proxy).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        stream,
        "CONNECT origin.test:{port} HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\n"
    )
    .unwrap();
    let head = read_head(&mut stream).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream
}

/// Sends `payload` through the tunnel and reads the echo back; panics if the tunnel is closed.
fn round_trip(tunnel: &mut TcpStream, payload: &[u8]) {
    tunnel.write_all(payload).unwrap();
    let mut echoed = vec![0u8; payload.len()];
    tunnel
        .read_exact(&mut echoed)
        .expect("the tunnel is open and echoes");
    assert_eq!(echoed, payload);
}

/// Reads until egressd closes the tunnel; panics if it is still open after [`PATIENCE`].
fn wait_closed(tunnel: &mut TcpStream) {
    let mut rest = Vec::new();
    tunnel
        .read_to_end(&mut rest)
        .expect("egressd closed the idle tunnel (end of file) within PATIENCE");
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn the_idle_timeout_closes_a_silent_tunnel_and_spares_a_busy_one() {
    let (silent_origin, busy_origin) = (Echo::start(), Echo::start());
    let (silent_port, busy_port) = (silent_origin.addr.port(), busy_origin.addr.port());
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let policy = write(
        dir.path(),
        "policy.toml",
        &loopback_policy(&[silent_port, busy_port], ""),
    );
    let idle = format!("{}ms", IDLE.as_millis());
    let sidecar = Sidecar::start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--tunnel-idle-timeout",
        &idle,
        "--audit-log",
        audit.to_str().unwrap(),
    ]);

    let mut silent = open_tunnel(sidecar.proxy(), silent_port);
    round_trip(&mut silent, b"hello");
    let mut busy = open_tunnel(sidecar.proxy(), busy_port);
    round_trip(&mut busy, b"ping-00\n");
    let busy_since = Instant::now();
    // Traffic more often than the timeout, for twice as long: the tunnel must stay open (each
    // round trip fails if egressd closed it). The pause only spaces the traffic out.
    for i in 1..=SENDS {
        thread::sleep(IDLE / 3);
        round_trip(&mut busy, format!("ping-{i:02}\n").as_bytes());
    }
    assert!(
        busy_since.elapsed() > IDLE,
        "the busy tunnel outlived the timeout"
    );
    // Meanwhile the silent one, on its own clock, was closed.
    wait_closed(&mut silent);
    // Once quiet, the busy one is closed too.
    wait_closed(&mut busy);

    let events = request_events(&audit, 2);
    let tunnel = |port: u16| {
        let destination = format!("origin.test:{port}");
        events
            .iter()
            .find(|e| e["method"] == "CONNECT" && e["destination"] == destination.as_str())
            .unwrap_or_else(|| panic!("no audit event for {destination}: {events:?}"))
    };
    let (silent, busy) = (tunnel(silent_port), tunnel(busy_port));
    for event in [silent, busy] {
        assert_eq!(
            (&event["decision"], &event["status"]),
            (&"allow".into(), &200.into()),
            "{event}"
        );
    }
    assert_eq!(
        (&silent["bytes_up"], &silent["bytes_down"]),
        (&5.into(), &5.into())
    );
    let busy_bytes = 8 * (SENDS + 1);
    assert_eq!(
        (&busy["bytes_up"], &busy["bytes_down"]),
        (&busy_bytes.into(), &busy_bytes.into())
    );
    // egressd's own clock: the silent tunnel lasted at least the timeout; the busy one at least
    // its spaced-out traffic plus the timeout after its last byte.
    let lasted = |event: &serde_json::Value| event["duration_ms"].as_f64().unwrap();
    let millis = |d: Duration| d.as_secs_f64() * 1000.0;
    assert!(lasted(silent) >= millis(IDLE), "{silent}");
    assert!(lasted(busy) >= millis(IDLE / 3 * SENDS + IDLE), "{busy}");
}
