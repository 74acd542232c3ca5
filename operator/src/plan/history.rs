//! `status.history`: one record per recorded revision, oldest first, with what became of it and
//! when. A record's time only moves when its outcome changes.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kandle_crds::{RevisionOutcome, RevisionRecord};

use super::rollout::KeptRevision;

/// What this pass decided, as far as the history is concerned.
pub struct HistoryInput<'a> {
    /// The previous `status.history`.
    pub previous: &'a [RevisionRecord],
    /// Revisions recorded after this pass, oldest first.
    pub kept: &'a [KeptRevision],
    /// The target revision.
    pub target: &'a str,
    /// The stable revision after this pass.
    pub stable: Option<&'a str>,
    /// The spec went back to a known revision in this pass.
    pub returned_to_known: bool,
    /// The target ran out of its progress deadline and was given up on.
    pub gave_up: bool,
    /// The target is an aborted canary, and why.
    pub aborted: Option<&'a str>,
    /// The time of this pass.
    pub now: &'a Time,
}

/// The new `status.history`.
pub fn history(input: &HistoryInput<'_>) -> Vec<RevisionRecord> {
    let previous: BTreeMap<&str, &RevisionRecord> = input
        .previous
        .iter()
        .map(|r| (r.revision.as_str(), r))
        .collect();
    input
        .kept
        .iter()
        .map(|kept| {
            let before = previous.get(kept.name.as_str()).copied();
            let outcome = outcome(input, &kept.name, before.map(|r| r.outcome));
            let unchanged = before.filter(|record| record.outcome == outcome);
            let time = unchanged.map_or_else(|| input.now.clone(), |r| r.time.clone());
            let message = match (outcome, input.target == kept.name) {
                (RevisionOutcome::Aborted, true) => input.aborted.map(str::to_string),
                (RevisionOutcome::RolledBack, _) if unchanged.is_none() => {
                    Some("the spec returned to an older revision".to_string())
                }
                _ => unchanged.and_then(|r| r.message.clone()),
            };
            RevisionRecord {
                revision: kept.name.clone(),
                number: kept.number,
                model_version: kept.model_version.clone(),
                outcome,
                time,
                message,
            }
        })
        .collect()
}

fn outcome(
    input: &HistoryInput<'_>,
    name: &str,
    before: Option<RevisionOutcome>,
) -> RevisionOutcome {
    if input.stable == Some(name) {
        return RevisionOutcome::Stable;
    }
    if input.target == name {
        return if input.gave_up {
            RevisionOutcome::Failed
        } else if input.aborted.is_some() {
            RevisionOutcome::Aborted
        } else {
            RevisionOutcome::Progressing
        };
    }
    match before {
        // A rollout left behind: rolled back when the spec returned to an older revision,
        // superseded when it moved on to a newer one.
        Some(RevisionOutcome::Progressing) if input.returned_to_known => {
            RevisionOutcome::RolledBack
        }
        Some(RevisionOutcome::Progressing) | Some(RevisionOutcome::Stable) | None => {
            RevisionOutcome::Superseded
        }
        Some(other) => other,
    }
}
