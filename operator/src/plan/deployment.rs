//! The Deployment serving one revision: built from the spec for the revision being rolled out,
//! re-stated with a new replica count for the others, and judged available or not.

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kandle_crds::{labels, ModelDeployment};
use kube::ResourceExt;

use super::meta;
use super::pod_template::pod_template;
use super::revision::{revision_name, KnownRevision, RevisionSnapshot, TEMPLATE_VERSION};
use crate::config::OperatorConfig;

/// The Deployment of the revision described by `snapshot`, at `replicas`.
pub fn deployment(
    md: &ModelDeployment,
    snapshot: &RevisionSnapshot,
    replicas: i32,
    config: &OperatorConfig,
) -> Deployment {
    let md_name = md.name_any();
    let hash = snapshot.hash();
    Deployment {
        metadata: meta::child_meta(
            md,
            &revision_name(&md_name, &hash),
            meta::revision_labels(&md_name, &hash),
        ),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: meta::revision_selector(&md_name, &hash),
            template: pod_template(&md_name, snapshot, config),
            // Within a revision pods only change with the operator's own settings; replace them
            // one at a time without losing capacity.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_string()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            revision_history_limit: Some(1),
            // Kubernetes reports the same deadline on the Deployment (`kubectl rollout status`).
            progress_deadline_seconds: Some(md.spec.rollout.progress_deadline_seconds),
            ..Default::default()
        }),
        status: None,
    }
}

/// The Deployment of a recorded revision at `replicas`: rendered from its recorded snapshot, so
/// kandle applies exactly the fields it owns, when the same template code recorded it;
/// otherwise the observed Deployment re-stated with only the replica count changed.
pub fn restated(
    md: &ModelDeployment,
    observed: &Deployment,
    known: Option<&KnownRevision>,
    replicas: i32,
    config: &OperatorConfig,
) -> Deployment {
    match known.and_then(|k| k.snapshot.as_ref()) {
        Some(snapshot) if snapshot.template_version == TEMPLATE_VERSION => {
            deployment(md, snapshot, replicas, config)
        }
        _ => rescaled(md, observed, replicas),
    }
}

/// An observed Deployment of another revision, re-stated as a full object with kandle's
/// metadata and `replicas`; its selector and template stay exactly as they run.
fn rescaled(md: &ModelDeployment, observed: &Deployment, replicas: i32) -> Deployment {
    let md_name = md.name_any();
    let hash = revision_of(observed).unwrap_or_default();
    let mut spec = observed.spec.clone().unwrap_or_default();
    spec.replicas = Some(replicas);
    Deployment {
        metadata: meta::child_meta(
            md,
            &observed.name_any(),
            meta::revision_labels(&md_name, &hash),
        ),
        spec: Some(spec),
        status: None,
    }
}

/// The `kandle.dev/revision` label of a child.
pub fn revision_of(deployment: &Deployment) -> Option<String> {
    deployment.labels().get(labels::REVISION).cloned()
}

/// Desired replicas in the Deployment's spec (Kubernetes defaults a missing value to 1).
pub fn spec_replicas(deployment: &Deployment) -> i32 {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
}

/// Replica counts reported by the Deployment's status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaCounts {
    /// Pods.
    pub replicas: i32,
    /// Ready pods.
    pub ready: i32,
    /// Available pods.
    pub available: i32,
}

/// What the Deployment's status reports.
pub fn counts(deployment: &Deployment) -> ReplicaCounts {
    let status = deployment.status.clone().unwrap_or_default();
    ReplicaCounts {
        replicas: status.replicas.unwrap_or(0),
        ready: status.ready_replicas.unwrap_or(0),
        available: status.available_replicas.unwrap_or(0),
    }
}

/// Whether the Deployment serves `desired` replicas: its controller has seen the current
/// generation, it asks for `desired`, and that many pods are ready and available.
pub fn is_available(deployment: &Deployment, desired: i32) -> bool {
    let observed_generation = deployment
        .status
        .as_ref()
        .and_then(|s| s.observed_generation);
    let generation_seen = match (deployment.metadata.generation, observed_generation) {
        (Some(generation), Some(seen)) => seen >= generation,
        (None, _) => true,
        (Some(_), None) => false,
    };
    let counts = counts(deployment);
    generation_seen
        && spec_replicas(deployment) == desired
        && counts.ready >= desired
        && counts.available >= desired
}
