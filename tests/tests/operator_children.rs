//! A new ModelDeployment becomes a ControllerRevision, a Deployment and a Service, all owned by
//! it, with the GPU scheduling the spec asks for; once the Deployment is available the status
//! says Ready for the current generation.

use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::core::v1::Service;
use kandle_crds::conditions::{self, reasons};
use kandle_crds::ModelDeployment;
use kandle_operator::testing::{md, TEST_NAMESPACE};
use kandle_tests::harness::{condition, observed_generation, Harness};
use kube::{Resource, ResourceExt};

const H100: &str = "NVIDIA-H100-80GB-HBM3";

fn owned_by<K: Resource>(child: &K, owner: &ModelDeployment) -> bool {
    child.meta().owner_references.iter().flatten().any(|r| {
        Some(&r.uid) == owner.metadata.uid.as_ref()
            && r.controller == Some(true)
            && r.kind == "ModelDeployment"
    })
}

#[tokio::test]
async fn a_gpu_model_deployment_gets_owned_children_scheduled_on_the_right_gpus() {
    let h = Harness::start().await.expect("harness");
    let created = h
        .create(&md("bert").with_gpu(1, Some(H100)).build())
        .await
        .expect("create");
    h.reconcile(TEST_NAMESPACE, "bert")
        .await
        .expect("reconcile");

    let deployments = h.deployments_of("bert").expect("deployments");
    assert_eq!(
        deployments.len(),
        1,
        "one Deployment for the first revision"
    );
    let deployment = &deployments[0];
    assert!(owned_by(deployment, &created));
    let revisions = h.server.objects::<ControllerRevision>().expect("revisions");
    assert_eq!(revisions.len(), 1);
    assert!(owned_by(&revisions[0], &created));
    assert_eq!(
        revisions[0].name_any(),
        deployment.name_any(),
        "the revision names its Deployment"
    );
    let service = h
        .server
        .get::<Service>(TEST_NAMESPACE, "bert")
        .expect("lookup")
        .expect("the Service exists");
    assert!(owned_by(&service, &created));

    let pod = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .expect("pod spec");
    let gpu_limit = pod.containers[0]
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("nvidia.com/gpu"))
        .map(|q| q.0.clone());
    assert_eq!(gpu_limit.as_deref(), Some("1"));
    assert!(pod
        .tolerations
        .iter()
        .flatten()
        .any(|t| t.key.as_deref() == Some("nvidia.com/gpu")
            && t.effect.as_deref() == Some("NoSchedule")));
    assert_eq!(
        pod.node_selector
            .unwrap_or_default()
            .get("nvidia.com/gpu.product")
            .map(String::as_str),
        Some(H100)
    );
}

#[tokio::test]
async fn a_cpu_model_deployment_asks_for_no_gpu() {
    let h = Harness::start().await.expect("harness");
    h.create(&md("minilm").build()).await.expect("create");
    h.reconcile(TEST_NAMESPACE, "minilm")
        .await
        .expect("reconcile");
    let deployment = h.deployments_of("minilm").expect("deployments").remove(0);
    let pod = deployment
        .spec
        .and_then(|s| s.template.spec)
        .expect("pod spec");
    let limits = pod.containers[0]
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .unwrap_or_default();
    assert!(!limits.contains_key("nvidia.com/gpu"));
    assert!(pod.tolerations.unwrap_or_default().is_empty());
}

#[tokio::test]
async fn an_available_deployment_makes_the_model_deployment_ready() {
    let h = Harness::start().await.expect("harness");
    h.create(&md("minilm").with_replicas(3).build())
        .await
        .expect("create");
    h.reconcile(TEST_NAMESPACE, "minilm")
        .await
        .expect("first pass");
    let before = h.mds(TEST_NAMESPACE).get("minilm").await.expect("get");
    let ready = condition(&before, conditions::READY).expect("Ready condition");
    assert_eq!(ready.status, "False", "nothing is available yet");

    let deployment = h.deployments_of("minilm").expect("deployments").remove(0);
    assert_eq!(deployment.spec.as_ref().and_then(|s| s.replicas), Some(3));
    h.make_available(&deployment).expect("available");
    h.reconcile(TEST_NAMESPACE, "minilm")
        .await
        .expect("second pass");

    let after = h.mds(TEST_NAMESPACE).get("minilm").await.expect("get");
    let ready = condition(&after, conditions::READY).expect("Ready condition");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", reasons::AVAILABLE)
    );
    let status = after.status.clone().expect("status");
    assert_eq!(status.ready_replicas, 3);
    assert_eq!(observed_generation(&after), after.metadata.generation);
    assert_eq!(
        status.stable_revision.as_deref(),
        Some(deployment.name_any().as_str())
    );
    let degraded = condition(&after, conditions::DEGRADED).expect("Degraded condition");
    assert_eq!(degraded.status, "False");
}

#[tokio::test]
async fn a_second_pass_with_nothing_new_writes_nothing() {
    let h = Harness::start().await.expect("harness");
    h.create(&md("minilm").build()).await.expect("create");
    h.converge(TEST_NAMESPACE, "minilm")
        .await
        .expect("converge");
    let before = h.server.resource_version();
    h.reconcile(TEST_NAMESPACE, "minilm")
        .await
        .expect("idle pass");
    assert_eq!(
        h.server.resource_version(),
        before,
        "an idle pass changes no object"
    );
    assert!(h.server.objects::<Deployment>().expect("deployments").len() == 1);
}
