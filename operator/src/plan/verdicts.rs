//! Judgements behind the `Degraded` and `Progressing` conditions: what is wrong with the spec or
//! the pods, and how far a rollout has come.

use kandle_crds::conditions::reasons;
use kandle_crds::{ModelDeployment, RolloutStrategy};
use kube::ResourceExt;

use super::deployment;
use super::meta;
use super::revision::revision_name;
use super::rollout::Rollout;
use super::status::Verdict;
use crate::observe::Observed;

/// Longest `ModelDeployment` name: it names the Service (a DNS-1035 label) and is the value of
/// the `kandle.dev/model-deployment` label.
pub const MAX_NAME_LEN: usize = 63;

/// `Degraded`: an invalid spec (an unusable name, a missing PVC) first, then pods the scheduler
/// cannot place.
pub fn degraded_verdict(md: &ModelDeployment, observed: &Observed, target_hash: &str) -> Verdict {
    let name = md.name_any();
    if !is_dns_label(&name) {
        return Verdict::yes(
            reasons::INVALID_SPEC,
            format!(
                "metadata.name: {name:?} cannot name the Service and label the pods: it must be at \
                 most {MAX_NAME_LEN} lowercase letters, digits or '-', starting with a letter and \
                 ending with a letter or digit"
            ),
        );
    }
    if let (Some(pvc), Some(false)) = (&md.spec.model.source.pvc, observed.pvc_exists) {
        return Verdict::yes(
            reasons::INVALID_SPEC,
            format!(
                "spec.model.source.pvc: PersistentVolumeClaim {:?} not found in namespace {:?}",
                pvc.claim_name,
                meta::namespace_of(md)
            ),
        );
    }
    // The target revision's pods first: they are what the user just asked for.
    let failure = observed
        .unschedulable
        .iter()
        .find(|f| f.revision.as_deref() == Some(target_hash))
        .or_else(|| observed.unschedulable.first());
    if let Some(failure) = failure {
        let whose = match &failure.revision {
            Some(hash) => format!("pods of revision {}", revision_name(&md.name_any(), hash)),
            None => format!("pod {}", failure.pod),
        };
        return Verdict::yes(
            reasons::UNSCHEDULABLE,
            format!("{whose} cannot be scheduled: {}", failure.message),
        );
    }
    Verdict::no(reasons::HEALTHY, "no problems found")
}

/// `Progressing`: true while the target revision is not yet stable.
pub fn progressing_verdict(
    md: &ModelDeployment,
    rollout: &Rollout,
    observed: &Observed,
    rolling: bool,
) -> Verdict {
    if !rolling {
        return Verdict::no(
            reasons::STABLE,
            format!("revision {} is stable", rollout.target),
        );
    }
    let available = observed
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
    if md.spec.rollout.strategy == RolloutStrategy::Canary {
        message.push_str("; canary steps are not implemented yet: rolled out as rolling");
    }
    Verdict::yes(reasons::ROLLING_OUT, message)
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
