//! Server-side apply in the fake keeps the real rules: create when absent, merge into what
//! exists, remove what the manager applied before but omits now, and refuse to take a field
//! another manager set to a different value unless forced.

use k8s_openapi::api::apps::v1::Deployment;
use kandle_tests::fixtures::container_image;
use kandle_tests::fixtures::NAMESPACE;
use kandle_tests::FakeApiServer;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};

const OPERATOR: &str = "kandle-operator";
const EDITOR: &str = "kubectl-edit";

fn config(labels: Value, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "web", "labels": labels },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "runtime", "image": image }] }
            }
        }
    })
}

fn labels(d: &Deployment) -> Vec<(String, String)> {
    d.metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

fn managers(d: &Deployment) -> Vec<(String, String)> {
    d.metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|m| {
            (
                m.manager.clone().unwrap_or_default(),
                m.operation.clone().unwrap_or_default(),
            )
        })
        .collect()
}

async fn setup() -> (FakeApiServer, Api<Deployment>) {
    let server = FakeApiServer::start()
        .await
        .expect("fake API server starts");
    let api = Api::namespaced(server.client().expect("client"), NAMESPACE);
    (server, api)
}

async fn apply(api: &Api<Deployment>, body: Value, force: bool) -> Result<Deployment, kube::Error> {
    let mut params = PatchParams::apply(OPERATOR);
    params.force = force;
    api.patch("web", &params, &Patch::Apply(body)).await
}

#[tokio::test]
async fn apply_creates_the_object_and_records_its_fields_in_managed_fields() {
    let (_server, api) = setup().await;
    let created = apply(&api, config(json!({"app": "web"}), "runtime:1"), false)
        .await
        .expect("apply creates");
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(
        managers(&created),
        [(OPERATOR.to_string(), "Apply".to_string())]
    );
    let entry = &created
        .metadata
        .managed_fields
        .as_ref()
        .expect("managed fields")[0];
    let fields = &entry.fields_v1.as_ref().expect("fieldsV1").0;
    assert_eq!(fields["f:spec"]["f:replicas"], json!({}));
    assert_eq!(
        fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"runtime\"}"]["."],
        json!({})
    );
    assert_eq!(entry.fields_type.as_deref(), Some("FieldsV1"));
}

#[tokio::test]
async fn reapplying_the_same_configuration_changes_nothing() {
    let (_server, api) = setup().await;
    let first = apply(&api, config(json!({"app": "web"}), "runtime:1"), true)
        .await
        .expect("first apply");
    let second = apply(&api, config(json!({"app": "web"}), "runtime:1"), true)
        .await
        .expect("second apply");
    assert_eq!(
        first.metadata.resource_version,
        second.metadata.resource_version
    );
}

#[tokio::test]
async fn apply_removes_fields_it_no_longer_sets_but_keeps_other_managers_fields() {
    let (_server, api) = setup().await;
    apply(
        &api,
        config(json!({"app": "web", "canary": "yes"}), "runtime:1"),
        true,
    )
    .await
    .expect("apply");
    let edit = PatchParams {
        field_manager: Some(EDITOR.into()),
        ..Default::default()
    };
    api.patch(
        "web",
        &edit,
        &Patch::Merge(json!({"metadata": {"labels": {"team": "search"}}})),
    )
    .await
    .expect("edit");

    let after = apply(&api, config(json!({"app": "web"}), "runtime:1"), true)
        .await
        .expect("reapply");
    let mut got = labels(&after);
    got.sort();
    assert_eq!(
        got,
        [
            ("app".to_string(), "web".to_string()),
            ("team".to_string(), "search".to_string())
        ]
    );
}

#[tokio::test]
async fn apply_without_force_refuses_a_field_another_manager_changed() {
    let (_server, api) = setup().await;
    apply(&api, config(json!({"app": "web"}), "runtime:1"), true)
        .await
        .expect("apply");
    let edit = PatchParams {
        field_manager: Some(EDITOR.into()),
        ..Default::default()
    };
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "runtime:hotfix"}
    ]))
    .expect("json patch");
    let edited = api
        .patch("web", &edit, &Patch::<()>::Json(ops))
        .await
        .expect("hand edit");
    assert_eq!(container_image(&edited), Some("runtime:hotfix"));

    let err = apply(&api, config(json!({"app": "web"}), "runtime:2"), false)
        .await
        .expect_err("conflict");
    let kube::Error::Api(status) = err else {
        panic!("expected an API error")
    };
    assert_eq!(status.code, 409);
    assert!(
        status.message.contains(EDITOR),
        "names the manager: {}",
        status.message
    );
    assert!(
        status
            .message
            .contains(".spec.template.spec.containers[name=\"runtime\"].image"),
        "names the field: {}",
        status.message
    );

    let forced = apply(&api, config(json!({"app": "web"}), "runtime:2"), true)
        .await
        .expect("forced apply");
    assert_eq!(container_image(&forced), Some("runtime:2"));
    assert!(
        managers(&forced).iter().all(|(m, _)| m != EDITOR),
        "the editor lost its only field"
    );
}

#[tokio::test]
async fn two_managers_applying_the_same_value_share_the_field() {
    let (_server, api) = setup().await;
    apply(&api, config(json!({"app": "web"}), "runtime:1"), true)
        .await
        .expect("apply");
    let other = PatchParams::apply("another-applier");
    let shared = api
        .patch(
            "web",
            &other,
            &Patch::Apply(config(json!({"app": "web"}), "runtime:1")),
        )
        .await
        .expect("same values do not conflict");
    assert_eq!(managers(&shared).len(), 2);
}

#[tokio::test]
async fn applying_status_of_a_missing_object_is_not_found() {
    let (_server, api) = setup().await;
    let err = api
        .patch_status(
            "web",
            &PatchParams::apply(OPERATOR),
            &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment", "status": {}})),
        )
        .await
        .expect_err("no object");
    assert!(matches!(err, kube::Error::Api(s) if s.code == 404));
}

#[tokio::test]
async fn an_apply_carrying_a_stale_resource_version_is_a_conflict_on_both_scopes() {
    let (_server, api) = setup().await;
    let first = apply(&api, config(json!({"app": "web"}), "runtime:1"), true)
        .await
        .expect("apply");
    let stale_version = first.metadata.resource_version.clone().expect("version");
    apply(&api, config(json!({"app": "web"}), "runtime:2"), true)
        .await
        .expect("newer apply");

    let mut stale = config(json!({"app": "web"}), "runtime:3");
    stale["metadata"]["resourceVersion"] = json!(stale_version);
    let err = apply(&api, stale, true)
        .await
        .expect_err("stale main apply");
    assert!(matches!(err, kube::Error::Api(s) if s.code == 409));

    let status = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "web", "resourceVersion": stale_version}, "status": {"replicas": 1}});
    let err = api
        .patch_status(
            "web",
            &PatchParams::apply(OPERATOR).force(),
            &Patch::Apply(status),
        )
        .await
        .expect_err("stale status apply");
    assert!(matches!(err, kube::Error::Api(s) if s.code == 409));
}
