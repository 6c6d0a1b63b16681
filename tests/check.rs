//! `egressd check`.

use crate::util::{repo, run};

#[test]
fn valid_policy_exits_zero_with_a_summary() {
    let path = repo("docs/examples/ci-allowlist.toml");
    let r = run(&["check", path.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains(
            "ok: 6 allow, 1 deny, 0 carve-out rules; default deny on ports 443; enforce mode"
        ),
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

#[test]
fn help_never_shows_the_parent_proxys_credential_from_the_environment() {
    let out = crate::util::egressd()
        .args(["run", "--help"])
        .env("EGRESSD_PARENT_PROXY_AUTH", "Basic c2VjcmV0LXZhbHVl")
        .env("EGRESSD_PARENT_PROXY", "127.0.0.1:3128")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("EGRESSD_PARENT_PROXY_AUTH"), "{help}");
    assert!(!help.contains("c2VjcmV0LXZhbHVl"), "{help}");
    // Other values from the environment are still shown, so the test would see the leak.
    assert!(help.contains("127.0.0.1:3128"), "{help}");
}

/// Invalid fixtures whose fault the schema cannot express, as docs/policy.md lists them ("What
/// the schema cannot check"): the one list, read from the docs.
fn semantic_only() -> Vec<String> {
    let doc = std::fs::read_to_string(repo("docs/policy.md")).unwrap();
    let section = doc
        .split("### What the schema cannot check")
        .nth(1)
        .expect("docs/policy.md has the section")
        .split("\n#")
        .next()
        .unwrap();
    let listed: Vec<String> = section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .filter(|name| name.ends_with(".toml"))
        .map(str::to_owned)
        .collect();
    assert!(listed.len() >= 10, "{listed:?}");
    listed
}

/// Not TOML at all: there is nothing to validate.
const NOT_TOML: &[&str] = &["toml-syntax.toml"];

fn schema_validator() -> jsonschema::Validator {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("docs/policy.schema.json")).unwrap())
            .unwrap();
    jsonschema::draft7::new(&schema).unwrap()
}

fn toml_as_json(path: &std::path::Path) -> Result<serde_json::Value, toml::de::Error> {
    toml::from_str(&std::fs::read_to_string(path).unwrap())
}

fn toml_files(dir: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(repo(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn shipped_schema_is_what_print_schema_prints() {
    let r = run(&["check", "--print-schema"]);
    assert_eq!(r.code, 0, "{r:?}");
    let shipped = std::fs::read_to_string(repo("docs/policy.schema.json")).unwrap();
    assert!(
        r.stdout == shipped,
        "docs/policy.schema.json is stale: run `egressd check --print-schema > docs/policy.schema.json`"
    );
}

#[test]
fn examples_and_valid_fixtures_pass_the_schema() {
    let validator = schema_validator();
    let files = [toml_files("docs/examples"), toml_files("policy/testdata")].concat();
    assert!(files.len() >= 5, "{files:?}");
    for path in files {
        let json = toml_as_json(&path).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&json)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
    }
}

#[test]
fn invalid_fixtures_fail_the_schema_unless_semantic_only() {
    let validator = schema_validator();
    let semantic_only = semantic_only();
    for name in &semantic_only {
        assert!(
            repo("policy/testdata/invalid").join(name).exists(),
            "docs/policy.md lists {name}, which is not a fixture"
        );
    }
    let mut failed = 0;
    for path in toml_files("policy/testdata/invalid") {
        let name = path.file_name().unwrap().to_str().unwrap();
        let json = match toml_as_json(&path) {
            Ok(json) => json,
            Err(_) => {
                assert!(NOT_TOML.contains(&name), "{name} is not TOML");
                continue;
            }
        };
        let semantic = semantic_only.iter().any(|n| n == name);
        // Every fixture fails `egressd check` (every_invalid_fixture_exits_two_with_line_and_column).
        // A semantic-only fixture passes the schema: if it starts failing, the schema learned
        // something and docs/policy.md should lose it; any other fixture must fail the schema.
        let errors: Vec<String> = validator
            .iter_errors(&json)
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            errors.is_empty(),
            semantic,
            "{name}: the schema and `egressd check` disagree and docs/policy.md does not list it: \
             schema errors {errors:?}"
        );
        failed += usize::from(!semantic);
    }
    assert!(failed >= 10, "{failed}");
}
