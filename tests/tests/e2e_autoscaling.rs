//! Autoscaling on a real control plane with real runtime pods under load from the test: load
//! going up scales the replicas up within seconds, `maxReplicas` holds, load going away scales
//! down after the stabilization window; a GPU model scaling past the nodes' GPUs waits for
//! capacity without asking for more, and proceeds when a node appears. Skips (saying why)
//! without a control plane; see `kandle_tests::e2e`.

use std::time::{Duration, Instant};

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kandle_crds::conditions::{self, reasons};
use kandle_crds::{AutoscalingMetric, AutoscalingStatus, GpuSpec, ModelDeployment};
use kandle_tests::e2e::{has_condition, E2e, Load, NodeSpec};
use kube::api::{Patch, PatchParams};
use kube::ResourceExt;

/// The autoscaler's goal from a load step to its decision.
const DECISION_GOAL: Duration = Duration::from_secs(5);
/// How long the tests watch that a count holds.
const HOLD: Duration = Duration::from_secs(5);
/// Between two reads while watching.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// The GPU nodes of the capacity test: one GPU at first, two more later.
const NODES: [&str; 2] = ["e2e-gpu-autoscale", "e2e-gpu-autoscale-2"];
/// Short windows, so a scale-down is seen in seconds.
const OPERATOR_ARGS: &[&str] = &[
    "--autoscale-stable-window-seconds=10",
    "--autoscale-panic-window-seconds=2",
];

/// `manifests/examples/autoscaled.yaml` named `name`, with the given bounds, 2 requests in
/// flight per replica and a 5 s scale-down window.
fn autoscaled(name: &str, min: i32, max: i32) -> ModelDeployment {
    let mut md = E2e::example("autoscaled.yaml").expect("the autoscaled example parses");
    md.metadata.name = Some(name.to_string());
    let autoscaling = md
        .spec
        .autoscaling
        .as_mut()
        .expect("the example autoscales");
    autoscaling.min_replicas = min;
    autoscaling.max_replicas = max;
    autoscaling.target = 2.0;
    autoscaling.scale_down_stabilization = "5s".to_string();
    md
}

fn autoscaling_of(md: &ModelDeployment) -> AutoscalingStatus {
    md.status
        .as_ref()
        .and_then(|s| s.autoscaling.clone())
        .unwrap_or_default()
}

fn desired(md: &ModelDeployment) -> i32 {
    autoscaling_of(md).desired_replicas
}

/// The distinct `(desiredReplicas, reason)` in a run of statuses, in order.
fn summary(seen: &[AutoscalingStatus]) -> String {
    let mut steps: Vec<(i32, &str)> = Vec::new();
    for s in seen {
        let step = (s.desired_replicas, s.reason.as_str());
        if steps.last() != Some(&step) {
            steps.push(step);
        }
    }
    format!("{steps:?}, last: {:?}", seen.last().map(|s| &s.message))
}

/// Reads `name` every [`SAMPLE_EVERY`] for [`HOLD`], ensures `desiredReplicas` stayed at
/// `count` throughout (saying `what` otherwise), and returns every status seen.
async fn holds_at(e2e: &E2e, name: &str, count: i32, what: &str) -> Vec<AutoscalingStatus> {
    let until = Instant::now() + HOLD;
    let mut ticks = tokio::time::interval(SAMPLE_EVERY);
    let mut seen = Vec::new();
    while Instant::now() < until {
        ticks.tick().await;
        let md = e2e
            .expect(e2e.mds().get(name).await, "read the ModelDeployment")
            .await;
        seen.push(autoscaling_of(&md));
    }
    e2e.ensure(
        seen.iter().all(|s| s.desired_replicas == count),
        format!("{what}: {}", summary(&seen)),
    )
    .await;
    seen
}

#[tokio::test]
async fn replicas_follow_load_up_within_seconds_and_down_after_the_window() {
    let Some(e2e) = E2e::start_without_operator("autoscale").await else {
        return;
    };
    let operator = e2e.spawn_operator("operator", OPERATOR_ARGS);
    let _operator = e2e.expect(operator, "the operator starts").await;
    let (md, _) = e2e.apply_until_ready(&autoscaled("busy", 1, 3)).await;
    e2e.ensure(
        desired(&md) == 1,
        format!("one replica at rest: {:?}", autoscaling_of(&md)),
    )
    .await;
    let mut load = Load::on(e2e.api(), e2e.api(), "busy");
    load.set_clients(1);
    holds_at(&e2e, "busy", 1, "one client keeps one replica").await;

    load.set_clients(4);
    let stepped = Instant::now();
    let up = e2e
        .wait_md("busy", "a scale-up decision", |md| desired(md) >= 2)
        .await;
    let up = e2e.expect(up, "four times the load scales up").await;
    let decided = stepped.elapsed();
    e2e.ensure(
        decided <= DECISION_GOAL,
        format!(
            "decided after {decided:?}, goal {DECISION_GOAL:?}: {:?}",
            autoscaling_of(&up)
        ),
    )
    .await;
    println!(
        "load x4 -> scale-up decision in {:.2} s",
        decided.as_secs_f64()
    );
    let ready = e2e
        .wait_md("busy", "the new replicas ready", |md| {
            md.status
                .as_ref()
                .is_some_and(|s| s.ready_replicas >= desired(md))
        })
        .await;
    e2e.expect(ready, "the new replicas become ready").await;

    load.set_clients(12);
    let capped = e2e
        .wait_md("busy", "capped at maxReplicas", |md| {
            desired(md) == 3 && autoscaling_of(md).reason == "AtMaxReplicas"
        })
        .await;
    let capped = e2e
        .expect(capped, "more load than 3 replicas carry stops at 3")
        .await;
    println!(
        "status.autoscaling at maxReplicas: {}",
        serde_json::to_string_pretty(&autoscaling_of(&capped)).unwrap_or_default()
    );
    holds_at(&e2e, "busy", 3, "never above maxReplicas").await;

    load.set_clients(0);
    let quiet = Instant::now();
    let down = e2e
        .wait_md("busy", "back to minReplicas", |md| desired(md) == 1)
        .await;
    let down = e2e.expect(down, "no load scales down to 1").await;
    let after = quiet.elapsed();
    e2e.ensure(
        after >= Duration::from_secs(5),
        format!("scaled down after {after:?}, inside the 5 s window"),
    )
    .await;
    e2e.ensure(
        autoscaling_of(&down).reason == "ScaledDown",
        format!("the status says why: {:?}", autoscaling_of(&down)),
    )
    .await;
    println!(
        "load gone -> scaled down after {:.1} s",
        after.as_secs_f64()
    );
}

#[tokio::test]
async fn a_gpu_model_past_the_nodes_gpus_waits_for_capacity_then_proceeds() {
    let Some(e2e) = E2e::start_without_operator("autoscale-gpu").await else {
        return;
    };
    let operator = e2e.spawn_operator("operator", OPERATOR_ARGS);
    let _operator = e2e.expect(operator, "the operator starts").await;
    let product = "NVIDIA-E2E-AUTOSCALE";
    for node in NODES {
        // Left by an earlier run that failed half-way.
        e2e.expect(e2e.remove_node(node).await, "no node of an earlier run")
            .await;
    }
    e2e.expect(
        e2e.add_node(NodeSpec::gpu(NODES[0], product, 1)).await,
        "a node with one GPU",
    )
    .await;
    let mut md = autoscaled("gpu", 1, 3);
    md.spec.resources.gpu = Some(GpuSpec {
        count: 1,
        resource_name: "nvidia.com/gpu".into(),
        product: Some(product.to_string()),
    });
    e2e.apply_until_ready(&md).await;

    let mut load = Load::on(e2e.api(), e2e.api(), "gpu");
    load.set_clients(4);
    let waiting = e2e
        .wait_md("gpu", "more replicas asked for, waiting for room", |md| {
            desired(md) >= 2
                && has_condition(md, conditions::PROGRESSING, "True")
                && md.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.reason == reasons::WAITING_FOR_CAPACITY)
                })
        })
        .await;
    let waiting = e2e.expect(waiting, "the scale-up waits for a GPU").await;
    let asked = desired(&waiting);

    load.set_clients(8);
    let what = format!("pending pods serve nothing, so no more are asked for than {asked}");
    let held = holds_at(&e2e, "gpu", asked, &what).await;
    e2e.ensure(
        held.iter().any(|s| s.reason == "WaitingForCapacity"),
        format!("the status says it waits for capacity: {}", summary(&held)),
    )
    .await;

    e2e.expect(
        e2e.add_node(NodeSpec::gpu(NODES[1], product, 2)).await,
        "a node with room appears (the cluster autoscaler's part)",
    )
    .await;
    let grown = e2e
        .wait_md("gpu", "all asked-for replicas ready", |md| {
            desired(md) == 3 && md.status.as_ref().is_some_and(|s| s.ready_replicas >= 3)
        })
        .await;
    e2e.expect(grown, "it proceeds on the new node up to maxReplicas")
        .await;
    drop(load);
    for node in NODES {
        e2e.expect(e2e.remove_node(node).await, "the node goes")
            .await;
    }
    let _ = e2e.mds().delete(&md.name_any(), &Default::default()).await;
}

#[tokio::test]
async fn cpu_is_left_to_a_horizontal_pod_autoscaler_that_scales_through_the_scale_subresource() {
    let Some(e2e) = E2e::start("autoscale-cpu").await else {
        return;
    };
    let mut md = autoscaled("cpu", 1, 3);
    let autoscaling = md
        .spec
        .autoscaling
        .as_mut()
        .expect("the example autoscales");
    autoscaling.metric = AutoscalingMetric::Cpu;
    autoscaling.target = 70.0;
    let (md, _) = e2e.apply_until_ready(&md).await;
    e2e.ensure(
        autoscaling_of(&md).reason == "HorizontalPodAutoscaler",
        format!("the status names the HPA: {:?}", autoscaling_of(&md)),
    )
    .await;
    let hpas = e2e.api::<HorizontalPodAutoscaler>();
    let read_scale = e2e
        .eventually(
            "the HPA controller to read the ModelDeployment's /scale",
            || async {
                let Some(hpa) = hpas.get_opt("cpu").await? else {
                    return Ok(None);
                };
                let able = hpa
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .into_iter()
                    .flatten()
                    .any(|c| c.type_ == "AbleToScale" && c.status == "True");
                Ok(able.then_some(hpa))
            },
        )
        .await;
    let hpa = e2e.expect(read_scale, "the HPA reads /scale").await;
    let spec = hpa.spec.expect("an HPA spec");
    e2e.ensure(
        spec.scale_target_ref.kind == "ModelDeployment" && spec.max_replicas == 3,
        format!(
            "the HPA targets the ModelDeployment: {:?}",
            spec.scale_target_ref
        ),
    )
    .await;
    e2e.ensure(
        hpa.status.and_then(|s| s.current_replicas) == Some(1),
        "the HPA counts the ModelDeployment's replicas",
    )
    .await;

    // What the HPA does when it scales: write spec.replicas through /scale.
    let scale = serde_json::json!({ "spec": { "replicas": 2 } });
    let scaled = e2e
        .mds()
        .patch_scale("cpu", &PatchParams::default(), &Patch::Merge(&scale))
        .await;
    e2e.expect(scaled, "/scale accepts 2 replicas").await;
    let two = e2e
        .wait_md("cpu", "two ready replicas", |md| {
            md.status.as_ref().is_some_and(|s| s.ready_replicas == 2)
                && autoscaling_of(md).desired_replicas == 2
        })
        .await;
    e2e.expect(two, "the HPA's count is served").await;

    let mut plain = md.clone();
    plain.spec.autoscaling = None;
    e2e.expect(e2e.apply(&plain).await, "autoscaling removed")
        .await;
    let gone = e2e
        .eventually("the HPA to go", || async {
            Ok(hpas.get_opt("cpu").await?.is_none().then_some(()))
        })
        .await;
    e2e.expect(gone, "the HPA is deleted with the setting")
        .await;
}
