//! Conditions and replica counts of `ModelDeployment.status`: `Ready`, `Progressing` and
//! `Degraded`, and kstatus' `Reconciling` and `Stalled` derived from them, each keeping its
//! lastTransitionTime while its status holds.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kandle_crds::conditions;
use kube::ResourceExt;

use super::deployment::{counts, is_available};
use super::kstatus::{self, Derived, Said};

/// One condition as decided by this pass, before timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// `True` or `False`.
    pub status: bool,
    /// PascalCase reason from [`kandle_crds::conditions::reasons`].
    pub reason: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// The revision the verdict is about, when it is about one; its message then starts with
    /// `revision <subject>: `.
    pub subject: Option<String>,
}

impl Verdict {
    /// A `True` verdict.
    pub fn yes(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: true,
            reason,
            message: message.into(),
            subject: None,
        }
    }
    /// A `False` verdict.
    pub fn no(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: false,
            reason,
            message: message.into(),
            subject: None,
        }
    }
    /// A `True` verdict about revision `subject`.
    pub fn about(reason: &'static str, subject: String, detail: impl AsRef<str>) -> Self {
        Self {
            status: true,
            reason,
            message: format!("revision {subject}: {}", detail.as_ref()),
            subject: Some(subject),
        }
    }
}

/// The revision a condition's message is about (see [`Verdict::about`]), if any.
pub fn subject_of(message: &str) -> Option<&str> {
    message
        .strip_prefix("revision ")?
        .split_once(": ")
        .map(|(subject, _)| subject)
}

/// The five conditions, in order Ready, Progressing, Degraded, Reconciling, Stalled; the last
/// two are derived from the first three (see [`super::kstatus`]).
pub fn conditions(
    previous: &[Condition],
    generation: Option<i64>,
    now: &Time,
    ready: Verdict,
    progressing: Verdict,
    degraded: Verdict,
) -> Vec<Condition> {
    let (reconciling, stalled) = kstatus::derive(
        Said::from(&ready),
        Said::from(&progressing),
        Said::from(&degraded),
    );
    let mut written: Vec<Condition> = [
        (conditions::READY, ready),
        (conditions::PROGRESSING, progressing),
        (conditions::DEGRADED, degraded),
    ]
    .into_iter()
    .map(|(type_, verdict)| condition(previous, type_, verdict.into(), generation, now))
    .collect();
    written.extend([
        condition(
            previous,
            conditions::RECONCILING,
            reconciling,
            generation,
            now,
        ),
        condition(previous, conditions::STALLED, stalled, generation, now),
    ]);
    written
}

impl From<Verdict> for Derived {
    fn from(verdict: Verdict) -> Self {
        Self {
            status: verdict.status,
            reason: verdict.reason.to_string(),
            message: verdict.message,
        }
    }
}

/// `verdict` as the condition `type_`, keeping the lastTransitionTime of `previous` while its
/// status holds.
fn condition(
    previous: &[Condition],
    type_: &str,
    verdict: Derived,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if verdict.status { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: verdict.reason,
        message: verdict.message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// Replaces (or adds) the condition of `type_` in `conditions` with `verdict`; when that
/// changes `Ready`, `Progressing` or `Degraded`, `Reconciling` and `Stalled` are derived again,
/// so they never disagree with the verdicts they come from.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    previous: &[Condition],
    type_: &str,
    verdict: Verdict,
    generation: Option<i64>,
    now: &Time,
) {
    replace(
        conditions,
        condition(previous, type_, verdict.into(), generation, now),
    );
    let judged = [
        conditions::READY,
        conditions::PROGRESSING,
        conditions::DEGRADED,
    ];
    if !judged.contains(&type_) {
        return;
    }
    let written: &[Condition] = conditions;
    let [Some(ready), Some(progressing), Some(degraded)] = judged.map(|t| find(written, t)) else {
        return;
    };
    let (reconciling, stalled) = kstatus::derive(ready.into(), progressing.into(), degraded.into());
    for (type_, derived) in [
        (conditions::RECONCILING, reconciling),
        (conditions::STALLED, stalled),
    ] {
        replace(
            conditions,
            condition(previous, type_, derived, generation, now),
        );
    }
}

fn replace(conditions: &mut Vec<Condition>, updated: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == updated.type_) {
        Some(existing) => *existing = updated,
        None => conditions.push(updated),
    }
}

/// The condition of `type_` in `conditions`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Replica counts over the observed Deployments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Pods of all live revisions.
    pub replicas: i32,
    /// Ready pods of all live revisions.
    pub ready_replicas: i32,
    /// Pods of the target revision.
    pub updated_replicas: i32,
    /// Ready pods of the serving revision (stable, or the target before any is stable).
    pub serving_ready: i32,
}

/// Counts the pods the observed Deployments report.
pub fn count(deployments: &[Deployment], target: Option<&str>, serving: Option<&str>) -> Counts {
    let find =
        |name: Option<&str>| name.and_then(|n| deployments.iter().find(|d| d.name_any() == n));
    Counts {
        replicas: deployments.iter().map(|d| counts(d).replicas).sum(),
        ready_replicas: deployments.iter().map(|d| counts(d).ready).sum(),
        updated_replicas: find(target).map(|d| counts(d).replicas).unwrap_or(0),
        serving_ready: find(serving).map(|d| counts(d).ready).unwrap_or(0),
    }
}

/// The `Ready` verdict: the serving revision has every desired replica ready.
pub fn ready_verdict(
    deployments: &[Deployment],
    serving: Option<&str>,
    is_stable: bool,
    desired: i32,
) -> Verdict {
    let Some(name) = serving else {
        return Verdict::no(
            conditions::reasons::REPLICAS_NOT_READY,
            "no revision is serving yet",
        );
    };
    let deployment = deployments.iter().find(|d| d.name_any() == name);
    let ready = deployment.map(|d| counts(d).ready).unwrap_or(0);
    if is_stable && deployment.is_some_and(|d| is_available(d, desired)) {
        Verdict::yes(
            conditions::reasons::AVAILABLE,
            format!("{desired}/{desired} replicas of revision {name} are ready"),
        )
    } else {
        Verdict::no(
            conditions::reasons::REPLICAS_NOT_READY,
            format!("{ready}/{desired} replicas of revision {name} are ready"),
        )
    }
}
