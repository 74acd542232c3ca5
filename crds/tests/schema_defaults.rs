//! What the API server fills in for fields a user leaves out, and that the Rust types fill in the
//! same values, so the operator never sees a different object than `kubectl get -o yaml` shows.

mod support;

use kandle_crds::ModelDeployment;
use serde_json::{json, Value};
use support::open_api_schema;

fn minimal(spec_extra: Value) -> Value {
    let mut object = json!({
        "apiVersion": "kandle.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": { "name": "minilm" },
        "spec": {
            "model": { "name": "all-MiniLM-L6-v2", "source": { "pvc": { "claimName": "models" } } }
        }
    });
    if let (Some(spec), Some(extra)) = (object["spec"].as_object_mut(), spec_extra.as_object()) {
        spec.extend(extra.clone());
    }
    object
}

/// The object as stored by the API server after defaulting.
fn defaulted(object: &Value) -> Value {
    kube::core::cel::apply_defaults(&open_api_schema(), object)
}

#[test]
fn a_minimal_model_deployment_gets_the_documented_defaults() {
    let spec = &defaulted(&minimal(json!({})))["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["model"]["task"], "embedding");
    assert_eq!(spec["model"]["dtype"], "auto");
    assert_eq!(spec["rollout"]["strategy"], "rolling");
    assert_eq!(spec["revisionHistoryLimit"], 5);
    assert_eq!(spec["paused"], false);
}

#[test]
fn a_gpu_request_defaults_to_one_nvidia_gpu() {
    let object = minimal(json!({ "resources": { "gpu": {} } }));
    let gpu = &defaulted(&object)["spec"]["resources"]["gpu"];
    assert_eq!(gpu["count"], 1);
    assert_eq!(gpu["resourceName"], "nvidia.com/gpu");
}

#[test]
fn canary_analysis_and_autoscaling_get_conservative_defaults() {
    let object = minimal(json!({
        "rollout": { "strategy": "canary", "steps": [{ "weight": 20 }], "analysis": {} },
        "autoscaling": { "maxReplicas": 4, "target": 8 }
    }));
    let spec = &defaulted(&object)["spec"];
    let analysis = &spec["rollout"]["analysis"];
    assert_eq!(analysis["interval"], "1m");
    assert_eq!(analysis["minRequests"], 50);
    assert_eq!(analysis["maxErrorRate"], 0.01);
    assert_eq!(analysis["failureLimit"], 0);
    let autoscaling = &spec["autoscaling"];
    assert_eq!(autoscaling["minReplicas"], 1);
    assert_eq!(autoscaling["metric"], "concurrency");
    assert_eq!(autoscaling["scaleUpStabilization"], "0s");
    assert_eq!(autoscaling["scaleDownStabilization"], "5m");
}

#[test]
fn rust_defaults_equal_schema_defaults() {
    let cases = [
        minimal(json!({})),
        minimal(json!({ "resources": { "gpu": {} } })),
        minimal(json!({
            "rollout": { "strategy": "canary", "steps": [{ "weight": 20 }], "analysis": {} },
            "autoscaling": { "maxReplicas": 4, "target": 8 }
        })),
    ];
    for object in cases {
        let from_rust: ModelDeployment =
            serde_json::from_value(object.clone()).expect("deserializes");
        let from_server: ModelDeployment =
            serde_json::from_value(defaulted(&object)).expect("deserializes");
        assert_eq!(from_rust.spec, from_server.spec, "for {object}");
    }
}
