//! Structural validation of ModelDeployment writes against the CRD's OpenAPI v3 schema, taken
//! from the Rust types (`ModelDeployment::crd()`), as the API server validates a custom
//! resource: a write that breaks the schema is refused with `422 Invalid` naming the field.
//! CEL rules (`x-kubernetes-validations`) are not evaluated here.

use kandle_crds::ModelDeployment;
use kube::CustomResourceExt;
use serde_json::{json, Map, Value};

use super::errors::ApiError;

/// A compiled validator for ModelDeployment objects.
pub struct CrdSchema(jsonschema::Validator);

/// Rewrites the Kubernetes flavour of OpenAPI into JSON Schema: `nullable` admits `null`, and
/// `x-kubernetes-int-or-string` without a type admits an integer or a string.
fn to_json_schema(node: &Value) -> Value {
    let Some(object) = node.as_object() else {
        return node.clone();
    };
    let mut out: Map<String, Value> = object
        .iter()
        .map(|(key, value)| {
            let converted = match (key.as_str(), value) {
                ("properties", Value::Object(props)) => Value::Object(
                    props
                        .iter()
                        .map(|(k, v)| (k.clone(), to_json_schema(v)))
                        .collect(),
                ),
                ("items" | "additionalProperties", _) => to_json_schema(value),
                ("allOf" | "anyOf" | "oneOf", Value::Array(branches)) => {
                    Value::Array(branches.iter().map(to_json_schema).collect())
                }
                _ => value.clone(),
            };
            (key.clone(), converted)
        })
        .collect();
    let flag = |name: &str| object.get(name) == Some(&Value::Bool(true));
    if flag("x-kubernetes-int-or-string") && !out.contains_key("type") && !out.contains_key("anyOf")
    {
        out.insert(
            "anyOf".into(),
            json!([{ "type": "integer" }, { "type": "string" }]),
        );
    }
    if flag("nullable") {
        match out.get_mut("type") {
            Some(Value::String(ty)) => {
                let ty = ty.clone();
                out.insert("type".into(), json!([ty, "null"]));
            }
            _ => {
                if let Some(Value::Array(branches)) = out.get_mut("anyOf") {
                    branches.push(json!({ "type": "null" }));
                }
            }
        }
    }
    Value::Object(out)
}

/// `/spec/rollout/steps/0/weight` as `spec.rollout.steps[0].weight`.
fn field_path(pointer: &str) -> String {
    let mut path = String::new();
    for segment in pointer.split('/').filter(|s| !s.is_empty()) {
        if segment.parse::<usize>().is_ok() {
            path.push_str(&format!("[{segment}]"));
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&segment.replace("~1", "/").replace("~0", "~"));
        }
    }
    path
}

impl CrdSchema {
    /// The schema of the served version of the ModelDeployment CRD.
    pub fn model_deployments() -> Result<Self, String> {
        let crd = ModelDeployment::crd();
        let schema = crd
            .spec
            .versions
            .first()
            .and_then(|v| v.schema.as_ref())
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .ok_or("the ModelDeployment CRD has no openAPIV3Schema")?;
        let raw = serde_json::to_value(schema).map_err(|e| e.to_string())?;
        let mut converted = to_json_schema(&raw);
        if let Some(props) = converted
            .get_mut("properties")
            .and_then(Value::as_object_mut)
        {
            for (field, ty) in [
                ("apiVersion", "string"),
                ("kind", "string"),
                ("metadata", "object"),
            ] {
                props.entry(field).or_insert_with(|| json!({ "type": ty }));
            }
        }
        jsonschema::draft4::new(&converted)
            .map(Self)
            .map_err(|e| e.to_string())
    }

    /// Refuses `object` with every violation named by field, or accepts it.
    pub fn check(&self, name: &str, object: &Value) -> Result<(), ApiError> {
        let violations: Vec<String> = self
            .0
            .iter_errors(object)
            .map(|e| format!("{}: {e}", field_path(e.instance_path().as_str())))
            .collect();
        if violations.is_empty() {
            return Ok(());
        }
        Err(ApiError::invalid(format!(
            "ModelDeployment.kandle.dev \"{name}\" is invalid: {}",
            violations.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_read_like_the_api_server_names_them() {
        assert_eq!(
            field_path("/spec/rollout/steps/0/weight"),
            "spec.rollout.steps[0].weight"
        );
        assert_eq!(field_path(""), "");
    }
}
