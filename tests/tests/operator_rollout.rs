//! Changing the spec rolls out a new revision beside the running one; the old Deployment keeps
//! serving at full size until the new one is available, and only then is scaled to zero.
//! Scaling through the `/scale` subresource reaches the Deployment and is reported back.

use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use kandle_crds::conditions;
use kandle_operator::testing::{md, TEST_NAMESPACE};
use kandle_tests::harness::{condition, Harness};
use kube::api::{Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

fn replicas(d: &Deployment) -> Option<i32> {
    d.spec.as_ref().and_then(|s| s.replicas)
}

fn find<'a>(deployments: &'a [Deployment], name: &str) -> &'a Deployment {
    deployments
        .iter()
        .find(|d| d.name_any() == name)
        .expect("the Deployment exists")
}

#[tokio::test]
async fn a_new_model_version_rolls_out_and_the_old_revision_waits_for_it() {
    let h = Harness::start().await.expect("harness");
    h.create(&md("minilm").with_version("v1").with_replicas(2).build())
        .await
        .expect("create");
    let v1 = h
        .converge(TEST_NAMESPACE, "minilm")
        .await
        .expect("v1 ready");
    let old = v1
        .status
        .and_then(|s| s.stable_revision)
        .expect("a stable revision");

    h.mds(TEST_NAMESPACE)
        .patch(
            "minilm",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"model": {"version": "v2"}}})),
        )
        .await
        .expect("change the version");
    h.reconcile(TEST_NAMESPACE, "minilm")
        .await
        .expect("pass after the change");

    let deployments = h.deployments_of("minilm").expect("deployments");
    assert_eq!(
        deployments.len(),
        2,
        "the new revision runs beside the old one"
    );
    let new = deployments
        .iter()
        .map(|d| d.name_any())
        .find(|n| *n != old)
        .expect("a new Deployment");
    assert_eq!(
        replicas(find(&deployments, &new)),
        Some(1),
        "the new revision starts with its surge pod (25% of 2, rounded up)"
    );
    assert_eq!(
        replicas(find(&deployments, &old)),
        Some(2),
        "the old revision keeps serving"
    );
    assert_eq!(
        h.server
            .objects::<ControllerRevision>()
            .expect("revisions")
            .len(),
        2
    );
    let rolling = h.mds(TEST_NAMESPACE).get("minilm").await.expect("get");
    assert_eq!(
        condition(&rolling, conditions::PROGRESSING)
            .map(|c| c.status)
            .as_deref(),
        Some("True")
    );
    assert_eq!(
        rolling
            .status
            .as_ref()
            .and_then(|s| s.stable_revision.clone()),
        Some(old.clone())
    );

    // Another pass while the new pods are still starting changes nothing for the old revision.
    h.reconcile(TEST_NAMESPACE, "minilm")
        .await
        .expect("waiting pass");
    assert_eq!(
        replicas(find(
            &h.deployments_of("minilm").expect("deployments"),
            &old
        )),
        Some(2)
    );

    // Each new pod that becomes available lets one old pod go.
    for (old_replicas, new_replicas) in [(1, 2), (0, 2)] {
        h.make_available(find(
            &h.deployments_of("minilm").expect("deployments"),
            &new,
        ))
        .expect("new available");
        h.reconcile(TEST_NAMESPACE, "minilm")
            .await
            .expect("rolling pass");
        let deployments = h.deployments_of("minilm").expect("deployments");
        assert_eq!(
            (
                replicas(find(&deployments, &old)),
                replicas(find(&deployments, &new))
            ),
            (Some(old_replicas), Some(new_replicas))
        );
    }

    let deployments = h.deployments_of("minilm").expect("deployments");
    assert_eq!(
        replicas(find(&deployments, &old)),
        Some(0),
        "the old revision is scaled to zero and kept"
    );
    assert_eq!(replicas(find(&deployments, &new)), Some(2));
    let done = h.mds(TEST_NAMESPACE).get("minilm").await.expect("get");
    let status = done.status.clone().expect("status");
    assert_eq!(status.stable_revision.as_deref(), Some(new.as_str()));
    assert_eq!(
        condition(&done, conditions::READY)
            .map(|c| c.status)
            .as_deref(),
        Some("True")
    );
    assert_eq!(
        condition(&done, conditions::PROGRESSING)
            .map(|c| c.status)
            .as_deref(),
        Some("False")
    );
    let versions: Vec<Option<String>> = status
        .history
        .iter()
        .map(|r| r.model_version.clone())
        .collect();
    assert_eq!(versions, [Some("v1".to_string()), Some("v2".to_string())]);
}

#[tokio::test]
async fn a_new_runtime_image_is_a_new_revision() {
    let h = Harness::start().await.expect("harness");
    h.create(&md("minilm").build()).await.expect("create");
    h.converge(TEST_NAMESPACE, "minilm").await.expect("ready");
    h.mds(TEST_NAMESPACE)
        .patch(
            "minilm",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"runtime": {"image": "registry.example/kandle-runtime:0.2.0"}}}),
            ),
        )
        .await
        .expect("change the image");
    let done = h
        .converge(TEST_NAMESPACE, "minilm")
        .await
        .expect("rolled out");
    let stable = done.status.and_then(|s| s.stable_revision).expect("stable");
    let deployment = find(&h.deployments_of("minilm").expect("deployments"), &stable).clone();
    let image = deployment
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|p| p.containers[0].image.clone());
    assert_eq!(
        image.as_deref(),
        Some("registry.example/kandle-runtime:0.2.0")
    );
    assert_eq!(
        h.deployments_of("minilm").expect("deployments").len(),
        2,
        "the old revision is kept at zero"
    );
}

#[tokio::test]
async fn scaling_through_the_scale_subresource_reaches_the_deployment() {
    let h = Harness::start().await.expect("harness");
    h.create(&md("minilm").build()).await.expect("create");
    h.converge(TEST_NAMESPACE, "minilm").await.expect("ready");

    h.mds(TEST_NAMESPACE)
        .patch_scale(
            "minilm",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .expect("kubectl scale");
    let scaled = h
        .converge(TEST_NAMESPACE, "minilm")
        .await
        .expect("ready at 4");
    let deployments = h.deployments_of("minilm").expect("deployments");
    assert_eq!(deployments.len(), 1, "scaling is not a new revision");
    assert_eq!(replicas(&deployments[0]), Some(4));

    let status = scaled.status.expect("status");
    assert_eq!((status.replicas, status.ready_replicas), (4, 4));
    let scale = h
        .mds(TEST_NAMESPACE)
        .get_scale("minilm")
        .await
        .expect("get scale");
    let scale_status = scale.status.expect("scale status");
    assert_eq!(scale_status.replicas, 4);
    let selector = scale_status.selector.expect("a selector for HPAs");
    let pod_labels = deployments[0]
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    for term in selector.split(',') {
        let (key, value) = term.split_once('=').expect("equality terms");
        assert_eq!(
            pod_labels.get(key).map(String::as_str),
            Some(value),
            "the selector matches the pods"
        );
    }
}
