//! The JSON Schema (draft-07) of the policy file, for editors and TOML language servers (taplo,
//! Even Better TOML) and for checking a policy before egressd sees it.
//!
//! It is generated from the parser's own raw structs (`parse.rs`), so a key added there is in the
//! schema too; the two value shapes serde cannot describe (`ports`, `dns.static`) are written
//! here. It checks the file's shape: keys, types, enum values, `version = 1`, one of `host` or
//! `cidr`, port numbers. What it cannot check (a host pattern's grammar, CIDR text, carve-out
//! widths, header templates, IP address text) is left to `egressd check`, the only authority.

use schemars::generate::SchemaSettings;
use schemars::transform::RecursiveTransform;
use schemars::{Schema, SchemaGenerator, json_schema};
use serde_json::Value;

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
