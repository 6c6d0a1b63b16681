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

#[test]
fn man_page_has_name_exit_status_environment_files_and_see_also() {
    let r = run(&["man"]);
    assert_eq!(r.code, 0, "{r:?}");
    let page = &r.stdout;
    let name = page
        .split(".SH NAME\n")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap();
    assert_eq!(
        name,
        "egressd \\- the egress\\-control sidecar for sandboxes"
    );
    for heading in [
        ".SH \"EXIT STATUS\"",
        ".SH ENVIRONMENT",
        ".SH FILES",
        ".SH \"SEE ALSO\"",
    ] {
        assert!(page.contains(heading), "{heading}");
    }
    let section = |heading: &str| -> String {
        let rest = page.split(heading).nth(1).unwrap();
        rest.split("\n.SH ").next().unwrap().to_owned()
    };
    // Every code src/exit.rs defines; the process uses no other.
    let exit = section(".SH \"EXIT STATUS\"");
    for code in 0..=4 {
        assert!(
            exit.contains(&format!(".TP\n{code}\n")),
            "exit {code}: {exit}"
        );
    }
    // Every EGRESSD_* variable the flags read, found in their source.
    let environment = section(".SH ENVIRONMENT");
    let source = include_str!("../src/cli/run.rs");
    let vars: Vec<&str> = source
        .split("\"EGRESSD_")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap())
        .collect();
    assert!(vars.len() > 20, "{vars:?}");
    for var in vars {
        let roff = format!("\\fBEGRESSD_{}\\fR", var.replace('-', "\\-"));
        assert!(environment.contains(&roff), "EGRESSD_{var}: {environment}");
    }
    assert!(section(".SH FILES").contains("ready"));
    assert!(section(".SH \"SEE ALSO\"").contains("docs/launcher.md"));
}
