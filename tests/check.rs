//! `egressd check`.

use crate::util::{repo, run};

#[test]
fn valid_policy_exits_zero_with_a_summary() {
    let path = repo("docs/examples/ci-allowlist.toml");
    let r = run(&["check", path.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("ok: 6 allow, 1 deny, 0 carve-out rules; default deny on ports 443"),
        "{r:?}"
    );
}

#[test]
fn every_invalid_fixture_exits_two_with_line_and_column() {
    let dir = repo("policy/testdata/invalid");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .unwrap()
            .strip_prefix("# expect: ")
            .unwrap();
        let (position, message) = expect.split_once(' ').unwrap();
        let r = run(&["check", path.to_str().unwrap()]);
        assert_eq!(r.code, 2, "{}: {r:?}", path.display());
        assert!(r.stdout.is_empty(), "{r:?}");
        let located = format!("{}:{position}: ", path.display());
        assert!(
            r.stderr.contains(&located) && r.stderr.contains(message),
            "{located}{message}\n{r:?}"
        );
        seen += 1;
    }
    assert!(seen >= 20);
}

#[test]
fn missing_file_exits_two() {
    let r = run(&["check", "/nonexistent/policy.toml"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("cannot read policy /nonexistent/policy.toml"),
        "{r:?}"
    );
}

#[test]
fn print_default_shows_the_builtin_policy_which_checks_clean() {
    let r = run(&["check", "--print-default"]);
    assert_eq!(r.code, 0);
    assert_eq!(r.stdout, policy::BUILTIN_POLICY);
    let dir = std::env::temp_dir().join(format!("egressd-default-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("default.toml");
    std::fs::write(&file, &r.stdout).unwrap();
    let checked = run(&["check", file.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(checked.code, 0, "{checked:?}");
    assert!(
        checked.stdout.contains("default allow on ports any"),
        "{checked:?}"
    );
}

#[test]
fn help_is_complete() {
    let top = run(&["--help"]);
    assert_eq!(top.code, 0);
    for command in ["check", "explain"] {
        assert!(top.stdout.contains(command), "{top:?}");
        let help = run(&[command, "--help"]);
        assert_eq!(help.code, 0, "{help:?}");
        assert!(help.stdout.contains("Exit status"), "{command}: {help:?}");
    }
    let explain = run(&["explain", "--help"]);
    for flag in ["--json", "--port", "--resolved"] {
        assert!(explain.stdout.contains(flag), "{flag}");
    }
}
