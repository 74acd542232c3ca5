//! The failures real clusters bring, on a real control plane with the real operator and real
//! runtimes: a crash-looping revision given up on at its progress deadline while the stable one
//! keeps serving, an image that cannot be pulled, a model fetch whose sha256 does not match,
//! pods refused by a ResourceQuota, a rollout on nodes with exactly enough GPUs, pods waiting
//! for room until a node appears, objects kandle does not own, and hostPath sources. Skips
//! (saying why) without a control plane; see `kandle_tests::e2e`.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ResourceQuota, Service};
use kandle_crds::conditions::{self, reasons};
use kandle_crds::{GpuSpec, ModelDeployment, RevisionOutcome};
use kandle_tests::e2e::{
    embed, is_ready_for_generation, pod_ip, pod_is_ready, stable_revision, E2e, NodeSpec,
};
use kandle_tests::harness::condition;
use kube::api::PostParams;
use kube::ResourceExt;
use serde_json::json;

fn is(md: &ModelDeployment, type_: &str, status: &str, reason: &str) -> bool {
    condition(md, type_).is_some_and(|c| {
        c.status == status && c.reason == reason && c.observed_generation == md.metadata.generation
    })
}

fn message(md: &ModelDeployment, type_: &str) -> String {
    condition(md, type_).map(|c| c.message).unwrap_or_default()
}

/// Checks that `Degraded`'s message on `md` names `needle`, as `what`.
async fn degraded_says(e2e: &E2e, md: &ModelDeployment, needle: &str, what: &str) {
    let said = message(md, conditions::DEGRADED);
    e2e.ensure(
        said.contains(needle),
        format!("{what} in the message: {said}"),
    )
    .await;
}

/// A `ModelDeployment` named `name` of the CPU example on `gpus` of `product`.
fn on_gpu(name: &str, product: &str, replicas: i32) -> ModelDeployment {
    let mut md = E2e::cpu_example(replicas);
    md.metadata.name = Some(name.into());
    md.spec.resources.gpu = Some(GpuSpec {
        count: 1,
        resource_name: "nvidia.com/gpu".into(),
        product: Some(product.into()),
    });
    md
}

/// Changes the spec of the Ready `md` with `change` and waits until `Degraded` says `reason`;
/// checks the stable revision kept serving at full size meanwhile.
async fn roll_until_degraded(
    e2e: &E2e,
    md: &ModelDeployment,
    stable: &str,
    change: impl FnOnce(&mut ModelDeployment),
    reason: &str,
) -> ModelDeployment {
    let mut next = md.clone();
    change(&mut next);
    e2e.expect(e2e.apply(&next).await, "the change applies")
        .await;
    let degraded = e2e
        .wait_md(&md.name_any(), &format!("Degraded with {reason}"), |md| {
            is(md, conditions::DEGRADED, "True", reason)
        })
        .await;
    let degraded = e2e.expect(degraded, "the failure is reported").await;
    let pods = e2e.wait_ready_pods(stable, md.spec.replicas as usize).await;
    let pods = e2e.expect(pods, "the stable revision still serves").await;
    let ip = pod_ip(&pods[0]).unwrap_or_default();
    let answer = embed(&ip, "still serving").await;
    e2e.expect(answer, "a stable pod answers").await;
    degraded
}

#[tokio::test]
async fn a_crash_looping_revision_is_given_up_at_its_deadline_and_the_stable_keeps_serving() {
    let Some(e2e) = E2e::start("crash-loop").await else {
        return;
    };
    let mut md = E2e::cpu_example(1);
    // The smallest deadline the schema allows, to see kandle give up within the test.
    md.spec.rollout.progress_deadline_seconds = 10;
    let (md, stable) = e2e.apply_until_ready(&md).await;
    let degraded = roll_until_degraded(
        &e2e,
        &md,
        &stable,
        |md| {
            md.spec.model.version = Some("broken".into());
            md.spec.runtime.args = vec!["--no-such-flag".into()];
        },
        reasons::CRASH_LOOP,
    )
    .await;
    let said = message(&degraded, conditions::DEGRADED);
    e2e.ensure(
        said.contains("--no-such-flag") && said.contains("kandle-runtime"),
        format!("the runtime's own words in the message: {said}"),
    )
    .await;

    let name = md.name_any();
    let given_up = e2e
        .wait_md(&name, "given up at the progress deadline", |md| {
            is(
                md,
                conditions::DEGRADED,
                "True",
                reasons::PROGRESS_DEADLINE_EXCEEDED,
            ) && is(
                md,
                conditions::PROGRESSING,
                "False",
                reasons::PROGRESS_DEADLINE_EXCEEDED,
            )
        })
        .await;
    let given_up = e2e.expect(given_up, "kandle gives up").await;
    let status = given_up.status.clone().unwrap_or_default();
    e2e.ensure(
        status.stable_revision.as_deref() == Some(stable.as_str()),
        "the stable revision is still the stable one",
    )
    .await;
    let failed = status
        .history
        .iter()
        .find(|r| r.outcome == RevisionOutcome::Failed)
        .map(|r| r.revision.clone());
    e2e.ensure(failed.is_some(), "the revision is recorded as failed")
        .await;
    let failed = failed.unwrap_or_default();
    let scaled_down = e2e
        .eventually("the failed revision scaled to zero", || async {
            let d = e2e.api::<Deployment>().get(&failed).await?;
            Ok((d.spec.as_ref().and_then(|s| s.replicas) == Some(0)).then_some(()))
        })
        .await;
    e2e.expect(scaled_down, "its pods stop").await;
    let pods = e2e.wait_ready_pods(&stable, 1).await;
    e2e.expect(pods, "the stable revision serves at full size")
        .await;
    let warnings: Vec<String> = e2e
        .expect(e2e.events_of(&name).await, "events")
        .await
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter_map(|e| e.reason)
        .collect();
    e2e.ensure(
        warnings
            .iter()
            .filter(|r| *r == reasons::CRASH_LOOP)
            .count()
            == 1,
        format!("one CrashLoop warning, not one per restart: {warnings:?}"),
    )
    .await;
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_is_reported_and_the_stable_keeps_serving() {
    let Some(e2e) = E2e::start("image-pull").await else {
        return;
    };
    let (md, stable) = e2e.apply_until_ready(&E2e::cpu_example(1)).await;
    let degraded = roll_until_degraded(
        &e2e,
        &md,
        &stable,
        |md| md.spec.runtime.image = Some("registry.invalid/kandle-runtime:missing".into()),
        reasons::IMAGE_PULL_FAILED,
    )
    .await;
    degraded_says(
        &e2e,
        &degraded,
        "registry.invalid/kandle-runtime:missing",
        "the image named",
    )
    .await;
}

#[tokio::test]
async fn a_model_archive_that_does_not_match_its_sha256_is_a_failed_fetch() {
    let Some(e2e) = E2e::start("fetch").await else {
        return;
    };
    // A real HTTP server on loopback with an archive whose checksum the spec gets wrong.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let port = listener.local_addr().expect("an address").port();
    let app = axum::Router::new().route(
        "/model.tar",
        axum::routing::get(|| async { "not the archive you are looking for" }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut md = E2e::cpu_example(1);
    md.metadata.name = Some("fetched".into());
    md.spec.model.source = serde_json::from_value(json!({
        "http": {
            "url": format!("http://127.0.0.1:{port}/model.tar"),
            "sha256": "0".repeat(64),
        }
    }))
    .expect("an http source");
    e2e.expect(e2e.apply(&md).await, "the ModelDeployment applies")
        .await;
    // The fetcher's own words: the container's name and what failed.
    let (_, said) = e2e
        .wait_degraded("fetched", reasons::MODEL_FETCH_FAILED, "fetch-model")
        .await;
    e2e.ensure(
        said.contains("checksum mismatch"),
        format!("the fetcher's words in the message: {said}"),
    )
    .await;
    server.abort();
}

#[tokio::test]
async fn pods_refused_by_a_resource_quota_are_reported() {
    let Some(e2e) = E2e::start("quota").await else {
        return;
    };
    let (md, stable) = e2e.apply_until_ready(&E2e::cpu_example(1)).await;
    let quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "one-pod"},
        "spec": {"hard": {"pods": "1"}},
    }))
    .expect("a quota");
    let created = e2e
        .api::<ResourceQuota>()
        .create(&PostParams::default(), &quota)
        .await;
    e2e.expect(created, "the quota is created").await;
    let counted = e2e
        .eventually("the quota to count the running pod", || async {
            let q = e2e.api::<ResourceQuota>().get("one-pod").await?;
            let used = q.status.and_then(|s| s.used).unwrap_or_default();
            Ok(used
                .get("pods")
                .map(|q| q.0 == "1")
                .unwrap_or(false)
                .then_some(()))
        })
        .await;
    e2e.expect(counted, "the quota is in force").await;
    let degraded = roll_until_degraded(
        &e2e,
        &md,
        &stable,
        |md| md.spec.model.version = Some("over-quota".into()),
        reasons::PODS_REFUSED,
    )
    .await;
    degraded_says(&e2e, &degraded, "exceeded quota", "the API server's words").await;
}

#[tokio::test]
async fn a_rollout_on_nodes_with_exactly_enough_gpus_completes_one_pod_at_a_time() {
    let Some(e2e) = E2e::start("full-gpus").await else {
        return;
    };
    let product = "NVIDIA-E2E-FULL";
    let node = NodeSpec::gpu("e2e-gpu-full", product, 2);
    e2e.expect(e2e.add_node(node).await, "a node with two GPUs")
        .await;
    let (md, stable) = e2e.apply_until_ready(&on_gpu("full", product, 2)).await;
    let mut next = md.clone();
    next.spec.model.version = Some("next".into());
    e2e.expect(e2e.apply(&next).await, "the new version applies")
        .await;

    // Sample the serving pods until the new revision is stable.
    let started = Instant::now();
    let mut fewest_ready = usize::MAX;
    let done = loop {
        let current = e2e.mds().get("full").await;
        let current = e2e.expect(current, "reading the ModelDeployment").await;
        let pods = e2e.expect(e2e.pods_of("full").await, "pods").await;
        let ready = pods
            .iter()
            .filter(|p| pod_is_ready(p) && p.metadata.deletion_timestamp.is_none())
            .count();
        fewest_ready = fewest_ready.min(ready);
        let rolled = stable_revision(&current).is_some_and(|r| r != stable)
            && is_ready_for_generation(&current);
        if rolled {
            break current;
        }
        e2e.ensure(
            started.elapsed() < Duration::from_secs(120),
            "the rollout completes within 120 s",
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "rolled on a full node in {:?}; fewest ready pods at any sample: {fewest_ready}",
        started.elapsed()
    );
    e2e.ensure(
        fewest_ready >= 1,
        "at least one ready pod at every sample (maxUnavailable 1 of 2)",
    )
    .await;
    let new = stable_revision(&done).unwrap_or_default();
    e2e.expect(
        e2e.wait_ready_pods(&new, 2).await,
        "two new pods on the node",
    )
    .await;
    e2e.expect(e2e.remove_node("e2e-gpu-full").await, "the node goes")
        .await;
}

#[tokio::test]
async fn pods_waiting_for_room_degrade_after_the_grace_period_and_resume_when_a_node_appears() {
    let Some(e2e) = E2e::start_without_operator("capacity").await else {
        return;
    };
    let operator = e2e.spawn_operator("operator", &["--unschedulable-grace-seconds=3"]);
    let _operator = e2e.expect(operator, "the operator starts").await;
    let product = "NVIDIA-E2E-LATE";
    let md = on_gpu("late", product, 1);
    e2e.expect(e2e.apply(&md).await, "the ModelDeployment applies")
        .await;
    let waiting = e2e
        .wait_md("late", "waiting for capacity", |md| {
            is(
                md,
                conditions::PROGRESSING,
                "True",
                reasons::WAITING_FOR_CAPACITY,
            ) && is(md, conditions::DEGRADED, "False", reasons::HEALTHY)
        })
        .await;
    e2e.expect(waiting, "first it waits, not Degraded").await;
    let degraded = e2e
        .wait_md("late", "Unschedulable after the grace period", |md| {
            is(md, conditions::DEGRADED, "True", reasons::UNSCHEDULABLE)
        })
        .await;
    let degraded = e2e.expect(degraded, "then it is Degraded").await;
    let said = message(&degraded, conditions::DEGRADED);
    e2e.ensure(
        said.contains("0/") && said.contains("nodes are available"),
        format!("the scheduler's words: {said}"),
    )
    .await;

    let node = NodeSpec::gpu("e2e-gpu-late", product, 1);
    e2e.expect(e2e.add_node(node).await, "a node with room appears")
        .await;
    let ready = e2e
        .wait_md("late", "Ready and no longer Degraded", |md| {
            is_ready_for_generation(md) && is(md, conditions::DEGRADED, "False", reasons::HEALTHY)
        })
        .await;
    e2e.expect(ready, "it resumes on the new node").await;
    let warnings = e2e.expect(e2e.events_of("late").await, "events").await;
    let unschedulable = warnings
        .iter()
        .filter(|e| e.reason.as_deref() == Some(reasons::UNSCHEDULABLE))
        .count();
    e2e.ensure(
        unschedulable == 1,
        format!("one Unschedulable warning, got {unschedulable}"),
    )
    .await;
    e2e.expect(e2e.remove_node("e2e-gpu-late").await, "the node goes")
        .await;
}

#[tokio::test]
async fn a_service_of_someone_else_is_never_adopted() {
    let Some(e2e) = E2e::start("ownership").await else {
        return;
    };
    let theirs: Service = serde_json::from_value(json!({
        "metadata": {"name": "minilm-cpu", "labels": {"team": "search"}},
        "spec": {"selector": {"app": "search"}, "ports": [{"port": 80}]},
    }))
    .expect("a Service");
    let created = e2e
        .api::<Service>()
        .create(&PostParams::default(), &theirs)
        .await;
    e2e.expect(created, "someone else's Service exists").await;
    e2e.expect(e2e.apply(&E2e::cpu_example(1)).await, "the example applies")
        .await;
    let degraded = e2e
        .wait_md("minilm-cpu", "Degraded with NotOwned", |md| {
            is(md, conditions::DEGRADED, "True", reasons::NOT_OWNED)
        })
        .await;
    let degraded = e2e.expect(degraded, "the conflict is reported").await;
    e2e.ensure(
        message(&degraded, conditions::DEGRADED).contains("Service \"minilm-cpu\""),
        "the Service is named",
    )
    .await;
    let service = e2e.api::<Service>().get("minilm-cpu").await;
    let service = e2e.expect(service, "their Service is still there").await;
    let selector = service.spec.and_then(|s| s.selector).unwrap_or_default();
    e2e.ensure(
        selector.get("app").map(String::as_str) == Some("search") && selector.len() == 1,
        format!("their selector untouched: {selector:?}"),
    )
    .await;
    e2e.ensure(
        service
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty(),
        "no owner reference added",
    )
    .await;
}

#[tokio::test]
async fn host_path_sources_are_refused_unless_the_operator_allows_the_folder() {
    let Some(e2e) = E2e::start_without_operator("host-path").await else {
        return;
    };
    let model_dir =
        kandle_tests::e2e::binaries::fetch_model(&kandle_tests::e2e::cluster::workspace())
            .expect("the model folder");
    let mut md = E2e::cpu_example(1);
    md.metadata.name = Some("on-host".into());
    md.spec.model.source = serde_json::from_value(json!({
        "hostPath": {"path": model_dir.display().to_string()}
    }))
    .expect("a hostPath source");

    let refusing = e2e.spawn_operator("refusing", &[]);
    let mut refusing = e2e
        .expect(refusing, "an operator with no allowed paths")
        .await;
    e2e.expect(e2e.apply(&md).await, "the ModelDeployment applies")
        .await;
    let refused = e2e
        .wait_md("on-host", "refused as InvalidSpec", |md| {
            is(md, conditions::DEGRADED, "True", reasons::INVALID_SPEC)
        })
        .await;
    let refused = e2e.expect(refused, "the hostPath is refused").await;
    e2e.ensure(
        message(&refused, conditions::DEGRADED).contains("--allowed-host-paths"),
        "the message says how to allow it",
    )
    .await;
    let deployments = e2e.expect(e2e.names::<Deployment>().await, "list").await;
    e2e.ensure(deployments.is_empty(), "no Deployment is created")
        .await;
    refusing.kill();

    let parent = model_dir
        .parent()
        .expect("a parent folder")
        .display()
        .to_string();
    let allow = format!("--allowed-host-paths={parent}");
    let allowing = e2e.spawn_operator("allowing", &[&allow]);
    let _allowing = e2e
        .expect(allowing, "an operator allowing the folder")
        .await;
    let md = e2e.wait_ready("on-host").await;
    let md = e2e.expect(md, "served from the host folder").await;
    let stable = stable_revision(&md).unwrap_or_default();
    let pods = e2e
        .expect(e2e.wait_ready_pods(&stable, 1).await, "a pod")
        .await;
    let answer = embed(&pod_ip(&pods[0]).unwrap_or_default(), "from the host").await;
    e2e.expect(answer, "it answers").await;
}
