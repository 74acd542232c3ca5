//! `kubectl get md` columns and the /scale subresource point at fields that exist, with the
//! types the API server expects, and that the Rust types actually write.

mod support;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kandle_crds::{ModelDeployment, ModelDeploymentSpec, ModelDeploymentStatus};
use serde_json::Value;
use support::{committed_crd, open_api_schema};

/// The schema node a simple JSONPath such as `.status.canaryWeight` points at.
fn schema_at<'a>(schema: &'a Value, json_path: &str) -> Option<&'a Value> {
    json_path
        .trim_start_matches('.')
        .split('.')
        .try_fold(schema, |node, field| node.get("properties")?.get(field))
}

/// The same path in a serialized object, as a JSON pointer.
fn value_at<'a>(object: &'a Value, json_path: &str) -> Option<&'a Value> {
    object.pointer(&json_path.replace('.', "/"))
}

fn column_types() -> BTreeMap<String, (String, String)> {
    let crd = committed_crd();
    let columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .expect("the CRD declares printer columns")
        .clone();
    columns
        .iter()
        .map(|c| {
            let text = |key: &str| c[key].as_str().unwrap_or_default().to_string();
            (text("name"), (text("jsonPath"), text("type")))
        })
        .collect()
}

#[test]
fn kubectl_get_shows_model_version_readiness_and_rollout() {
    let crd = committed_crd();
    let names: Vec<&str> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .expect("the CRD declares printer columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["Model", "Version", "Ready", "Stable", "Canary", "Weight", "Age"]
    );
}

#[test]
fn printer_columns_point_at_fields_of_their_type() {
    let schema = open_api_schema();
    for (name, (json_path, column_type)) in column_types() {
        if json_path == ".metadata.creationTimestamp" {
            assert_eq!(column_type, "date", "column {name}");
            continue;
        }
        let node = schema_at(&schema, &json_path)
            .unwrap_or_else(|| panic!("column {name}: {json_path} is not in the schema"));
        let field_type = node["type"].as_str().unwrap_or_default();
        let expected = match column_type.as_str() {
            "date" => "string",
            other => other,
        };
        assert_eq!(
            field_type, expected,
            "column {name} ({json_path}) is {column_type}"
        );
    }
}

fn scale() -> Value {
    committed_crd()["spec"]["versions"][0]["subresources"]["scale"].clone()
}

#[test]
fn scale_subresource_reads_spec_and_status_replicas_and_the_selector() {
    let scale = scale();
    let schema = open_api_schema();
    let path = |key: &str| {
        scale[key]
            .as_str()
            .unwrap_or_else(|| panic!("scale.{key} is set"))
            .to_string()
    };
    let (spec_path, status_path, selector_path) = (
        path("specReplicasPath"),
        path("statusReplicasPath"),
        path("labelSelectorPath"),
    );

    assert!(
        spec_path.starts_with(".spec."),
        "specReplicasPath must be under .spec: {spec_path}"
    );
    assert!(
        status_path.starts_with(".status."),
        "statusReplicasPath must be under .status"
    );
    assert!(
        selector_path.starts_with(".status."),
        "labelSelectorPath must be under .status"
    );
    for (json_path, ty) in [
        (&spec_path, "integer"),
        (&status_path, "integer"),
        (&selector_path, "string"),
    ] {
        let node = schema_at(&schema, json_path)
            .unwrap_or_else(|| panic!("{json_path} is not in the schema"));
        assert_eq!(node["type"], ty, "{json_path}");
    }
}

#[test]
fn scale_paths_are_where_the_rust_types_write_replicas_and_selector() {
    let spec: ModelDeploymentSpec = serde_json::from_value(serde_json::json!({
        "model": { "name": "all-MiniLM-L6-v2", "source": { "pvc": { "claimName": "models" } } },
        "replicas": 3
    }))
    .expect("a minimal spec deserializes");
    let md = ModelDeployment {
        metadata: ObjectMeta {
            name: Some("minilm".into()),
            ..ObjectMeta::default()
        },
        spec,
        status: Some(ModelDeploymentStatus {
            replicas: 2,
            selector: Some("kandle.dev/model-deployment=minilm".into()),
            ..ModelDeploymentStatus::default()
        }),
    };
    let object = serde_json::to_value(&md).expect("a ModelDeployment serializes");
    let scale = scale();
    let at = |key: &str| {
        value_at(
            &object,
            scale[key].as_str().expect("scale paths are strings"),
        )
        .cloned()
    };
    assert_eq!(at("specReplicasPath"), Some(Value::from(3)));
    assert_eq!(at("statusReplicasPath"), Some(Value::from(2)));
    assert_eq!(
        at("labelSelectorPath"),
        Some(Value::from("kandle.dev/model-deployment=minilm"))
    );
}
