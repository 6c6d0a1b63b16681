//! A small disk: a test re-runs itself in a private mount namespace with a tmpfs of a given size
//! mounted on a fresh directory, to fill it on purpose, and in a fresh network namespace with only
//! loopback (so whatever the scenario starts cannot reach beyond the machine). Nothing outside the
//! namespaces sees either.

use std::path::Path;
use std::process::Command;

/// Set, to the tmpfs directory, in the environment of the test re-run inside its namespace.
const INSIDE: &str = "EGRESSD_TEST_SMALL_DISK";

/// Runs `scenario` with a directory on a tmpfs of `kib` KiB. `test` is the calling test's full
/// name: outside, this binary runs that test again under `unshare --mount` (root, util-linux) with
/// the tmpfs mounted (and in a new network namespace), and asserts it passed; inside, it runs `scenario`. A machine where the
/// namespace cannot be made fails the test loudly, so tests that call this are ignored with that
/// need and run by `.ci/run`.
pub fn with_small_disk(test: &str, kib: u32, scenario: impl FnOnce(&Path)) {
    if let Some(dir) = std::env::var_os(INSIDE) {
        let devices = std::fs::read_to_string("/proc/self/net/dev").unwrap();
        assert!(
            devices
                .lines()
                .skip(2)
                .all(|l| l.trim_start().starts_with("lo:")),
            "not in a network namespace of loopback only:\n{devices}"
        );
        scenario(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "set -e; ip link set lo up; mount -t tmpfs -o size={kib}k egressd-test \"$DISK\"; \
         exec \"$0\" \"$@\""
    );
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--net",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .arg(std::env::current_exe().unwrap())
        .args([
            test,
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("DISK", dir.path())
        .env(INSIDE, dir.path())
        .output()
        .expect("unshare (util-linux) runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the small-disk test {test} failed (it needs root, util-linux unshare and iproute2):\n{text}"
    );
    assert!(
        text.contains("1 passed"),
        "{test} did not run with its disk:\n{text}"
    );
}
