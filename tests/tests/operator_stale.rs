//! A pass planned from a stale copy of the ModelDeployment (a lagging watch cache) writes
//! nothing at all: its conditional status write is refused before any child is touched, and
//! the next pass, on the current object, does the work.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use kandle_operator::controller;
use kandle_operator::testing::{md, TEST_NAMESPACE};
use kandle_tests::harness::Harness;
use kube::api::{Patch, PatchParams};
use serde_json::json;

#[tokio::test]
async fn a_pass_from_a_stale_object_touches_no_child() {
    let h = Harness::start().await.expect("harness");
    h.create(&md("minilm").with_replicas(2).build())
        .await
        .expect("create");
    let settled = h.converge(TEST_NAMESPACE, "minilm").await.expect("ready");
    let deployments_before = h.deployments_of("minilm").expect("deployments");
    let revisions_before = h
        .server
        .objects::<ControllerRevision>()
        .expect("revisions")
        .len();

    // The spec moves on; the operator still holds the settled copy.
    h.mds(TEST_NAMESPACE)
        .patch(
            "minilm",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await
        .expect("scale to zero");
    let mut stale = settled.clone();
    stale.spec.model.version = Some("v9".into());
    controller::reconcile(Arc::new(stale), Arc::clone(&h.ctx))
        .await
        .expect("a stale pass is not an error, only a requeue");

    let deployments_after = h.deployments_of("minilm").expect("deployments");
    assert_eq!(
        deployments_after, deployments_before,
        "no Deployment written from the stale copy"
    );
    assert_eq!(
        h.server
            .objects::<ControllerRevision>()
            .expect("revisions")
            .len(),
        revisions_before,
        "no revision recorded from the stale copy"
    );

    h.reconcile(TEST_NAMESPACE, "minilm")
        .await
        .expect("a pass on the current object");
    let replicas: Vec<Option<i32>> = h
        .deployments_of("minilm")
        .expect("deployments")
        .iter()
        .map(|d: &Deployment| d.spec.as_ref().and_then(|s| s.replicas))
        .collect();
    assert_eq!(replicas, vec![Some(0)], "the current spec is applied");
}
