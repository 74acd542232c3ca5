//! Events worth publishing, only for what changed in this pass: a revision recorded, a return
//! to a known revision, a completed rollout, a scale change, and a new complaint in `Degraded`.

use kandle_crds::conditions::{self, reasons};
use kandle_crds::{ModelDeployment, ModelDeploymentStatus};

use super::rollout::Rollout;
use super::status::{self, Verdict};
use super::{EventKind, PlannedEvent};

/// A Warning when `Degraded` turns true or its complaint changes: another reason, or another
/// revision. A complaint about a revision whose words change (a scheduler's node count, a
/// restart count) is the same complaint and is not repeated.
pub fn degraded_event(previous: &ModelDeploymentStatus, degraded: &Verdict) -> Vec<PlannedEvent> {
    if !degraded.status {
        return Vec::new();
    }
    let unchanged = status::find(&previous.conditions, conditions::DEGRADED).is_some_and(|c| {
        let same_complaint = match &degraded.subject {
            Some(subject) => status::subject_of(&c.message) == Some(subject.as_str()),
            None => c.message == degraded.message,
        };
        c.status == "True" && c.reason == degraded.reason && same_complaint
    });
    if unchanged {
        return Vec::new();
    }
    vec![PlannedEvent {
        kind: EventKind::Warning,
        reason: degraded.reason,
        action: match degraded.reason {
            reasons::INVALID_SPEC => "Validate",
            reasons::UNSCHEDULABLE => "Schedule",
            reasons::NOT_OWNED => "Adopt",
            _ => "Rollout",
        },
        message: degraded.message.clone(),
    }]
}

/// Normal events for what the rollout did in this pass.
pub fn rollout_events(md: &ModelDeployment, rollout: &Rollout) -> Vec<PlannedEvent> {
    let mut events = Vec::new();
    let normal = |reason, action, message: String| PlannedEvent {
        kind: EventKind::Normal,
        reason,
        action,
        message,
    };
    if rollout.target_is_new {
        let version = md.spec.model.version.as_deref().unwrap_or("unversioned");
        events.push(normal(
            reasons::REVISION_CREATED,
            "CreateRevision",
            format!(
                "recorded revision {} (number {}) for model {} version {version}",
                rollout.target, rollout.target_number, md.spec.model.name
            ),
        ));
    }
    if rollout.returned_to_known {
        events.push(normal(
            reasons::ROLLED_BACK,
            "Rollback",
            format!(
                "the spec matches known revision {} again; it is now revision number {}",
                rollout.target, rollout.target_number
            ),
        ));
    }
    if rollout.promoted {
        let mut message = format!(
            "revision {} has {} available replicas and is now stable",
            rollout.target, md.spec.replicas
        );
        if let Some(old) = &rollout.stable_before {
            message.push_str(&format!("; revision {old} scaled to 0 and kept in history"));
        }
        events.push(normal(reasons::ROLLOUT_COMPLETE, "Rollout", message));
    }
    if let Some(from) = rollout.scaled_from {
        events.push(normal(
            reasons::SCALED,
            "Scale",
            format!(
                "revision {} scaled from {from} to {} replicas",
                rollout.target, md.spec.replicas
            ),
        ));
    }
    events
}
