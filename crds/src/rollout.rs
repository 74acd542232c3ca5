//! `spec.rollout` and `spec.autoscaling`: how a new revision replaces the stable one, how it is
//! judged, and how the replica count follows load.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How new revisions are rolled out.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.strategy != 'canary' || (has(self.steps) && size(self.steps) > 0)").message("spec.rollout.steps: a canary rollout needs at least one step"))]
pub struct RolloutSpec {
    /// `rolling` (default): the new revision takes over once its pods are available.
    /// `canary`: the new revision gets traffic step by step, judged by `analysis`.
    #[serde(default)]
    pub strategy: RolloutStrategy,
    /// Canary steps, in order. Weights must be strictly increasing; after the last step the
    /// canary is promoted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    #[x_kube(validation = Rule::new("self.map(s, s.weight).isSorted() && self.all(s, self.filter(t, t.weight == s.weight).size() == 1)").message("spec.rollout.steps: weights must be strictly increasing"))]
    pub steps: Vec<CanaryStep>,
    /// Automated analysis of the canary on the runtime's own metrics. Without it, steps advance
    /// on their pauses alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisSpec>,
    /// How traffic is split between revisions. Unset: by replica ratio behind one Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_routing: Option<TrafficRouting>,
    /// The stable revision's size during a canary. `keep` (default): it keeps every replica
    /// and the canary's pods come on top, so an abort only moves traffic. `scaleDown`: it gives
    /// up a replica for each canary replica (never its last), for clusters short of GPUs; an
    /// abort must then start stable pods again before the stable serves at full size.
    #[serde(default)]
    pub stable_during_canary: StableDuringCanary,
    /// Pods a rolling rollout may start above `replicas` for the new revision: a count, or a
    /// percentage of `replicas` rounded up. The old revision gives back a pod for each new pod
    /// that becomes ready.
    #[serde(default = "default_max_surge")]
    #[schemars(schema_with = "crate::quantity::count_or_percent")]
    pub max_surge: IntOrString,
    /// Replicas below `replicas` a rolling rollout may go (a count, or a percentage rounded
    /// down), used only when the surge pods cannot be placed (the cluster has no room: they are
    /// Unschedulable) or `maxSurge` is 0. With the default a model can roll on a full GPU
    /// cluster, one pod at a time; `0` never gives up serving capacity and waits for room.
    #[serde(default = "default_max_unavailable")]
    #[schemars(schema_with = "crate::quantity::count_or_percent")]
    pub max_unavailable: IntOrString,
    /// Seconds a new revision may go without becoming available before kandle gives up on it:
    /// `Degraded` turns `True` (reason `ProgressDeadlineExceeded`), `Progressing` turns `False`,
    /// the revision is recorded as `failed` in the history and, while another revision serves,
    /// scaled to zero so its pods stop holding GPUs. The serving revision is never touched. A
    /// first revision, with nothing else serving, keeps trying.
    #[serde(default = "default_progress_deadline_seconds")]
    #[schemars(range(min = 10, max = 86400))]
    pub progress_deadline_seconds: i32,
}

impl Default for RolloutSpec {
    fn default() -> Self {
        Self {
            strategy: RolloutStrategy::default(),
            steps: Vec::new(),
            analysis: None,
            traffic_routing: None,
            stable_during_canary: StableDuringCanary::default(),
            max_surge: default_max_surge(),
            max_unavailable: default_max_unavailable(),
            progress_deadline_seconds: default_progress_deadline_seconds(),
        }
    }
}

fn default_max_surge() -> IntOrString {
    IntOrString::String("25%".to_string())
}
fn default_max_unavailable() -> IntOrString {
    IntOrString::Int(1)
}
fn default_progress_deadline_seconds() -> i32 {
    600
}

/// Rollout strategy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "camelCase")]
pub enum RolloutStrategy {
    /// Replace the stable revision once the new one is available.
    #[default]
    Rolling,
    /// Shift traffic in steps, with analysis and automatic rollback.
    Canary,
}

/// The stable revision's size during a canary.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "camelCase")]
pub enum StableDuringCanary {
    /// Every stable replica stays; the canary comes on top.
    #[default]
    Keep,
    /// The stable shrinks as the canary grows.
    ScaleDown,
}

/// One canary step.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    /// Percentage of traffic sent to the canary during this step (1-100).
    #[schemars(range(min = 1, max = 100))]
    pub weight: i32,
    /// How long to hold this step before the next one, e.g. `5m`. Unset: hold until
    /// `kubectl kandle promote`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::quantity::optional_duration")]
    pub pause: Option<String>,
}

/// Thresholds the canary must meet, measured over each interval.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisSpec {
    /// How often the canary's metrics are judged, e.g. `1m`.
    #[serde(default = "default_interval")]
    #[schemars(schema_with = "crate::quantity::duration")]
    pub interval: String,
    /// Requests an interval needs before it is judged; quieter intervals are inconclusive.
    #[serde(default = "default_min_requests")]
    #[schemars(range(min = 0))]
    pub min_requests: i64,
    /// Highest tolerated share of failed requests (5xx and timeouts), from 0 to 1.
    #[serde(default = "default_max_error_rate")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_error_rate: f64,
    /// Highest tolerated 99th-percentile request latency, e.g. `250ms`. Unset: not judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::quantity::optional_duration")]
    pub max_latency_p99: Option<String>,
    /// Failed intervals tolerated; one more aborts the canary and rolls back.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub failure_limit: i32,
}

fn default_interval() -> String {
    "1m".to_string()
}
fn default_min_requests() -> i64 {
    50
}
fn default_max_error_rate() -> f64 {
    0.01
}

/// Exact traffic splitting.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TrafficRouting {
    /// Split traffic with a Gateway API HTTPRoute attached to these parents, with exact weights
    /// between per-revision Services (`<name>-<hash>`). The canary then gets just enough
    /// replicas for its weight. Needs the Gateway API CRDs and a Gateway controller; the
    /// Service named after the ModelDeployment still spreads by replica ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_route: Option<HttpRouteRouting>,
}

/// A Gateway API HTTPRoute managed by kandle.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRouting {
    /// Gateways the route attaches to.
    #[schemars(length(min = 1, max = 16))]
    pub parent_refs: Vec<GatewayParentRef>,
    /// Host names the route matches. Unset: all of the gateway's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
}

/// A reference to a Gateway.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayParentRef {
    /// Gateway name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Gateway namespace (default: the ModelDeployment's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Listener name on the Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// Replica autoscaling on serving load. For `concurrency`, `queueDepth` and `rps` the operator
/// reads each ready pod's `/metrics` about every second (it must reach pods on port 8080) and
/// sizes the ModelDeployment from the sum over ready pods divided by `target`: averaged over a
/// 60 s stable window, or over a 6 s panic window when that asks for twice the ready replicas.
/// Its view is in `status.autoscaling`. For `cpu` it creates a HorizontalPodAutoscaler.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("spec.autoscaling.minReplicas must be less than or equal to spec.autoscaling.maxReplicas"))]
pub struct AutoscalingSpec {
    /// Fewest replicas.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1))]
    pub min_replicas: i32,
    /// Most replicas.
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// The per-replica signal to hold at `target`.
    #[serde(default)]
    pub metric: AutoscalingMetric,
    /// Desired value of `metric` per replica (e.g. 8 concurrent requests, or 70 for 70% CPU).
    #[x_kube(validation = Rule::new("double(self) > 0.0").message("spec.autoscaling.target must be greater than 0"))]
    pub target: f64,
    /// Scale up only to the fewest replicas any reading of this window asked for, e.g. `0s`
    /// (at once).
    #[serde(default = "default_scale_up_window")]
    #[schemars(schema_with = "crate::quantity::duration")]
    pub scale_up_stabilization: String,
    /// Scale down only to the most replicas any reading of this window allows, e.g. `5m`; a
    /// reading allows fewer replicas only when they would carry its load with 10% to spare. No
    /// scale-down either while replicas asked for earlier are not ready yet.
    #[serde(default = "default_scale_down_window")]
    #[schemars(schema_with = "crate::quantity::duration")]
    pub scale_down_stabilization: String,
}

fn default_min_replicas() -> i32 {
    1
}
fn default_scale_up_window() -> String {
    "0s".to_string()
}
fn default_scale_down_window() -> String {
    "5m".to_string()
}

/// The per-replica signal autoscaling follows.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "camelCase")]
pub enum AutoscalingMetric {
    /// Requests in flight (`kandle_requests_in_flight`).
    #[default]
    Concurrency,
    /// Requests waiting for the model (`kandle_queue_depth`).
    QueueDepth,
    /// Requests answered per second (from `kandle_requests_total`).
    Rps,
    /// CPU utilisation in percent of the request, through a HorizontalPodAutoscaler kandle
    /// creates (needs metrics-server).
    Cpu,
}
