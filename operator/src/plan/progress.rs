//! The progress deadline: a new revision that has not become available within
//! `spec.rollout.progressDeadlineSeconds` of its rollout starting is given up on. The start is
//! the time its history record turned `progressing`, so the judgement survives an operator
//! restart and needs no clock other than the pass's time.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kandle_crds::{ModelDeployment, RevisionOutcome};

/// Whether the rollout of `target` ran out of time: it was given up on before, or it has been
/// progressing for longer than the deadline without becoming available.
pub fn deadline_passed(md: &ModelDeployment, target: &str, available: bool, now: &Time) -> bool {
    let Some(record) = md
        .status
        .as_ref()
        .and_then(|s| s.history.iter().find(|r| r.revision == target))
    else {
        return false;
    };
    match record.outcome {
        RevisionOutcome::Failed => true,
        RevisionOutcome::Progressing if !available => {
            let deadline = i64::from(md.spec.rollout.progress_deadline_seconds);
            now.0.as_second() - record.time.0.as_second() >= deadline
        }
        _ => false,
    }
}

/// Seconds until the rollout of `target` runs out of time, while it is progressing and not yet
/// available: the time to look again with no watch event to wake the pass.
pub fn time_left(md: &ModelDeployment, target: &str, available: bool, now: &Time) -> Option<i64> {
    let record = md
        .status
        .as_ref()?
        .history
        .iter()
        .find(|r| r.revision == target)?;
    if available || record.outcome != RevisionOutcome::Progressing {
        return None;
    }
    let deadline = i64::from(md.spec.rollout.progress_deadline_seconds);
    Some(deadline - (now.0.as_second() - record.time.0.as_second())).filter(|left| *left > 0)
}
