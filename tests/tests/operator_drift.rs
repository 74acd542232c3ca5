//! Hand edits of the operator's children do not stick: the next pass puts back what the
//! ModelDeployment says, and a deleted child is recreated. Deleting the ModelDeployment takes
//! every child with it.

use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kandle_operator::testing::{md, TEST_NAMESPACE};
use kandle_tests::fixtures::container_image;
use kandle_tests::harness::Harness;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

#[tokio::test]
async fn a_hand_edited_image_is_put_back() {
    let h = Harness::start().await.expect("harness");
    h.create(&md("minilm").build()).await.expect("create");
    h.converge(TEST_NAMESPACE, "minilm").await.expect("ready");
    let deployment = h.deployments_of("minilm").expect("deployments").remove(0);
    let wanted = container_image(&deployment).expect("image").to_string();

    let deployments: Api<Deployment> = Api::namespaced(h.client.clone(), TEST_NAMESPACE);
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..Default::default()
    };
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "someone/else:latest"}
    ]))
    .expect("json patch");
    let edited = deployments
        .patch(&deployment.name_any(), &edit, &Patch::<()>::Json(ops))
        .await
        .expect("hand edit");
    assert_eq!(container_image(&edited), Some("someone/else:latest"));

    h.reconcile(TEST_NAMESPACE, "minilm")
        .await
        .expect("reconcile");
    let restored = deployments.get(&deployment.name_any()).await.expect("get");
    assert_eq!(container_image(&restored), Some(wanted.as_str()));
    assert!(
        restored
            .managed_fields()
            .iter()
            .all(|m| m.manager.as_deref() != Some("kubectl-edit")),
        "the operator took the field back"
    );
}

#[tokio::test]
async fn a_deleted_service_is_recreated() {
    let h = Harness::start().await.expect("harness");
    h.create(&md("minilm").build()).await.expect("create");
    h.converge(TEST_NAMESPACE, "minilm").await.expect("ready");
    let services: Api<Service> = Api::namespaced(h.client.clone(), TEST_NAMESPACE);
    services
        .delete("minilm", &DeleteParams::default())
        .await
        .expect("delete the Service");
    assert!(services.get_opt("minilm").await.expect("get").is_none());

    h.reconcile(TEST_NAMESPACE, "minilm")
        .await
        .expect("reconcile");
    let service = services.get("minilm").await.expect("the Service is back");
    assert_eq!(
        service
            .spec
            .and_then(|s| s.selector)
            .and_then(|s| s.get("kandle.dev/model-deployment").cloned())
            .as_deref(),
        Some("minilm")
    );
}

#[tokio::test]
async fn deleting_the_model_deployment_removes_every_child() {
    let h = Harness::start().await.expect("harness");
    h.create(&md("minilm").with_replicas(3).build())
        .await
        .expect("create");
    h.create(&md("other").build())
        .await
        .expect("create another");
    h.converge(TEST_NAMESPACE, "minilm").await.expect("ready");
    h.converge(TEST_NAMESPACE, "other")
        .await
        .expect("other ready");
    assert!(!h.deployments_of("minilm").expect("deployments").is_empty());

    h.mds(TEST_NAMESPACE)
        .delete("minilm", &DeleteParams::default())
        .await
        .expect("delete");

    assert!(h.deployments_of("minilm").expect("deployments").is_empty());
    let left = |names: Vec<String>| {
        names
            .into_iter()
            .filter(|n| n.starts_with("minilm"))
            .count()
    };
    let revisions = h
        .server
        .objects::<ControllerRevision>()
        .expect("revisions")
        .iter()
        .map(|r| r.name_any())
        .collect();
    assert_eq!(left(revisions), 0);
    assert!(h
        .server
        .get::<Service>(TEST_NAMESPACE, "minilm")
        .expect("lookup")
        .is_none());
    assert!(h
        .server
        .get::<PodDisruptionBudget>(TEST_NAMESPACE, "minilm")
        .expect("lookup")
        .is_none());
    assert_eq!(
        h.deployments_of("other").expect("deployments").len(),
        1,
        "other models are untouched"
    );
}
