//! HTTP/2 in inspected sessions (docs/tls.md, "HTTP/2"): egressd agrees to `h2` when the client
//! offers it, decides every stream on its own (`:authority`, methods, paths, credentials,
//! attribution, one audit event each), and speaks h2 to an origin that offers it, HTTP/1.1 to one
//! that does not. Real clients in ignored tests: curl (`--http2`) and a gRPC call from Python's
//! grpcio to a grpcio server.

use std::path::PathBuf;

use crate::util::*;

const SECRET: &str = "real-h2-secret-0123456789";
const PLACEHOLDER: &str = "PLACEHOLDER_H2_TOKEN";
const GRPC_PLACEHOLDER: &str = "PLACEHOLDER_GRPC_TOKEN";

/// `origin.test` (h2; inspected: GET and POST on `/ok/*`; a brokered credential),
/// `legacy.test` (HTTP/1.1 only; inspected, no request rules), and `grpc.test` when given
/// (inspected: POST on `/test.Echo/*`; a credential of its own, with the same value), behind one egressd.
struct World {
    origin: H2Origin,
    legacy: H2Origin,
    grpc: Option<PeerProcess>,
    sidecar: Sidecar,
    audit: PathBuf,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl World {
    fn start(with_grpc: bool) -> Self {
        Self::start_with(with_grpc, &[])
    }

    fn start_with(with_grpc: bool, extra_args: &[&str]) -> Self {
        let ca = TestCa::new("test origin CA");
        let origin = H2Origin::start(&ca, &["origin.test"], true);
        let legacy = H2Origin::start(&ca, &["legacy.test"], false);
        let grpc = with_grpc.then(|| PeerProcess::grpc_origin(&ca, &["grpc.test"]));
        let dir = tempfile::tempdir().unwrap();
        let token = write(dir.path(), "token", SECRET);
        let (o, l) = (origin.addr.port(), legacy.addr.port());
        let g = grpc.as_ref().map_or(1, |g| g.port);
        let policy = format!(
            r#"version = 1
[defaults]
action = "deny"

[[allow]]
host = "origin.test"
ports = [{o}]
inspect = true
methods = ["GET", "POST"]
paths = ["/ok/*"]

[[allow]]
host = "legacy.test"
ports = [{l}]
inspect = true

[[allow]]
host = "grpc.test"
ports = [{g}]
inspect = true
methods = ["POST"]
paths = ["/test.Echo/*"]

[[danger_carve_out]]
cidr = "127.0.0.1/32"
ports = [{o}, {l}, {g}]

[[credential]]
host = "origin.test"
header = "Authorization"
placeholder = "{PLACEHOLDER}"
value_file = "{token}"

[[credential]]
host = "grpc.test"
header = "Authorization"
placeholder = "{GRPC_PLACEHOLDER}"
value_file = "{token}"

[headers]
"X-Egressd-Sandbox" = "{{sandbox_id}}"

[dns.static]
"origin.test" = ["127.0.0.1"]
"legacy.test" = ["127.0.0.1"]
"grpc.test" = ["127.0.0.1"]
{NO_RESOLVER}"#,
            token = token.display()
        );
        let policy = write(dir.path(), "policy.toml", &policy);
        let roots = ca.write(dir.path(), "origin-ca.pem");
        let audit = dir.path().join("audit.jsonl");
        let ready = dir.path().join("egressd.json");
        let mut args = vec![
            "--policy",
            policy.to_str().unwrap(),
            "--sandbox-id",
            "sb-h2",
            "--inspect-upstream-roots",
            roots.to_str().unwrap(),
            "--audit-log",
            audit.to_str().unwrap(),
            "--ready-file",
            ready.to_str().unwrap(),
        ];
        args.extend_from_slice(extra_args);
        let sidecar = Sidecar::start(&args);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Self {
            origin,
            legacy,
            grpc,
            sidecar,
            audit,
            runtime,
            _dir: dir,
        }
    }

    fn egressd_ca(&self) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        pem_certificates(std::path::Path::new(
            self.sidecar.ready["inspect_ca"].as_str().unwrap(),
        ))
    }

    fn authority(&self, host: &str) -> String {
        let port = match host {
            "origin.test" => self.origin.addr.port(),
            "legacy.test" => self.legacy.addr.port(),
            "grpc.test" => self.grpc.as_ref().unwrap().port,
            _ => panic!("no origin {host}"),
        };
        format!("{host}:{port}")
    }
}

#[test]
fn every_h2_stream_is_decided_attributed_and_audited_on_its_own() {
    let world = World::start(false);
    let authority = world.authority("origin.test");
    let bearer = format!("Bearer {PLACEHOLDER}");
    let roots = world.egressd_ca();
    let proxy = world.sidecar.proxy();
    let other = world.authority("legacy.test");
    let (ok, refused, spoofed) = world.runtime.block_on(async {
        let mut h2 = h2_session(proxy, &authority, "origin.test", &roots)
            .await
            .unwrap();
        let ok = h2_fetch(
            &mut h2,
            "GET",
            &authority,
            "/ok/1?q=secret-query",
            &[
                ("authorization", bearer.as_str()),
                ("x-egressd-sandbox", "spoofed"),
            ],
        )
        .await
        .unwrap();
        let mut refused = Vec::new();
        for (method, path) in [("DELETE", "/ok/1"), ("GET", "/admin")] {
            refused.push(
                h2_fetch(&mut h2, method, &authority, path, &[])
                    .await
                    .unwrap(),
            );
        }
        // Another host in `:authority`, on the same connection.
        let spoofed = h2_fetch(&mut h2, "GET", &other, "/ok/1", &[])
            .await
            .unwrap();
        (ok, refused, spoofed)
    });
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.version, http::Version::HTTP_2);
    assert_eq!(
        ok.header("x-seen-version"),
        "HTTP/2.0",
        "h2 to an h2 origin"
    );
    assert_eq!(ok.header("x-seen-host"), authority);
    assert_eq!(
        ok.header("x-seen-sandbox"),
        "sb-h2",
        "attribution replaces the client's"
    );
    // The origin got the real value; what it echoes comes back as the placeholder.
    assert_eq!(ok.header("x-seen-authorization"), bearer);
    let seen = world.origin.seen();
    assert_eq!(
        seen.len(),
        1,
        "refused streams reached the origin: {seen:?}"
    );
    assert_eq!(seen[0].headers["authorization"], format!("Bearer {SECRET}"));
    let trailers = ok.trailers.as_ref().expect("the origin's trailers");
    assert_eq!(trailers["x-origin-trailer"], "done");

    let codes: Vec<_> = refused
        .iter()
        .map(|r| (r.status, r.header("x-egressd-reason").to_owned()))
        .collect();
    assert_eq!(
        codes,
        [
            (403, "method-not-allowed".to_owned()),
            (403, "path-not-allowed".to_owned())
        ]
    );
    assert!(
        refused[1]
            .header("x-egressd-rule")
            .starts_with("allow[0] line"),
        "{refused:?}"
    );
    let body = String::from_utf8_lossy(&refused[1].body);
    assert!(
        body.contains("/admin") && body.contains("rule allow[0]"),
        "{body}"
    );
    assert_eq!(
        (spoofed.status, spoofed.header("x-egressd-reason")),
        (403, "host-mismatch"),
        "{spoofed:?}"
    );

    let events = request_events(&world.audit, 4);
    let mut inner: Vec<_> = events.iter().filter(|e| e["method"] != "CONNECT").collect();
    // Each stream's event is written when it ends (an allowed one when its body has gone), so
    // they come in any order: compared in the order of the expected list below.
    inner.sort_by_key(|e| {
        let reason = e["reason"].as_str().unwrap_or_default();
        [
            "allow-rule",
            "method-not-allowed",
            "path-not-allowed",
            "host-mismatch",
        ]
        .iter()
        .position(|r| *r == reason)
    });
    let url = |path: &str| format!("https://{authority}{path}");
    let expect = [
        ("GET", url("/ok/1"), "allow", "allow-rule", 200),
        ("DELETE", url("/ok/1"), "deny", "method-not-allowed", 403),
        ("GET", url("/admin"), "deny", "path-not-allowed", 403),
        ("GET", url("/ok/1"), "deny", "host-mismatch", 403),
    ];
    assert_eq!(inner.len(), expect.len(), "{inner:#?}");
    for (event, (method, destination, decision, code, status)) in inner.iter().zip(expect) {
        assert_eq!(
            (
                event["method"].as_str().unwrap(),
                event["destination"].as_str().unwrap(),
                event["decision"].as_str().unwrap(),
                event["reason"].as_str().unwrap(),
                event["status"].as_u64().unwrap(),
            ),
            (method, destination.as_str(), decision, code, status),
            "{event}"
        );
    }
    world
        .sidecar
        .assert_never_logged(&world.audit, &[SECRET, "secret-query"]);
}

#[test]
fn an_h2_client_reaches_an_origin_that_speaks_only_http11() {
    let world = World::start(false);
    let authority = world.authority("legacy.test");
    let roots = world.egressd_ca();
    let proxy = world.sidecar.proxy();
    let fetched = world.runtime.block_on(async {
        let mut h2 = h2_session(proxy, &authority, "legacy.test", &roots)
            .await
            .unwrap();
        let mut fetched = Vec::new();
        for path in ["/ok/bytes/100000", "/second"] {
            fetched.push(
                h2_fetch(&mut h2, "GET", &authority, path, &[])
                    .await
                    .unwrap(),
            );
        }
        fetched
    });
    for got in &fetched {
        assert_eq!(got.status, 200, "{got:?}");
        assert_eq!(got.version, http::Version::HTTP_2);
        assert_eq!(got.header("x-seen-version"), "HTTP/1.1");
        assert_eq!(got.header("x-seen-host"), authority);
        assert_eq!(got.header("x-seen-sandbox"), "sb-h2");
    }
    assert_eq!(fetched[0].body.len(), 100_000);
    let seen = world.legacy.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.version == http::Version::HTTP_11));
    let paths: Vec<_> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["/ok/bytes/100000", "/second"]);
}

#[test]
fn more_concurrent_downloads_than_the_stream_limit_all_arrive_whole_through_one_session() {
    // 150 streams at once on one connection, over the 128 egressd lets run concurrently: the
    // rest wait their turn (the client obeys SETTINGS_MAX_CONCURRENT_STREAMS); every one arrives
    // whole.
    const STREAMS: usize = 150;
    const SIZE: usize = 256 * 1024;
    let world = World::start(false);
    let authority = world.authority("origin.test");
    let roots = world.egressd_ca();
    let proxy = world.sidecar.proxy();
    let lengths = world.runtime.block_on(async {
        let h2 = h2_session(proxy, &authority, "origin.test", &roots)
            .await
            .unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..STREAMS {
            let (mut h2, authority) = (h2.clone(), authority.clone());
            tasks.spawn(async move {
                let path = format!("/ok/bytes/{SIZE}");
                h2_fetch(&mut h2, "GET", &authority, &path, &[])
                    .await
                    .map(|f| (f.status, f.body.len()))
            });
        }
        let mut lengths = Vec::new();
        while let Some(done) = tasks.join_next().await {
            lengths.push(done.unwrap());
        }
        lengths
    });
    assert_eq!(lengths.len(), STREAMS);
    for got in &lengths {
        assert_eq!(got, &Ok((200, SIZE)));
    }
    let events = request_events(&world.audit, STREAMS);
    let served = events
        .iter()
        .filter(|e| e["method"] == "GET" && e["status"] == 200)
        .count();
    assert_eq!(served, STREAMS);
}

#[test]
fn an_idle_h2_session_is_told_to_go_after_the_tunnel_idle_timeout() {
    let world = World::start_with(false, &["--tunnel-idle-timeout", "1s"]);
    let authority = world.authority("origin.test");
    let roots = world.egressd_ca();
    let proxy = world.sidecar.proxy();
    let closed = world.runtime.block_on(async {
        let mut h2 = h2_session(proxy, &authority, "origin.test", &roots)
            .await
            .unwrap();
        let first = h2_fetch(&mut h2, "GET", &authority, "/ok/1", &[])
            .await
            .unwrap();
        assert_eq!(first.status, 200);
        // Then nothing: egressd's GOAWAY closes the connection (checked every 50 ms, for as
        // long as a test waits).
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !h2.is_closed() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        h2.is_closed()
    });
    assert!(closed, "the idle session stayed open");
    // The session's CONNECT event is written when it ends.
    let events = request_events(&world.audit, 2);
    assert!(
        events.iter().any(|e| e["method"] == "CONNECT"),
        "{events:#?}"
    );
}

#[test]
#[ignore = "needs curl: run by .ci/run"]
fn curl_speaks_http2_through_an_inspected_session() {
    let world = World::start(false);
    let env = world.sidecar.ready["env"].as_object().unwrap().clone();
    let url = format!("https://{}/ok/curl", world.authority("origin.test"));
    let out = std::process::Command::new("curl")
        .args(["-sS", "--http2", "--max-time", "20", "-o", "/dev/null"])
        .args(["-w", "%{http_version} %{http_code}"])
        .arg(&url)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .envs(
            env.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout, "2 200", "{}", String::from_utf8_lossy(&out.stderr));
    let seen = world.origin.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].version, http::Version::HTTP_2);
}

#[test]
#[ignore = "needs python3 with grpcio: run by .ci/run"]
fn a_grpc_call_goes_through_an_inspected_host_with_its_trailers() {
    let world = World::start(true);
    let grpc = world.grpc.as_ref().unwrap();
    let target = world.authority("grpc.test");
    let bearer = format!("authorization=Bearer {GRPC_PLACEHOLDER}");
    let got = grpc_client(&world.sidecar.ready["env"], &target, &[&bearer]);
    assert_eq!(got["unary"], "echo:hello", "{got}");
    assert_eq!(got["unary_trailers"]["x-trailer"], "unary-done", "{got}");
    assert_eq!(
        got["chat"],
        serde_json::json!(["echo:a", "echo:b", "echo:c"]),
        "{got}"
    );
    assert_eq!(got["chat_trailers"]["x-trailer"], "chat-done", "{got}");
    // The origin's own failure arrives as it sent it: status, message and trailer.
    assert_eq!(
        got["deny"],
        serde_json::json!(["PERMISSION_DENIED", "the origin says no"]),
        "{got}"
    );
    assert_eq!(got["deny_trailers"]["x-trailer"], "deny-done", "{got}");
    // Outside the rule's paths: egressd's 403, which gRPC reads as PERMISSION_DENIED.
    assert_eq!(got["admin"][0], "PERMISSION_DENIED", "{got}");

    let records = grpc.records(3);
    let methods: Vec<_> = records.iter().map(|r| r["method"].clone()).collect();
    assert_eq!(methods, ["Unary", "Chat", "Deny"], "{records:#?}");
    for record in &records {
        let metadata = &record["metadata"];
        assert_eq!(
            metadata["authorization"],
            serde_json::json!([format!("Bearer {SECRET}")]),
            "{record}"
        );
        assert_eq!(
            metadata["x-egressd-sandbox"],
            serde_json::json!(["sb-h2"]),
            "{record}"
        );
    }
    let events = request_events(&world.audit, 4);
    let url = |path: &str| format!("https://{target}{path}");
    let find = |path: &str| {
        events
            .iter()
            .find(|e| e["destination"] == url(path))
            .unwrap_or_else(|| panic!("no event for {path}: {events:#?}"))
            .clone()
    };
    for path in ["/test.Echo/Unary", "/test.Echo/Chat", "/test.Echo/Deny"] {
        let event = find(path);
        assert_eq!(
            (&event["method"], &event["decision"], &event["status"]),
            (&"POST".into(), &"allow".into(), &200.into()),
            "{event}"
        );
    }
    let admin = find("/test.Admin/Drop");
    assert_eq!(
        (&admin["decision"], &admin["reason"], &admin["status"]),
        (&"deny".into(), &"path-not-allowed".into(), &403.into()),
        "{admin}"
    );
    world.sidecar.assert_never_logged(&world.audit, &[SECRET]);
}
