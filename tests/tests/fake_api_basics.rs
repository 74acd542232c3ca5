//! The fake API server keeps the core rules of a real one, seen through a real `kube::Client`:
//! resource versions, optimistic concurrency, generation, the status subresource, selectors,
//! error codes and garbage collection through owner references.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kandle_tests::fixtures::{self, NAMESPACE};
use kandle_tests::FakeApiServer;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Resource;
use serde_json::json;

fn rv<K: Resource>(obj: &K) -> u64 {
    obj.meta()
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .expect("server sets a numeric resourceVersion")
}

fn api_code(err: kube::Error) -> u16 {
    match err {
        kube::Error::Api(status) => status.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn setup() -> (FakeApiServer, Api<Deployment>) {
    let server = FakeApiServer::start()
        .await
        .expect("fake API server starts");
    let api = Api::namespaced(server.client().expect("client"), NAMESPACE);
    (server, api)
}

#[tokio::test]
async fn every_write_bumps_the_resource_version_and_server_sets_identity() {
    let (_server, api) = setup().await;
    let created = api
        .create(
            &PostParams::default(),
            &fixtures::deployment("web", "web:1"),
        )
        .await
        .expect("create");
    assert!(created
        .metadata
        .uid
        .as_deref()
        .is_some_and(|u| !u.is_empty()));
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.generation, Some(1));

    let patched = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "gpu"}}})),
        )
        .await
        .expect("merge patch");
    assert!(rv(&patched) > rv(&created));
    assert_eq!(patched.metadata.uid, created.metadata.uid);

    let list = api.list(&ListParams::default()).await.expect("list");
    let list_rv: u64 = list
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .expect("list version");
    assert!(list_rv >= rv(&patched));
}

#[tokio::test]
async fn a_replace_with_a_stale_resource_version_is_a_conflict() {
    let (_server, api) = setup().await;
    let created = api
        .create(
            &PostParams::default(),
            &fixtures::deployment("web", "web:1"),
        )
        .await
        .expect("create");
    let mut first = created.clone();
    first.spec.as_mut().expect("spec").replicas = Some(3);
    api.replace("web", &PostParams::default(), &first)
        .await
        .expect("first replace wins");

    let mut stale = created;
    stale.spec.as_mut().expect("spec").replicas = Some(5);
    let err = api
        .replace("web", &PostParams::default(), &stale)
        .await
        .expect_err("stale replace");
    assert_eq!(api_code(err), 409);
    let stored = api.get("web").await.expect("get");
    assert_eq!(stored.spec.and_then(|s| s.replicas), Some(3));
}

#[tokio::test]
async fn create_twice_is_already_exists_and_missing_objects_are_not_found() {
    let (_server, api) = setup().await;
    let d = fixtures::deployment("web", "web:1");
    api.create(&PostParams::default(), &d)
        .await
        .expect("create");
    assert_eq!(
        api_code(
            api.create(&PostParams::default(), &d)
                .await
                .expect_err("duplicate")
        ),
        409
    );
    assert_eq!(
        api_code(api.get("nope").await.expect_err("get missing")),
        404
    );
    assert_eq!(
        api_code(
            api.delete("nope", &DeleteParams::default())
                .await
                .expect_err("delete missing")
        ),
        404
    );
    let bad = fixtures::deployment("Not_A_Name", "web:1");
    assert_eq!(
        api_code(
            api.create(&PostParams::default(), &bad)
                .await
                .expect_err("invalid name")
        ),
        422
    );
}

#[tokio::test]
async fn generation_counts_spec_changes_only() {
    let (server, api) = setup().await;
    api.create(
        &PostParams::default(),
        &fixtures::deployment("web", "web:1"),
    )
    .await
    .expect("create");
    let labelled = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .expect("label patch");
    assert_eq!(labelled.metadata.generation, Some(1));
    let with_status = server
        .set_status::<Deployment>(NAMESPACE, "web", json!({"replicas": 1}))
        .expect("status");
    assert_eq!(with_status.metadata.generation, Some(1));
    let scaled = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .expect("spec patch");
    assert_eq!(scaled.metadata.generation, Some(2));
}

#[tokio::test]
async fn status_is_written_only_through_the_status_subresource() {
    let (_server, api) = setup().await;
    api.create(
        &PostParams::default(),
        &fixtures::deployment("web", "web:1"),
    )
    .await
    .expect("create");

    let via_main = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"readyReplicas": 7}})),
        )
        .await
        .expect("main patch");
    assert_eq!(
        via_main.status.and_then(|s| s.ready_replicas),
        None,
        "main resource ignores .status"
    );

    let via_status = api
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"readyReplicas": 2}, "spec": {"replicas": 9}})),
        )
        .await
        .expect("status patch");
    assert_eq!(
        via_status.status.as_ref().and_then(|s| s.ready_replicas),
        Some(2)
    );
    assert_eq!(
        via_status.spec.and_then(|s| s.replicas),
        Some(1),
        "status subresource ignores .spec"
    );
    assert_eq!(via_status.metadata.generation, Some(1));

    let applied = api
        .patch_status(
            "web",
            &PatchParams::apply("status-writer"),
            &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment", "status": {"availableReplicas": 1}})),
        )
        .await
        .expect("status apply");
    let status = applied.status.expect("status");
    assert_eq!(
        (status.available_replicas, status.ready_replicas),
        (Some(1), Some(2))
    );
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists() {
    let (_server, api) = setup().await;
    for (name, tier) in [("a", "gpu"), ("b", "cpu"), ("c", "gpu")] {
        let mut d = fixtures::deployment(name, "x:1");
        d.metadata
            .labels
            .get_or_insert_default()
            .insert("tier".into(), tier.into());
        api.create(&PostParams::default(), &d)
            .await
            .expect("create");
    }
    let names = |list: kube::core::ObjectList<Deployment>| -> Vec<String> {
        list.items
            .into_iter()
            .filter_map(|d| d.metadata.name)
            .collect()
    };
    let gpu = api
        .list(&ListParams::default().labels("tier=gpu"))
        .await
        .expect("list");
    assert_eq!(names(gpu), ["a", "c"]);
    let set = api
        .list(&ListParams::default().labels("tier in (cpu),app"))
        .await
        .expect("list");
    assert_eq!(names(set), ["b"]);
    let none = api
        .list(&ListParams::default().labels("!tier"))
        .await
        .expect("list");
    assert!(none.items.is_empty());
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=c"))
        .await
        .expect("list");
    assert_eq!(names(by_name), ["c"]);
    let paged = api
        .list(&ListParams::default().limit(2))
        .await
        .expect("first page");
    assert_eq!(paged.items.len(), 2);
    let token = paged.metadata.continue_.clone().expect("continue token");
    let rest = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .expect("second page");
    assert_eq!(names(rest), ["c"]);
}

#[tokio::test]
async fn deleting_an_owner_collects_its_dependents_transitively() {
    let (server, deployments) = setup().await;
    let services: Api<Service> = Api::namespaced(server.client().expect("client"), NAMESPACE);
    let owner = deployments
        .create(
            &PostParams::default(),
            &fixtures::deployment("owner", "x:1"),
        )
        .await
        .expect("owner");
    let reference = |obj: &Deployment| OwnerReference {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: obj.metadata.name.clone().unwrap_or_default(),
        uid: obj.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        ..Default::default()
    };
    let mut child = fixtures::deployment("child", "x:1");
    child.metadata.owner_references = Some(vec![reference(&owner)]);
    let child = deployments
        .create(&PostParams::default(), &child)
        .await
        .expect("child");
    let mut grandchild = fixtures::service("grandchild");
    grandchild.metadata.owner_references = Some(vec![reference(&child)]);
    services
        .create(&PostParams::default(), &grandchild)
        .await
        .expect("grandchild");
    services
        .create(&PostParams::default(), &fixtures::service("bystander"))
        .await
        .expect("bystander");

    deployments
        .delete("owner", &DeleteParams::default())
        .await
        .expect("delete owner");

    assert!(server
        .get::<Deployment>(NAMESPACE, "child")
        .expect("lookup")
        .is_none());
    assert!(server
        .get::<Service>(NAMESPACE, "grandchild")
        .expect("lookup")
        .is_none());
    assert!(server
        .get::<Service>(NAMESPACE, "bystander")
        .expect("lookup")
        .is_some());
}

#[tokio::test]
async fn an_object_with_finalizers_waits_for_them_before_it_goes() {
    let (_server, api) = setup().await;
    let mut d = fixtures::deployment("web", "x:1");
    d.metadata.finalizers = Some(vec!["kandle.dev/cleanup".into()]);
    api.create(&PostParams::default(), &d)
        .await
        .expect("create");
    api.delete("web", &DeleteParams::default())
        .await
        .expect("delete");
    let marked = api.get("web").await.expect("still there");
    assert!(marked.metadata.deletion_timestamp.is_some());
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("remove finalizer");
    assert_eq!(api_code(api.get("web").await.expect_err("gone")), 404);
}
