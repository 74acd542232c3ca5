//! When the API server refuses a child the plan asked for (a value the CRD schema let through
//! but Kubernetes' own validation does not), the refusal becomes `Degraded=True` with the
//! server's words and a Warning event; no child is touched.

use chrono::{DateTime, Utc};
use kandle_crds::conditions::{self, reasons};
use kandle_crds::ModelDeployment;

use super::events::degraded_event;
use super::status::{set_condition, Verdict};
use super::{kube_time, Plan};

/// How every refusal's message starts.
pub const REJECTED_PREFIX: &str = "the API server rejected ";

/// The refusal recorded in `md`'s status for its current generation, if any: the spec that was
/// refused has not changed, so the planner keeps the children as they are instead of applying
/// the refused ones again on every pass.
pub fn standing_refusal(md: &ModelDeployment) -> Option<String> {
    let status = md.status.as_ref()?;
    if status.observed_generation != md.metadata.generation {
        return None;
    }
    status
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::DEGRADED && c.status == "True")
        .filter(|c| c.reason == reasons::INVALID_SPEC && c.message.starts_with(REJECTED_PREFIX))
        .map(|c| c.message.clone())
}

/// The plan that reports `refusal` (for example "the API server rejected Deployment x: ...")
/// instead of `planned`, whose children could not be applied.
pub fn rejected(md: &ModelDeployment, planned: &Plan, refusal: &str, now: DateTime<Utc>) -> Plan {
    let now = kube_time(now);
    let previous = md.status.clone().unwrap_or_default();
    let generation = md.metadata.generation;
    let degraded = Verdict::yes(reasons::INVALID_SPEC, refusal);
    let progressing = Verdict::no(
        reasons::INVALID_SPEC,
        format!("{refusal}; no new revision is created"),
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
        hpa: None,
        revision_services: Vec::new(),
        route: None,
        delete: Vec::new(),
        status,
        write_status: true,
        events,
        // Only a change of the spec can help.
        waiting: false,
        recheck_in: None,
        operator_upgrade: planned.operator_upgrade,
        rolled_back_since: None,
    }
}
