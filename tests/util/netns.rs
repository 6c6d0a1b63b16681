//! Network namespaces: a test re-runs itself inside a fresh namespace where only loopback exists,
//! so LAN destinations can be real listeners and even a fail-open bug sends nothing out.

use std::process::Command;

/// Set in the environment of a test binary re-run by [`in_netns`] inside its namespace.
const INSIDE: &str = "EGRESSD_TEST_IN_NETNS";

/// Runs `scenario` inside a fresh network namespace where only `lo` is up and `addrs` are added
/// to it. `test` is the calling test's full name (`module::name`): outside, this binary runs that
/// one test again under `unshare --net` (root, util-linux and iproute2) and asserts it passed;
/// inside, it checks the namespace holds nothing but loopback and runs `scenario`. A machine where
/// the namespace cannot be made fails the test loudly, never skips it, so tests that call this are
/// ignored with that need and run by `.ci/run`.
pub fn in_netns(test: &str, addrs: &[&str], scenario: impl FnOnce()) {
    if std::env::var_os(INSIDE).is_some() {
        assert_only_loopback();
        scenario();
        return;
    }
    let mut script = String::from("set -e; ip link set lo up; ");
    for addr in addrs {
        // An IPv6 address is tentative until duplicate address detection ends, and binding it
        // fails meanwhile (EADDRNOTAVAIL, seen under load): there is nothing to detect here.
        let flags = if addr.contains(':') { " nodad" } else { "" };
        script.push_str(&format!("ip addr add {addr} dev lo{flags}; "));
    }
    rerun_in_namespaces(test, &["--net"], &script, &[(INSIDE, "1".as_ref())]);
}

/// [`in_netns`], in a private mount namespace too, with cgroup v2 mounted at `/sys/fs/cgroup`
/// (where nft resolves `socket cgroupv2` paths) and ping sockets open to every group (iputils
/// `ping` as any uid, for ICMP probes). Cgroups the scenario makes are in the host's hierarchy:
/// it removes them ([`TestCgroups`]).
pub fn in_netns_with_cgroup2(test: &str, addrs: &[&str], scenario: impl FnOnce()) {
    if std::env::var_os(INSIDE).is_some() {
        assert_only_loopback();
        assert!(
            std::path::Path::new("/sys/fs/cgroup/cgroup.procs").exists(),
            "{INSIDE} is set but cgroup v2 is not mounted at /sys/fs/cgroup"
        );
        scenario();
        return;
    }
    let mut script = String::from(
        "set -e; ip link set lo up; echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range; \
         mount -t cgroup2 none /sys/fs/cgroup; ",
    );
    for addr in addrs {
        let flags = if addr.contains(':') { " nodad" } else { "" };
        script.push_str(&format!("ip addr add {addr} dev lo{flags}; "));
    }
    rerun_in_namespaces(
        test,
        &["--net", "--mount"],
        &script,
        &[(INSIDE, "1".as_ref())],
    );
}

/// Cgroups below `/sys/fs/cgroup/egressd-test-PID/`, removed (with that directory) when dropped.
pub struct TestCgroups {
    root: std::path::PathBuf,
    /// Each cgroup's path relative to the cgroup2 mount, as `egressd nft --cgroup` takes it.
    pub relative: Vec<String>,
}

impl TestCgroups {
    /// Makes `names` below a directory of this test's own.
    pub fn make(names: &[&str]) -> Self {
        let base = format!("egressd-test-{}", std::process::id());
        let root = std::path::Path::new("/sys/fs/cgroup").join(&base);
        std::fs::create_dir(&root).unwrap();
        let mut relative = Vec::new();
        for name in names {
            std::fs::create_dir(root.join(name)).unwrap();
            relative.push(format!("{base}/{name}"));
        }
        Self { root, relative }
    }

    /// A wrapper for [`super::Prober::run`] that moves the probe into cgroup `i` before it drops
    /// to its uid.
    pub fn enter(&self, i: usize) -> Vec<String> {
        let procs = std::path::Path::new("/sys/fs/cgroup")
            .join(&self.relative[i])
            .join("cgroup.procs");
        vec![
            "sh".into(),
            "-c".into(),
            format!("echo $$ > {} && exec \"$@\"", procs.display()),
            "sh".into(),
        ]
    }
}

impl Drop for TestCgroups {
    fn drop(&mut self) {
        for relative in &self.relative {
            let name = relative.rsplit('/').next().unwrap_or_default();
            let _ = std::fs::remove_dir(self.root.join(name));
        }
        let _ = std::fs::remove_dir(&self.root);
    }
}

/// Runs the test named `test` of this binary again under `unshare UNSHARE...`, after `script`
/// (shell commands that end with `;`) in the new namespaces, with `env` set; asserts it passed.
/// The test is run with `--include-ignored`: tests that need namespaces are ignored on the plain
/// command for that.
pub(super) fn rerun_in_namespaces(
    test: &str,
    unshare: &[&str],
    script: &str,
    env: &[(&str, &std::ffi::OsStr)],
) {
    let out = Command::new("unshare")
        .args(unshare)
        .args(["--", "sh", "-c", &format!("{script} exec \"$0\" \"$@\"")])
        .arg(std::env::current_exe().unwrap())
        .args([
            test,
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .envs(env.iter().copied())
        .output()
        .expect("unshare (util-linux) runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the namespace test {test} failed (it needs root, util-linux unshare and iproute2):\n{text}"
    );
    assert!(
        text.contains("1 passed"),
        "{test} did not run inside its namespaces:\n{text}"
    );
}

/// Panics unless this process's network namespace has no interface but loopback (and the
/// address-less fallback tunnel devices some kernels put in every new namespace): the environment
/// marker alone must not let a scenario run in the host's namespace.
pub(super) fn assert_only_loopback() {
    const FALLBACK: &[&str] = &[
        "sit0", "tunl0", "ip6tnl0", "gre0", "gretap0", "erspan0", "ip6gre0", "ip_vti0", "ip6_vti0",
    ];
    let dev = std::fs::read_to_string("/proc/self/net/dev").unwrap();
    let others: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|line| Some(line.split_once(':')?.0.trim()))
        .filter(|name| *name != "lo" && !FALLBACK.contains(name))
        .collect();
    assert!(
        others.is_empty(),
        "{INSIDE} is set but this is not a fresh network namespace: {others:?}"
    );
}
