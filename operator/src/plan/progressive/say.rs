//! What a canary pass says: the `Progressing` and `Degraded` verdicts, the message of
//! `status.canary`, the analysis results as the status records them, and the events of each
//! step, verdict, promotion and ignored command.

use kandle_crds::conditions::reasons;
use kandle_crds::{AnalysisResult, CanaryPhase, CanaryStatus, ModelDeployment, RevisionFigures};

use super::{CanaryInput, CanaryPass};
use crate::analysis::{self, intervals::Interval, verdicts, Totals};
use crate::canary::{Command, Phase};
use crate::plan::status::Verdict;
use crate::plan::{EventKind, PlannedEvent};

/// Warnings for a pending command that was not acted on: unreadable, no canary to act on, or
/// not applicable to its phase.
pub fn command_warnings(
    pending: Option<&(String, Result<Command, String>)>,
    canary: Option<&CanaryPass>,
) -> Vec<PlannedEvent> {
    let why = match (pending, canary) {
        (None, _) => None,
        (Some((_, Err(error))), _) => Some(error.clone()),
        (Some((_, Ok(command))), None) => Some(format!(
            "kubectl kandle {command} does not apply: no canary rollout is in progress"
        )),
        (Some(_), Some(pass)) => pass.ignored.clone(),
    };
    why.map(|message| PlannedEvent {
        kind: EventKind::Warning,
        reason: reasons::COMMAND_IGNORED,
        action: "Command",
        message,
    })
    .into_iter()
    .collect()
}

fn figures(totals: &Totals) -> RevisionFigures {
    let requests = totals.requests.round().max(0.0) as i64;
    RevisionFigures {
        requests,
        error_rate: if totals.requests > 0.0 {
            (totals.failed / totals.requests).clamp(0.0, 1.0)
        } else {
            0.0
        },
        latency_p99_seconds: analysis::quantile(0.99, &totals.buckets),
    }
}

pub(super) fn result(
    target: &str,
    interval: &Interval,
    judgement: &analysis::Judgement,
    failures: i32,
) -> AnalysisResult {
    AnalysisResult {
        revision: target.to_string(),
        time: super::micro_time(interval.ended),
        requests: judgement.requests,
        error_rate: judgement.error_rate,
        latency_p99_seconds: judgement.latency_p99_seconds,
        verdict: judgement.verdict.to_string(),
        message: judgement.message.clone(),
        failures,
        stable: Some(figures(&interval.stable)),
    }
}

pub(super) fn verdict_event(
    target: &str,
    judgement: &analysis::Judgement,
    failures: i32,
    limit: i32,
) -> PlannedEvent {
    let (kind, reason) = match judgement.verdict {
        verdicts::FAILED => (EventKind::Warning, reasons::ANALYSIS_FAILED),
        verdicts::PASSED => (EventKind::Normal, reasons::ANALYSIS_PASSED),
        _ => (EventKind::Normal, reasons::ANALYSIS_INCONCLUSIVE),
    };
    let mut message = format!("canary revision {target}: {}", judgement.message);
    if judgement.verdict == verdicts::FAILED {
        message.push_str(&format!(" ({failures} failed, failureLimit {limit})"));
    }
    PlannedEvent {
        kind,
        reason,
        action: "Analyze",
        message,
    }
}

fn step_label(md: &ModelDeployment, step: usize) -> String {
    let steps = &md.spec.rollout.steps;
    let weight = steps.get(step).map_or(100, |s| s.weight);
    format!("step {}/{} ({weight}%)", step + 1, steps.len())
}

/// What the canary does now, in words.
pub(super) fn message(
    input: &CanaryInput<'_>,
    phase: &Phase,
    effective: i32,
    stable: i32,
    canary: i32,
) -> String {
    let md = input.md;
    let target = input.target;
    let stable_name = input.stable.unwrap_or("none");
    match phase {
        Phase::Step {
            step,
            since,
            paused,
            ..
        } => {
            let mut text = format!(
                "canary revision {target} at {}: effective weight {effective}% \
                 ({canary} canary and {stable} stable replicas)",
                step_label(md, *step)
            );
            let pause = md
                .spec
                .rollout
                .steps
                .get(*step)
                .and_then(|s| s.pause.as_deref());
            text.push_str(&match (paused, since, pause) {
                (true, _, _) => "; paused: kubectl kandle resume lets it go on".to_string(),
                (false, None, _) => "; waiting for the step's replicas to be ready".to_string(),
                (false, Some(_), None) => "; waits for kubectl kandle promote".to_string(),
                (false, Some(since), Some(pause)) => {
                    let left = kandle_crds::duration_seconds(pause).unwrap_or(0.0)
                        - (input.now - *since).num_milliseconds() as f64 / 1000.0;
                    format!("; holds for {pause} ({:.0}s left)", left.max(0.0))
                }
            });
            text
        }
        Phase::Promoted => format!(
            "canary revision {target} is promoted: it grows to {} replicas and becomes stable \
             once available; revision {stable_name} then scales to zero",
            md.spec.replicas
        ),
        Phase::Aborted { reason } => reason.clone(),
    }
}

/// Normal events for a new canary, a new step, a pause, a resume and a promotion.
pub(super) fn step_events(
    input: &CanaryInput<'_>,
    before: Option<&CanaryStatus>,
    start: &Phase,
    phase: &Phase,
    status: &CanaryStatus,
    command: Option<Command>,
) -> Vec<PlannedEvent> {
    let normal = |reason, action, message: String| PlannedEvent {
        kind: EventKind::Normal,
        reason,
        action,
        message,
    };
    let target = input.target;
    let mut events = Vec::new();
    let moved = before.is_none()
        || before.is_some_and(|c| c.step != status.step || c.phase == CanaryPhase::Aborted);
    match phase {
        Phase::Step { paused, .. } => {
            if moved || (!matches!(start, Phase::Step { .. })) {
                events.push(normal(
                    reasons::CANARY_PROGRESSING,
                    "Step",
                    status.message.clone(),
                ));
            } else if let Phase::Step { paused: was, .. } = start {
                if *was != *paused {
                    let what = if *paused { "paused" } else { "resumed" };
                    events.push(normal(
                        reasons::CANARY_PROGRESSING,
                        "Step",
                        format!("canary revision {target} {what} (kubectl kandle {what})"),
                    ));
                }
            }
        }
        Phase::Promoted if !matches!(start, Phase::Promoted) || before.is_none() => {
            let why = match (command, before) {
                (Some(Command::Promote { full: true }), _) => {
                    "promoted by kubectl kandle promote --full"
                }
                (_, None) => "it served as the stable revision before, so it skips the steps",
                _ => "every step passed",
            };
            events.push(normal(
                reasons::CANARY_PROMOTED,
                "Promote",
                format!("{}: {why}", status.message),
            ));
        }
        _ => {}
    }
    events
}

/// The `Progressing` verdict of a canary pass.
pub fn progressing(pass: &CanaryPass) -> Verdict {
    match pass.status.phase {
        CanaryPhase::Aborted => Verdict::no(
            reasons::CANARY_ABORTED,
            format!(
                "{}; the stable revision serves all traffic until the spec changes or \
                 kubectl kandle retry",
                pass.status.message
            ),
        ),
        _ => Verdict::yes(reasons::CANARY_PROGRESSING, pass.status.message.clone()),
    }
}

/// The `Degraded` verdict of an aborted canary.
pub fn degraded(pass: &CanaryPass) -> Option<Verdict> {
    (pass.status.phase == CanaryPhase::Aborted).then(|| {
        let by_analysis = pass.status.message.starts_with("analysis failed");
        let reason = if by_analysis {
            reasons::ANALYSIS_FAILED
        } else {
            reasons::CANARY_ABORTED
        };
        Verdict::yes(
            reason,
            format!(
                "canary revision {} rolled back: {}",
                pass.status.revision, pass.status.message
            ),
        )
    })
}
