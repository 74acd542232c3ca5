//! The Service in front of all live revisions (traffic splits by replica ratio) and the
//! PodDisruptionBudget that keeps voluntary disruptions to one pod at a time.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kandle_crds::{labels, ModelDeployment};
use kube::ResourceExt;

use super::meta;
use super::pod_template::PORT_NAME;

/// Port the Service listens on.
pub const SERVICE_PORT: i32 = 80;

/// The ClusterIP Service named after the `ModelDeployment`.
pub fn service(md: &ModelDeployment) -> Service {
    let md_name = md.name_any();
    Service {
        metadata: meta::child_meta(md, &md_name, meta::common_labels(&md_name)),
        spec: Some(cluster_ip(meta::pod_selector_labels(&md_name))),
        status: None,
    }
}

/// A ClusterIP Service spec over the pods `selector` matches, on [`SERVICE_PORT`] to the
/// runtime's named port.
pub fn cluster_ip(selector: BTreeMap<String, String>) -> ServiceSpec {
    ServiceSpec {
        type_: Some("ClusterIP".to_string()),
        selector: Some(selector),
        ports: Some(vec![ServicePort {
            name: Some(PORT_NAME.to_string()),
            port: SERVICE_PORT,
            target_port: Some(IntOrString::String(PORT_NAME.to_string())),
            protocol: Some("TCP".to_string()),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

/// `status.url`: the Service's in-cluster address.
pub fn service_url(md: &ModelDeployment) -> String {
    format!(
        "http://{}.{}.svc.cluster.local",
        md.name_any(),
        meta::namespace_of(md)
    )
}

/// The PodDisruptionBudget over the serving revision's pods (`serving_hash`) for `replicas`, or
/// `None` when there are too few replicas for one to mean anything (a single replica cannot
/// keep serving through a drain either way). Pods that are not ready (a crash-looping pod of a
/// new revision) may always be evicted, so they never block a node drain.
pub fn pdb(md: &ModelDeployment, replicas: i32, serving_hash: &str) -> Option<PodDisruptionBudget> {
    if replicas <= 1 {
        return None;
    }
    let md_name = md.name_any();
    let mut selector = meta::pod_selector_labels(&md_name);
    selector.insert(labels::REVISION.to_string(), serving_hash.to_string());
    Some(PodDisruptionBudget {
        metadata: meta::child_meta(md, &md_name, meta::common_labels(&md_name)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector),
                ..Default::default()
            }),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_string()),
            ..Default::default()
        }),
        status: None,
    })
}
