//! ModelDeployment writes to the fake are checked against the CRD schema, as a real API server
//! checks a custom resource: a violation is refused with 422 naming the field, on the main
//! resource and on the status subresource alike.

use kandle_crds::ModelDeployment;
use kandle_tests::fixtures::{self, NAMESPACE};
use kandle_tests::FakeApiServer;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

fn invalid_message(err: kube::Error) -> String {
    match err {
        kube::Error::Api(status) if status.code == 422 => status.message,
        other => panic!("expected 422 Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn schema_violations_are_refused_with_the_field_named() {
    let server = FakeApiServer::start()
        .await
        .expect("fake API server starts");
    let api: Api<ModelDeployment> = Api::namespaced(server.client().expect("client"), NAMESPACE);

    let negative = fixtures::model_deployment("minilm", -1);
    let message = invalid_message(
        api.create(&PostParams::default(), &negative)
            .await
            .expect_err("negative replicas"),
    );
    assert!(message.contains("spec.replicas"), "{message}");

    api.create(
        &PostParams::default(),
        &fixtures::model_deployment("minilm", 1),
    )
    .await
    .expect("valid create");
    let bad_name = json!({"spec": {"model": {"name": "has spaces!"}}});
    let message = invalid_message(
        api.patch("minilm", &PatchParams::default(), &Patch::Merge(bad_name))
            .await
            .expect_err("bad model name"),
    );
    assert!(message.contains("spec.model.name"), "{message}");

    let bad_status = json!({"status": {"replicas": "three"}});
    let message = invalid_message(
        api.patch_status("minilm", &PatchParams::default(), &Patch::Merge(bad_status))
            .await
            .expect_err("bad status"),
    );
    assert!(message.contains("status.replicas"), "{message}");

    let stored = api.get("minilm").await.expect("get");
    assert_eq!(
        (stored.spec.replicas, stored.spec.model.name.as_str()),
        (1, "minilm"),
        "nothing was stored"
    );
}
