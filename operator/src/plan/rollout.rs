//! The rolling strategy: which revision is the target, which is stable, when the target is
//! promoted, how many replicas each revision's Deployment gets, and which old revisions are
//! kept as history or pruned.
//!
//! The target is the revision of the current spec. It grows beside the stable one within the
//! surge/unavailable budget ([`super::budget`]) until it is available; then it becomes stable
//! and the old one is scaled to zero and kept as history (ControllerRevision plus zero-replica
//! Deployment), up to `revisionHistoryLimit`. A target given up on (past its progress deadline)
//! is scaled to zero and the stable one back to full size.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use kandle_crds::ModelDeployment;
use kube::ResourceExt;

use super::budget::{self, BudgetInput, Split};
use super::deployment::{self, is_available, restated, spec_replicas};
use super::progressive::CanaryPass;
use super::revision::{
    controller_revision, restated_revision, revision_name, KnownRevision, RevisionSnapshot,
};
use super::{ChildKind, ChildRef};
use crate::config::OperatorConfig;
use crate::observe::Observed;

/// A revision that stays recorded after this pass.
#[derive(Clone, Debug, PartialEq)]
pub struct KeptRevision {
    /// `<md>-<hash>`.
    pub name: String,
    /// Revision number after this pass.
    pub number: i64,
    /// Its `spec.model.version`.
    pub model_version: Option<String>,
}

/// What the rolling strategy decided for one pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Rollout {
    /// Name of the target revision (the current spec's).
    pub target: String,
    /// Its revision number after this pass.
    pub target_number: i64,
    /// The target was not recorded before: this pass records it.
    pub target_is_new: bool,
    /// The spec returned to a known, older revision, which is renumbered as the newest.
    pub returned_to_known: bool,
    /// The stable revision before this pass.
    pub stable_before: Option<String>,
    /// The stable revision after this pass.
    pub stable: Option<String>,
    /// The target became stable in this pass.
    pub promoted: bool,
    /// The target's replicas before this pass, when the target was already stable and its
    /// Deployment asked for a different count.
    pub scaled_from: Option<i32>,
    /// Deployments to apply.
    pub deployments: Vec<Deployment>,
    /// ControllerRevisions to apply.
    pub revisions: Vec<ControllerRevision>,
    /// Children of pruned or unknown revisions.
    pub delete: Vec<ChildRef>,
    /// Revisions recorded after this pass, oldest first.
    pub kept: Vec<KeptRevision>,
}

/// Recorded revisions of the observed state.
pub fn known_revisions(observed: &Observed) -> Vec<KnownRevision> {
    let mut known: Vec<KnownRevision> = observed
        .revisions
        .iter()
        .filter_map(KnownRevision::from_object)
        .collect();
    known.sort_by(|a, b| a.number.cmp(&b.number).then_with(|| a.name.cmp(&b.name)));
    known
}

/// The stable revision: the one `status.stableRevision` names while its Deployment exists;
/// failing that (a lost status), the newest revision other than the `target` whose Deployment
/// has available pods. The target itself only becomes stable by promotion, once fully available.
pub fn current_stable(
    md: &ModelDeployment,
    observed: &Observed,
    known: &[KnownRevision],
    target: &str,
) -> Option<String> {
    let recorded = md.status.as_ref().and_then(|s| s.stable_revision.clone());
    if let Some(name) = recorded {
        if observed.deployments.iter().any(|d| d.name_any() == name) {
            return Some(name);
        }
    }
    let number_of = |name: &str| {
        known
            .iter()
            .find(|k| k.name == name)
            .map(|k| k.number)
            .unwrap_or(-1)
    };
    observed
        .deployments
        .iter()
        .filter(|d| deployment::revision_of(d).is_some())
        .filter(|d| spec_replicas(d) > 0 && deployment::counts(d).available > 0)
        .map(|d| d.name_any())
        .filter(|name| name != target)
        .max_by(|a, b| number_of(a).cmp(&number_of(b)).then_with(|| a.cmp(b)))
}

/// Decides the rollout of `snapshot` (the current spec's revision); `gave_up` when the
/// rollout ran out of its progress deadline while another revision serves. A `canary` sets the
/// replicas of both revisions for its step and holds the promotion until it is promoting.
pub fn roll(
    md: &ModelDeployment,
    snapshot: &RevisionSnapshot,
    observed: &Observed,
    config: &OperatorConfig,
    gave_up: bool,
    canary: Option<&CanaryPass>,
) -> Rollout {
    let md_name = md.name_any();
    let desired = md.spec.replicas;
    let hash = snapshot.hash();
    let target = revision_name(&md_name, &hash);
    let known = known_revisions(observed);

    // Numbers only grow, also past revisions already pruned but still in the status history.
    let history_max = md
        .status
        .as_ref()
        .and_then(|s| s.history.iter().map(|r| r.number).max())
        .unwrap_or(0);
    let max_number = known
        .iter()
        .map(|k| k.number)
        .max()
        .unwrap_or(0)
        .max(history_max);
    let target_known = known.iter().find(|k| k.hash == hash);
    // A target already numbered in the status as the newest revision, whose ControllerRevision
    // could not be written yet, keeps its number: a failing write must not renumber it.
    let numbered = md
        .status
        .as_ref()
        .and_then(|s| s.history.iter().find(|r| r.revision == target))
        .map(|r| r.number)
        .filter(|number| *number == max_number);
    let (target_number, target_is_new, returned_to_known) = match target_known {
        None => (numbered.unwrap_or(max_number + 1), true, false),
        Some(k) if k.number < max_number => (max_number + 1, false, true),
        Some(k) => (k.number, false, false),
    };

    let stable_before = current_stable(md, observed, &known, &target);
    let target_deployment = observed.deployments.iter().find(|d| d.name_any() == target);
    let canary_sizes = canary.and_then(|c| c.sizes);
    let promoted = !gave_up
        && canary_sizes.is_none()
        && stable_before.as_deref() != Some(target.as_str())
        && target_deployment.is_some_and(|d| is_available(d, desired));
    let stable = if promoted {
        Some(target.clone())
    } else {
        stable_before.clone()
    };
    let scaled_from = match target_deployment {
        Some(d)
            if !promoted
                && stable.as_deref() == Some(target.as_str())
                && spec_replicas(d) != desired =>
        {
            Some(spec_replicas(d))
        }
        _ => None,
    };

    // History: recorded revisions other than the target and the stable one, newest first.
    let limit = usize::try_from(md.spec.revision_history_limit).unwrap_or(0);
    let live = |name: &str| name == target || stable.as_deref() == Some(name);
    let mut history: Vec<&KnownRevision> = known.iter().filter(|k| !live(&k.name)).collect();
    history.sort_by(|a, b| b.number.cmp(&a.number).then_with(|| b.name.cmp(&a.name)));
    let (kept_history, pruned) = history.split_at(limit.min(history.len()));
    let kept_names: BTreeSet<&str> = kept_history.iter().map(|k| k.name.as_str()).collect();

    let split = match stable.as_deref() {
        Some(name) if name != target && canary_sizes.is_some() => {
            let (stable, target) = canary_sizes.unwrap_or_default();
            Split { target, stable }
        }
        Some(name) if name != target && gave_up => Split {
            target: 0,
            stable: desired,
        },
        Some(name) if name != target => budget::split(BudgetInput {
            desired,
            max_surge: budget::resolve(&md.spec.rollout.max_surge, desired, true),
            max_unavailable: budget::resolve(&md.spec.rollout.max_unavailable, desired, false),
            target_available: target_deployment.map_or(0, |d| deployment::counts(d).available),
            waiting_for_room: observed
                .unschedulable
                .iter()
                .any(|f| f.revision.as_deref() == Some(hash.as_str()) && f.for_lack_of_room()),
        }),
        _ => Split {
            target: desired,
            stable: 0,
        },
    };
    let known_named = |name: &str| known.iter().find(|k| k.name == name);
    let mut deployments = vec![deployment::deployment(md, snapshot, split.target, config)];
    let mut delete = Vec::new();
    for observed_deployment in &observed.deployments {
        let name = observed_deployment.name_any();
        if name == target {
            continue;
        }
        let replicas = if stable.as_deref() == Some(name.as_str()) {
            split.stable
        } else if kept_names.contains(name.as_str()) {
            0
        } else {
            delete.push(ChildRef {
                kind: ChildKind::Deployment,
                name,
                uid: observed_deployment.uid(),
            });
            continue;
        };
        deployments.push(restated(
            md,
            observed_deployment,
            known_named(&name),
            replicas,
            config,
        ));
    }

    let mut revisions = vec![controller_revision(md, snapshot, target_number)];
    let mut kept = vec![KeptRevision {
        name: target.clone(),
        number: target_number,
        model_version: snapshot.model.version.clone(),
    }];
    for k in &known {
        if k.name == target {
            continue;
        }
        if stable.as_deref() == Some(k.name.as_str()) || kept_names.contains(k.name.as_str()) {
            revisions.push(restated_revision(md, k, k.number));
            kept.push(KeptRevision {
                name: k.name.clone(),
                number: k.number,
                model_version: k.model_version(),
            });
        }
    }
    for k in pruned {
        delete.push(ChildRef {
            kind: ChildKind::ControllerRevision,
            name: k.name.clone(),
            uid: k.object.uid(),
        });
    }
    kept.sort_by(|a, b| a.number.cmp(&b.number).then_with(|| a.name.cmp(&b.name)));
    deployments.sort_by_key(|d| d.name_any());
    revisions.sort_by_key(|r| r.name_any());
    delete.sort();

    Rollout {
        target,
        target_number,
        target_is_new,
        returned_to_known,
        stable_before,
        stable,
        promoted,
        scaled_from,
        deployments,
        revisions,
        delete,
        kept,
    }
}
