//! `spec.resources` and `spec.scheduling`: what each replica asks of a node and where it may run.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, Toleration, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Compute resources of one replica.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResourcesSpec {
    /// CPU and memory the scheduler reserves for each replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ResourceAmounts>,
    /// CPU and memory each replica may use at most. The runtime sizes its thread pool from the
    /// CPU limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceAmounts>,
    /// GPUs for each replica. Setting this schedules the pods on GPU nodes and runs the model
    /// on the GPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuSpec>,
}

/// An amount of CPU and memory.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResourceAmounts {
    /// CPU, e.g. `500m` or `2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::quantity::quantity")]
    pub cpu: Option<Quantity>,
    /// Memory, e.g. `512Mi` or `4Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::quantity::quantity")]
    pub memory: Option<Quantity>,
}

/// GPUs requested by each replica.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GpuSpec {
    /// Number of GPUs per replica (at least 1).
    #[serde(default = "default_gpu_count")]
    #[schemars(range(min = 1, max = 16))]
    pub count: i32,
    /// Extended resource name of the GPU, as the device plugin advertises it.
    #[serde(default = "default_gpu_resource")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9.-]+/[A-Za-z0-9._-]+$")
    )]
    pub resource_name: String,
    /// GPU product the pods must run on, matched against the `nvidia.com/gpu.product` node label
    /// (e.g. `NVIDIA-H100-80GB-HBM3`). Unset: any GPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
    )]
    pub product: Option<String>,
}

fn default_gpu_count() -> i32 {
    1
}

/// The resource name of NVIDIA GPUs.
pub const DEFAULT_GPU_RESOURCE: &str = "nvidia.com/gpu";

fn default_gpu_resource() -> String {
    DEFAULT_GPU_RESOURCE.to_string()
}

/// Where the pods may run; merged into the pod template as given.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SchedulingSpec {
    /// Node labels the pods require (merged with the GPU product selector).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations added to the pods (the GPU toleration is added for GPU requests).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Node and pod affinity of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// PriorityClass of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// How the pods spread over zones or nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
}
