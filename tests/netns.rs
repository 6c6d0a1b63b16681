//! Tests with non-loopback destinations. Each runs itself again inside a fresh network namespace
//! (only `lo`, with 10.99.0.1 and fd00::99 added), so even a fail-open bug sends nothing out; that
//! takes root, hence ignored on the plain command. Each scenario runs with the Rust test client,
//! and again with curl.

use std::net::Ipv4Addr;

use crate::util::*;

const LAN_V4: &str = "10.99.0.1";
const LAN_V6: &str = "fd00::99";

/// Runs `scenario` as the test `netns::NAME` inside a namespace with the LAN addresses.
fn in_namespace(name: &str, scenario: impl FnOnce()) {
    in_netns(
        &format!("netns::{name}"),
        &[&format!("{LAN_V4}/32"), &format!("{LAN_V6}/128")],
        scenario,
    );
}

#[test]
#[ignore = "needs root and network namespaces: run by .ci/run"]
fn lan_answers_are_refused_without_a_connection_attempt() {
    in_namespace(
        "lan_answers_are_refused_without_a_connection_attempt",
        || lan_answers_are_refused(Client::Rust),
    );
}

#[test]
#[ignore = "needs root, network namespaces and curl: run by .ci/run"]
fn lan_answers_are_refused_without_a_connection_attempt_with_curl() {
    in_namespace(
        "lan_answers_are_refused_without_a_connection_attempt_with_curl",
        || lan_answers_are_refused(Client::Curl),
    );
}

fn lan_answers_are_refused(client: Client) {
    let v4 = Origin::bind(format!("{LAN_V4}:8080").parse().unwrap(), Behaviour::Answer);
    let v6 = Origin::bind(
        format!("[{LAN_V6}]:8080").parse().unwrap(),
        Behaviour::Answer,
    );
    let dns = FakeDns::start(&[("lan.test", LAN_V4.parse::<Ipv4Addr>().unwrap())], false);
    let dir = tempfile::tempdir().unwrap();
    let allow_all_names = format!(
        "version = 1\n[defaults]\naction = \"allow\"\nports = \"any\"\n[[allow]]\nhost = \"lan.test\"\nports = \"any\"\n\
         [dns]\nupstreams = [\"{}\"]\n",
        dns.addr
    );
    let policy = write(dir.path(), "policy.toml", &allow_all_names);
    let sidecar = Sidecar::start(&["--policy", policy.to_str().unwrap()]);
    for host in lan_hosts(LAN_V4, LAN_V6) {
        let url = format!("http://{host}:8080/");
        let r = client.get(sidecar.proxy(), &url);
        assert_eq!(r.status, 403, "{url}: {r:?}");
        assert!(
            r.headers.contains("x-egressd-reason: special-range"),
            "{url}: {r:?}"
        );
    }
    // The LAN address as one integer: malformed as written (parsers disagree on it); curl
    // rewrites it to dotted decimal itself, and then it is the special range it names.
    let r = client.get(sidecar.proxy(), "http://167969537:8080/");
    let (status, reason) = match client {
        Client::Rust => (400, "malformed-target"),
        Client::Curl => (403, "special-range"),
    };
    assert_eq!(r.status, status, "{r:?}");
    assert!(
        r.headers.contains(&format!("x-egressd-reason: {reason}")),
        "{r:?}"
    );
    let tunnel = client.tunnel_get(sidecar.proxy(), "http://lan.test:8080/");
    assert_ne!(tunnel.status, 200, "{tunnel:?}");
    assert!(
        dns.seen().iter().any(|q| q.starts_with("lan.test.")),
        "the allowed name was resolved"
    );
    assert_eq!(v4.connections.get(), 0, "a LAN listener saw a connection");
    assert_eq!(v6.connections.get(), 0, "a LAN listener saw a connection");

    // Control: with a carve-out the same listener is reachable, so the zero above means refusal.
    let carved = allow_all_names.replace(
        "[dns]",
        &format!("[[danger_carve_out]]\ncidr = \"{LAN_V4}/32\"\nports = [8080]\n[dns]"),
    );
    let policy = write(dir.path(), "carved.toml", &carved);
    drop(sidecar);
    let sidecar = Sidecar::start(&["--policy", policy.to_str().unwrap()]);
    let r = client.get(sidecar.proxy(), "http://lan.test:8080/");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(v4.connections.get(), 1);
}

#[test]
#[ignore = "needs root and network namespaces: run by .ci/run"]
fn builtin_policy_refuses_the_lan() {
    in_namespace("builtin_policy_refuses_the_lan", || {
        builtin_policy_refuses(Client::Rust)
    });
}

#[test]
#[ignore = "needs root, network namespaces and curl: run by .ci/run"]
fn builtin_policy_refuses_the_lan_with_curl() {
    in_namespace("builtin_policy_refuses_the_lan_with_curl", || {
        builtin_policy_refuses(Client::Curl)
    });
}

fn builtin_policy_refuses(client: Client) {
    let origin = Origin::bind(format!("{LAN_V4}:80").parse().unwrap(), Behaviour::Answer);
    let sidecar = Sidecar::start(&[]);
    for host in builtin_refused(LAN_V4, LAN_V6) {
        let url = format!("http://{host}/");
        let r = client.get(sidecar.proxy(), &url);
        assert_eq!(r.status, 403, "{url}: {r:?}");
        assert!(
            r.headers.contains("x-egressd-reason: special-range"),
            "{r:?}"
        );
    }
    assert_eq!(origin.connections.get(), 0);
}

// The example names port 8080; a fresh namespace guarantees it is free.
#[test]
#[ignore = "needs root and network namespaces: run by .ci/run"]
fn shipped_example_policy_allows_its_loopback_origin() {
    in_namespace("shipped_example_policy_allows_its_loopback_origin", || {
        shipped_example_policy(Client::Rust)
    });
}

#[test]
#[ignore = "needs root, network namespaces and curl: run by .ci/run"]
fn shipped_example_policy_allows_its_loopback_origin_with_curl() {
    in_namespace(
        "shipped_example_policy_allows_its_loopback_origin_with_curl",
        || shipped_example_policy(Client::Curl),
    );
}

fn shipped_example_policy(client: Client) {
    let origin = Origin::bind("127.0.0.1:8080".parse().unwrap(), Behaviour::Answer);
    let policy = repo("docs/examples/loopback-origin.toml");
    let sidecar = Sidecar::start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--sandbox-id",
        "readme",
    ]);
    let ok = client.get(sidecar.proxy(), "http://origin.test:8080/");
    assert_eq!((ok.status, ok.body.as_str()), (200, ORIGIN_BODY), "{ok:?}");
    assert_eq!(
        header_value(&origin.seen()[0], "x-egressd-sandbox").as_deref(),
        Some("readme")
    );
    let denied = client.get(sidecar.proxy(), "http://example.org/");
    assert_eq!(denied.status, 403, "{denied:?}");
    assert!(
        denied.headers.contains("x-egressd-reason: default-deny"),
        "{denied:?}"
    );
}
