//! The pure planner: from a `ModelDeployment`, what was observed and the current time, decide
//! what the cluster should hold (children to apply and delete), the full status, and the events
//! worth publishing. No I/O; every rule of the operator lives here and below.

mod autoscaling;
mod budget;
mod deployment;
mod events;
mod history;
mod hpa;
mod kstatus;
mod meta;
mod model_volume;
mod noop;
mod ownership;
mod pod_template;
mod progress;
mod progressive;
mod rejection;
mod revision;
mod rollout;
pub(crate) mod route;
mod service;
mod status;
mod upgrade;
mod verdicts;

#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kandle_crds::conditions::reasons;
use kandle_crds::{CanaryPhase, ModelDeployment, ModelDeploymentStatus};
use kube::api::DynamicObject;
use kube::ResourceExt;

pub use autoscaling::{decision as autoscaling_decision, history_span, scraped, HPA_REASON};
pub use deployment::is_available;
pub use meta::{owner_reference, pod_selector_labels, pod_selector_string, revision_labels};
pub use model_volume::{FETCH_CONTAINER, MODEL_DIR, MODEL_VOLUME};
pub use noop::{without_no_ops, APPLIED_HASH};
pub use ownership::controlled_by;
pub use pod_template::{
    runtime_args, GPU_PRODUCT_LABEL, PORT_NAME, RUNTIME_CONTAINER, RUNTIME_PORT,
};
pub use progressive::{analysed, Analysed};
pub use rejection::{rejected, REJECTED_PREFIX};
pub use revision::{revision_name, KnownRevision, RevisionSnapshot, HASH_LEN, TEMPLATE_VERSION};
pub use route::{http_route_resource, routing, weights_of};

pub use service::{service_url, SERVICE_PORT};

use crate::autoscale;
use crate::config::OperatorConfig;
use crate::observe::Observed;
use history::HistoryInput;
use ownership::OwnedView;
use progressive::{CanaryInput, CanaryPass};
use rollout::{current_stable, known_revisions};
use status::Verdict;
use verdicts::PodFindings;

/// Kind of a child of a `ModelDeployment`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChildKind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 ControllerRevision.
    ControllerRevision,
    /// v1 Service.
    Service,
    /// policy/v1 PodDisruptionBudget.
    PodDisruptionBudget,
    /// autoscaling/v2 HorizontalPodAutoscaler.
    HorizontalPodAutoscaler,
    /// gateway.networking.k8s.io/v1 HTTPRoute.
    HttpRoute,
}

impl ChildKind {
    /// The Kubernetes kind.
    pub fn as_str(self) -> &'static str {
        match self {
            ChildKind::Deployment => "Deployment",
            ChildKind::ControllerRevision => "ControllerRevision",
            ChildKind::Service => "Service",
            ChildKind::PodDisruptionBudget => "PodDisruptionBudget",
            ChildKind::HorizontalPodAutoscaler => "HorizontalPodAutoscaler",
            ChildKind::HttpRoute => "HTTPRoute",
        }
    }
}

/// A child to delete, by kind and name (in the `ModelDeployment`'s namespace).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChildRef {
    /// Its kind.
    pub kind: ChildKind,
    /// Its name.
    pub name: String,
    /// The UID it was observed with: the deletion only goes ahead for that very object.
    pub uid: Option<String>,
}

/// Severity of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// Something happened as it should.
    Normal,
    /// Something needs a human.
    Warning,
}

/// An event to publish on the `ModelDeployment`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    /// Normal or Warning.
    pub kind: EventKind,
    /// PascalCase reason from [`kandle_crds::conditions::reasons`].
    pub reason: &'static str,
    /// What the operator did or found, PascalCase (the event's `action`).
    pub action: &'static str,
    /// Human-readable message.
    pub message: String,
}

/// What the cluster should hold after this pass.
///
/// Children listed are applied whole (server-side apply, forced); children listed in
/// [`Plan::delete`] are deleted; anything else the `ModelDeployment` owns is left alone, and
/// nothing it does not control is ever listed.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Deployments: the target revision's, the stable one's, and zero-replica history.
    pub deployments: Vec<Deployment>,
    /// ControllerRevisions of the target, the stable revision and the kept history.
    pub revisions: Vec<ControllerRevision>,
    /// The Service, when children are to be applied at all.
    pub service: Option<Service>,
    /// The PodDisruptionBudget, when there are enough replicas for one.
    pub pdb: Option<PodDisruptionBudget>,
    /// The HorizontalPodAutoscaler, when `spec.autoscaling.metric` is `cpu`.
    pub hpa: Option<HorizontalPodAutoscaler>,
    /// With `trafficRouting.httpRoute`: a Service per revision the route sends traffic to.
    pub revision_services: Vec<Service>,
    /// With `trafficRouting.httpRoute`: the HTTPRoute with each revision's weight.
    pub route: Option<DynamicObject>,
    /// Children no longer wanted.
    pub delete: Vec<ChildRef>,
    /// The full status to write.
    pub status: ModelDeploymentStatus,
    /// Whether to write [`Plan::status`]: always as planned; [`without_no_ops`] clears it when
    /// the status is already so and no child is written.
    pub write_status: bool,
    /// Events to publish, only for what changed in this pass.
    pub events: Vec<PlannedEvent>,
    /// Something is converging (a rollout, a missing PVC): look again soon.
    pub waiting: bool,
    /// When a verdict that depends on time alone turns (a progress deadline, the grace for
    /// pods waiting for room), counted from the pass's time; no watch event marks it.
    pub recheck_in: Option<std::time::Duration>,
    /// The current spec differs from the stable revision only in what the operator supplies
    /// (a new default runtime image or template code): a rollout that needs one
    /// of the operator's upgrade slots. With [`Observed::upgrade_waits`] set it is held back.
    pub operator_upgrade: bool,
    /// A failing analysis interval that ended then aborted the canary in this pass: the
    /// rollback's latency is counted from it once the plan is applied.
    pub rolled_back_since: Option<DateTime<Utc>>,
}

/// Converts the pass's time to a Kubernetes timestamp (whole seconds, as the API stores it).
pub fn kube_time(now: DateTime<Utc>) -> Time {
    Time(Timestamp::from_second(now.timestamp()).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// Decides everything for one pass. Pure: the same inputs give the same plan.
pub fn plan(
    md: &ModelDeployment,
    observed: &Observed,
    now: DateTime<Utc>,
    config: &OperatorConfig,
) -> Plan {
    // Only the children `md` controls count, for the autoscaler's ready replicas too.
    let view = ownership::owned_view(md, observed);
    let scaling = sized(md, &view.observed, now, config);
    let md = scaling.as_ref().map_or(md, |(sized, _)| sized);
    let previous = md.status.clone().unwrap_or_default();
    let clock = now;
    let now = kube_time(now);
    let autoscaling_status = match (&scaling, &md.spec.autoscaling) {
        _ if md.spec.paused => previous.autoscaling.clone(),
        (Some((_, decision)), _) => Some(autoscaling::status(
            decision,
            previous.autoscaling.as_ref(),
            &now,
        )),
        (None, Some(_)) => Some(autoscaling::hpa_status(
            md,
            previous.autoscaling.as_ref(),
            &now,
        )),
        (None, None) => None,
    };
    let observed = &view.observed;
    let target_of = |snapshot: &RevisionSnapshot| revision_name(&md.name_any(), &snapshot.hash());
    let hub = crate::hub::pinned(md, observed);
    let hub_commit = hub.as_ref().and_then(|h| h.as_ref().ok());
    let fresh = RevisionSnapshot::of(md, config).pinned(hub_commit.map(|h| h.commit.as_str()));
    // A branch or tag not resolved to a commit: no revision of it can be built.
    let unresolved = hub.as_ref().and_then(|h| h.as_ref().err()).cloned();
    let known = known_revisions(observed);
    let serving = current_stable(md, observed, &known, &target_of(&fresh));
    let serving_known = serving
        .as_deref()
        .and_then(|name| known.iter().find(|k| k.name == name));
    let pending = upgrade::pending_upgrade(md, &fresh, serving_known);
    // An operator-only change waits for a slot: until then the stable revision stays the target.
    let operator_upgrade = pending.is_some();
    let queued = operator_upgrade && observed.upgrade_waits;
    let snapshot = match pending {
        Some(stable_snapshot) if queued => stable_snapshot.clone(),
        _ => fresh,
    };
    let target_hash = snapshot.hash();
    let target = target_of(&snapshot);
    let stable = serving.filter(|stable| *stable != target);
    let target_available = progressive::has_served(md, &target)
        || observed
            .deployments
            .iter()
            .any(|d| d.name_any() == target && is_available(d, md.spec.replicas));
    let deadline_passed = progress::deadline_passed(md, &target, target_available, &now);
    let deadline_in = progress::time_left(md, &target, target_available, &now);
    let gave_up = deadline_passed && stable.is_some();
    let command = progressive::pending_command(md);
    let canary = progressive::decide(
        &CanaryInput {
            md,
            observed,
            target: &target,
            stable: stable.as_deref(),
            gave_up,
            now: clock,
        },
        command.as_ref().and_then(|(_, c)| c.as_ref().ok().copied()),
    );
    let findings = PodFindings {
        md,
        observed,
        target: &target,
        target_hash: &target_hash,
        stable: stable.as_deref(),
        now: &now,
        unschedulable_grace: config.unschedulable_grace,
    };
    let operator_problem = verdicts::spec_problem(md, observed, config);
    let look_again = operator_problem.is_some() || unresolved.is_some();
    let spec_problem = operator_problem.or_else(|| rejection::standing_refusal(md));
    let degraded = match (&spec_problem, &unresolved) {
        (Some(problem), _) => Verdict::yes(reasons::INVALID_SPEC, problem.clone()),
        (None, Some(problem)) => Verdict::yes(reasons::MODEL_FETCH_FAILED, problem.clone()),
        (None, None) => canary
            .as_ref()
            .and_then(progressive::degraded)
            .unwrap_or_else(|| {
                verdicts::degraded_verdict(&findings, view.conflict(md, &target), deadline_passed)
            }),
    };
    let mut events = events::degraded_event(&previous, &degraded);
    events.extend(canary.iter().flat_map(|c| c.events.iter().cloned()));
    events.extend(progressive::command_warnings(
        command.as_ref(),
        canary.as_ref(),
    ));
    let pass = Pass {
        events,
        last_command: command.map(|(value, _)| value),
        canary,
        clock,
        base: ModelDeploymentStatus {
            observed_generation: md.metadata.generation,
            selector: Some(pod_selector_string(&md.name_any())),
            url: Some(service_url(md)),
            autoscaling: autoscaling_status,
            hugging_face: match hub {
                Some(Ok(resolved)) => Some(resolved),
                Some(Err(_)) => previous.hugging_face.clone(),
                None => None,
            },
            ..previous.clone()
        },
        now: now.clone(),
        previous,
        degraded,
        deadline_passed,
        gave_up,
        upgrade_queued: queued,
        look_again,
        deadline_in,
        snapshot,
    };
    let planned = if md.spec.paused {
        let progressing = Verdict::no(
            reasons::PAUSED,
            "spec.paused is set: no rollout, scaling or cleanup until it is cleared",
        );
        frozen(md, observed, pass, progressing)
    } else if let Some(problem) = spec_problem {
        let progressing = Verdict::no(
            reasons::INVALID_SPEC,
            format!("{problem}; no new revision is created"),
        );
        frozen(md, observed, pass, progressing)
    } else if let Some(problem) = unresolved {
        let progressing = Verdict::no(
            reasons::MODEL_FETCH_FAILED,
            format!("{problem}; no new revision is created"),
        );
        frozen(md, observed, pass, progressing)
    } else {
        rolled(md, &findings, config, pass)
    };
    Plan {
        operator_upgrade,
        ..without_foreign(md, &view, planned)
    }
}

/// `md` sized by the autoscaler (its decision standing in for `spec.replicas`), when it is
/// autoscaled on a runtime metric and not paused.
fn sized(
    md: &ModelDeployment,
    observed: &Observed,
    now: DateTime<Utc>,
    config: &OperatorConfig,
) -> Option<(ModelDeployment, autoscale::Decision)> {
    if md.spec.paused {
        return None;
    }
    let ready = status::count(&observed.deployments, None, None).ready_replicas;
    let decision = autoscaling::decision(
        md,
        observed.load.as_ref(),
        ready,
        !observed.unschedulable.is_empty(),
        now,
        &config.autoscale,
    )?;
    let mut sized = md.clone();
    sized.spec.replicas = decision.desired;
    Some((sized, decision))
}

/// The weight of each live revision in the HTTPRoute: the canary's step weight while it walks
/// its steps, 100% on the stable after an abort, and the share of the ready replicas while a
/// revision rolls out or is promoted (so traffic moves as its pods come up).
fn route_weights(
    rollout: &rollout::Rollout,
    canary: Option<&CanaryPass>,
    observed: &Observed,
) -> Vec<(String, i32)> {
    let target = rollout.target.clone();
    let Some(stable) = rollout.stable.clone().filter(|s| *s != target) else {
        return vec![(target, 100)];
    };
    let canary_weight = match canary.map(|c| (c.status.phase, c.status.effective_weight)) {
        Some((CanaryPhase::Aborted, _)) => 0,
        Some((CanaryPhase::Promoting, _)) | None => progressive::ready_share(observed, &target),
        Some((_, weight)) => weight,
    };
    vec![(stable, 100 - canary_weight), (target, canary_weight)]
}

/// Leaves out of `plan` every child that `md` does not control.
fn without_foreign(md: &ModelDeployment, view: &OwnedView, mut plan: Plan) -> Plan {
    plan.deployments
        .retain(|d| view.may_write(md, &d.name_any()));
    plan.revisions.retain(|r| view.may_write(md, &r.name_any()));
    if view.service_taken {
        plan.service = None;
    }
    if view.pdb_taken {
        plan.pdb = None;
    }
    if view.hpa_taken {
        plan.hpa = None;
    }
    if view.route_taken {
        plan.route = None;
    }
    plan.revision_services
        .retain(|s| view.may_write(md, &s.name_any()));
    plan.delete.retain(|c| view.may_write(md, &c.name));
    plan
}

/// What every plan of a pass starts from.
struct Pass {
    now: Time,
    previous: ModelDeploymentStatus,
    degraded: Verdict,
    events: Vec<PlannedEvent>,
    /// The previous status with what holds whatever the plan: generation, selector, URL.
    base: ModelDeploymentStatus,
    /// The target revision ran out of its progress deadline.
    deadline_passed: bool,
    /// ... while another revision serves: kandle gives up on it.
    gave_up: bool,
    /// An operator-only change waits for an upgrade slot.
    upgrade_queued: bool,
    /// A problem with the spec that the cluster may fix without a spec change (a missing PVC).
    look_again: bool,
    /// Seconds until the target's progress deadline passes, while it runs.
    deadline_in: Option<i64>,
    /// The snapshot of the target revision.
    snapshot: RevisionSnapshot,
    /// The canary's share of the pass, when the target is rolled out as a canary.
    canary: Option<CanaryPass>,
    /// A `kandle.dev/command` consumed in this pass (acted on or refused with a Warning).
    last_command: Option<String>,
    /// The pass's time, to the millisecond.
    clock: DateTime<Utc>,
}

/// Paused or invalid: change no child, so the running revisions keep serving exactly as they
/// are; only the status (and a Warning for a new problem) is written.
fn frozen(md: &ModelDeployment, observed: &Observed, pass: Pass, progressing: Verdict) -> Plan {
    let desired = md.spec.replicas;
    let known = known_revisions(observed);
    let target = revision_name(&md.name_any(), &pass.snapshot.hash());
    let stable = current_stable(md, observed, &known, &target);
    let counts = status::count(&observed.deployments, Some(&target), stable.as_deref());
    let ready = status::ready_verdict(
        &observed.deployments,
        stable.as_deref(),
        stable.is_some(),
        desired,
    );
    let status = ModelDeploymentStatus {
        conditions: status::conditions(
            &pass.previous.conditions,
            md.metadata.generation,
            &pass.now,
            ready,
            progressing,
            pass.degraded,
        ),
        replicas: counts.replicas,
        ready_replicas: counts.ready_replicas,
        updated_replicas: counts.updated_replicas,
        ready: Some(format!("{}/{desired}", counts.serving_ready)),
        stable_revision: stable,
        ..pass.base
    };
    Plan {
        deployments: Vec::new(),
        revisions: Vec::new(),
        service: None,
        pdb: None,
        hpa: None,
        revision_services: Vec::new(),
        route: None,
        delete: Vec::new(),
        status,
        write_status: true,
        // A problem only the operator sees (a missing PVC) is looked at again soon: PVCs are
        // not watched. A refusal by the API server waits for the spec to change.
        waiting: !md.spec.paused && pass.look_again,
        recheck_in: None,
        events: pass.events,
        operator_upgrade: false,
        rolled_back_since: None,
    }
}

/// The rolling rollout of the current spec, its Service and disruption budget, and the status.
fn rolled(
    md: &ModelDeployment,
    findings: &PodFindings<'_>,
    config: &OperatorConfig,
    pass: Pass,
) -> Plan {
    let observed = findings.observed;
    let desired = md.spec.replicas;
    let canary = pass.canary.as_ref();
    let aborted = canary.is_some_and(|c| c.status.phase == CanaryPhase::Aborted);
    let rollout = rollout::roll(md, &pass.snapshot, observed, config, pass.gave_up, canary);
    // Promoted in this pass: the canary is the stable revision now.
    let canary = canary.filter(|_| !rollout.promoted);
    let mut events = pass.events;
    events.extend(events::rollout_events(md, &rollout));
    let rolling = rollout.stable.as_deref() != Some(rollout.target.as_str());
    let serving = rollout
        .stable
        .clone()
        .unwrap_or_else(|| rollout.target.clone());
    let counts = status::count(&observed.deployments, Some(&rollout.target), Some(&serving));
    let ready = status::ready_verdict(
        &observed.deployments,
        Some(&serving),
        rollout.stable.is_some(),
        desired,
    );
    let progressing = if pass.upgrade_queued {
        Verdict::yes(
            reasons::UPGRADE_QUEUED,
            format!(
                "revision {} keeps serving: the operator's new pod template (runtime image {}) \
                 waits for one of the --max-concurrent-upgrades slots",
                rollout.target,
                RevisionSnapshot::of(md, config).image(config)
            ),
        )
    } else if let Some(canary) = canary {
        progressive::progressing(canary)
    } else {
        verdicts::progressing_verdict(findings, &rollout, rolling, pass.deadline_passed)
    };
    let waiting = pass.upgrade_queued
        || (rolling && !pass.gave_up && !aborted)
        || findings.waiting_for_room().is_some()
        || !observed
            .deployments
            .iter()
            .any(|d| d.name_any() == serving && is_available(d, desired));

    let grace = i64::try_from(config.unschedulable_grace.as_secs()).unwrap_or(i64::MAX);
    let room_in = findings
        .waiting_for_room()
        .map(|(_, waited)| grace.saturating_sub(waited))
        .filter(|left| *left > 0);
    let pause_in = canary.and_then(|c| progressive::pause_left(md, c, pass.clock));
    let recheck_in = [pass.deadline_in, room_in, pause_in]
        .into_iter()
        .flatten()
        .min()
        .map(|secs| std::time::Duration::from_secs(secs.unsigned_abs()));

    let mut delete = rollout.delete.clone();
    let serving_hash = serving
        .strip_prefix(&format!("{}-", md.name_any()))
        .unwrap_or_default();
    let pdb = service::pdb(md, desired, serving_hash);
    if let (None, Some(observed_pdb)) = (&pdb, &observed.pdb) {
        delete.push(ChildRef {
            kind: ChildKind::PodDisruptionBudget,
            name: md.name_any(),
            uid: observed_pdb.uid(),
        });
    }
    let (revision_services, route) = match route::routing(md) {
        Some(routing) => {
            let weights = route_weights(&rollout, canary, observed);
            let services = weights
                .iter()
                .map(|(revision, _)| route::revision_service(md, revision))
                .collect();
            (services, Some(route::http_route(md, routing, &weights)))
        }
        None => (Vec::new(), None),
    };
    for service in &observed.revision_services {
        if !revision_services
            .iter()
            .any(|s: &Service| s.name_any() == service.name_any())
        {
            delete.push(ChildRef {
                kind: ChildKind::Service,
                name: service.name_any(),
                uid: service.uid(),
            });
        }
    }
    if let (None, Some(observed_route)) = (&route, &observed.route) {
        delete.push(ChildRef {
            kind: ChildKind::HttpRoute,
            name: observed_route.name_any(),
            uid: observed_route.uid(),
        });
    }
    let hpa = hpa::hpa(md);
    if let (None, Some(observed_hpa)) = (&hpa, &observed.hpa) {
        delete.push(ChildRef {
            kind: ChildKind::HorizontalPodAutoscaler,
            name: md.name_any(),
            uid: observed_hpa.uid(),
        });
    }
    let history = history::history(&HistoryInput {
        previous: &pass.previous.history,
        kept: &rollout.kept,
        target: &rollout.target,
        stable: rollout.stable.as_deref(),
        returned_to_known: rollout.returned_to_known,
        gave_up: pass.gave_up,
        aborted: canary
            .filter(|_| aborted)
            .map(|c| c.status.message.as_str()),
        now: &pass.now,
    });
    let status = ModelDeploymentStatus {
        conditions: status::conditions(
            &pass.previous.conditions,
            md.metadata.generation,
            &pass.now,
            ready,
            progressing,
            pass.degraded,
        ),
        replicas: counts.replicas,
        ready_replicas: counts.ready_replicas,
        updated_replicas: counts.updated_replicas,
        ready: Some(format!("{}/{desired}", counts.serving_ready)),
        stable_revision: rollout.stable.clone(),
        // The revision being rolled out beside a stable one; a first rollout has nothing beside
        // it, and a revision given up on is no longer rolling out.
        canary_revision: (rolling && !pass.gave_up && rollout.stable.is_some())
            .then(|| rollout.target.clone()),
        canary_weight: canary.map(|c| progressive::weight_now(md, c, observed)),
        current_step: canary.map(|c| c.status.step),
        last_analysis: canary
            .and_then(|c| c.last_analysis.clone())
            .or(pass.base.last_analysis.clone()),
        canary: canary.map(|c| c.status.clone()),
        last_command: pass.last_command.clone().or(pass.base.last_command.clone()),
        history,
        ..pass.base
    };
    Plan {
        deployments: rollout.deployments,
        revisions: rollout.revisions,
        service: Some(service::service(md)),
        pdb,
        hpa,
        revision_services,
        route,
        delete,
        status,
        write_status: true,
        events,
        waiting,
        recheck_in,
        operator_upgrade: false,
        rolled_back_since: canary.and_then(|c| c.aborted_by_analysis_at),
    }
}
