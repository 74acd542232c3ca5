//! Names, labels and owner references shared by every child of a `ModelDeployment`, so that
//! observe (which lists by label) and plan (which sets them) can never disagree.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kandle_crds::{labels, ModelDeployment};
use kube::{Resource, ResourceExt};

/// Namespace of the `ModelDeployment` (`default` when unset, as the API server would place it).
pub fn namespace_of(md: &ModelDeployment) -> String {
    md.namespace().unwrap_or_else(|| "default".to_string())
}

/// Labels selecting every pod of the `ModelDeployment`, whatever its revision (the Service,
/// the PodDisruptionBudget and `status.selector` use them).
pub fn pod_selector_labels(md_name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::MODEL_DEPLOYMENT.to_string(), md_name.to_string()),
        (
            labels::APP_NAME.to_string(),
            labels::APP_NAME_VALUE.to_string(),
        ),
    ])
}

/// `status.selector`: [`pod_selector_labels`] as a label selector string.
pub fn pod_selector_string(md_name: &str) -> String {
    format!(
        "{}={md_name},{}={}",
        labels::MODEL_DEPLOYMENT,
        labels::APP_NAME,
        labels::APP_NAME_VALUE
    )
}

/// Labels of children that belong to no single revision (Service, PodDisruptionBudget).
pub fn common_labels(md_name: &str) -> BTreeMap<String, String> {
    let mut labels = pod_selector_labels(md_name);
    labels.insert(labels::APP_INSTANCE.to_string(), md_name.to_string());
    labels.insert(
        labels::MANAGED_BY.to_string(),
        labels::MANAGED_BY_VALUE.to_string(),
    );
    labels
}

/// Labels of a revision's children and pods.
pub fn revision_labels(md_name: &str, hash: &str) -> BTreeMap<String, String> {
    let mut labels = common_labels(md_name);
    labels.insert(labels::REVISION.to_string(), hash.to_string());
    labels
}

/// Selector of one revision's pods (a Deployment's `spec.selector`, immutable once created).
pub fn revision_selector(md_name: &str, hash: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([
            (labels::MODEL_DEPLOYMENT.to_string(), md_name.to_string()),
            (labels::REVISION.to_string(), hash.to_string()),
        ])),
        ..Default::default()
    }
}

/// The owner reference every child carries: the `ModelDeployment` as its controller, so
/// deleting it removes everything and kube-runtime maps child events back to it.
pub fn owner_reference(md: &ModelDeployment) -> OwnerReference {
    OwnerReference {
        api_version: ModelDeployment::api_version(&()).to_string(),
        kind: ModelDeployment::kind(&()).to_string(),
        name: md.name_any(),
        uid: md.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Metadata of a child: name, namespace, labels and the owner reference.
pub fn child_meta(
    md: &ModelDeployment,
    name: &str,
    labels: BTreeMap<String, String>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace_of(md)),
        labels: Some(labels),
        owner_references: Some(vec![owner_reference(md)]),
        ..Default::default()
    }
}
