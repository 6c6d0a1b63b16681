//! `--metrics-listen`: the Prometheus text exposition on `/metrics`, scraped with a real HTTP
//! client (ureq) and parsed; counters move as traffic does; loopback only unless the danger flag.

use std::collections::BTreeMap;

use crate::util::*;

/// One scrape, parsed: every sample by its series (`name{labels}` as written), and every
/// metric's `# TYPE`.
struct Scrape {
    samples: BTreeMap<String, f64>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    fn get(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }
}

fn scrape(sidecar: &Sidecar) -> Scrape {
    let addr = sidecar.ready["metrics"].as_str().expect("metrics address");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent.get(&format!("http://{addr}/metrics")).call().unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    parse(&response.body_mut().read_to_string().unwrap())
}

/// Parses the text exposition format (version 0.0.4), strictly enough to catch a malformed line.
fn parse(text: &str) -> Scrape {
    let mut scrape = Scrape {
        samples: BTreeMap::new(),
        types: BTreeMap::new(),
    };
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            scrape.types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let name = series.split('{').next().unwrap();
        assert!(
            (name.starts_with("egressd_") || name.starts_with("process_"))
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "metric name {name:?}"
        );
        if let Some(labels) = series.strip_prefix(name)
            && !labels.is_empty()
        {
            assert!(
                labels.starts_with('{') && labels.ends_with('}'),
                "labels of {line:?}"
            );
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value of {line:?}"));
        scrape.samples.insert(series.to_owned(), value);
    }
    scrape
}

#[test]
fn a_scrape_parses_and_its_counters_move_with_traffic() {
    let origin = Origin::start(Behaviour::Answer);
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "policy.toml",
        &loopback_policy(&[origin.addr.port()], ""),
    );
    let sidecar = Sidecar::start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    let before = scrape(&sidecar);
    let sha = sidecar.ready["policy"]["sha256"].as_str().unwrap();
    assert_eq!(
        before.get(&format!(
            "egressd_policy_info{{sha256=\"{sha}\",mode=\"enforce\"}}"
        )),
        1.0
    );

    let url = format!("http://origin.test:{}/", origin.addr.port());
    for _ in 0..3 {
        assert_eq!(Client::Rust.get(sidecar.proxy(), &url).status, 200);
    }
    let tunnel = Client::Rust.tunnel_get(sidecar.proxy(), &url);
    assert_eq!(tunnel.status, 200);
    assert_eq!(
        Client::Rust
            .get(sidecar.proxy(), "http://example.org/")
            .status,
        403
    );
    let dns: std::net::SocketAddr = sidecar.ready["dns"].as_str().unwrap().parse().unwrap();
    assert_eq!(stub_query(dns, "example.org.").rcode, "REFUSED");
    assert_eq!(stub_query(dns, "origin.test.").rcode, "NOERROR");

    // A request or tunnel is counted when its record is dropped, just after the client has its
    // answer: scrape until the last of them is in (or the patience runs out, and the asserts
    // below say what is missing).
    let counted = [
        (
            r#"egressd_requests_total{decision="allow",reason="allow-rule",kind="request"}"#,
            3.0,
        ),
        (
            r#"egressd_requests_total{decision="allow",reason="allow-rule",kind="tunnel"}"#,
            1.0,
        ),
        (
            r#"egressd_requests_total{decision="deny",reason="default-deny",kind="request"}"#,
            1.0,
        ),
    ];
    let deadline = std::time::Instant::now() + PATIENCE;
    let after = loop {
        let after = scrape(&sidecar);
        let settled = counted
            .iter()
            .all(|(series, n)| after.get(series) - before.get(series) >= *n)
            && after.get("egressd_open_tunnels") == 0.0;
        if settled || std::time::Instant::now() > deadline {
            break after;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let moved = |series: &str| after.get(series) - before.get(series);
    for (name, kind) in [
        ("egressd_requests_total", "counter"),
        ("egressd_dns_queries_total", "counter"),
        ("egressd_open_connections", "gauge"),
        ("egressd_open_tunnels", "gauge"),
        ("egressd_proxied_bytes_total", "counter"),
        ("egressd_upstream_connect_duration_seconds", "histogram"),
        ("egressd_dns_lookup_duration_seconds", "histogram"),
        ("egressd_reloads_total", "counter"),
        ("egressd_policy_info", "gauge"),
        ("egressd_audit_events_lost_total", "counter"),
    ] {
        assert_eq!(
            after.types.get(name).map(String::as_str),
            Some(kind),
            "{name}"
        );
    }
    assert_eq!(
        moved(r#"egressd_requests_total{decision="allow",reason="allow-rule",kind="request"}"#),
        3.0
    );
    assert_eq!(
        moved(r#"egressd_requests_total{decision="allow",reason="allow-rule",kind="tunnel"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"egressd_requests_total{decision="deny",reason="default-deny",kind="request"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"egressd_dns_queries_total{rcode="REFUSED",decision="deny"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"egressd_dns_queries_total{rcode="NOERROR",decision="allow"}"#),
        1.0
    );
    assert!(
        moved(r#"egressd_proxied_bytes_total{direction="down"}"#) >= (4 * ORIGIN_BODY.len()) as f64
    );
    // The absolute-form requests share a pooled origin connection; the tunnel has its own.
    assert!(moved("egressd_upstream_connect_duration_seconds_count") >= 2.0);
    assert_eq!(after.get("egressd_open_tunnels"), 0.0);
    assert_eq!(after.get("egressd_audit_events_lost_total"), 0.0);

    // A reload is counted, and the policy info follows it.
    std::fs::write(
        &policy,
        loopback_policy(&[origin.addr.port()], "").replacen(
            "action = \"deny\"",
            "action = \"deny\"\nmode = \"report\"",
            1,
        ),
    )
    .unwrap();
    sidecar.signal(Signal::SIGHUP);
    sidecar.stderr.wait_for("SIGHUP: policy reloaded", 1);
    let reloaded = scrape(&sidecar);
    assert_eq!(reloaded.get(r#"egressd_reloads_total{result="ok"}"#), 1.0);
    let info: Vec<&String> = reloaded
        .samples
        .keys()
        .filter(|k| k.starts_with("egressd_policy_info"))
        .collect();
    assert_eq!(info.len(), 1, "{info:?}");
    assert!(info[0].contains("mode=\"report\""), "{info:?}");
}

#[test]
fn metrics_listen_is_loopback_only_without_the_danger_flag_and_serves_only_metrics() {
    let refused = Sidecar::try_start(&["--no-dns", "--metrics-listen", "0.0.0.0:0"]).err();
    let refused = refused.expect("a non-loopback metrics address is refused");
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("--metrics-listen"), "{refused:?}");

    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.toml", &loopback_policy(&[9], ""));
    let sidecar = Sidecar::start(&["--policy", policy.to_str().unwrap(), "--no-dns"]);
    assert!(sidecar.ready["metrics"].is_null(), "{}", sidecar.ready);
    let on = Sidecar::start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--no-dns",
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    let addr = on.ready["metrics"].as_str().unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let other = agent.get(&format!("http://{addr}/")).call().unwrap();
    assert_eq!(other.status(), 404);
}

/// The text of one scrape; `authorization` is sent as `Authorization` when given.
fn scrape_text(addr: &str, authorization: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.get(&format!("http://{addr}/metrics"));
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    let mut response = request.call().unwrap();
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

/// Before any traffic: every family is there, with zeros; the build and the process are named.
#[test]
fn every_family_is_present_from_the_start_with_build_and_process_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.toml", &loopback_policy(&[9], ""));
    let sidecar = Sidecar::start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    let first = scrape(&sidecar);
    for (name, kind) in [
        ("egressd_requests_total", "counter"),
        ("egressd_dns_queries_total", "counter"),
        ("egressd_open_connections", "gauge"),
        ("egressd_open_tunnels", "gauge"),
        ("egressd_proxied_bytes_total", "counter"),
        ("egressd_upstream_connect_duration_seconds", "histogram"),
        ("egressd_dns_lookup_duration_seconds", "histogram"),
        ("egressd_reloads_total", "counter"),
        ("egressd_policy_info", "gauge"),
        ("egressd_build_info", "gauge"),
        ("egressd_audit_events_lost_total", "counter"),
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
    ] {
        assert_eq!(
            first.types.get(name).map(String::as_str),
            Some(kind),
            "{name}"
        );
        assert!(
            first.samples.keys().any(|s| s.starts_with(name)),
            "{name} has no sample"
        );
    }
    assert!(first.samples.contains_key(
        "egressd_requests_total{decision=\"deny\",reason=\"default-deny\",kind=\"tunnel\"}"
    ));
    let build: Vec<&String> = first
        .samples
        .keys()
        .filter(|s| s.starts_with("egressd_build_info{"))
        .collect();
    assert_eq!(build.len(), 1, "{build:?}");
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert!(build[0].contains(&version), "{build:?}");
    assert!(build[0].contains(",commit=\""), "{build:?}");
    assert!(first.get("process_resident_memory_bytes") > 0.0);
    assert!(first.get("process_open_fds") >= 3.0);
    let started = first.get("process_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(started > 1.6e9 && started <= now + 1.0, "{started}");
}

/// `--metrics-require-credential`: only a scraper with the sandbox's proxy credential reads the
/// counters and policy hash; others get 401 and nothing of the metrics.
#[test]
fn the_metrics_endpoint_can_require_the_proxy_credential() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.toml", &loopback_policy(&[9], ""));
    let sidecar = Sidecar::start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--no-dns",
        "--proxy-credential-default",
        "--metrics-listen",
        "127.0.0.1:0",
        "--metrics-require-credential",
    ]);
    let addr = sidecar.ready["metrics"].as_str().unwrap();
    let secret = secret_of(&sidecar.ready);
    let sha = sidecar.ready["policy"]["sha256"].as_str().unwrap();
    for authorization in [
        None,
        Some(basic(&altered(&secret))),
        Some("Bearer x".to_owned()),
    ] {
        let (status, body) = scrape_text(addr, authorization.as_deref());
        assert_eq!(status, 401, "{authorization:?}: {body}");
        assert!(!body.contains(sha) && !body.contains(&secret), "{body}");
    }
    let (status, body) = scrape_text(addr, Some(&basic(&secret)));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(sha), "{body}");

    let refused = Sidecar::try_start(&[
        "--no-dns",
        "--no-proxy-credential",
        "--metrics-listen",
        "127.0.0.1:0",
        "--metrics-require-credential",
    ])
    .err()
    .expect("no credential to require");
    assert_eq!(refused.code, 2, "{refused:?}");
}

/// Prometheus's own checker on a real scrape (Debian's `prometheus` package has promtool).
#[test]
#[ignore = "needs promtool (Debian package prometheus): run by .ci/run"]
fn promtool_accepts_the_exposition() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.toml", &loopback_policy(&[9], ""));
    let sidecar = Sidecar::start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    let (status, text) = scrape_text(sidecar.ready["metrics"].as_str().unwrap(), None);
    assert_eq!(status, 200);
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool on PATH");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn scrapes_are_served_while_a_slowloris_holds_the_endpoint() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.toml", &loopback_policy(&[9], ""));
    let sidecar = Sidecar::start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--no-dns",
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    let addr: std::net::SocketAddr = sidecar.ready["metrics"].as_str().unwrap().parse().unwrap();
    // Far more connections than the endpoint serves at once, each holding half a request head.
    let slow: Vec<std::net::TcpStream> = (0..100)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: egressd\r\n")
                .unwrap();
            stream
        })
        .collect();
    for _ in 0..3 {
        let scraped = scrape(&sidecar);
        assert_eq!(scraped.types["egressd_open_connections"], "gauge");
    }
    drop(slow);
}
