//! Revisions: the part of the spec that shapes the pods, its content hash, and the
//! ControllerRevision recording it. Labels, replicas, autoscaling, rollout settings and status
//! never change a revision; the model, runtime, resources and scheduling always do.

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kandle_crds::{labels, ModelDeployment, ModelSpec, ResourcesSpec, RuntimeSpec, SchedulingSpec};
use kube::ResourceExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::meta;
use crate::config::OperatorConfig;

/// Hex characters of the sha256 kept in a revision's name and label.
pub const HASH_LEN: usize = 10;

/// Everything that shapes a revision's pods; stored as the ControllerRevision's `data`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RevisionSnapshot {
    /// `spec.model`.
    pub model: ModelSpec,
    /// `spec.runtime`, with `image` resolved to the image actually run (the operator's default
    /// when the spec sets none), so a new default image is a new, recorded revision.
    pub runtime: RuntimeSpec,
    /// `spec.resources`.
    pub resources: ResourcesSpec,
    /// `spec.scheduling`.
    pub scheduling: SchedulingSpec,
    /// The image of the init container that fetched an `http` source in revisions recorded
    /// by operators before 0.2 (busybox). Sources are now fetched by the runtime image's own
    /// `kandle-runtime fetch`, so it is never set; a revision that had it differs from the
    /// same spec today, which rolls it out as an operator upgrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_image: Option<String>,
    /// Version of the pod template code that rendered this revision. A change of the template
    /// code bumps [`TEMPLATE_VERSION`], which makes a new revision; an older revision's
    /// Deployment is then only rescaled, never re-rendered with the new code. Version 1 is not
    /// written, so revisions recorded before the field existed keep their names.
    #[serde(default = "first_template", skip_serializing_if = "is_first_template")]
    pub template_version: u32,
}

/// Version of the pod template code (see [`RevisionSnapshot::template_version`]).
pub const TEMPLATE_VERSION: u32 = 1;

fn first_template() -> u32 {
    1
}

fn is_first_template(version: &u32) -> bool {
    *version == 1
}

impl RevisionSnapshot {
    /// The snapshot of `md`'s current spec.
    pub fn of(md: &ModelDeployment, config: &OperatorConfig) -> Self {
        let mut runtime = md.spec.runtime.clone();
        if runtime.image.is_none() {
            runtime.image = Some(config.runtime_image.clone());
        }
        Self {
            model: md.spec.model.clone(),
            runtime,
            resources: md.spec.resources.clone(),
            scheduling: md.spec.scheduling.clone(),
            fetch_image: None,
            template_version: TEMPLATE_VERSION,
        }
    }

    /// The snapshot with a `huggingFace` source pinned to `commit` (its branch or tag resolved),
    /// so the revision names the exact model its pods fetch.
    pub fn pinned(mut self, commit: Option<&str>) -> Self {
        if let (Some(hf), Some(commit)) = (self.model.source.hugging_face.as_mut(), commit) {
            hf.revision = commit.to_string();
        }
        self
    }

    /// The runtime image of this revision.
    pub fn image<'a>(&'a self, config: &'a OperatorConfig) -> &'a str {
        self.runtime
            .image
            .as_deref()
            .unwrap_or(&config.runtime_image)
    }

    /// The snapshot as JSON with every object's keys sorted.
    pub fn canonical_json(&self) -> Value {
        // Serializing these types cannot fail: they hold only strings, numbers, maps with
        // string keys and k8s-openapi types; Null is still a stable hash input if it ever did.
        canonicalize(serde_json::to_value(self).unwrap_or(Value::Null))
    }

    /// The content hash: the first [`HASH_LEN`] hex characters of the sha256 of the canonical
    /// JSON.
    pub fn hash(&self) -> String {
        let bytes = serde_json::to_vec(&self.canonical_json()).unwrap_or_default();
        let digest = hex::encode(Sha256::digest(&bytes));
        digest[..HASH_LEN].to_string()
    }
}

fn canonicalize(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonicalize(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonicalize).collect()),
        other => other,
    }
}

/// Name of a revision (and of its ControllerRevision and Deployment): `<md>-<hash>`.
pub fn revision_name(md_name: &str, hash: &str) -> String {
    format!("{md_name}-{hash}")
}

/// A revision recorded in the cluster as a ControllerRevision.
#[derive(Clone, Debug, PartialEq)]
pub struct KnownRevision {
    /// `<md>-<hash>`.
    pub name: String,
    /// The content hash (the `kandle.dev/revision` label).
    pub hash: String,
    /// Revision number.
    pub number: i64,
    /// The recorded spec parts, when they parse.
    pub snapshot: Option<RevisionSnapshot>,
    /// The ControllerRevision as observed.
    pub object: ControllerRevision,
}

impl KnownRevision {
    /// Reads a ControllerRevision; `None` when it lacks the revision label.
    pub fn from_object(object: &ControllerRevision) -> Option<Self> {
        let hash = object.labels().get(labels::REVISION)?.clone();
        let snapshot = object
            .data
            .as_ref()
            .and_then(|raw| serde_json::from_value(raw.0.clone()).ok());
        Some(Self {
            name: object.name_any(),
            hash,
            number: object.revision,
            snapshot,
            object: object.clone(),
        })
    }

    /// `spec.model.version` of the revision, if recorded.
    pub fn model_version(&self) -> Option<String> {
        self.snapshot.as_ref().and_then(|s| s.model.version.clone())
    }
}

/// The ControllerRevision recording `snapshot` as revision `number`.
pub fn controller_revision(
    md: &ModelDeployment,
    snapshot: &RevisionSnapshot,
    number: i64,
) -> ControllerRevision {
    let md_name = md.name_any();
    let hash = snapshot.hash();
    ControllerRevision {
        metadata: meta::child_meta(
            md,
            &revision_name(&md_name, &hash),
            meta::revision_labels(&md_name, &hash),
        ),
        data: Some(RawExtension(snapshot.canonical_json())),
        revision: number,
    }
}

/// A kept revision's ControllerRevision, re-stated with kandle's metadata and `number`.
pub fn restated_revision(
    md: &ModelDeployment,
    known: &KnownRevision,
    number: i64,
) -> ControllerRevision {
    let md_name = md.name_any();
    ControllerRevision {
        metadata: meta::child_meta(
            md,
            &known.name,
            meta::revision_labels(&md_name, &known.hash),
        ),
        data: known.object.data.clone(),
        revision: number,
    }
}
