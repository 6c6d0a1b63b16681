//! Names the commit egressd is built from, for `egressd_build_info`: `git rev-parse` when the
//! source is a git checkout (a clone or a worktree) and git is installed, else "unknown" (a
//! tarball, a vendored copy). Nothing else is read; no dependency is added for it.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
    };
    // Only this source tree's own checkout counts: a tarball unpacked inside some other
    // repository is not that repository's commit.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").ok();
    let top = git(&["rev-parse", "--show-toplevel"]);
    let own = match (
        manifest.as_deref().map(std::fs::canonicalize),
        top.map(std::fs::canonicalize),
    ) {
        (Some(Ok(manifest)), Some(Ok(top))) => manifest == top,
        _ => false,
    };
    let commit = own
        .then(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .flatten();
    // Built again when HEAD moves: HEAD itself, the branch it names, and packed refs.
    if commit.is_some() {
        for path in ["HEAD", "packed-refs"] {
            if let Some(file) = git(&["rev-parse", "--git-path", path]) {
                println!("cargo:rerun-if-changed={file}");
            }
        }
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
            && let Some(file) = git(&["rev-parse", "--git-path", &branch])
        {
            println!("cargo:rerun-if-changed={file}");
        }
    }
    let commit = commit
        .filter(|c| c.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=EGRESSD_BUILD_COMMIT={commit}");
}
