//! Settings of the operator process that shape what it builds and how hard it works: the default
//! runtime image, the namespace it watches, how often it looks again, how many passes run at
//! once, and the defaults of the client's request rate.

use std::time::Duration;

use crate::autoscale::Windows;

/// Runtime image used when a `ModelDeployment` sets no `spec.runtime.image`.
pub const DEFAULT_RUNTIME_IMAGE: &str = "ghcr.io/kandle-dev/kandle-runtime:0.1.0";
/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "kandle-operator";
/// Name the operator reports events and leases under.
pub const CONTROLLER_NAME: &str = "kandle-operator";

/// Passes running at once, by default.
pub const DEFAULT_RECONCILE_CONCURRENCY: u16 = 16;
/// Quiet time before a pass, by default, in milliseconds.
pub const DEFAULT_DEBOUNCE_MS: u64 = 50;
/// Requests per second the operator's client sends on average, by default.
pub const DEFAULT_KUBE_API_QPS: f32 = 200.0;
/// Requests the operator's client may send at once after a quiet spell, by default.
pub const DEFAULT_KUBE_API_BURST: u32 = 400;

/// What the operator needs to know beyond the `ModelDeployment` itself.
#[derive(Clone, Debug, PartialEq)]
pub struct OperatorConfig {
    /// Runtime image for specs that set none.
    pub runtime_image: String,
    /// Watch only this namespace; `None` watches all namespaces.
    pub namespace: Option<String>,
    /// How soon to look again while something is waiting (a rollout in progress).
    pub requeue_waiting: Duration,
    /// How soon to look again when nothing is waiting (a safety net for missed watch events).
    pub requeue_idle: Duration,
    /// How long pods may wait for room on the nodes (a cluster autoscaler adding one) before
    /// the `ModelDeployment` is reported `Degraded` with reason `Unschedulable`.
    pub unschedulable_grace: Duration,
    /// Folder prefixes a `hostPath` model source may name. Empty (the default): `hostPath`
    /// sources are refused, since whoever creates a `ModelDeployment` could otherwise mount any
    /// folder of the node into its pods.
    pub allowed_host_paths: Vec<String>,
    /// How many `ModelDeployment`s may roll out a change the operator caused (a new default
    /// runtime image or template code) at once.
    pub max_concurrent_upgrades: usize,
    /// How many passes may run at once (0: no limit).
    pub reconcile_concurrency: u16,
    /// How long a `ModelDeployment` must be quiet before its pass runs: the burst of watch
    /// events one pass's writes cause (its status and each child) then wakes one pass, not
    /// one per event.
    pub debounce: Duration,
    /// How the autoscaler reads load.
    pub autoscale: AutoscaleConfig,
}

/// How the autoscaler reads load: how often, and the windows it averages over.
#[derive(Clone, Debug, PartialEq)]
pub struct AutoscaleConfig {
    /// How often ready pods' metrics are read.
    pub interval: Duration,
    /// Stable and panic windows.
    pub windows: Windows,
}

impl Default for AutoscaleConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            windows: Windows::default(),
        }
    }
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            runtime_image: DEFAULT_RUNTIME_IMAGE.to_string(),
            namespace: None,
            requeue_waiting: Duration::from_secs(30),
            requeue_idle: Duration::from_secs(300),
            unschedulable_grace: Duration::from_secs(300),
            allowed_host_paths: Vec::new(),
            max_concurrent_upgrades: 10,
            reconcile_concurrency: DEFAULT_RECONCILE_CONCURRENCY,
            debounce: Duration::from_millis(DEFAULT_DEBOUNCE_MS),
            autoscale: AutoscaleConfig::default(),
        }
    }
}
