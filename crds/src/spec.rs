//! The `ModelDeployment` resource and its top-level spec.

use k8s_openapi::api::core::v1::EnvVar;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::{
    AutoscalingSpec, ModelDeploymentStatus, ModelSpec, ResourcesSpec, RolloutSpec, SchedulingSpec,
};

/// A model served by kandle-runtime pods: which model, on what hardware, how many replicas, and
/// how new versions roll out.
// Printer columns repeat `type_ = "string"`; clippy reads those as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kandle.dev",
    version = "v1alpha1",
    kind = "ModelDeployment",
    namespaced,
    shortname = "md",
    category = "kandle",
    status = "ModelDeploymentStatus",
    doc = "A model served by kandle-runtime pods, with rollout and autoscaling.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Model", type_ = "string", json_path = ".spec.model.name"),
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.model.version"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.ready",
        description = "ready/desired replicas"
    ),
    printcolumn(
        name = "Stable",
        type_ = "string",
        json_path = ".status.stableRevision"
    ),
    printcolumn(
        name = "Canary",
        type_ = "string",
        json_path = ".status.canaryRevision"
    ),
    printcolumn(
        name = "Weight",
        type_ = "integer",
        json_path = ".status.canaryWeight",
        description = "percent of traffic on the canary"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ModelDeploymentSpec {
    /// The model to serve and where its weights come from.
    pub model: ModelSpec,
    /// The kandle-runtime container: image, batching limits, extra env and args.
    #[serde(default)]
    pub runtime: RuntimeSpec,
    /// CPU, memory and GPUs of each replica.
    #[serde(default)]
    pub resources: ResourcesSpec,
    /// Node selection, tolerations, affinity and spreading of the pods.
    #[serde(default)]
    pub scheduling: SchedulingSpec,
    /// Desired replicas of the serving revision, also served through the /scale subresource
    /// (`kubectl scale md/NAME --replicas=N`). Ignored while `autoscaling` follows a runtime
    /// metric (`status.autoscaling.desiredReplicas` rules instead, as with an HPA); with
    /// `metric: cpu` the HorizontalPodAutoscaler kandle creates sets it through /scale.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// Replica autoscaling on the runtime's metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// How a new revision replaces the stable one.
    #[serde(default)]
    pub rollout: RolloutSpec,
    /// Old revisions kept for instant rollback (their ControllerRevisions; Deployments are kept
    /// scaled to zero).
    #[serde(default = "default_history_limit")]
    #[schemars(range(min = 0, max = 100))]
    pub revision_history_limit: i32,
    /// While true the operator changes nothing: no new revision, no step, no scaling.
    #[serde(default)]
    pub paused: bool,
}

fn default_replicas() -> i32 {
    1
}
fn default_history_limit() -> i32 {
    5
}

/// The kandle-runtime container.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeSpec {
    /// Runtime image. Unset: the operator's default (its `--runtime-image` flag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Most tokens in one batch sent to the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1048576))]
    pub max_batch_tokens: Option<i32>,
    /// Requests admitted at once per replica; more get 429 at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_concurrent_requests: Option<i32>,
    /// Most inputs in one client request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_client_batch_size: Option<i32>,
    /// Extra environment variables of the runtime container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Extra command-line arguments of the runtime (appended after kandle's own).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}
