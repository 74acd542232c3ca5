//! The `/scale` subresource of ModelDeployments and Deployments: an `autoscaling/v1 Scale` view
//! of `.spec.replicas`, `.status.replicas` and the pod selector, through which `kubectl scale`
//! and HorizontalPodAutoscalers change `.spec.replicas`.

use serde_json::{json, Value};

use super::errors::ApiError;
use super::resources::{ScaleSelector, KINDS};
use super::store::{Key, Store};
use super::writes::{self, PatchType, Scope, Writer};

fn selector_string(selector: ScaleSelector, object: &Value) -> Option<String> {
    match selector {
        ScaleSelector::StatusString => object
            .pointer("/status/selector")?
            .as_str()
            .map(str::to_string),
        ScaleSelector::SpecLabelSelector => {
            let labels = object.pointer("/spec/selector/matchLabels")?.as_object()?;
            let terms: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            Some(terms.join(","))
        }
    }
}

fn selector_kind(key: &Key) -> Result<ScaleSelector, ApiError> {
    KINDS[key.0]
        .scale
        .ok_or_else(|| ApiError::unknown_path(&format!("{}/{}/scale", KINDS[key.0].plural, key.2)))
}

/// The `Scale` view of a stored object.
pub fn scale_of(key: &Key, object: &Value) -> Result<Value, ApiError> {
    let selector = selector_kind(key)?;
    let meta = &object["metadata"];
    let mut status = json!({ "replicas": object.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0) });
    if let Some(s) = selector_string(selector, object) {
        status["selector"] = json!(s);
    }
    Ok(json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": { "replicas": object.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0) },
        "status": status,
    }))
}

/// `GET .../scale`.
pub fn get(store: &Store, key: &Key) -> Result<Value, ApiError> {
    scale_of(key, store.require(key)?)
}

/// `PUT .../scale` and `PATCH .../scale`: the new `Scale` (after the patch, if any) sets
/// `.spec.replicas` of the object.
pub fn write(
    store: &mut Store,
    key: &Key,
    patch: Option<(PatchType, &[u8])>,
    body: &[u8],
    writer: &Writer,
) -> Result<Value, ApiError> {
    selector_kind(key)?;
    let current_scale = get(store, key)?;
    let new_scale = match patch {
        None => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding Scale: {e}")))?,
        Some((PatchType::Json, body)) => {
            let ops: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding JSON patch: {e}")))?;
            let mut scale = current_scale.clone();
            json_patch::patch(&mut scale, &ops)
                .map_err(|e| ApiError::invalid(format!("the JSON patch cannot be applied: {e}")))?;
            scale
        }
        Some((_, body)) => {
            let patch: Value = serde_json::from_slice(body)
                .or_else(|_| serde_yaml::from_slice(body))
                .map_err(|e| ApiError::bad_request(format!("error decoding Scale patch: {e}")))?;
            let mut scale = current_scale.clone();
            json_patch::merge(&mut scale, &patch);
            scale
        }
    };
    let replicas = new_scale
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .filter(|r| *r >= 0)
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "Scale \"{}\" is invalid: spec.replicas: must be a non-negative integer",
                key.2
            ))
        })?;
    let mut merge = json!({ "spec": { "replicas": replicas } });
    if let Some(rv) = new_scale
        .pointer("/metadata/resourceVersion")
        .filter(|_| patch.is_none())
    {
        merge["metadata"] = json!({ "resourceVersion": rv });
    }
    let body = serde_json::to_vec(&merge).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let updated = writes::patch(store, key, PatchType::Merge, &body, writer, Scope::Main)?;
    scale_of(key, &updated)
}
