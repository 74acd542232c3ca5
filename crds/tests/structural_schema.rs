//! The generated schema is one the API server accepts: structural, with typed fields, valid
//! defaults, well-formed list maps and compiling CEL rules. The walker itself is checked against
//! small schemas that break each rule, so a future change to the types cannot slip past it.

mod support;

use serde_json::{json, Value};
use support::{open_api_schema, structural::problems};

#[test]
fn generated_schema_is_structural_and_accepted_by_the_api_server() {
    let found = problems(&open_api_schema());
    assert!(
        found.is_empty(),
        "the CRD schema would be refused:\n{}",
        found.join("\n")
    );
}

#[test]
fn conditions_merge_by_type_under_server_side_apply() {
    let conditions = &open_api_schema()["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
    let required = conditions["items"]["required"]
        .as_array()
        .expect("condition items list required fields");
    assert!(
        required.contains(&json!("type")),
        "condition `type` must be required: {required:?}"
    );
}

fn object_with(field: Value) -> Value {
    json!({ "type": "object", "properties": { "field": field } })
}

fn assert_refused(schema: Value, expected: &str) {
    let found = problems(&schema);
    assert!(
        found.iter().any(|p| p.contains(expected)),
        "expected a problem containing {expected:?}, found {found:?}"
    );
}

#[test]
fn walker_refuses_untyped_fields() {
    assert_refused(
        object_with(json!({ "description": "no type" })),
        "field: every field needs a type",
    );
}

#[test]
fn walker_refuses_references_and_typed_junctors() {
    assert_refused(
        object_with(json!({ "$ref": "#/definitions/x" })),
        "keyword `$ref` is not allowed",
    );
    assert_refused(
        object_with(
            json!({ "type": "string", "anyOf": [{ "type": "string" }, { "type": "integer" }] }),
        ),
        "`anyOf` is only allowed in the int-or-string form",
    );
    assert_refused(
        object_with(json!({ "type": "string", "oneOf": [{ "type": "string" }] })),
        "`oneOf`",
    );
}

#[test]
fn walker_accepts_the_int_or_string_form_only() {
    let good = object_with(json!({
        "x-kubernetes-int-or-string": true,
        "anyOf": [{ "type": "integer" }, { "type": "string" }]
    }));
    assert_eq!(problems(&good), Vec::<String>::new());
    assert_refused(
        object_with(json!({ "x-kubernetes-int-or-string": true, "type": "string" })),
        "must not also set a type",
    );
}

#[test]
fn walker_refuses_properties_with_additional_properties() {
    assert_refused(
        object_with(json!({
            "type": "object",
            "properties": { "a": { "type": "string" } },
            "additionalProperties": { "type": "string" }
        })),
        "mutually exclusive",
    );
}

#[test]
fn walker_refuses_map_lists_with_optional_or_nullable_keys() {
    let list = |key: Value, required: Value| {
        object_with(json!({
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
            "items": { "type": "object", "properties": { "type": key }, "required": required }
        }))
    };
    assert_refused(
        list(json!({ "type": "string" }), json!([])),
        "must be required or defaulted",
    );
    assert_refused(
        list(
            json!({ "type": "string", "nullable": true }),
            json!(["type"]),
        ),
        "must not be nullable",
    );
}

#[test]
fn walker_refuses_defaults_that_break_their_own_schema() {
    assert_refused(
        object_with(json!({ "type": "integer", "minimum": 1, "default": 0 })),
        "default 0 is invalid",
    );
    assert_refused(
        object_with(json!({
            "type": "object",
            "properties": { "a": { "type": "string" } },
            "default": { "b": "pruned" }
        })),
        "is invalid",
    );
    assert_refused(
        object_with(json!({
            "type": "integer",
            "default": 3,
            "x-kubernetes-validations": [{ "rule": "self % 2 == 0", "message": "must be even" }]
        })),
        "must be even",
    );
}

#[test]
fn walker_refuses_cel_rules_that_do_not_compile() {
    assert_refused(
        object_with(json!({
            "type": "integer",
            "x-kubernetes-validations": [{ "rule": "self >", "message": "broken" }]
        })),
        "CEL rule does not compile",
    );
}

#[test]
fn walker_refuses_costly_cel_rules_on_int_or_string_fields() {
    assert_refused(
        object_with(json!({
            "x-kubernetes-int-or-string": true,
            "x-kubernetes-validations": [{ "rule": "string(self).matches('^[0-9]+$')", "message": "digits" }]
        })),
        "use `pattern`, not CEL",
    );
}
