//! Validates objects against the CRD's OpenAPI v3 schema with a JSON Schema (draft 4) validator.
//! The schema is Kubernetes-flavoured, so it is first rewritten into plain JSON Schema; the
//! rewrite keeps exactly the meaning the API server gives those extensions.

use jsonschema::error::ValidationErrorKind;
use jsonschema::paths::LocationSegment;
use serde_json::{json, Map, Value};

/// What to do with fields the schema does not declare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownFields {
    /// Accept them, as the API server does (it prunes them silently).
    Prune,
    /// Report them: in an example, a pruned field is a setting that silently does nothing.
    Reject,
}

/// Rewrites a CRD `openAPIV3Schema` into JSON Schema:
/// - `nullable: true` adds `null` to the node's `type` (and `enum`);
/// - `x-kubernetes-int-or-string: true` without a type becomes `anyOf: [integer, string]`, so
///   `pattern` and friends keep applying to the string form only, as in the API server;
/// - the root gains `apiVersion`, `kind` and `metadata`, which every object has;
/// - with [`UnknownFields::Reject`], objects with `properties` get `additionalProperties: false`.
///
/// `x-kubernetes-validations` (CEL) and `default` are left in place: JSON Schema ignores them;
/// the CEL rules are checked separately.
pub fn from_openapi(schema: &Value, unknown: UnknownFields) -> Value {
    let mut converted = convert_node(schema, unknown);
    if let Some(properties) = converted
        .get_mut("properties")
        .and_then(Value::as_object_mut)
    {
        properties.insert("apiVersion".into(), json!({ "type": "string" }));
        properties.insert("kind".into(), json!({ "type": "string" }));
        properties.insert("metadata".into(), json!({ "type": "object" }));
    }
    converted
}

fn convert_node(node: &Value, unknown: UnknownFields) -> Value {
    let Some(object) = node.as_object() else {
        return node.clone();
    };
    let mut out: Map<String, Value> = Map::new();
    for (key, value) in object {
        let converted = match key.as_str() {
            "properties" => Value::Object(
                value
                    .as_object()
                    .map(|props| {
                        props
                            .iter()
                            .map(|(name, prop)| (name.clone(), convert_node(prop, unknown)))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            "items" | "additionalProperties" | "not" => convert_node(value, unknown),
            "allOf" | "anyOf" | "oneOf" => Value::Array(
                value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|n| convert_node(n, unknown))
                    .collect(),
            ),
            _ => value.clone(),
        };
        out.insert(key.clone(), converted);
    }

    let int_or_string = object.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if int_or_string && !out.contains_key("type") && !out.contains_key("anyOf") {
        out.insert(
            "anyOf".into(),
            json!([{ "type": "integer" }, { "type": "string" }]),
        );
    }
    if object.get("nullable") == Some(&Value::Bool(true)) {
        allow_null(&mut out);
    }
    let preserves_unknown =
        object.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if unknown == UnknownFields::Reject
        && out.contains_key("properties")
        && !out.contains_key("additionalProperties")
        && !preserves_unknown
    {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    Value::Object(out)
}

fn allow_null(node: &mut Map<String, Value>) {
    if let Some(Value::String(ty)) = node.get("type") {
        let ty = ty.clone();
        node.insert("type".into(), json!([ty, "null"]));
    }
    if let Some(Value::Array(values)) = node.get_mut("enum") {
        values.push(Value::Null);
    }
    if let Some(Value::Array(branches)) = node.get_mut("anyOf") {
        branches.push(json!({ "type": "null" }));
    }
}

/// Every schema violation of `object`, rendered as the API server would name it:
/// `spec.rollout.steps[0].weight: 0 is less than the minimum of 1`, and a missing field as
/// `spec.model.name: Required value`.
pub fn violations(schema: &Value, object: &Value, unknown: UnknownFields) -> Vec<String> {
    let converted = from_openapi(schema, unknown);
    let validator = jsonschema::draft4::new(&converted)
        .unwrap_or_else(|e| panic!("the converted CRD schema is not valid JSON Schema: {e}"));
    validator
        .iter_errors(object)
        .map(|error| {
            let mut path: Vec<String> = Vec::new();
            for segment in error.instance_path().segments() {
                match segment {
                    LocationSegment::Property(name) => path.push(name.to_string()),
                    LocationSegment::Index(i) => match path.last_mut() {
                        Some(last) => last.push_str(&format!("[{i}]")),
                        None => path.push(format!("[{i}]")),
                    },
                }
            }
            match error.kind() {
                ValidationErrorKind::Required { property } => {
                    path.push(property.as_str().unwrap_or_default().to_string());
                    format!("{}: Required value", path.join("."))
                }
                _ => format!("{}: {error}", path.join(".")),
            }
        })
        .collect()
}
