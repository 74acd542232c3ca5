//! Judgements behind the `Degraded` and `Progressing` conditions: what is wrong with the spec,
//! the ownership of children or the pods (crash loops, image pulls, model fetches, refusals,
//! no room past the grace period), and how far a rollout has come.

use std::path::{Component, Path};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kandle_crds::conditions::reasons;
use kandle_crds::{ModelDeployment, Task};
use kube::ResourceExt;

use super::budget;
use super::deployment;
use super::meta;
use super::model_volume::FETCH_CONTAINER;
use super::revision::revision_name;
use super::rollout::Rollout;
use super::status::Verdict;
use crate::config::OperatorConfig;
use crate::observe::{Observed, ProblemKind, SchedulingFailure};

/// Longest `ModelDeployment` name: it names the Service (a DNS-1035 label) and is the value of
/// the `kandle.dev/model-deployment` label.
pub const MAX_NAME_LEN: usize = 63;

/// What the pass found wrong with the spec itself, if anything: the rollout is frozen and the
/// running revisions are left exactly as they are.
pub fn spec_problem(
    md: &ModelDeployment,
    observed: &Observed,
    config: &OperatorConfig,
) -> Option<String> {
    let name = md.name_any();
    if !is_dns_label(&name) {
        return Some(format!(
            "metadata.name: {name:?} cannot name the Service and label the pods: it must be at \
             most {MAX_NAME_LEN} lowercase letters, digits or '-', starting with a letter and \
             ending with a letter or digit"
        ));
    }
    if md.spec.model.task == Task::Classification {
        // The CRD's CEL rule rejects it; an object stored before that rule still gets here.
        return Some(
            "spec.model.task: classification is not served by kandle-runtime yet; use \
             embedding or generation"
                .to_string(),
        );
    }
    if let (Some(pvc), Some(false)) = (&md.spec.model.source.pvc, observed.pvc_exists) {
        return Some(format!(
            "spec.model.source.pvc: PersistentVolumeClaim {:?} not found in namespace {:?}",
            pvc.claim_name,
            meta::namespace_of(md)
        ));
    }
    if let Some(host) = &md.spec.model.source.host_path {
        if !host_path_allowed(&host.path, &config.allowed_host_paths) {
            return Some(format!(
                "spec.model.source.hostPath: {:?} is not under a folder the operator allows \
                 (--allowed-host-paths: {}); hostPath sources mount a node's folder into the \
                 pods, so an administrator must allow them",
                host.path,
                if config.allowed_host_paths.is_empty() {
                    "none".to_string()
                } else {
                    config.allowed_host_paths.join(",")
                }
            ));
        }
    }
    let rollout = &md.spec.rollout;
    let desired = md.spec.replicas;
    if desired > 0
        && budget::resolve(&rollout.max_surge, desired, true) == 0
        && budget::resolve(&rollout.max_unavailable, desired, false) == 0
    {
        return Some(
            "spec.rollout: maxSurge and maxUnavailable cannot both be 0 (for this number of \
             replicas): a rollout could never start a new pod"
                .to_string(),
        );
    }
    if super::route::routing(md).is_some() && observed.route_api_missing {
        return Some(
            "spec.rollout.trafficRouting.httpRoute: the cluster has no HTTPRoute API \
             (gateway.networking.k8s.io/v1): install the Gateway API CRDs, or remove httpRoute \
             to split traffic by replica ratio"
                .to_string(),
        );
    }
    None
}

/// Whether `path` lies under one of `allowed` (whole path components; no `..`).
fn host_path_allowed(path: &str, allowed: &[String]) -> bool {
    let path = Path::new(path);
    let climbs = path.components().any(|c| c == Component::ParentDir);
    !climbs
        && path.is_absolute()
        && allowed
            .iter()
            .any(|prefix| !prefix.is_empty() && path.starts_with(Path::new(prefix)))
}

/// What the pass judges about the pods, beside the spec.
pub struct PodFindings<'a> {
    /// The `ModelDeployment`.
    pub md: &'a ModelDeployment,
    /// What the cluster holds, only what the `ModelDeployment` controls.
    pub observed: &'a Observed,
    /// The revision of the current spec.
    pub target: &'a str,
    /// Its content hash.
    pub target_hash: &'a str,
    /// The revision serving before this pass, if another than the target.
    pub stable: Option<&'a str>,
    /// The time of the pass.
    pub now: &'a Time,
    /// How long pods may wait for room before it is a problem.
    pub unschedulable_grace: Duration,
}

impl PodFindings<'_> {
    /// Pods of the target (first) or of any revision waiting for room, and for how long.
    pub fn waiting_for_room(&self) -> Option<(&SchedulingFailure, i64)> {
        let failure = self
            .observed
            .unschedulable
            .iter()
            .find(|f| f.revision.as_deref() == Some(self.target_hash))
            .or_else(|| self.observed.unschedulable.first())?;
        let waited = failure
            .since
            .as_ref()
            .map(|since| self.now.0.as_second() - since.0.as_second())
            // No time from the scheduler: judge it at once rather than never.
            .unwrap_or(i64::MAX);
        Some((failure, waited))
    }

    fn whose(&self, revision: Option<&str>, pod: &str) -> String {
        match revision {
            Some(hash) => revision_name(&self.md.name_any(), hash),
            None => format!("(pod {pod})"),
        }
    }

    /// The first thing wrong with the pods: a failing container of the target (then of any
    /// revision), pods Kubernetes refuses to create, pods that waited for room past the grace
    /// period. `None` when nothing is.
    pub fn problem(&self) -> Option<Verdict> {
        let failing = self
            .observed
            .pod_problems
            .iter()
            .find(|p| p.revision.as_deref() == Some(self.target_hash))
            .or_else(|| self.observed.pod_problems.first());
        if let Some(p) = failing {
            let reason = match p.kind {
                ProblemKind::ImagePull => reasons::IMAGE_PULL_FAILED,
                ProblemKind::InitFailed if p.container == FETCH_CONTAINER => {
                    reasons::MODEL_FETCH_FAILED
                }
                ProblemKind::InitFailed | ProblemKind::CrashLoop => reasons::CRASH_LOOP,
            };
            return Some(Verdict::about(
                reason,
                self.whose(p.revision.as_deref(), &p.pod),
                format!(
                    "container {} of pod {} ({} restarts): {}",
                    p.container, p.pod, p.restarts, p.message
                ),
            ));
        }
        if let Some((name, message)) = self.refused() {
            return Some(Verdict::about(
                reasons::PODS_REFUSED,
                name,
                format!("Kubernetes refuses to create its pods: {message}"),
            ));
        }
        let grace = i64::try_from(self.unschedulable_grace.as_secs()).unwrap_or(i64::MAX);
        match self.waiting_for_room() {
            Some((failure, waited)) if waited >= grace => Some(Verdict::about(
                reasons::UNSCHEDULABLE,
                self.whose(failure.revision.as_deref(), &failure.pod),
                format!("pods cannot be scheduled: {}", failure.message),
            )),
            _ => None,
        }
    }

    /// A Deployment (the target's first) whose ReplicaSet cannot create pods: a ResourceQuota or
    /// an admission policy said no.
    fn refused(&self) -> Option<(String, String)> {
        let mut deployments: Vec<&Deployment> = self.observed.deployments.iter().collect();
        deployments.sort_by_key(|d| d.name_any() != self.target);
        deployments.into_iter().find_map(|d| {
            let condition = d
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")?;
            Some((
                d.name_any(),
                condition
                    .message
                    .clone()
                    .unwrap_or_else(|| "no message".to_string()),
            ))
        })
    }
}

/// `Degraded`: what stands in the way of this `ModelDeployment`, most fundamental first.
pub fn degraded_verdict(
    findings: &PodFindings<'_>,
    conflict: Option<String>,
    deadline_passed: bool,
) -> Verdict {
    if let Some(conflict) = conflict {
        return Verdict::yes(reasons::NOT_OWNED, conflict);
    }
    let problem = findings.problem();
    if deadline_passed {
        let seconds = findings.md.spec.rollout.progress_deadline_seconds;
        let outcome = match findings.stable {
            Some(stable) => format!("gave up on it; revision {stable} keeps serving"),
            None => "nothing else serves, so kandle keeps trying".to_string(),
        };
        let cause = problem
            .map(|p| {
                let detail = match &p.subject {
                    Some(subject) if subject == findings.target => p
                        .message
                        .strip_prefix(&format!("revision {subject}: "))
                        .map(str::to_string)
                        .unwrap_or(p.message),
                    _ => p.message,
                };
                format!(": {detail}")
            })
            .unwrap_or_default();
        return Verdict::about(
            reasons::PROGRESS_DEADLINE_EXCEEDED,
            findings.target.to_string(),
            format!("not available within {seconds}s, {outcome}{cause}"),
        );
    }
    problem.unwrap_or_else(|| Verdict::no(reasons::HEALTHY, "no problems found"))
}

/// `Progressing`: true while the target revision is not yet stable and the rollout has not
/// run out of time; says what it waits for.
pub fn progressing_verdict(
    findings: &PodFindings<'_>,
    rollout: &Rollout,
    rolling: bool,
    deadline_passed: bool,
) -> Verdict {
    let md = findings.md;
    let room = findings.waiting_for_room();
    if !rolling {
        return match room {
            Some((failure, _)) => Verdict::yes(
                reasons::WAITING_FOR_CAPACITY,
                format!(
                    "revision {} waits for room for more pods: {}",
                    rollout.target, failure.message
                ),
            ),
            None => Verdict::no(
                reasons::STABLE,
                format!("revision {} is stable", rollout.target),
            ),
        };
    }
    if deadline_passed {
        return Verdict::no(
            reasons::PROGRESS_DEADLINE_EXCEEDED,
            format!(
                "revision {} did not become available within {}s",
                rollout.target, md.spec.rollout.progress_deadline_seconds
            ),
        );
    }
    let available = findings
        .observed
        .deployments
        .iter()
        .find(|d| d.name_any() == rollout.target)
        .map(|d| deployment::counts(d).available)
        .unwrap_or(0);
    let mut message = format!(
        "rolling out revision {}: {available}/{} replicas available",
        rollout.target, md.spec.replicas
    );
    match &rollout.stable {
        Some(stable) => message.push_str(&format!("; revision {stable} keeps serving until then")),
        None => message.push_str("; no revision is serving yet"),
    }
    let mut reason = reasons::ROLLING_OUT;
    if let Some((failure, _)) = room {
        reason = reasons::WAITING_FOR_CAPACITY;
        message.push_str(&format!("; waiting for room: {}", failure.message));
    }
    Verdict::yes(reason, message)
}

/// Whether `name` is a DNS-1035 label (what a Service name must be).
fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    let inner_ok = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    let first_ok = bytes.first().is_some_and(u8::is_ascii_lowercase);
    let last_ok = bytes
        .last()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    name.len() <= MAX_NAME_LEN && inner_ok && first_ok && last_ok
}
