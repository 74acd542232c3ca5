//! The `/scale` subresource of ModelDeployments and Deployments in the fake: it reads and writes
//! `.spec.replicas`, reports `.status.replicas` and the pod selector, and counts as a spec change.

use k8s_openapi::api::apps::v1::Deployment;
use kandle_crds::ModelDeployment;
use kandle_tests::fixtures::{self, NAMESPACE};
use kandle_tests::FakeApiServer;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn model_deployment_scale_reads_status_and_writes_spec_replicas() {
    let server = FakeApiServer::start()
        .await
        .expect("fake API server starts");
    let api: Api<ModelDeployment> = Api::namespaced(server.client().expect("client"), NAMESPACE);
    api.create(
        &PostParams::default(),
        &fixtures::model_deployment("minilm", 2),
    )
    .await
    .expect("create");
    server
        .set_status::<ModelDeployment>(NAMESPACE, "minilm", json!({"replicas": 2, "readyReplicas": 2, "updatedReplicas": 2, "selector": "kandle.dev/model-deployment=minilm"}))
        .expect("status");

    let scale = api.get_scale("minilm").await.expect("get scale");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(2));
    let status = scale.status.expect("scale status");
    assert_eq!(status.replicas, 2);
    assert_eq!(
        status.selector.as_deref(),
        Some("kandle.dev/model-deployment=minilm")
    );

    let scaled = api
        .patch_scale(
            "minilm",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .expect("patch scale");
    assert_eq!(scaled.spec.and_then(|s| s.replicas), Some(5));
    let md = api.get("minilm").await.expect("get");
    assert_eq!(md.spec.replicas, 5);
    assert_eq!(md.metadata.generation, Some(2));
    assert_eq!(
        md.status.map(|s| s.ready_replicas),
        Some(2),
        "scaling leaves status alone"
    );
}

#[tokio::test]
async fn deployment_scale_reports_the_label_selector_and_refuses_stale_replaces() {
    let server = FakeApiServer::start()
        .await
        .expect("fake API server starts");
    let api: Api<Deployment> = Api::namespaced(server.client().expect("client"), NAMESPACE);
    api.create(&PostParams::default(), &fixtures::deployment("web", "x:1"))
        .await
        .expect("create");

    let mut scale = api.get_scale("web").await.expect("get scale");
    assert_eq!(
        scale.status.as_ref().and_then(|s| s.selector.as_deref()),
        Some("app=web")
    );
    let stale = scale.clone();
    scale.spec.get_or_insert_default().replicas = Some(3);
    api.replace_scale("web", &PostParams::default(), &scale)
        .await
        .expect("replace scale");
    assert_eq!(
        api.get("web")
            .await
            .expect("get")
            .spec
            .and_then(|s| s.replicas),
        Some(3)
    );

    let err = api
        .replace_scale("web", &PostParams::default(), &stale)
        .await
        .expect_err("stale");
    assert!(matches!(err, kube::Error::Api(s) if s.code == 409));
}
