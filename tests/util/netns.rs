//! Network namespaces: a test re-run inside a fresh namespace where only loopback exists, so
//! LAN destinations can be real listeners and even a fail-open bug sends nothing out.

use std::process::Command;

/// Runs the named test of this binary again inside a fresh network namespace where only `lo` is
/// up and `addrs` are added to it, and asserts it passed. Needs root (CI runs as root): a
/// machine where the namespace cannot be made fails the test loudly, never skips it.
pub fn run_in_netns(test: &str, addrs: &[&str]) {
    let exe = std::env::current_exe().unwrap();
    let mut script = String::from("set -e; ip link set lo up; ");
    for addr in addrs {
        script.push_str(&format!("ip addr add {addr} dev lo; "));
    }
    script.push_str("exec \"$0\" \"$@\"");
    let out = Command::new("unshare")
        .args(["--net", "--", "sh", "-c", &script])
        .arg(exe)
        .args([
            test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("EGRESSD_TEST_IN_NETNS", "1")
        .output()
        .expect("unshare (util-linux) runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the network-namespace test {test} failed (it needs root and util-linux unshare):\n{text}"
    );
    assert!(
        text.contains("1 passed"),
        "{test} did not run inside the namespace:\n{text}"
    );
}

/// Panics unless running inside a namespace made by [`run_in_netns`].
pub fn assert_in_netns() {
    assert!(
        std::env::var_os("EGRESSD_TEST_IN_NETNS").is_some(),
        "this test runs only inside a network namespace; run the test that starts it"
    );
}
