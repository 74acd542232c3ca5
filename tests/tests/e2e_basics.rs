//! The basic life of a ModelDeployment on a real control plane, with the real operator and real
//! runtimes answering HTTP: install and serve the GPU example, scale through `/scale`, roll a
//! new model version over without a gap in service, and delete everything through the garbage
//! collector. Skips (saying why) without a control plane; see `kandle_tests::e2e`.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kandle_tests::e2e::{embed, is_ready_for_generation, stable_revision, E2e};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

const EMBEDDING_DIMENSIONS: usize = 384;
const SAMPLE_EVERY: Duration = Duration::from_millis(200);

#[tokio::test]
async fn the_gpu_example_serves_embeddings_from_the_matching_gpu_node() {
    let Some(e2e) = E2e::start("gpu-example").await else {
        return;
    };
    let applied = e2e.apply_example("embedding-gpu.yaml").await;
    let name = e2e
        .expect(applied, "the GPU example applies")
        .await
        .name_any();
    let md = e2e
        .expect(e2e.wait_ready(&name).await, "the example becomes Ready")
        .await;
    let revision = stable_revision(&md).expect("a Ready ModelDeployment has a stable revision");
    let pods = e2e
        .expect(e2e.wait_ready_pods(&revision, 1).await, "its pod is Ready")
        .await;

    let node = pods[0].spec.as_ref().and_then(|s| s.node_name.clone());
    e2e.ensure(
        node.as_deref() == Some("e2e-gpu-h100"),
        format!("the pod on the H100 node, not {node:?}"),
    )
    .await;
    let ip = e2e
        .expect(
            e2e.wait_pod_ip(&pods[0].name_any()).await,
            "the pod has an IP",
        )
        .await;
    let embedding = e2e
        .expect(embed(&ip, "kandle serves models").await, "the pod answers")
        .await;
    e2e.ensure(
        embedding.len() == EMBEDDING_DIMENSIONS,
        format!("{EMBEDDING_DIMENSIONS} floats, got {}", embedding.len()),
    )
    .await;
    let log = e2e.operator_log();
    e2e.ensure(
        !log.to_lowercase().contains("forbidden"),
        "no `forbidden` in the operator's log: its RBAC allows every call it makes",
    )
    .await;
}

#[tokio::test]
async fn scaling_through_the_scale_subresource_adds_a_ready_pod() {
    let Some(e2e) = E2e::start("scale").await else {
        return;
    };
    let (md, revision) = e2e.apply_until_ready(&E2e::cpu_example(1)).await;
    let name = md.name_any();

    // What `kubectl scale md/minilm-cpu --replicas=2` sends.
    let scale = json!({ "spec": { "replicas": 2 } });
    let scaled = e2e
        .mds()
        .patch_scale(&name, &PatchParams::default(), &Patch::Merge(&scale))
        .await;
    e2e.expect(scaled, "the /scale subresource accepts 2 replicas")
        .await;

    let deployment = e2e
        .eventually("the revision's Deployment to want 2 replicas", || async {
            let d = e2e.api::<Deployment>().get(&revision).await?;
            Ok((d.spec.as_ref().and_then(|s| s.replicas) == Some(2)).then_some(d))
        })
        .await;
    e2e.expect(deployment, "the Deployment follows the scale")
        .await;
    let pods = e2e.wait_ready_pods(&revision, 2).await;
    e2e.expect(pods, "two pods become Ready").await;
    let counted = e2e
        .wait_md(&name, "2 replicas, 2 ready, Ready", |md| {
            let status = md.status.clone().unwrap_or_default();
            status.replicas == 2 && status.ready_replicas == 2 && md.spec.replicas == 2
        })
        .await;
    let md = e2e.expect(counted, "the status counts both replicas").await;
    e2e.ensure(
        is_ready_for_generation(&md),
        "Ready for the scaled generation",
    )
    .await;
}

/// One look at the service during the rollout: did a Ready pod answer, and which.
struct Sample {
    at: Duration,
    answer: Result<String, String>,
}

#[tokio::test]
async fn a_new_model_version_rolls_over_without_a_gap_in_service() {
    let Some(e2e) = E2e::start("rollout").await else {
        return;
    };
    let (md, old_revision) = e2e.apply_until_ready(&E2e::cpu_example(1)).await;
    let name = md.name_any();

    let started = Instant::now();
    let mut samples = Vec::new();
    let sampling = async {
        loop {
            let answer = e2e.embed_via_ready_pod(&name, "kandle rolls over").await;
            samples.push(Sample {
                at: started.elapsed(),
                answer: answer.map(|(pod, _)| pod).map_err(|e| format!("{e:#}")),
            });
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
    };
    let roll_over = async {
        let new_version = json!({ "spec": { "model": { "version": "2025-01-01" } } });
        let mds = e2e.mds();
        mds.patch(&name, &PatchParams::default(), &Patch::Merge(&new_version))
            .await?;
        let md = e2e
            .wait_md(&name, "the new version stable and Ready", |md| {
                let new_stable = stable_revision(md).is_some_and(|r| r != old_revision);
                new_stable && is_ready_for_generation(md)
            })
            .await?;
        e2e.eventually("the old revision's Deployment at 0 replicas", || async {
            let d = e2e.api::<Deployment>().get(&old_revision).await?;
            Ok((d.spec.as_ref().and_then(|s| s.replicas) == Some(0)).then_some(()))
        })
        .await?;
        // Until its last pod has drained and gone, the old revision is still part of the rollout.
        e2e.eventually("the old revision's pods to be gone", || async {
            Ok(e2e
                .pods_of_revision(&old_revision)
                .await?
                .is_empty()
                .then_some(()))
        })
        .await?;
        anyhow::Ok(md)
    };
    let md = tokio::select! {
        md = roll_over => md,
        _ = sampling => unreachable!("sampling runs until the rollout ends"),
    };
    let md = e2e.expect(md, "the rollout completes").await;

    let gaps: Vec<String> = samples
        .iter()
        .filter_map(|s| {
            s.answer
                .as_ref()
                .err()
                .map(|e| format!("at {:?}: {e}", s.at))
        })
        .collect();
    let served_by: std::collections::BTreeSet<&String> = samples
        .iter()
        .filter_map(|s| s.answer.as_ref().ok())
        .collect();
    eprintln!(
        "rollout took {:?}; {} samples served by {served_by:?}",
        started.elapsed(),
        samples.len()
    );
    e2e.ensure(samples.len() >= 3, "several samples during the rollout")
        .await;
    e2e.ensure(
        gaps.is_empty(),
        format!(
            "a Ready pod answering at every sample, but:\n{}",
            gaps.join("\n")
        ),
    )
    .await;
    let new_version = md.spec.model.version.as_deref();
    e2e.ensure(
        new_version == Some("2025-01-01"),
        "the new version in the spec",
    )
    .await;
    let new_revision = stable_revision(&md).unwrap_or_default();
    let new_pods = e2e.wait_ready_pods(&new_revision, 1).await;
    let new_pod = e2e
        .expect(new_pods, "the new revision's pod is Ready")
        .await;
    let ip = e2e.wait_pod_ip(&new_pod[0].name_any()).await;
    let ip = e2e.expect(ip, "the new pod has an IP").await;
    let answer = embed(&ip, "kandle rolled over").await;
    let embedding = e2e.expect(answer, "the new revision's pod answers").await;
    e2e.ensure(
        embedding.len() == EMBEDDING_DIMENSIONS,
        "a full embedding from the new revision",
    )
    .await;
}

#[tokio::test]
async fn deleting_the_model_deployment_removes_every_child() {
    let Some(e2e) = E2e::start("delete").await else {
        return;
    };
    let (md, revision) = e2e.apply_until_ready(&E2e::cpu_example(2)).await;
    let name = md.name_any();
    e2e.expect(e2e.wait_ready_pods(&revision, 2).await, "two Ready pods")
        .await;
    let before = e2e
        .expect(children(&e2e).await, "listing the children")
        .await;
    for kind in [
        "Deployment",
        "ControllerRevision",
        "Service",
        "PodDisruptionBudget",
        "Pod",
    ] {
        e2e.ensure(
            before.iter().any(|child| child.starts_with(kind)),
            format!("a {kind} before the delete, among {before:?}"),
        )
        .await;
    }

    let deleted = e2e.mds().delete(&name, &DeleteParams::background()).await;
    e2e.expect(deleted, "the ModelDeployment deletes").await;
    let gone = e2e
        .eventually("every child to be garbage-collected", || async {
            let left = children(&e2e).await?;
            Ok(left.is_empty().then_some(()))
        })
        .await;
    e2e.expect(gone, "the children are removed").await;
}

/// `Kind/name` of every object of the kinds a ModelDeployment owns, in the test's namespace
/// (where nothing else lives).
async fn children(e2e: &E2e) -> anyhow::Result<Vec<String>> {
    let by_kind = [
        ("Deployment", e2e.names::<Deployment>().await?),
        (
            "ControllerRevision",
            e2e.names::<ControllerRevision>().await?,
        ),
        ("Service", e2e.names::<Service>().await?),
        (
            "PodDisruptionBudget",
            e2e.names::<PodDisruptionBudget>().await?,
        ),
        ("Pod", e2e.names::<Pod>().await?),
    ];
    Ok(by_kind
        .into_iter()
        .flat_map(|(kind, names)| names.into_iter().map(move |name| format!("{kind}/{name}")))
        .collect())
}
