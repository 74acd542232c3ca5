//! Every state the planner can leave a `ModelDeployment` in, each produced by the real `plan`
//! from a cluster built step by step: what the kstatus and Argo CD health tests read.

use k8s_openapi::api::core::v1::Service;

use super::*;
use crate::observe::ProblemKind;
use crate::plan::rejected;
use crate::testing::{md, observed, starting_from};

/// A `ModelDeployment` as the API server holds it after the operator's pass, and that pass.
pub(super) struct State {
    /// The resource with the status the pass wrote.
    pub md: ModelDeployment,
    /// The pass.
    pub plan: Plan,
    /// The cluster after the pass, where a state needs the next pass planned.
    pub cluster: Observed,
}

impl State {
    fn after(md: &ModelDeployment, plan: Plan) -> Self {
        Self {
            md: with_status(md, &plan),
            plan,
            cluster: Observed::default(),
        }
    }
}

/// Just created: the first revision's pods are starting, nothing serves yet.
pub(super) fn first_rollout() -> State {
    let md = md("bert").with_replicas(2).build();
    let first = plan_at(&md, &Observed::default(), 0);
    let md = with_status(&md, &first);
    let cluster = observed().from_plan(&first).build();
    State::after(&md, plan_at(&md, &cluster, 10))
}

/// Settled: the stable revision serves every replica.
pub(super) fn stable() -> State {
    let (md, cluster) = settled(
        &md("bert").with_replicas(2).build(),
        &Observed::default(),
        0,
    );
    State::after(&md, plan_at(&md, &cluster, 50))
}

/// A new model version rolls out beside the stable revision.
pub(super) fn rolling() -> State {
    let (md, cluster, _, _) = rolling_v2(2);
    State::after(&md, plan_at(&md, &cluster, 110))
}

const NO_ROOM: &str = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.";

fn unschedulable_at(seconds: i64) -> State {
    let (md, cluster, _, new) = rolling_v2(2);
    let cluster = starting_from(&cluster)
        .unschedulable_since("bert", hash_of(&new), NO_ROOM, at(100))
        .build();
    State::after(&md, plan_at(&md, &cluster, seconds))
}

/// The new revision's pods wait for room, within the grace period.
pub(super) fn waiting_for_capacity() -> State {
    unschedulable_at(100 + 60)
}

/// ... past the grace period.
pub(super) fn unschedulable() -> State {
    unschedulable_at(100 + 300)
}

fn crash_looping_at(seconds: i64) -> State {
    let (md, cluster, _, new) = rolling_v2(2);
    let cluster = starting_from(&cluster)
        .failing(
            "bert",
            hash_of(&new),
            ProblemKind::CrashLoop,
            "exited with code 1: error: no model.safetensors",
        )
        .build();
    State::after(&md, plan_at(&md, &cluster, seconds))
}

/// The new revision crash-loops; the rollout keeps trying until its deadline.
pub(super) fn crash_loop() -> State {
    crash_looping_at(110)
}

/// ... past its progress deadline: given up, the stable revision serves at full size.
pub(super) fn given_up() -> State {
    crash_looping_at(100 + 600)
}

/// A first revision past its deadline, with nothing else to serve: kandle keeps trying.
pub(super) fn first_past_deadline() -> State {
    let md = md("bert").with_replicas(2).build();
    let first = plan_at(&md, &Observed::default(), 0);
    let md = with_status(&md, &first);
    let cluster = observed().from_plan(&first).build();
    State::after(&md, plan_at(&md, &cluster, 600))
}

/// The new spec names a PVC that does not exist; the stable revision keeps serving.
pub(super) fn missing_pvc() -> State {
    let v1 = md("bert")
        .from_pvc("weights-v1", None)
        .with_replicas(2)
        .build();
    let (md_v1, cluster) = settled(&v1, &observed().with_pvc(true).build(), 0);
    let md_v2 = respec(
        &md_v1,
        &md("bert")
            .from_pvc("weights-v2", None)
            .with_replicas(2)
            .build(),
    );
    let cluster = starting_from(&cluster).with_pvc(false).build();
    State::after(&md_v2, plan_at(&md_v2, &cluster, 100))
}

/// A hostPath source outside the allowed folders, on creation.
pub(super) fn host_path_refused() -> State {
    let md = md("bert").from_host_path("/etc/models").build();
    State::after(&md, plan_at(&md, &Observed::default(), 0))
}

/// The API server refused a child the plan asked for.
pub(super) fn refused_by_api_server() -> State {
    let md = md("bert").build();
    let planned = plan_at(&md, &Observed::default(), 0);
    let refusal = "the API server rejected Deployment bert-0123456789: \
                   spec.template.spec.tolerations[1].operator: Unsupported value";
    State::after(&md, rejected(&md, &planned, refusal, at(0)))
}

/// `spec.paused` set together with a new model version: nothing rolls out.
pub(super) fn paused() -> State {
    let (md_v1, cluster) = settled(
        &md("bert").with_replicas(2).build(),
        &Observed::default(),
        0,
    );
    let md_v2 = respec(
        &md_v1,
        &md("bert")
            .with_replicas(2)
            .with_version("v2")
            .paused()
            .build(),
    );
    State::after(&md_v2, plan_at(&md_v2, &cluster, 100))
}

/// A Service of the same name belongs to someone else.
pub(super) fn not_owned() -> State {
    let md = md("bert").with_replicas(2).build();
    let mut cluster = Observed::default();
    let mut foreign = Service::default();
    foreign.metadata.name = Some("bert".into());
    cluster.service = Some(foreign);
    State::after(&md, plan_at(&md, &cluster, 10))
}

/// A new operator's pod template waits for an upgrade slot.
pub(super) fn upgrade_queued() -> State {
    let (md, mut cluster) = settled(
        &md("bert").with_replicas(2).build(),
        &Observed::default(),
        0,
    );
    cluster.upgrade_waits = true;
    let upgraded = OperatorConfig {
        runtime_image: "ghcr.io/kandle-dev/kandle-runtime:0.2.0".to_string(),
        ..config()
    };
    State::after(&md, plan(&md, &cluster, at(100), &upgraded))
}

/// Scaled from 2 to 3 replicas: the same revision, one pod short until it is ready.
pub(super) fn scaling_up() -> State {
    let (md_v1, cluster) = settled(
        &md("bert").with_replicas(2).build(),
        &Observed::default(),
        0,
    );
    let md_3 = respec(&md_v1, &md("bert").with_replicas(3).build());
    let first = plan_at(&md_3, &cluster, 100);
    let md_3 = with_status(&md_3, &first);
    let cluster = starting_from(&cluster).from_plan(&first).build();
    State::after(&md_3, plan_at(&md_3, &cluster, 110))
}

/// Settled, then the spec changed (generation 2) before the operator's next pass: the status
/// still describes generation 1.
pub(super) fn older_generation() -> ModelDeployment {
    respec(
        &stable().md,
        &md("bert").with_replicas(2).with_version("v2").build(),
    )
}

/// A canary of v2 beside the settled v1, after `passes` passes with every pod ready and, when
/// given, a `kandle.dev/command` before the last one.
fn canary_after(steps: &[(i32, Option<&str>)], passes: i64, command: Option<&str>) -> State {
    let (md_v1, mut cluster) = settled(
        &md("bert").with_replicas(2).build(),
        &Observed::default(),
        0,
    );
    let mut md = respec(
        &md_v1,
        &md("bert")
            .with_replicas(2)
            .with_version("v2")
            .with_steps(steps)
            .build(),
    );
    let mut last = None;
    for t in 0..passes {
        if t == passes - 1 {
            if let Some(value) = command {
                md.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(
                        kandle_crds::labels::COMMAND_ANNOTATION.to_string(),
                        value.to_string(),
                    );
            }
        }
        let plan = plan_at(&md, &cluster, 100 + t);
        md = with_status(&md, &plan);
        cluster = starting_from(&cluster)
            .from_plan(&plan)
            .all_available()
            .build();
        last = Some(plan);
    }
    State {
        md,
        plan: last.expect("at least one pass"),
        cluster,
    }
}

/// A canary holding its first step (50%) for its pause.
pub(super) fn canary_stepping() -> State {
    canary_after(&[(50, Some("1h"))], 3, None)
}

/// A canary at a step without a pause: it waits for `kubectl kandle promote`.
pub(super) fn canary_waiting_for_promote() -> State {
    canary_after(&[(50, None)], 3, None)
}

/// A canary held by `kubectl kandle pause`.
pub(super) fn canary_paused() -> State {
    canary_after(&[(50, Some("1h"))], 3, Some("pause@1"))
}

/// A canary aborted by `kubectl kandle abort`: the stable serves everything.
pub(super) fn canary_aborted() -> State {
    canary_after(&[(50, Some("1h"))], 3, Some("abort@1"))
}
