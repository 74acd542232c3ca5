//! Watches on the fake: kube-runtime's watcher lists and then follows changes, in both its
//! list-then-watch and streaming-list modes, and a raw watch from a resource version sees later
//! updates and deletions in order.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use kandle_tests::fixtures::container_image;
use kandle_tests::fixtures::{self, NAMESPACE};
use kandle_tests::FakeApiServer;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher::{self, watcher, Event};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(10);

async fn update_image(api: &Api<Deployment>, to: &str) {
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "runtime", "image": to}]}}}});
    api.patch("web", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .expect("update");
}

async fn watcher_sees_initial_state_then_update(config: watcher::Config) {
    let server = FakeApiServer::start()
        .await
        .expect("fake API server starts");
    let api: Api<Deployment> = Api::namespaced(server.client().expect("client"), NAMESPACE);
    api.create(
        &PostParams::default(),
        &fixtures::deployment("web", "web:1"),
    )
    .await
    .expect("create");

    let mut events = watcher(api.clone(), config).boxed();
    let mut init_done = false;
    let seen = tokio::time::timeout(DEADLINE, async {
        while let Some(event) = events.try_next().await.expect("watch stream") {
            match event {
                Event::InitDone => {
                    init_done = true;
                    update_image(&api, "web:2").await;
                }
                Event::Apply(d) if container_image(&d) == Some("web:2") => return d,
                _ => {}
            }
        }
        panic!("watch stream ended");
    })
    .await
    .expect("the update arrives before the deadline");
    assert!(init_done);
    assert_eq!(seen.metadata.generation, Some(2));
}

#[tokio::test]
async fn list_then_watch_sees_an_update() {
    watcher_sees_initial_state_then_update(watcher::Config::default()).await;
}

#[tokio::test]
async fn streaming_list_sees_an_update() {
    watcher_sees_initial_state_then_update(watcher::Config::default().streaming_lists()).await;
}

#[tokio::test]
async fn a_watch_from_a_version_sees_later_changes_in_order() {
    let server = FakeApiServer::start()
        .await
        .expect("fake API server starts");
    let api: Api<Deployment> = Api::namespaced(server.client().expect("client"), NAMESPACE);
    let created = api
        .create(
            &PostParams::default(),
            &fixtures::deployment("web", "web:1"),
        )
        .await
        .expect("create");
    update_image(&api, "web:2").await;
    api.delete("web", &DeleteParams::default())
        .await
        .expect("delete");

    let from = created.metadata.resource_version.clone().expect("version");
    let stream = api
        .watch(&WatchParams::default().timeout(5), &from)
        .await
        .expect("watch");
    let events: Vec<WatchEvent<Deployment>> =
        tokio::time::timeout(DEADLINE, stream.take(2).try_collect())
            .await
            .expect("events before the deadline")
            .expect("watch stream");
    assert!(matches!(&events[0], WatchEvent::Modified(d) if container_image(d) == Some("web:2")));
    assert!(
        matches!(&events[1], WatchEvent::Deleted(d) if d.metadata.name.as_deref() == Some("web"))
    );
}
