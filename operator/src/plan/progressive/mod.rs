//! The canary strategy, "where are we": from `status.canary`, what this pass observed (the
//! canary's ready replicas, analysis intervals the collector finished, a `kandle.dev/command`)
//! and the time, the canary's next phase ([`crate::canary::next`]), the replicas each revision
//! gets for it ([`crate::traffic`]), the analyses judged and the events to publish. All of the
//! state is read from and written to the status, so a restarted operator decides the same.
//! [`say`] puts a pass in words: verdicts, messages, analysis results and events.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kandle_crds::{
    AnalysisResult, CanaryPhase, CanaryStatus, ModelDeployment, RevisionOutcome, RolloutStrategy,
    StableDuringCanary,
};
use kube::ResourceExt;

mod say;

pub use say::{command_warnings, degraded, progressing};

use super::deployment;
use super::route::routing;
use super::{kube_time, PlannedEvent};
use crate::analysis::{self, intervals::Interval, verdicts};
use crate::canary::{self, Command, Observation, Phase};
use crate::command;
use crate::observe::Observed;
use crate::traffic::{self, StableSize};

/// Analyses kept in `status.canary.analyses`.
const ANALYSES_KEPT: usize = 5;

/// What the canary phase of a pass looks at.
pub struct CanaryInput<'a> {
    /// The ModelDeployment, sized by the autoscaler.
    pub md: &'a ModelDeployment,
    /// Its children and readings.
    pub observed: &'a Observed,
    /// The target revision (the current spec's).
    pub target: &'a str,
    /// The stable revision, when it is not the target.
    pub stable: Option<&'a str>,
    /// The target ran out of its progress deadline: the rolling rules give it up.
    pub gave_up: bool,
    /// The pass's time.
    pub now: DateTime<Utc>,
}

/// The canary's share of a pass.
#[derive(Clone, Debug, PartialEq)]
pub struct CanaryPass {
    /// The canary's state after this pass.
    pub status: CanaryStatus,
    /// Replicas of the stable revision and of the canary; `None` while promoting, when the
    /// rolling budget hands over from one to the other.
    pub sizes: Option<(i32, i32)>,
    /// The newest analysis, judged in this pass or before.
    pub last_analysis: Option<AnalysisResult>,
    /// When the analysis interval that aborted the canary in this pass ended.
    pub aborted_by_analysis_at: Option<DateTime<Utc>>,
    /// Events of this pass.
    pub events: Vec<PlannedEvent>,
    /// Why the pending command did not apply (`promote` with no step in progress, ...).
    pub ignored: Option<String>,
}

/// A `kandle.dev/command` not acted on before: its whole value and what it asks.
pub fn pending_command(md: &ModelDeployment) -> Option<(String, Result<Command, String>)> {
    command::pending(md).map(|value| (value.to_string(), command::parse(value)))
}

/// Whether `target` is rolled out as a canary at all: the strategy says so and another
/// revision serves.
fn is_canary(input: &CanaryInput<'_>) -> bool {
    input.md.spec.rollout.strategy == RolloutStrategy::Canary
        && input.stable.is_some_and(|stable| stable != input.target)
        && !input.gave_up
}

/// The canary's state before this pass, when it is about `target`.
fn previous<'a>(md: &'a ModelDeployment, target: &str) -> Option<&'a CanaryStatus> {
    md.status
        .as_ref()
        .and_then(|s| s.canary.as_ref())
        .filter(|c| c.revision == target)
}

/// Whether the canary of `target` has served a step: then its progress deadline is met, as a
/// rolling revision's is once available (a canary is never at full size before promotion).
pub fn has_served(md: &ModelDeployment, target: &str) -> bool {
    previous(md, target).is_some_and(|c| {
        c.step > 0 || c.step_start_time.is_some() || c.phase == CanaryPhase::Aborted
    })
}

/// Whether `target` served as the stable revision before (the spec returned to it): it is
/// promoted without the steps.
fn served_before(md: &ModelDeployment, target: &str) -> bool {
    md.status.as_ref().is_some_and(|s| {
        s.history
            .iter()
            .any(|r| r.revision == target && r.outcome == RevisionOutcome::Superseded)
    })
}

/// The canary phase of this pass, or `None` when the target is not rolled out as a canary.
/// `command` is a pending `kandle.dev/command` that applies to the canary.
pub fn decide(input: &CanaryInput<'_>, command: Option<Command>) -> Option<CanaryPass> {
    if !is_canary(input) {
        return None;
    }
    let md = input.md;
    let steps = &md.spec.rollout.steps;
    let before = previous(md, input.target);
    let start = match before {
        Some(status) => phase_of(status),
        None if served_before(md, input.target) => Phase::Promoted,
        None => Phase::Step {
            step: 0,
            since: None,
            failures: 0,
            paused: false,
        },
    };
    let applies = |c: &Command| match (c, &start) {
        (Command::Retry, Phase::Aborted { .. } | Phase::Promoted) => true,
        (Command::Retry, _) => false,
        (_, phase) => matches!(phase, Phase::Step { .. }),
    };
    let ignored = command.filter(|c| !applies(c)).map(|c| {
        format!(
            "kubectl kandle {c} does not apply to canary revision {} while it is {:?}",
            input.target,
            before.map_or(CanaryPhase::Progressing, |b| b.phase)
        )
    });
    let command = command.filter(applies);
    let ready = |name: &str| {
        input
            .observed
            .deployments
            .iter()
            .find(|d| d.name_any() == name)
            .map_or(0, |d| deployment::counts(d).ready)
    };
    let canary_ready = ready(input.target);
    // Whether the canary serves `phase`'s step: judged for the phase each transition starts
    // from, so a step entered in this pass never counts as served already.
    let serving = |phase: &Phase| match sizes(md, phase) {
        (Some((_, canary)), _) => canary > 0 && canary_ready >= canary,
        (None, _) => false,
    };
    let limit = md
        .spec
        .rollout
        .analysis
        .as_ref()
        .map_or(0, |a| a.failure_limit);
    let mut phase = start.clone();
    let mut analyses = before.map(|c| c.analyses.clone()).unwrap_or_default();
    let mut events = Vec::new();
    let mut aborted_by_analysis_at = None;
    for interval in new_intervals(input, before) {
        let Some(spec) = &md.spec.rollout.analysis else {
            break;
        };
        if !matches!(phase, Phase::Step { .. }) {
            break;
        }
        let judgement = analysis::judge(spec, &interval.canary);
        let seen = Observation {
            serving: serving(&phase),
            verdict: Some(if judgement.verdict == verdicts::FAILED {
                Err(judgement.message.clone())
            } else {
                Ok(())
            }),
            command: None,
        };
        phase = canary::next(steps, limit, &phase, &seen, input.now);
        let failures = match &phase {
            Phase::Step { failures, .. } => *failures,
            _ => limit + 1,
        };
        if matches!(phase, Phase::Aborted { .. }) {
            aborted_by_analysis_at = Some(interval.ended);
        }
        events.push(say::verdict_event(
            input.target,
            &judgement,
            failures,
            limit,
        ));
        analyses.push(say::result(input.target, interval, &judgement, failures));
    }
    let seen = Observation {
        serving: serving(&phase),
        verdict: None,
        command,
    };
    phase = canary::next(steps, limit, &phase, &seen, input.now);
    if analyses.len() > ANALYSES_KEPT {
        analyses.drain(..analyses.len() - ANALYSES_KEPT);
    }
    let (planned, effective) = sizes(md, &phase);
    let (stable_replicas, canary_replicas) =
        planned.unwrap_or((md.spec.replicas, md.spec.replicas));
    let status = CanaryStatus {
        revision: input.target.to_string(),
        phase: canary_phase(steps, &phase),
        step: match &phase {
            Phase::Step { step, .. } => i32::try_from(*step).unwrap_or(0),
            _ => before.map_or(0, |c| c.step),
        },
        step_start_time: match &phase {
            Phase::Step { since, .. } => since.map(kube_time),
            _ => before.and_then(|c| c.step_start_time.clone()),
        },
        stable_replicas,
        canary_replicas,
        effective_weight: effective,
        failures: match &phase {
            Phase::Step { failures, .. } => *failures,
            _ => before.map_or(0, |c| c.failures),
        },
        message: say::message(input, &phase, effective, stable_replicas, canary_replicas),
        analyses,
    };
    events.extend(say::step_events(
        input, before, &start, &phase, &status, command,
    ));
    Some(CanaryPass {
        last_analysis: status.analyses.last().cloned(),
        sizes: planned,
        status,
        aborted_by_analysis_at,
        events,
        ignored,
    })
}

/// The phase recorded in `status`.
fn phase_of(status: &CanaryStatus) -> Phase {
    match status.phase {
        CanaryPhase::Aborted => Phase::Aborted {
            reason: status.message.clone(),
        },
        CanaryPhase::Promoting => Phase::Promoted,
        CanaryPhase::Progressing | CanaryPhase::Paused | CanaryPhase::WaitingForPromote => {
            Phase::Step {
                step: usize::try_from(status.step).unwrap_or(0),
                since: status.step_start_time.as_ref().and_then(chrono_time),
                failures: status.failures,
                paused: status.phase == CanaryPhase::Paused,
            }
        }
    }
}

fn micro_time(at: DateTime<Utc>) -> MicroTime {
    MicroTime(Timestamp::from_microsecond(at.timestamp_micros()).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn chrono_time(time: &Time) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(time.0.as_second(), 0)
}

fn canary_phase(steps: &[kandle_crds::CanaryStep], phase: &Phase) -> CanaryPhase {
    match phase {
        Phase::Aborted { .. } => CanaryPhase::Aborted,
        Phase::Promoted => CanaryPhase::Promoting,
        Phase::Step { paused: true, .. } => CanaryPhase::Paused,
        Phase::Step {
            step,
            since: Some(_),
            ..
        } if steps.get(*step).is_some_and(|s| s.pause.is_none()) => CanaryPhase::WaitingForPromote,
        Phase::Step { .. } => CanaryPhase::Progressing,
    }
}

/// Replicas (stable, canary) for `phase`, and the canary's effective weight in percent.
fn sizes(md: &ModelDeployment, phase: &Phase) -> (Option<(i32, i32)>, i32) {
    let desired = md.spec.replicas;
    let mode = match md.spec.rollout.stable_during_canary {
        StableDuringCanary::Keep => StableSize::Keep,
        StableDuringCanary::ScaleDown => StableSize::ScaleDown,
    };
    match phase {
        Phase::Step { step, .. } => {
            let weight = md.spec.rollout.steps.get(*step).map_or(100, |s| s.weight);
            let split = if routing(md).is_some() {
                traffic::routed(desired, weight, mode)
            } else {
                traffic::split(desired, weight, mode)
            };
            (Some((split.stable, split.canary)), split.effective_weight)
        }
        Phase::Promoted => (None, 100),
        Phase::Aborted { .. } => (Some((desired, 0)), 0),
    }
}

/// Intervals of the target the collector finished that the status has not judged yet.
fn new_intervals<'a>(
    input: &'a CanaryInput<'_>,
    before: Option<&CanaryStatus>,
) -> impl Iterator<Item = &'a Interval> {
    let judged = before
        .and_then(|c| c.analyses.last())
        .map(|a| a.time.0.as_microsecond());
    input
        .observed
        .analysis
        .iter()
        .filter(|a| a.revision == input.target)
        .flat_map(|a| a.done.iter())
        .filter(move |i| judged.is_none_or(|last| i.ended.timestamp_micros() > last))
}

/// Seconds until the current step's pause ends, to look again then.
pub fn pause_left(md: &ModelDeployment, pass: &CanaryPass, now: DateTime<Utc>) -> Option<i64> {
    if pass.status.phase != CanaryPhase::Progressing {
        return None;
    }
    let since = pass.status.step_start_time.as_ref().and_then(chrono_time)?;
    let pause = md
        .spec
        .rollout
        .steps
        .get(usize::try_from(pass.status.step).ok()?)?
        .pause
        .as_deref()
        .and_then(kandle_crds::duration_seconds)?;
    let left = pause - (now - since).num_milliseconds() as f64 / 1000.0;
    Some(left.ceil().max(1.0) as i64)
}

/// The canary's share of the traffic now, in percent: the HTTPRoute's weight while it walks its
/// steps with one; otherwise its share of the ready replicas behind the Service.
pub fn weight_now(md: &ModelDeployment, pass: &CanaryPass, observed: &Observed) -> i32 {
    let stepping = !matches!(
        pass.status.phase,
        CanaryPhase::Promoting | CanaryPhase::Aborted
    );
    if routing(md).is_some() && stepping {
        return pass.status.effective_weight;
    }
    ready_share(observed, &pass.status.revision)
}

/// The share of the ready replicas of every live revision that `revision` has, in percent.
pub fn ready_share(observed: &Observed, revision: &str) -> i32 {
    let ready = |d: &k8s_openapi::api::apps::v1::Deployment| deployment::counts(d).ready;
    let mine: i32 = observed
        .deployments
        .iter()
        .filter(|d| d.name_any() == revision)
        .map(ready)
        .sum();
    let all: i32 = observed.deployments.iter().map(ready).sum();
    if all == 0 {
        0
    } else {
        (f64::from(mine) * 100.0 / f64::from(all)).round() as i32
    }
}

/// A canary whose pods the collector reads for analysis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Analysed {
    /// The canary revision (`<md>-<hash>`).
    pub revision: String,
    /// Its hash (the pods' `kandle.dev/revision` label).
    pub canary_hash: String,
    /// The stable revision's hash.
    pub stable_hash: String,
    /// `analysis.interval`.
    pub interval: std::time::Duration,
}

/// What to read for the analysis of `md`'s canary: while it walks its steps with
/// `spec.rollout.analysis` set, and is not paused by `spec.paused`.
pub fn analysed(md: &ModelDeployment) -> Option<Analysed> {
    let spec = md.spec.rollout.analysis.as_ref()?;
    let status = md.status.as_ref()?;
    let canary = status.canary.as_ref()?;
    let stepping = matches!(
        canary.phase,
        CanaryPhase::Progressing | CanaryPhase::Paused | CanaryPhase::WaitingForPromote
    );
    if !stepping || md.spec.paused || md.spec.rollout.strategy != RolloutStrategy::Canary {
        return None;
    }
    let prefix = format!("{}-", md.name_any());
    let hash = |name: &str| name.strip_prefix(&prefix).map(str::to_string);
    let seconds = kandle_crds::duration_seconds(&spec.interval)?.max(1.0);
    Some(Analysed {
        revision: canary.revision.clone(),
        canary_hash: hash(&canary.revision)?,
        stable_hash: hash(status.stable_revision.as_deref()?)?,
        interval: std::time::Duration::from_secs_f64(seconds),
    })
}
