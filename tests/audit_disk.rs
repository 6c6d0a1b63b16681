//! The audit trail is never silently short (issue 13): when the audit log's disk fills, no line is
//! torn, each episode is reported on stderr when it starts and when it ends, and the log then says
//! how many events were lost; with `--on-audit-failure stop`, egressd fails closed (exit 4).

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;

use crate::util::*;

/// Sends one request the policy refuses (one audit event, no origin needed); false when egressd
/// did not answer (it stopped).
fn refused_request(sidecar: &Sidecar) -> bool {
    let Ok(mut stream) = TcpStream::connect(sidecar.proxy()) else {
        return false;
    };
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let request =
        b"GET http://refused.example.org/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if stream.write_all(request).is_err() {
        return false;
    }
    let Some(head) = read_head(&mut stream) else {
        return false;
    };
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    true
}

/// A policy that refuses every name without asking a resolver (the refused name is decided before
/// resolution; should a bug let it through, its lookup goes to a closed loopback port).
fn refusing_policy(disk: &Path) -> std::path::PathBuf {
    // Beside the disk, not on it: the policy must be readable once the disk is full.
    let path = disk.with_extension("policy.toml");
    std::fs::write(&path, format!("version = 1\n{NO_RESOLVER}")).unwrap();
    path
}

/// Fills `disk` but for `room` bytes.
fn fill(disk: &Path, room: u64) {
    let total = nix::sys::statvfs::statvfs(disk).unwrap();
    let free = total.blocks_available() as u64 * total.fragment_size() as u64;
    let filler = vec![0u8; free.saturating_sub(room) as usize];
    // A tmpfs refuses the last partial page: write what fits.
    let mut file = std::fs::File::create(disk.join("filler")).unwrap();
    let _ = file.write_all(&filler);
}

/// egressd with `extra` flags, its audit log on `disk`, and `disk` then filled but for 16 KiB.
fn full_disk_sidecar(disk: &Path, extra: &[&str]) -> (Sidecar, std::path::PathBuf) {
    let audit = disk.join("audit.jsonl");
    let policy = refusing_policy(disk);
    let mut args = vec![
        "--policy",
        policy.to_str().unwrap(),
        "--audit-log",
        audit.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let sidecar = Sidecar::start(&args);
    fill(disk, 16 * 1024);
    (sidecar, audit)
}

/// Sends refused requests until egressd says it cannot write audit events (bounded), or stops
/// answering.
fn until_full(sidecar: &Sidecar) -> usize {
    for sent in 1..=5000 {
        let answered = refused_request(sidecar);
        if !answered || sidecar.stderr.text().contains("cannot write audit events") {
            return sent;
        }
    }
    panic!("the audit log never filled:\n{}", sidecar.stderr.text());
}

#[test]
#[ignore = "needs root and mount namespaces (a small tmpfs): run by .ci/run"]
fn a_full_audit_disk_loses_events_countably_and_tears_no_line() {
    with_small_disk(
        "audit_disk::a_full_audit_disk_loses_events_countably_and_tears_no_line",
        512,
        |disk| {
            let (mut sidecar, audit) = full_disk_sidecar(disk, &[]);
            let mut sent = until_full(&sidecar);
            for _ in 0..50 {
                assert!(refused_request(&sidecar), "egressd keeps serving");
                sent += 1;
            }
            std::fs::remove_file(disk.join("filler")).unwrap();
            assert!(refused_request(&sidecar));
            sent += 1;
            sidecar.stderr.wait_for("writing again", 1);
            sidecar.signal(Signal::SIGTERM);
            assert_eq!(sidecar.wait().code(), Some(0));
            let text = std::fs::read_to_string(&audit).unwrap();
            assert!(text.ends_with('\n'), "the last line is whole");
            let lines: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("torn line {l:?}: {e}")))
                .collect();
            // Each episode (a disk nearly full may let a small batch through between two) is
            // reported on stderr when it starts and when it ends, and once in the log.
            let log = sidecar.stderr.text();
            let episodes = log.matches("cannot write audit events").count();
            assert!(episodes >= 1, "{log}");
            assert_eq!(log.matches("writing again").count(), episodes, "{log}");
            let lost_events = events_of(&text, audit::Lost::MESSAGE);
            assert_eq!(lost_events.len(), episodes, "one report per episode");
            let lost: u64 = lost_events
                .iter()
                .map(|e| e[audit::fields::LOST].as_u64().unwrap())
                .sum();
            // Events were lost while the disk was full (how many depends on how the nearly full
            // disk's last pages filled): the accounting below is exact either way.
            assert!(lost >= 1, "{lost}");
            // Every event is either in the log or counted: ready + requests + stopping.
            let written = lines.len() - lost_events.len();
            assert_eq!(written as u64 + lost, sent as u64 + 2, "{text}");
        },
    );
}

#[test]
#[ignore = "needs root and mount namespaces (a small tmpfs): run by .ci/run"]
fn with_on_audit_failure_stop_a_full_audit_disk_stops_egressd() {
    with_small_disk(
        "audit_disk::with_on_audit_failure_stop_a_full_audit_disk_stops_egressd",
        512,
        |disk| {
            let (mut sidecar, audit) = full_disk_sidecar(disk, &["--on-audit-failure", "stop"]);
            until_full(&sidecar);
            assert_eq!(sidecar.wait().code(), Some(4), "{}", sidecar.stderr.text());
            assert!(sidecar.stderr.text().contains("failing closed"));
            let text = std::fs::read_to_string(&audit).unwrap();
            assert!(text.is_empty() || text.ends_with('\n'), "no torn line");
        },
    );
}
