//! A small disk: a test re-runs itself in a private mount namespace with a tmpfs of a given size
//! mounted on a fresh directory, to fill it on purpose, and in a fresh network namespace with only
//! loopback (so whatever the scenario starts cannot reach beyond the machine). Nothing outside the
//! namespaces sees either.

use std::path::Path;

/// Set, to the tmpfs directory, in the environment of the test re-run inside its namespace.
const INSIDE: &str = "EGRESSD_TEST_SMALL_DISK";

/// Runs `scenario` with a directory on a tmpfs of `kib` KiB. `test` is the calling test's full
/// name: outside, this binary runs that test again under `unshare --mount` (root, util-linux) with
/// the tmpfs mounted (and in a new network namespace), and asserts it passed; inside, it runs `scenario`. A machine where the
/// namespace cannot be made fails the test loudly, so tests that call this are ignored with that
/// need and run by `.ci/run`.
pub fn with_small_disk(test: &str, kib: u32, scenario: impl FnOnce(&Path)) {
    if let Some(dir) = std::env::var_os(INSIDE) {
        super::netns::assert_only_loopback();
        scenario(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script =
        format!("set -e; ip link set lo up; mount -t tmpfs -o size={kib}k egressd-test \"$DISK\";");
    let disk = dir.path().as_os_str();
    super::netns::rerun_in_namespaces(
        test,
        &["--mount", "--propagation", "private", "--net"],
        &script,
        &[("DISK", disk), (INSIDE, disk)],
    );
}
