//! WebSocket on an inspected host (docs/tls.md, "WebSocket"): the upgrade request is decided like
//! any request inside the session, then the 101 and the frames both ways are relayed, counted and
//! audited once at the end; an upgrade that carried a brokered credential goes without
//! compression and the origin's frames are scrubbed of the value. Real peers: Python's
//! `websockets` as the origin and as the client, which finds the proxy and trusts egressd's CA
//! through the readiness line's `env` alone.

use std::path::PathBuf;

use crate::util::*;

const SECRET: &str = "real-ws-secret-0123456789";
const PLACEHOLDER: &str = "PLACEHOLDER_WS_TOKEN";

/// A WebSocket origin at `origin.test` (inspected: `GET` only, paths `/ok/*`, a brokered
/// credential) and an egressd in front of it.
struct World {
    origin: PeerProcess,
    sidecar: Sidecar,
    audit: PathBuf,
    _dir: tempfile::TempDir,
}

impl World {
    /// With the echoing origin of the tests before this one.
    fn start() -> Self {
        Self::with(PeerProcess::websocket_origin)
    }

    fn with(origin: fn(&TestCa, &[&str]) -> PeerProcess) -> Self {
        let ca = TestCa::new("test origin CA");
        let origin = origin(&ca, &["origin.test"]);
        let dir = tempfile::tempdir().unwrap();
        let token = write(dir.path(), "token", SECRET);
        let port = origin.port;
        let policy = format!(
            r#"version = 1
[defaults]
action = "deny"

[[allow]]
host = "origin.test"
ports = [{port}]
inspect = true
methods = ["GET"]
paths = ["/ok/*"]

[[danger_carve_out]]
cidr = "127.0.0.1/32"
ports = [{port}]

[[credential]]
host = "origin.test"
header = "Authorization"
placeholder = "{PLACEHOLDER}"
value_file = "{}"

[headers]
"X-Egressd-Sandbox" = "{{sandbox_id}}"

[dns.static]
"origin.test" = ["127.0.0.1"]
{NO_RESOLVER}"#,
            token.display()
        );
        let policy = write(dir.path(), "policy.toml", &policy);
        let roots = ca.write(dir.path(), "origin-ca.pem");
        let audit = dir.path().join("audit.jsonl");
        let ready = dir.path().join("egressd.json");
        let sidecar = Sidecar::start(&[
            "--policy",
            policy.to_str().unwrap(),
            "--sandbox-id",
            "sb-ws",
            "--inspect-upstream-roots",
            roots.to_str().unwrap(),
            "--audit-log",
            audit.to_str().unwrap(),
            "--ready-file",
            ready.to_str().unwrap(),
        ]);
        Self {
            origin,
            sidecar,
            audit,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("wss://origin.test:{}{path}", self.origin.port)
    }

    /// The client of `websocket_client`, sending the credential's placeholder when `brokered`.
    fn client(&self, path: &str, deflate: bool, closer: &str, brokered: bool) -> serde_json::Value {
        let bearer = format!("Authorization: Bearer {PLACEHOLDER}");
        let headers: &[&str] = if brokered { &[&bearer] } else { &[] };
        let env = &self.sidecar.ready["env"];
        websocket_client(env, &self.url(path), deflate, closer, headers)
    }
}

/// The 1 MiB binary message the client sends (and gets back).
const BIG: u64 = 1 << 20;

#[test]
#[ignore = "needs python3 with websockets 15 or later: run by .ci/run"]
fn websocket_sessions_are_decided_relayed_and_audited_once() {
    let world = World::start();

    // No brokered credential: compressed as the two ends agree, closed by the client.
    let compressed = world.client("/ok/chat", true, "client", false);
    assert_eq!(
        compressed["extensions"],
        serde_json::json!(["permessage-deflate"]),
        "{compressed}"
    );
    assert_eq!(compressed["text"], "hello", "{compressed}");
    assert_eq!(compressed["binary_echoed"], true, "{compressed}");
    assert_eq!(compressed["close_sent"], 1000, "{compressed}");
    assert_eq!(compressed["close_received"][0], 1000, "{compressed}");

    // A brokered credential: the client offers compression, the session goes without it (the
    // frames are scrubbed on their way), works all the same, and is closed by the origin.
    let plain = world.client("/ok/plain", true, "origin", true);
    assert_eq!(plain["extensions"], serde_json::json!([]), "{plain}");
    assert_eq!(plain["text"], "hello", "{plain}");
    assert_eq!(plain["binary_echoed"], true, "{plain}");
    assert_eq!(
        plain["close_received"],
        serde_json::json!([4001, "bye from the origin"]),
        "{plain}"
    );

    // Outside the rule's paths: refused before anything reaches the origin.
    let refused = world.client("/admin", true, "client", true);
    assert_eq!(refused["status"], 403, "{refused}");
    assert_eq!(refused["reason"], "path-not-allowed", "{refused}");

    let records = world.origin.records(2);
    assert_eq!(
        records.len(),
        2,
        "the refused upgrade reached the origin: {records:#?}"
    );
    let (first, second) = (&records[0], &records[1]);
    assert_eq!(first["path"], "/ok/chat");
    assert_eq!(
        first["extensions"],
        serde_json::json!(["permessage-deflate"])
    );
    assert_eq!(first["close_received"], 1000, "{first}");
    assert_eq!(first["authorization"], "", "{first}");
    assert_eq!(second["path"], "/ok/plain");
    assert_eq!(second["close_sent"], 4001, "{second}");
    assert_eq!(second["extensions"], serde_json::json!([]), "{second}");
    assert_eq!(
        second["authorization"],
        format!("Bearer {SECRET}"),
        "the origin gets the real value: {second}"
    );
    for record in &records {
        assert_eq!(record["sandbox"], serde_json::json!(["sb-ws"]), "{record}");
    }

    // One event per upgrade, written when the session ended, with the frames' bytes.
    let events = request_events(&world.audit, 6);
    let inner: Vec<_> = events.iter().filter(|e| e["method"] == "GET").collect();
    assert_eq!(inner.len(), 3, "{events:#?}");
    let port = world.origin.port;
    let by_path = |path: &str| {
        let destination = format!("https://origin.test:{port}{path}");
        inner
            .iter()
            .find(|e| e["destination"] == destination)
            .unwrap_or_else(|| panic!("no event for {destination}: {inner:#?}"))
    };
    for path in ["/ok/chat", "/ok/plain"] {
        let event = by_path(path);
        assert_eq!(
            (&event["decision"], &event["reason"], &event["status"]),
            (&"allow".into(), &"allow-rule".into(), &101.into()),
            "{event}"
        );
        assert_eq!(event["resolved"], format!("127.0.0.1:{port}"), "{event}");
    }
    // Both messages, each way: compressed they take a small part of their size, plain all of it.
    let bytes = |path: &str, field: &str| by_path(path)[field].as_u64().unwrap();
    for field in ["bytes_up", "bytes_down"] {
        assert!(bytes("/ok/plain", field) > BIG, "{field}: {inner:#?}");
        assert!(bytes("/ok/chat", field) < BIG / 4, "{field}: {inner:#?}");
        assert!(bytes("/ok/chat", field) > 0, "{field}: {inner:#?}");
    }
    let denied = by_path("/admin");
    assert_eq!(
        (&denied["decision"], &denied["reason"], &denied["status"]),
        (&"deny".into(), &"path-not-allowed".into(), &403.into()),
        "{denied}"
    );
    world.sidecar.assert_never_logged(&world.audit, &[SECRET]);
}

#[test]
#[ignore = "needs python3 with websockets 15 or later: run by .ci/run"]
fn a_credential_the_origin_echoes_in_frames_reaches_the_client_as_filler_only() {
    let world = World::with(PeerProcess::websocket_echo_origin);
    let bearer = format!("Authorization: Bearer {PLACEHOLDER}");
    let env = &world.sidecar.ready["env"];
    // The client offers compression; egressd does not pass the offer on.
    let seen = websocket_spy_client(env, &world.url("/ok/echo"), true, &[&bearer]);
    assert!(!seen.to_string().contains(SECRET), "{seen}");
    assert!(!seen.to_string().contains("real-"), "{seen}");
    let stars = "*".repeat(SECRET.len());
    assert_eq!(seen["extensions"], serde_json::json!([]), "{seen}");
    assert_eq!(
        seen["messages"],
        serde_json::json!([
            format!("text echo: Bearer {stars}"),
            format!("\u{0}\u{ff}binary Bearer {stars}"),
            format!("frag: Bearer {stars} end"),
        ]),
        "{seen}"
    );
    // The fragments keep their lengths: the value straddles the first two.
    let frames = seen["frames"].as_array().unwrap();
    let of = |opcode: &str| -> Vec<&serde_json::Value> {
        frames.iter().filter(|f| f[0] == opcode).collect()
    };
    let text = of("TEXT");
    assert_eq!(text.len(), 2, "{seen}");
    assert_eq!(text[1][1], false, "{seen}");
    assert_eq!(text[1][2], "frag: Bearer *****", "{seen}");
    let continuations = of("CONT");
    assert_eq!(
        continuations[0][2],
        format!("{} end", &stars[5..]),
        "{seen}"
    );
    let pings = of("PING");
    assert_eq!(pings.len(), 1, "{seen}");
    assert_eq!(pings[0][2], format!("Bearer {stars}"), "{seen}");
    assert_eq!(
        seen["close_received"],
        serde_json::json!([4002, format!("bye Bearer {stars}")]),
        "{seen}"
    );

    let records = world.origin.records(1);
    let record = &records[0];
    assert_eq!(
        record["authorization"],
        format!("Bearer {SECRET}"),
        "{record}"
    );
    assert_eq!(
        record["offered_extensions"],
        serde_json::Value::Null,
        "{record}"
    );
    assert_eq!(record["extensions"], serde_json::json!([]), "{record}");

    let events = request_events(&world.audit, 2);
    let upgrade = events
        .iter()
        .find(|e| e["method"] == "GET")
        .unwrap_or_else(|| panic!("no upgrade event: {events:#?}"));
    assert_eq!(
        (&upgrade["decision"], &upgrade["status"]),
        (&"allow".into(), &101.into()),
        "{upgrade}"
    );
    assert!(upgrade["bytes_down"].as_u64().unwrap() > 0, "{upgrade}");
    world.sidecar.assert_never_logged(&world.audit, &[SECRET]);
}

#[test]
#[ignore = "needs python3 with websockets 15 or later: run by .ci/run"]
fn an_origin_that_would_hide_a_brokered_value_from_the_scrubbing_is_cut_off() {
    let world = World::with(PeerProcess::websocket_raw_origin);
    let bearer = format!("Authorization: Bearer {PLACEHOLDER}");
    let env = &world.sidecar.ready["env"];

    // A 101 that names an extension the request did not offer: 502, the client never switches.
    let extension = websocket_spy_client(env, &world.url("/ok/extension"), true, &[&bearer]);
    assert_eq!(extension["status"], 502, "{extension}");
    assert_eq!(extension["reason"], "credential-encoding", "{extension}");

    // A frame with a reserved bit set (compressed, say) and no extension agreed: the relay ends
    // before the frame reaches the client.
    let rsv = websocket_spy_client(env, &world.url("/ok/rsv"), true, &[&bearer]);
    assert_eq!(rsv["frames"], serde_json::json!([]), "{rsv}");
    assert_eq!(rsv["close_received"], serde_json::Value::Null, "{rsv}");
    assert!(
        rsv.get("status").is_none(),
        "the upgrade itself passed: {rsv}"
    );

    for record in world.origin.records(2) {
        assert_eq!(
            record["offered_extensions"],
            serde_json::Value::Null,
            "{record}"
        );
    }
    let events = request_events(&world.audit, 4);
    let port = world.origin.port;
    let event = |path: &str| {
        let destination = format!("https://origin.test:{port}{path}");
        events
            .iter()
            .find(|e| e["destination"] == destination)
            .unwrap_or_else(|| panic!("no event for {destination}: {events:#?}"))
            .clone()
    };
    let refused = event("/ok/extension");
    assert_eq!(
        (&refused["decision"], &refused["reason"], &refused["status"]),
        (&"deny".into(), &"credential-encoding".into(), &502.into()),
        "{refused}"
    );
    let cut = event("/ok/rsv");
    assert_eq!(
        (&cut["decision"], &cut["reason"], &cut["status"]),
        (&"error".into(), &"upstream-error".into(), &101.into()),
        "{cut}"
    );
}
