//! When the API server refuses a child the plan asked for (a value the CRD schema let through
//! but Kubernetes' own validation does not), the refusal becomes `Degraded=True` with the
//! server's words and a Warning event; no child is touched.

use chrono::{DateTime, Utc};
use kandle_crds::conditions::{self, reasons};
use kandle_crds::ModelDeployment;

use super::events::degraded_event;
use super::status::{set_condition, Verdict};
use super::{kube_time, Plan};

/// The plan that reports `refusal` (for example "the API server rejected Deployment x: ...")
/// instead of `planned`, whose children could not be applied.
pub fn rejected(md: &ModelDeployment, planned: &Plan, refusal: &str, now: DateTime<Utc>) -> Plan {
    let now = kube_time(now);
    let previous = md.status.clone().unwrap_or_default();
    let generation = md.metadata.generation;
    let degraded = Verdict::yes(reasons::INVALID_SPEC, refusal);
    let progressing = Verdict::no(
        reasons::INVALID_SPEC,
        format!("{refusal}; the rollout cannot proceed until the spec is fixed"),
    );
    let events = degraded_event(&previous, &degraded);
    let mut status = planned.status.clone();
    for (type_, verdict) in [
        (conditions::DEGRADED, degraded),
        (conditions::PROGRESSING, progressing),
    ] {
        set_condition(
            &mut status.conditions,
            &previous.conditions,
            type_,
            verdict,
            generation,
            &now,
        );
    }
    Plan {
        deployments: Vec::new(),
        revisions: Vec::new(),
        service: None,
        pdb: None,
        delete: Vec::new(),
        status,
        events,
        waiting: true,
    }
}
