//! Small, valid objects for tests of the fake API server itself: a Deployment, a Service and a
//! ModelDeployment, each named by the caller. Tests of the operator use the operator's own
//! builders instead.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kandle_crds::ModelDeployment;
use serde_json::json;

/// Namespace the fixtures live in.
pub const NAMESPACE: &str = "default";

/// A one-container Deployment running `image`, selecting `app=<name>`.
pub fn deployment(name: &str, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name, "namespace": NAMESPACE, "labels": { "app": name } },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "runtime", "image": image }] }
            }
        }
    }))
    .expect("the fixture is a valid object")
}

/// A ClusterIP Service on port 80 selecting `app=<name>`.
pub fn service(name: &str) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": name, "namespace": NAMESPACE, "labels": { "app": name } },
        "spec": { "selector": { "app": name }, "ports": [{ "name": "http", "port": 80, "targetPort": 8080 }] }
    }))
    .expect("the fixture is a valid object")
}

/// A CPU ModelDeployment serving `name` from a host path, with `replicas` replicas.
pub fn model_deployment(name: &str, replicas: i32) -> ModelDeployment {
    let mut md = ModelDeployment::new(
        name,
        serde_json::from_value(json!({
            "model": { "name": name, "source": { "image": { "reference": "registry.example.com/models/minilm:v1" } } },
            "replicas": replicas,
        }))
        .expect("the fixture spec matches the ModelDeployment schema"),
    );
    md.metadata.namespace = Some(NAMESPACE.to_string());
    md
}

/// The image of a Deployment's first container.
pub fn container_image(d: &Deployment) -> Option<&str> {
    d.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .image
        .as_deref()
}
