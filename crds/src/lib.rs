//! The `kandle.dev/v1alpha1` API: the `ModelDeployment` custom resource, its schema and its
//! validation rules.
//!
//! ```text
//! ModelDeployment ──owns──> ControllerRevision (one per revision)
//!                 ──owns──> Deployment (one per live revision) ──> Pods running kandle-runtime
//!                 ──owns──> Service, PodDisruptionBudget
//! ```
//!
//! The Rust types are the only source of the CRD: [`crd_yaml`] renders it, and the committed
//! `manifests/crds/kandle.dev_modeldeployments.yaml` is that output, checked by a test.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod conditions;
pub mod labels;
mod model;
mod quantity;
pub use quantity::duration_seconds;
mod resources;
mod rollout;
mod spec;
mod status;

pub use model::{
    is_commit, Dtype, HostPathSource, HttpSource, HuggingFaceSource, ImageSource, ModelSource,
    ModelSpec, PvcSource, S3Source, SecretKeyRef, SecretRef, Task, DEFAULT_HUB_ENDPOINT,
};
pub use resources::{GpuSpec, ResourceAmounts, ResourcesSpec, SchedulingSpec};
pub use rollout::{
    AnalysisSpec, AutoscalingMetric, AutoscalingSpec, CanaryStep, GatewayParentRef,
    HttpRouteRouting, RolloutSpec, RolloutStrategy, StableDuringCanary, TrafficRouting,
};
pub use spec::{ModelDeployment, ModelDeploymentSpec, RuntimeSpec};
pub use status::{
    AnalysisResult, AutoscalingStatus, CanaryPhase, CanaryStatus, HuggingFaceStatus,
    ModelDeploymentStatus, RevisionFigures, RevisionOutcome, RevisionRecord,
};

use kube::CustomResourceExt;

/// The API group of every kandle resource.
pub const GROUP: &str = "kandle.dev";
/// The served and stored API version.
pub const VERSION: &str = "v1alpha1";

/// Renders the `ModelDeployment` CustomResourceDefinition as YAML, exactly as committed in
/// `manifests/crds/kandle.dev_modeldeployments.yaml`.
pub fn crd_yaml() -> String {
    let crd = ModelDeployment::crd();
    let body = serde_yaml::to_string(&crd).expect("a CustomResourceDefinition always serializes");
    format!(
        "# Generated from the kandle-crds Rust types by `kandle-operator crd`. Do not edit.\n{body}"
    )
}
