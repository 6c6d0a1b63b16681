//! The JSON Schema (draft-07) of the policy file, for editors and TOML language servers (taplo,
//! Even Better TOML) and for checking a policy before egressd sees it.
//!
//! It is generated from the parser's own raw structs (`parse.rs`), so a key added there is in the
//! schema too; the two value shapes serde cannot describe (`ports`, `dns.static`) are written
//! here, and so are the rules that differ per table (`[[allow]]`, `[[deny]]`,
//! `[[danger_carve_out]]` share one struct). It checks every rule `egressd check` enforces that a
//! JSON Schema can express: keys, types, enum values, `version = 1`, one of `host` or `cidr`,
//! port numbers, which keys each table's rules may hold, method tokens, path glob and placeholder
//! text. What it cannot check (a host name's grammar, the Public Suffix List, CIDR and IP address
//! text, carve-out widths, header templates, checks across tables) is listed in docs/policy.md
//! ("What the schema cannot check"), and tests/check.rs runs the invalid fixtures through both.

use schemars::generate::SchemaSettings;
use schemars::transform::RecursiveTransform;
use schemars::{Schema, SchemaGenerator, json_schema};
use serde_json::Value;

use crate::inspect::MIN_PLACEHOLDER_LEN;
use crate::model::RuleKind;

/// A port range as `PortSet` reads it: two numbers around a `-`, spaces allowed.
const RANGE_PATTERN: &str = r"^\s*\+?[0-9]+\s*-\s*\+?[0-9]+\s*$";

/// The policy file's JSON Schema, pretty-printed, with a final newline: what `egressd check
/// --print-schema` prints and docs/policy.schema.json holds.
pub fn json_schema() -> String {
    let generator = SchemaSettings::draft07()
        .with_transform(RecursiveTransform(no_null))
        .into_generator();
    let mut schema = crate::parse::schema(generator);
    schema.insert("title".into(), "egressd policy".into());
    // Serializing a tree of JSON values cannot fail.
    #[allow(clippy::expect_used)]
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    text.push('\n');
    text
}

/// TOML has no null: a value is left out by leaving its key out. Removes the `null` that
/// schemars allows for `Option` fields, so an editor never offers it.
fn no_null(schema: &mut Schema) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if object.get("default") == Some(&Value::Null) {
        object.remove("default");
    }
    if let Some(Value::Array(types)) = object.get_mut("type") {
        types.retain(|t| t != "null");
        if let [only] = types.as_slice() {
            let only = only.clone();
            object.insert("type".into(), only);
        }
    }
    if let Some(Value::Array(any_of)) = object.get_mut("anyOf") {
        any_of.retain(|s| s.get("type").is_none_or(|t| t != "null"));
        if let [only] = any_of.as_slice() {
            let only = only.clone();
            object.remove("anyOf");
            object.insert("allOf".into(), Value::Array(vec![only]));
        }
    }
}

/// One table's rule: the shared rule shape, and what the table forbids.
pub(crate) fn rules(rule: Schema, kind: RuleKind) -> Schema {
    let any_of = |keys: &[&str]| -> Value {
        let required: Vec<Value> = keys
            .iter()
            .map(|key| serde_json::json!({"required": [key]}))
            .collect();
        serde_json::json!({"anyOf": required})
    };
    let inspection = ["inspect", "methods", "paths"];
    let inspected = serde_json::json!({
        "required": ["inspect"],
        "properties": {"inspect": {"const": true}}
    });
    let table = match kind {
        // Inspection and the public-suffix key are for host rules; `methods` and `paths` need
        // `inspect = true`.
        RuleKind::Allow => json_schema!({
            "if": {"required": ["cidr"]},
            "then": {"not": any_of(&["inspect", "methods", "paths", "danger_public_suffix_wildcard"])},
            "dependencies": {
                "methods": inspected,
                "paths": inspected,
                "danger_public_suffix_wildcard": {
                    "required": ["host"],
                    "properties": {"host": {"pattern": r"^\*\."}}
                }
            }
        }),
        RuleKind::Deny => json_schema!({
            "not": any_of(&[&inspection[..], &["danger_public_suffix_wildcard"]].concat())
        }),
        // A carve-out is a CIDR with its ports listed (not "any").
        RuleKind::CarveOut => json_schema!({
            "required": ["cidr", "ports"],
            "properties": {"ports": {"not": {"const": "any"}}},
            "not": any_of(&[&inspection[..], &["danger_public_suffix_wildcard"]].concat())
        }),
    };
    json_schema!({
        "type": "array",
        "items": {"allOf": [rule, table]}
    })
}

/// `host`: a name, or `*.` and a name; `*` nowhere else, no spaces. (The name's own grammar,
/// IDNA included, is the parser's.)
pub(crate) fn host(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "pattern": r"^(\*\.)?[^*\s]+$"})
}

/// `methods`: a non-empty list of upper-case HTTP method tokens.
pub(crate) fn methods(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "With `inspect`: the HTTP methods each request must use (\"GET\", ...).",
        "type": "array",
        "minItems": 1,
        "items": {"type": "string", "pattern": "^[!#$%&'*+.^_`|~0-9A-Z-]+$"}
    })
}

/// `paths`: a non-empty list of globs that start with `/`, without `?`, spaces or controls.
pub(crate) fn paths(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "With `inspect`: path globs each request must match (\"*\" matches any run, \"/\" included).",
        "type": "array",
        "minItems": 1,
        "items": {"type": "string", "pattern": r"^/[^?\s\x00-\x1f\x7f-\x9f]*$"}
    })
}

/// `placeholder`: at least [`MIN_PLACEHOLDER_LEN`] visible ASCII characters.
pub(crate) fn placeholder(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "The value the sandbox is given and sends: at least 8 visible ASCII characters.",
        "type": "string",
        "minLength": MIN_PLACEHOLDER_LEN,
        "pattern": "^[!-~]+$"
    })
}

/// `deny_message`: 1 to 1000 characters, not blank, no control characters but newline and tab.
pub(crate) fn deny_message(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "Your own text, shown in the body of every refusal after egressd's lines (who to ask, a ticket link). Plain text, at most 1000 characters.",
        "type": "string",
        "minLength": 1,
        "maxLength": 1000,
        "allOf": [
            {"pattern": r"\S"},
            {"pattern": r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$"}
        ]
    })
}

/// `ports`: `"any"`, one number, one `"LOW-HIGH"` range, or a non-empty list of numbers and ranges.
pub(crate) fn ports(_: &mut SchemaGenerator) -> Schema {
    let port = json_schema!({"type": "integer", "minimum": 1, "maximum": 65535});
    let range = json_schema!({"type": "string", "pattern": RANGE_PATTERN});
    json_schema!({
        "description": "Ports: \"any\", a number, or a list of numbers and \"LOW-HIGH\" ranges.",
        "anyOf": [
            {"const": "any"},
            port,
            range,
            {"type": "array", "minItems": 1, "items": {"anyOf": [port, range]}}
        ]
    })
}

/// `dns.static`: name = a non-empty list of IP addresses.
pub(crate) fn static_records(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": {"type": "array", "minItems": 1, "items": {"type": "string"}}
    })
}
