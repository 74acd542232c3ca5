//! kstatus' abnormal-true conditions, `Reconciling` and `Stalled`, derived from the `Ready`,
//! `Progressing` and `Degraded` verdicts of the same pass, so that one judgement decides all
//! five and Flux, `kubectl wait` and other kstatus readers never disagree with `Degraded`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kandle_crds::conditions::reasons;

use super::status::Verdict;

/// `Degraded` reasons that the operator cannot clear by trying again: a human must change the
/// spec or the cluster. Every other `Degraded` reason (a crash loop, an image pull, a model
/// fetch, refused pods) leaves the rollout trying until its progress deadline.
pub const STALLING: [&str; 6] = [
    reasons::ANALYSIS_FAILED,
    reasons::CANARY_ABORTED,
    reasons::INVALID_SPEC,
    reasons::NOT_OWNED,
    reasons::PROGRESS_DEADLINE_EXCEEDED,
    reasons::UNSCHEDULABLE,
];

/// What one condition says, borrowed from a verdict or a written condition.
#[derive(Clone, Copy, Debug)]
pub struct Said<'a> {
    /// `True`?
    pub status: bool,
    /// Its reason.
    pub reason: &'a str,
    /// Its message.
    pub message: &'a str,
}

impl<'a> From<&'a Verdict> for Said<'a> {
    fn from(verdict: &'a Verdict) -> Self {
        Self {
            status: verdict.status,
            reason: verdict.reason,
            message: &verdict.message,
        }
    }
}

impl<'a> From<&'a Condition> for Said<'a> {
    fn from(condition: &'a Condition) -> Self {
        Self {
            status: condition.status == "True",
            reason: &condition.reason,
            message: &condition.message,
        }
    }
}

/// A derived condition, before timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Derived {
    /// `True` or `False`.
    pub status: bool,
    /// The reason, taken from the verdict it was derived from.
    pub reason: String,
    /// The message.
    pub message: String,
}

impl Derived {
    fn new(status: bool, reason: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}

/// `Reconciling` and `Stalled` from the pass' `Ready`, `Progressing` and `Degraded`. At most
/// one of the two is `True`: kstatus reads `Reconciling=True` as "in progress" before it looks
/// at `Stalled`, so a stalled resource must not also say it is reconciling.
pub fn derive(ready: Said<'_>, progressing: Said<'_>, degraded: Said<'_>) -> (Derived, Derived) {
    if degraded.status && STALLING.contains(&degraded.reason) {
        let reconciling = Derived::new(
            false,
            degraded.reason,
            format!(
                "no progress without a change to the spec or the cluster: {}",
                degraded.message
            ),
        );
        let stalled = Derived::new(true, degraded.reason, degraded.message);
        return (reconciling, stalled);
    }
    let stalled = if degraded.status {
        Derived::new(
            false,
            degraded.reason,
            format!("kandle keeps trying: {}", degraded.message),
        )
    } else {
        Derived::new(false, degraded.reason, degraded.message)
    };
    let reconciling = if progressing.status {
        Derived::new(true, progressing.reason, progressing.message)
    } else if progressing.reason == reasons::PAUSED {
        Derived::new(false, progressing.reason, progressing.message)
    } else if !ready.status {
        // Not rolling, yet the serving revision is short of ready pods (scaled up, a pod
        // replaced): its Deployment is still being worked on.
        Derived::new(true, ready.reason, ready.message)
    } else {
        Derived::new(false, progressing.reason, progressing.message)
    };
    (reconciling, stalled)
}
