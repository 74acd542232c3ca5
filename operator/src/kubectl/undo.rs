//! `kubectl kandle undo`, decided without the API: which revision to go back to, whether a
//! GitOps tool owns the spec (and would revert the change), and the JSON Patch that puts the
//! revision's spec parts back.
//!
//! ```text
//! status.history + ControllerRevisions ─> pick ─> RevisionSnapshot ─> spec_patch (JSON Patch)
//! metadata.managedFields ─> gitops_managers (refuse unless --yes)
//! ```

use kandle_crds::{ModelDeployment, ModelDeploymentStatus, RevisionOutcome};
use kube::ResourceExt;
use serde_json::{json, Value};

use super::render::canary_revision;
use super::Error;
use crate::plan::{KnownRevision, RevisionSnapshot};

/// Field managers of the GitOps tools kandle knows by name: Argo CD and Flux's controllers.
/// Any manager whose name contains `argocd` or `flux` counts too.
pub const GITOPS_MANAGERS: &[&str] = &[
    "argocd-controller",
    "argocd-application-controller",
    "kustomize-controller",
    "helm-controller",
];

/// Whether `manager` is a GitOps tool that re-applies the spec from Git.
pub fn is_gitops_manager(manager: &str) -> bool {
    let manager = manager.to_ascii_lowercase();
    GITOPS_MANAGERS.contains(&manager.as_str())
        || manager.contains("argocd")
        || manager.contains("flux")
}

/// The GitOps managers that own fields of `md`'s spec (per `metadata.managedFields`), sorted
/// and without repeats. Entries of a subresource (`status`, `scale`) do not count.
pub fn gitops_managers(md: &ModelDeployment) -> Vec<String> {
    let mut managers: Vec<String> = md
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|entry| entry.subresource.as_deref().unwrap_or("").is_empty())
        .filter(|entry| {
            entry
                .fields_v1
                .as_ref()
                .is_some_and(|fields| fields.0.get("f:spec").is_some())
        })
        .filter_map(|entry| entry.manager.clone())
        .filter(|manager| is_gitops_manager(manager))
        .collect();
    managers.sort();
    managers.dedup();
    managers
}

/// The known revisions as `1 (minilm-5d8c7f9b21, model v1), 2 (...)`, by number; `none`
/// when there are none.
pub fn describe_known(known: &[KnownRevision]) -> String {
    let mut sorted: Vec<&KnownRevision> = known.iter().collect();
    sorted.sort_by_key(|k| k.number);
    let described: Vec<String> = sorted
        .iter()
        .map(|k| match k.model_version() {
            Some(version) => format!("{} ({}, model {version})", k.number, k.name),
            None => format!("{} ({})", k.number, k.name),
        })
        .collect();
    if described.is_empty() {
        "none".to_string()
    } else {
        described.join(", ")
    }
}

/// The revision to go back to. With `to_revision`, the ControllerRevision of that number, or
/// else the one named by the history record of that number (a revision made current again is
/// renumbered). Without, the previous stable revision: the newest `superseded` record of
/// `status.history` that is neither the stable nor the canary revision.
pub fn pick<'a>(
    md: &ModelDeployment,
    known: &'a [KnownRevision],
    to_revision: Option<i64>,
) -> Result<&'a KnownRevision, Error> {
    let empty = ModelDeploymentStatus::default();
    let status = md.status.as_ref().unwrap_or(&empty);
    let name = md.name_any();
    let by_name = |revision: &str| known.iter().find(|k| k.name == revision);
    let record = match to_revision {
        Some(number) => {
            if let Some(found) = known.iter().find(|k| k.number == number) {
                return Ok(found);
            }
            status
                .history
                .iter()
                .find(|r| r.number == number)
                .ok_or_else(|| Error::UnknownRevision {
                    name: name.clone(),
                    number,
                    known: describe_known(known),
                })?
        }
        None => {
            let stable = status.stable_revision.as_deref();
            let canary = canary_revision(status);
            status
                .history
                .iter()
                .filter(|r| r.outcome == RevisionOutcome::Superseded)
                .filter(|r| Some(r.revision.as_str()) != stable)
                .filter(|r| Some(r.revision.as_str()) != canary)
                .max_by_key(|r| r.number)
                .ok_or_else(|| Error::NoPreviousRevision {
                    name: name.clone(),
                    known: describe_known(known),
                })?
        }
    };
    by_name(&record.revision).ok_or_else(|| Error::RevisionNotKept {
        name,
        revision: record.revision.clone(),
        number: record.number,
        known: describe_known(known),
    })
}

/// The snapshot of a revision, or why it cannot be used.
pub fn snapshot(revision: &KnownRevision) -> Result<&RevisionSnapshot, Error> {
    revision
        .snapshot
        .as_ref()
        .ok_or_else(|| Error::UnreadableRevision {
            revision: revision.name.clone(),
        })
}

/// The spec parts a revision records, as `(field of spec, value)`.
fn parts(snapshot: &RevisionSnapshot) -> Result<[(&'static str, Value); 4], serde_json::Error> {
    Ok([
        ("model", serde_json::to_value(&snapshot.model)?),
        ("runtime", serde_json::to_value(&snapshot.runtime)?),
        ("resources", serde_json::to_value(&snapshot.resources)?),
        ("scheduling", serde_json::to_value(&snapshot.scheduling)?),
    ])
}

/// Whether `md`'s spec already is `snapshot`'s. The snapshot records the runtime image the
/// revision ran (the operator's default when the spec set none), so a spec without an image
/// matches whatever image the snapshot names.
pub fn matches(md: &ModelDeployment, snapshot: &RevisionSnapshot) -> bool {
    let mut runtime = snapshot.runtime.clone();
    if md.spec.runtime.image.is_none() {
        runtime.image = None;
    }
    md.spec.model == snapshot.model
        && md.spec.runtime == runtime
        && md.spec.resources == snapshot.resources
        && md.spec.scheduling == snapshot.scheduling
}

/// The JSON Patch that puts `snapshot`'s spec parts into the object `current` (as read, in
/// JSON): a `test` of `metadata.resourceVersion`, so a change made since it was read fails the
/// patch instead of being overwritten, then one whole-value `replace` (`add` where the field is
/// absent) per part, so no stale nested key survives. The runtime image is the one the revision
/// ran, so the spec pins it.
pub fn spec_patch(current: &Value, snapshot: &RevisionSnapshot) -> Result<Value, Error> {
    let mut ops = Vec::new();
    if let Some(version) = current.pointer("/metadata/resourceVersion") {
        ops.push(json!({"op": "test", "path": "/metadata/resourceVersion", "value": version}));
    }
    let parts = parts(snapshot).map_err(|source| Error::EncodeSnapshot { source })?;
    for (field, value) in parts {
        let op = if current.pointer(&format!("/spec/{field}")).is_some() {
            "replace"
        } else {
            "add"
        };
        ops.push(json!({"op": op, "path": format!("/spec/{field}"), "value": value}));
    }
    Ok(Value::Array(ops))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::ControllerRevision;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        FieldsV1, ManagedFieldsEntry, ObjectMeta, Time,
    };
    use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
    use k8s_openapi::jiff::Timestamp;
    use kandle_crds::{labels, ModelDeploymentStatus, RevisionRecord};

    use super::*;
    use crate::config::OperatorConfig;
    use crate::testing::md;

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(1_764_140_000 + second).unwrap())
    }

    fn record(revision: &str, number: i64, outcome: RevisionOutcome) -> RevisionRecord {
        RevisionRecord {
            revision: revision.to_string(),
            number,
            model_version: None,
            outcome,
            time: at(number),
            message: None,
        }
    }

    fn known(name: &str, number: i64, version: &str) -> KnownRevision {
        let snapshot = RevisionSnapshot::of(
            &md("minilm").with_version(version).build(),
            &OperatorConfig::default(),
        );
        KnownRevision::from_object(&ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(
                    [(
                        labels::REVISION.to_string(),
                        name.trim_start_matches("minilm-").to_string(),
                    )]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            data: Some(RawExtension(snapshot.canonical_json())),
            revision: number,
        })
        .expect("a labelled revision")
    }

    /// Revisions 1 (v1) and 2 (v2) were stable in turn, 3 (v3) is stable now and 4 (v4) is
    /// the canary; revision 0 (v0) was aborted long ago.
    fn rolled_three_times() -> (ModelDeployment, Vec<KnownRevision>) {
        let status = ModelDeploymentStatus {
            stable_revision: Some("minilm-c3".to_string()),
            canary_revision: Some("minilm-d4".to_string()),
            history: vec![
                record("minilm-a0", 0, RevisionOutcome::Aborted),
                record("minilm-a1", 1, RevisionOutcome::Superseded),
                record("minilm-b2", 2, RevisionOutcome::Superseded),
                record("minilm-c3", 3, RevisionOutcome::Stable),
                record("minilm-d4", 4, RevisionOutcome::Progressing),
            ],
            ..ModelDeploymentStatus::default()
        };
        let known = vec![
            known("minilm-a1", 1, "v1"),
            known("minilm-b2", 2, "v2"),
            known("minilm-c3", 3, "v3"),
            known("minilm-d4", 4, "v4"),
        ];
        (
            md("minilm").with_version("v4").with_status(status).build(),
            known,
        )
    }

    #[test]
    fn undo_goes_back_to_the_newest_superseded_revision() {
        let (md, known) = rolled_three_times();
        let picked = pick(&md, &known, None).unwrap();
        assert_eq!(picked.name, "minilm-b2");
        assert_eq!(picked.model_version().as_deref(), Some("v2"));
    }

    #[test]
    fn a_superseded_record_of_the_current_stable_is_not_the_previous_one() {
        // v2 was stable, superseded by v3, then made stable again: v3 is the one to go back to.
        let (mut md, known) = rolled_three_times();
        let status = md.status.as_mut().unwrap();
        status.stable_revision = Some("minilm-b2".to_string());
        status.canary_revision = None;
        status.history[3].outcome = RevisionOutcome::Superseded;
        status
            .history
            .push(record("minilm-b2", 5, RevisionOutcome::Stable));
        assert_eq!(pick(&md, &known, None).unwrap().name, "minilm-c3");
    }

    #[test]
    fn to_revision_takes_the_controller_revision_of_that_number() {
        let (md, known) = rolled_three_times();
        assert_eq!(pick(&md, &known, Some(1)).unwrap().name, "minilm-a1");
        assert_eq!(pick(&md, &known, Some(4)).unwrap().name, "minilm-d4");
    }

    #[test]
    fn an_unknown_revision_number_lists_the_known_ones() {
        let (md, known) = rolled_three_times();
        let error = pick(&md, &known, Some(9)).unwrap_err().to_string();
        assert!(error.contains("no revision 9"), "{error}");
        assert!(
            error.contains("1 (minilm-a1, model v1), 2 (minilm-b2, model v2)"),
            "{error}"
        );
    }

    #[test]
    fn a_recorded_revision_no_longer_kept_is_named() {
        let (md, known) = rolled_three_times();
        let error = pick(&md, &known, Some(0)).unwrap_err().to_string();
        assert!(
            error.contains("revision 0 (minilm-a0)") && error.contains("no longer kept"),
            "{error}"
        );
    }

    #[test]
    fn without_a_previous_stable_undo_asks_for_a_number() {
        let (mut md, known) = rolled_three_times();
        md.status
            .as_mut()
            .unwrap()
            .history
            .retain(|r| r.outcome != RevisionOutcome::Superseded);
        let error = pick(&md, &known, None).unwrap_err().to_string();
        assert!(error.contains("--to-revision"), "{error}");
    }

    fn managed(manager: &str, subresource: Option<&str>, fields: Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.to_string()),
            operation: Some("Apply".to_string()),
            subresource: subresource.map(str::to_string),
            fields_type: Some("FieldsV1".to_string()),
            fields_v1: Some(FieldsV1(fields)),
            ..ManagedFieldsEntry::default()
        }
    }

    #[test]
    fn gitops_tools_are_known_by_name() {
        for manager in [
            "argocd-controller",
            "argocd-application-controller",
            "kustomize-controller",
            "helm-controller",
            "my-argocd-fork",
            "flux-client-side-apply",
        ] {
            assert!(is_gitops_manager(manager), "{manager}");
        }
        for manager in [
            "kubectl-client-side-apply",
            "kubectl-edit",
            "kandle-operator",
            "kubectl-kandle",
        ] {
            assert!(!is_gitops_manager(manager), "{manager}");
        }
    }

    #[test]
    fn only_gitops_managers_of_the_spec_count() {
        let mut md = md("minilm").build();
        md.metadata.managed_fields = Some(vec![
            managed(
                "argocd-controller",
                None,
                json!({"f:spec": {"f:model": {}}}),
            ),
            // Flux only labelled it: it does not own the spec.
            managed(
                "kustomize-controller",
                None,
                json!({"f:metadata": {"f:labels": {}}}),
            ),
            // Status writes of a manager named like a GitOps tool do not own the spec.
            managed("flux-status", Some("status"), json!({"f:spec": {}})),
            managed(
                "kubectl-client-side-apply",
                None,
                json!({"f:spec": {"f:replicas": {}}}),
            ),
            managed(
                "argocd-controller",
                None,
                json!({"f:spec": {"f:replicas": {}}}),
            ),
        ]);
        assert_eq!(gitops_managers(&md), vec!["argocd-controller".to_string()]);
    }

    #[test]
    fn the_patch_replaces_whole_parts_and_tests_the_version_read() {
        let current = json!({
            "metadata": {"name": "minilm", "resourceVersion": "42"},
            "spec": {"model": {"name": "minilm", "stale": true}, "runtime": {}, "resources": {}},
        });
        let snapshot = RevisionSnapshot::of(&md("minilm").build(), &OperatorConfig::default());
        let patch = spec_patch(&current, &snapshot).unwrap();
        let ops: Vec<(String, String)> = patch
            .as_array()
            .unwrap()
            .iter()
            .map(|op| {
                (
                    op["op"].as_str().unwrap().to_string(),
                    op["path"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let expected = [
            ("test", "/metadata/resourceVersion"),
            ("replace", "/spec/model"),
            ("replace", "/spec/runtime"),
            ("replace", "/spec/resources"),
            ("add", "/spec/scheduling"),
        ];
        assert_eq!(
            ops,
            expected
                .map(|(op, path)| (op.to_string(), path.to_string()))
                .to_vec()
        );
        assert_eq!(patch[0]["value"], "42");
        assert_eq!(patch[1]["value"]["name"], "minilm");
        assert!(patch[1]["value"].get("stale").is_none());
    }

    #[test]
    fn a_spec_without_an_image_matches_the_snapshot_of_the_default_image() {
        let md = md("minilm").build();
        let snapshot = RevisionSnapshot::of(&md, &OperatorConfig::default());
        assert!(snapshot.runtime.image.is_some());
        assert!(matches(&md, &snapshot));
        let other = RevisionSnapshot::of(
            &crate::testing::md("minilm").with_version("v2").build(),
            &OperatorConfig::default(),
        );
        assert!(!matches(&md, &other));
    }
}
