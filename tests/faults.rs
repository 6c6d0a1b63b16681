//! Faults a sidecar must survive or end cleanly from: running out of descriptors on either
//! server's accept loop, DNS lookups in flight at shutdown, and every way a launcher stops it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

use crate::util::*;

/// Descriptors egressd gets in the starvation tests: enough to start, few enough to run out.
const NOFILE: u32 = 64;
/// Connections the tests hold open to exhaust them.
const HOG: usize = 100;

fn dns_query(name: &str) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 4242;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

fn udp_ask(server: SocketAddr, name: &str) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    socket.send_to(&dns_query(name), server).unwrap();
    let mut buf = [0u8; 1500];
    let n = socket.recv(&mut buf).expect("an answer over UDP");
    Message::from_vec(&buf[..n]).unwrap()
}

/// Sends one length-prefixed query on `stream` and reads the answer.
fn tcp_ask_on(stream: &mut TcpStream, name: &str) -> Message {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let query = dns_query(name);
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query);
    stream.write_all(&framed).unwrap();
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).expect("an answer over TCP");
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).unwrap();
    Message::from_vec(&buf).unwrap()
}

fn dns_addr(sidecar: &Sidecar) -> SocketAddr {
    sidecar.ready["dns"].as_str().unwrap().parse().unwrap()
}

/// Opens connections to `addr` until `HOG` are open (the kernel completes them even when egressd
/// cannot accept), then waits until egressd says it ran out.
fn starve(sidecar: &Sidecar, addr: SocketAddr) -> Vec<TcpStream> {
    let held: Vec<TcpStream> = (0..HOG)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    sidecar.stderr.wait_for("out of resources", 1);
    held
}

#[test]
fn the_proxy_survives_running_out_of_descriptors() {
    let origin = Origin::start(Behaviour::Answer);
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "p.toml",
        &loopback_policy(&[origin.addr.port()], ""),
    );
    let mut sidecar = Sidecar::start_with_nofile(NOFILE, &["--policy", policy.to_str().unwrap()]);
    let held = starve(&sidecar, sidecar.proxy());
    assert!(
        sidecar.try_wait().is_none(),
        "egressd exited: {}",
        sidecar.stderr.text()
    );
    drop(held);
    let url = format!("http://origin.test:{}/", origin.addr.port());
    let deadline = Instant::now() + PATIENCE;
    // Served again once the held connections are gone (each is closed as egressd reads its EOF).
    let response = loop {
        let r = Client::Rust.get(sidecar.proxy(), &url);
        if r.status == 200 || Instant::now() > deadline {
            break r;
        }
    };
    assert_eq!(response.status, 200, "{response:?}");
    sidecar.stderr.wait_for("accepting again", 1);
    let log = sidecar.stderr.text();
    // The connections still queued when the held ones closed may use up the descriptors again
    // for a moment, a second episode; the one while they were held had one warning.
    let first = &log[..log.find("accepting again").unwrap()];
    assert_eq!(
        first.matches("out of resources").count(),
        1,
        "one warning per episode:\n{log}"
    );
    assert!(sidecar.try_wait().is_none());
}

#[test]
fn the_dns_tcp_listener_survives_running_out_of_descriptors_and_udp_keeps_answering() {
    let upstream = FakeDns::start(&[], false);
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "p.toml",
        &format!("version = 1\n[dns]\nupstreams = [\"{}\"]\n", upstream.addr),
    );
    let mut sidecar = Sidecar::start_with_nofile(NOFILE, &["--policy", policy.to_str().unwrap()]);
    let dns = dns_addr(&sidecar);
    let held = starve(&sidecar, dns);
    // What needs no new descriptor is still served: a refusal over UDP.
    let refused = udp_ask(dns, "refused.invalid.");
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    assert!(
        sidecar.try_wait().is_none(),
        "egressd exited: {}",
        sidecar.stderr.text()
    );
    drop(held);
    sidecar.stderr.wait_for("accepting again", 1);
    let mut stream = TcpStream::connect(dns).unwrap();
    let answer = tcp_ask_on(&mut stream, "refused.invalid.");
    assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
    assert!(sidecar.try_wait().is_none());
}

/// Out of descriptors, and kept out (the connections holding them ask a query every second, so
/// they never idle out): a DNS query over TCP is still answered, not left waiting in the listen
/// queue. What needs no lookup is answered as usual; an allowed name that needs one gets SERVFAIL.
#[test]
fn a_dns_tcp_query_is_answered_while_descriptors_stay_exhausted() {
    let upstream = FakeDns::start(&[], false);
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "p.toml",
        &format!(
            "version = 1\n[[allow]]\nhost = \"allowed.test\"\n[dns]\nupstreams = [\"{}\"]\n",
            upstream.addr
        ),
    );
    let sidecar = Sidecar::start_with_nofile(NOFILE, &["--policy", policy.to_str().unwrap()]);
    let dns = dns_addr(&sidecar);
    let mut held = starve(&sidecar, dns);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let keeping = stop.clone();
    let keeper = std::thread::spawn(move || {
        let mut framed = dns_query("refused.invalid.");
        framed.splice(0..0, (framed.len() as u16).to_be_bytes());
        while !keeping.load(std::sync::atomic::Ordering::Relaxed) {
            // Those turned away are closed: their writes fail, and that is fine.
            for stream in &mut held {
                let _ = stream.write_all(&framed);
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        held
    });
    let mut stream = TcpStream::connect(dns).unwrap();
    let refused = tcp_ask_on(&mut stream, "refused.invalid.");
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    let mut stream = TcpStream::connect(dns).unwrap();
    let allowed = tcp_ask_on(&mut stream, "allowed.test.");
    assert_eq!(allowed.metadata.response_code, ResponseCode::ServFail);
    assert!(
        upstream.seen().is_empty(),
        "no lookup while out of descriptors"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(keeper.join().unwrap());
}

/// Out of descriptors, and kept out (the connections holding them never send a request, and the
/// head timeout is longer than the test): a client of the proxy waiting in the listen queue is
/// told 503 `proxy-resources` and audited, not left in silence.
#[test]
fn a_proxy_client_is_answered_while_descriptors_stay_exhausted() {
    let dir = tempfile::tempdir().unwrap();
    let audit_log = dir.path().join("audit.jsonl");
    let policy = write(dir.path(), "p.toml", &loopback_policy(&[9], ""));
    let mut sidecar = Sidecar::start_with_nofile(
        NOFILE,
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--header-read-timeout",
            "1h",
            "--audit-log",
            audit_log.to_str().unwrap(),
        ],
    );
    let held = starve(&sidecar, sidecar.proxy());
    let mut client = TcpStream::connect(sidecar.proxy()).unwrap();
    let me = client.local_addr().unwrap().to_string();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut response = String::new();
    client
        .read_to_string(&mut response)
        .expect("an answer, not silence");
    assert!(
        response.starts_with("HTTP/1.1 503 "),
        "{response}\n{}",
        sidecar.stderr.text()
    );
    assert!(
        response.contains("\r\nx-egressd-reason: proxy-resources\r\n"),
        "{response}"
    );
    let deadline = Instant::now() + PATIENCE;
    let event = loop {
        let events = request_events(&audit_log, 1);
        if let Some(event) = events.into_iter().find(|e| e[audit::fields::CLIENT] == me) {
            break event;
        }
        assert!(Instant::now() < deadline, "no audit event for {me}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(event[audit::fields::STATUS], 503, "{event}");
    assert_eq!(event[audit::fields::REASON], "proxy-resources", "{event}");
    assert_eq!(event[audit::fields::DECISION], "error", "{event}");
    assert!(sidecar.try_wait().is_none());
    drop(held);
}

#[test]
fn sigterm_drains_dns_lookups_in_flight() {
    let upstream = GatedDns::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "p.toml",
        &format!(
            "version = 1\n[[allow]]\nhost = \"*.example.org\"\n[dns]\nupstreams = [\"{}\"]\n",
            upstream.addr
        ),
    );
    let mut sidecar = Sidecar::start(&["--policy", policy.to_str().unwrap()]);
    let dns = dns_addr(&sidecar);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(PATIENCE)).unwrap();
    udp.send_to(&dns_query("udp.example.org."), dns).unwrap();
    let mut tcp = TcpStream::connect(dns).unwrap();
    let tcp_asking = std::thread::spawn(move || tcp_ask_on(&mut tcp, "tcp.example.org."));
    // Both lookups are upstream now, held there.
    upstream.wait_asked(2);
    sidecar.signal(Signal::SIGTERM);
    sidecar.stderr.wait_for("draining", 1);
    // Shutting down: no new query is taken...
    assert!(sidecar.try_wait().is_none());
    // ...but the ones in flight are answered once the upstream answers.
    upstream.open();
    let mut buf = [0u8; 1500];
    let n = udp
        .recv(&mut buf)
        .expect("the UDP query in flight is answered");
    let answer = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(answer.answers.len(), 1);
    let answer = tcp_asking.join().unwrap();
    assert_eq!(
        answer.answers.len(),
        1,
        "the TCP query in flight is answered"
    );
    assert_eq!(sidecar.wait().code(), Some(0));
}

/// What ends the sidecar in one run of the stop matrix.
#[derive(Clone, Copy, Debug)]
enum Stop {
    Signal(Signal),
    StdinEof,
}

/// Every way a launcher stops egressd, with and without `--exit-on-stdin-eof`, with a tunnel
/// open that never finishes on its own: each ends the process with 0 once the drain deadline
/// passes, while the launcher still holds stdin open (except when closing it is the stop).
#[test]
fn every_stop_ends_the_process_within_the_drain_deadline() {
    let echo = Echo::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "p.toml",
        &loopback_policy(&[echo.addr.port()], ""),
    );
    let cases = [
        (Stop::Signal(Signal::SIGTERM), false),
        (Stop::Signal(Signal::SIGTERM), true),
        (Stop::Signal(Signal::SIGINT), false),
        (Stop::Signal(Signal::SIGINT), true),
        (Stop::StdinEof, true),
    ];
    for (stop, stdin_flag) in cases {
        let mut args = vec![
            "--policy",
            policy.to_str().unwrap(),
            "--drain-timeout",
            "1s",
        ];
        if stdin_flag {
            args.push("--exit-on-stdin-eof");
        }
        let mut sidecar = Sidecar::start(&args);
        // A tunnel that stays open: the drain has to give up on it at the deadline.
        let mut tunnel = TcpStream::connect(sidecar.proxy()).unwrap();
        let authority = format!("127.0.0.1:{}", echo.addr.port());
        write!(
            tunnel,
            "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n"
        )
        .unwrap();
        let head = read_head(&mut tunnel).expect("CONNECT answered");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let started = Instant::now();
        match stop {
            Stop::Signal(signal) => sidecar.signal(signal),
            Stop::StdinEof => sidecar.close_stdin(),
        }
        let status = sidecar.wait();
        let took = started.elapsed();
        assert_eq!(
            status.code(),
            Some(0),
            "{stop:?} with stdin flag {stdin_flag}: {}",
            sidecar.stderr.text()
        );
        // It waited for the open tunnel (the drain deadline), then left.
        assert!(
            took >= Duration::from_secs(1),
            "{stop:?}: exited before the drain deadline ({took:?})"
        );
        drop(tunnel);
    }
}
