//! `egressd completions` and `egressd man`: generated from the same clap definitions as `--help`.

use crate::util::run;

const SUBCOMMANDS: &[&str] = &[
    "run",
    "pf",
    "nft",
    "sbpl",
    "check",
    "explain",
    "suggest",
    "completions",
    "man",
];

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let r = run(&["completions", shell]);
        assert_eq!(r.code, 0, "{shell}: {r:?}");
        assert!(r.stdout.contains("egressd"), "{shell}");
        assert!(r.stdout.contains("suggest"), "{shell}");
    }
    let bash = run(&["completions", "bash"]);
    assert!(
        bash.stdout.contains("run") && bash.stdout.contains("--policy"),
        "{bash:?}"
    );
}

#[test]
fn unknown_shell_is_bad_input() {
    let r = run(&["completions", "tcsh"]);
    assert_eq!(r.code, 2, "{r:?}");
}

#[test]
fn man_page_names_every_subcommand_and_their_flags() {
    let r = run(&["man"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with(".ie"), "roff: {r:?}");
    assert!(r.stdout.contains(".TH egressd 1"), "{}", r.stdout);
    for sub in SUBCOMMANDS {
        let heading = format!(".SH \"EGRESSD {}\"", sub.to_uppercase());
        assert!(r.stdout.contains(&heading), "{heading}");
    }
    // roff escapes '-' as "\-".
    for flag in [
        "policy",
        "sandbox\\-id",
        "audit\\-log",
        "print\\-schema",
        "json",
        "resolved",
        "min\\-count",
        "group",
    ] {
        assert!(
            r.stdout.contains(&format!("\\fB\\-\\-{flag}\\fR")),
            "--{flag}"
        );
    }
}
