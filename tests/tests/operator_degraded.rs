//! What only the operator can judge becomes `Degraded=True`, a Warning event and no damage: a
//! PVC that does not exist leaves the running revision serving untouched, and pods the
//! scheduler cannot place are reported with the scheduler's own words.

use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use k8s_openapi::api::events::v1::Event;
use kandle_crds::conditions::{self, reasons};
use kandle_operator::testing::{md, TEST_NAMESPACE};
use kandle_tests::harness::{condition, Harness};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

const SCHEDULER_MESSAGE: &str = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.";

fn warnings(h: &Harness, reason: &str) -> Vec<Event> {
    h.server
        .objects::<Event>()
        .expect("events")
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(reason))
        .collect()
}

fn snapshot(h: &Harness) -> Vec<(String, Option<String>, String)> {
    let mut all: Vec<(String, Option<String>, String)> = h
        .server
        .objects::<Deployment>()
        .expect("deployments")
        .into_iter()
        .map(|d| {
            (
                d.name_any(),
                d.resource_version(),
                serde_json::to_string(&d.spec).unwrap_or_default(),
            )
        })
        .collect();
    all.extend(
        h.server
            .objects::<ControllerRevision>()
            .expect("revisions")
            .into_iter()
            .map(|r| (r.name_any(), r.resource_version(), String::new())),
    );
    all.extend(
        h.server
            .objects::<Service>()
            .expect("services")
            .into_iter()
            .map(|s| (s.name_any(), s.resource_version(), String::new())),
    );
    all
}

#[tokio::test]
async fn a_missing_pvc_degrades_the_model_deployment_and_leaves_the_running_revision_alone() {
    let h = Harness::start().await.expect("harness");
    h.create(&md("minilm").with_replicas(2).build())
        .await
        .expect("create");
    h.converge(TEST_NAMESPACE, "minilm").await.expect("ready");
    let before = snapshot(&h);

    let to_pvc = json!({"spec": {"model": {"source": {"image": null, "pvc": {"claimName": "minilm-weights"}}}}});
    h.mds(TEST_NAMESPACE)
        .patch("minilm", &PatchParams::default(), &Patch::Merge(to_pvc))
        .await
        .expect("bad spec");
    h.reconcile(TEST_NAMESPACE, "minilm")
        .await
        .expect("reconcile");

    let md = h.mds(TEST_NAMESPACE).get("minilm").await.expect("get");
    let degraded = condition(&md, conditions::DEGRADED).expect("Degraded condition");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", reasons::INVALID_SPEC)
    );
    assert!(
        degraded.message.contains("minilm-weights"),
        "names the PVC: {}",
        degraded.message
    );
    assert_eq!(
        condition(&md, conditions::READY)
            .map(|c| c.status)
            .as_deref(),
        Some("True"),
        "the old revision still serves"
    );
    let events = warnings(&h, reasons::INVALID_SPEC);
    assert_eq!(events.len(), 1);
    assert!(events[0]
        .note
        .as_deref()
        .is_some_and(|n| n.contains("minilm-weights")));
    assert_eq!(
        events[0].regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("minilm")
    );
    assert_eq!(
        snapshot(&h),
        before,
        "no child was changed, created or deleted"
    );

    // A second pass does not repeat the warning.
    h.reconcile(TEST_NAMESPACE, "minilm")
        .await
        .expect("reconcile again");
    assert_eq!(warnings(&h, reasons::INVALID_SPEC).len(), 1);

    // Creating the PVC lets the new revision roll out.
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(h.client.clone(), TEST_NAMESPACE);
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "minilm-weights"},
        "spec": {"accessModes": ["ReadOnlyMany"], "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .expect("pvc");
    pvcs.create(&PostParams::default(), &pvc)
        .await
        .expect("create the PVC");
    let fixed = h
        .converge(TEST_NAMESPACE, "minilm")
        .await
        .expect("rolled out");
    assert_eq!(
        condition(&fixed, conditions::DEGRADED)
            .map(|c| c.status)
            .as_deref(),
        Some("False")
    );
    assert_eq!(h.deployments_of("minilm").expect("deployments").len(), 2);
}

#[tokio::test]
async fn unschedulable_pods_degrade_the_model_deployment_with_the_schedulers_message() {
    let h = Harness::start().await.expect("harness");
    h.create(
        &md("bert")
            .with_gpu(8, Some("NVIDIA-H100-80GB-HBM3"))
            .build(),
    )
    .await
    .expect("create");
    h.reconcile(TEST_NAMESPACE, "bert")
        .await
        .expect("reconcile");
    let deployment = h.deployments_of("bert").expect("deployments").remove(0);
    h.create_pod_of(
        &deployment,
        json!({
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": SCHEDULER_MESSAGE}]
        }),
    )
    .await
    .expect("the scheduler gives up");
    h.reconcile(TEST_NAMESPACE, "bert")
        .await
        .expect("reconcile");

    let md = h.mds(TEST_NAMESPACE).get("bert").await.expect("get");
    let degraded = condition(&md, conditions::DEGRADED).expect("Degraded condition");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", reasons::UNSCHEDULABLE)
    );
    assert!(
        degraded.message.contains(SCHEDULER_MESSAGE),
        "carries the scheduler's words: {}",
        degraded.message
    );
    assert_eq!(warnings(&h, reasons::UNSCHEDULABLE).len(), 1);
    assert_eq!(
        h.deployments_of("bert").expect("deployments").len(),
        1,
        "nothing else was created"
    );
}
