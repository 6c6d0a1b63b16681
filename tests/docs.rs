//! The documentation states what the code does: checked here so the two cannot drift apart.

use crate::util::repo;

#[test]
fn policy_reference_lists_every_special_range_with_its_rfc() {
    let doc = std::fs::read_to_string(repo("docs/policy.md")).unwrap();
    for range in &policy::SPECIAL_RANGES {
        let row = format!("| `{}` | `{}` | {} |", range.net, range.name, range.rfc);
        assert!(doc.contains(&row), "docs/policy.md lacks the row {row}");
    }
}

#[test]
fn policy_reference_shows_the_builtin_policy() {
    let doc = std::fs::read_to_string(repo("docs/policy.md")).unwrap();
    let settings: String = policy::BUILTIN_POLICY
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        doc.contains(settings.trim()),
        "docs/policy.md does not show the built-in policy:\n{settings}"
    );
}

#[test]
fn shipped_examples_are_valid() {
    for entry in std::fs::read_dir(repo("docs/examples")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if let Err(e) = policy::Policy::parse(&text, &path.display().to_string()) {
            panic!("{e}");
        }
    }
}
