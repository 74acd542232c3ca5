//! `ModelDeployment.status`: what the operator observed and decided, recomputed every pass.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a ModelDeployment.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ModelDeploymentStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`, in kstatus style.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Pods of all live revisions.
    #[serde(default)]
    pub replicas: i32,
    /// Ready pods of all live revisions.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Pods of the newest revision.
    #[serde(default)]
    pub updated_replicas: i32,
    /// Ready over desired replicas, for display (`2/3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// Label selector of the pods, for the /scale subresource and HorizontalPodAutoscalers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The revision serving (most of) the traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_revision: Option<String>,
    /// The revision being rolled out, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_revision: Option<String>,
    /// Percent of traffic on the canary revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_weight: Option<i32>,
    /// Index of the current canary step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step: Option<i32>,
    /// Revisions this ModelDeployment has run, newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<RevisionRecord>,
    /// The latest canary analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_analysis: Option<AnalysisResult>,
    /// Where a canary rollout stands, while `spec.rollout.strategy` is `canary` and a revision
    /// other than the stable one is the target (kept after an abort, until the spec changes or
    /// `kubectl kandle retry`). All of the rollout's state is here, so a restarted operator
    /// decides the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStatus>,
    /// The last `kandle.dev/command` annotation the operator acted on (its whole value, with
    /// the unique suffix `kubectl kandle` adds), so a command is never applied twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_command: Option<String>,
    /// The Hub commit the pods fetch, while `spec.model.source` is `huggingFace`: a branch or
    /// tag is resolved once and kept here, so the model does not change when the branch moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hugging_face: Option<HuggingFaceStatus>,
    /// In-cluster URL of the model's Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// What the autoscaler saw and decided, while `spec.autoscaling` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingStatus>,
}

/// A Hugging Face revision resolved to its commit.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HuggingFaceStatus {
    /// `spec.model.source.huggingFace.repo` when it was resolved.
    pub repo: String,
    /// `spec.model.source.huggingFace.revision` when it was resolved.
    pub revision: String,
    /// The commit it named then.
    pub commit: String,
}

/// The autoscaler's view: the replica count it wants and why.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingStatus {
    /// Replicas the ModelDeployment is sized to (stands in for `spec.replicas`). For
    /// `metric: cpu` a HorizontalPodAutoscaler decides, through `spec.replicas`.
    pub desired_replicas: i32,
    /// Ready replicas whose metrics were read.
    #[serde(default)]
    pub ready_replicas: i32,
    /// The metric summed over ready replicas, averaged over the stable window (about 60 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The same over the panic window (about 6 s), which scales up at once when load jumps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic_value: Option<f64>,
    /// When the desired count last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
    /// Why it last changed, with the figures then (`reason: message`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_reason: Option<String>,
    /// Why the count is what it is: `ScaledUp`, `ScaledDown`, `Steady`, `Panic`,
    /// `StabilizingDown`, `WaitingForPods`, `WaitingForCapacity`, `NoMetrics` or
    /// `HorizontalPodAutoscaler`.
    pub reason: String,
    /// The same in words, with the figures.
    pub message: String,
}

/// One revision in the history.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RevisionRecord {
    /// Revision name (`<md>-<hash>`), also the name of its ControllerRevision and Deployment.
    pub revision: String,
    /// Revision number, increasing with each new revision.
    pub number: i64,
    /// `spec.model.version` of that revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    /// What became of it.
    pub outcome: RevisionOutcome,
    /// When the outcome was reached.
    pub time: Time,
    /// Why, for an aborted or rolled-back canary (with the failing figures where analysis
    /// decided).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What became of a revision.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum RevisionOutcome {
    /// Being rolled out.
    Progressing,
    /// Serving as the stable revision.
    Stable,
    /// Replaced by a newer revision.
    Superseded,
    /// Aborted by failed analysis or by hand.
    Aborted,
    /// Rolled back to an older revision.
    RolledBack,
    /// Never became available within `spec.rollout.progressDeadlineSeconds`: kandle gave up.
    Failed,
}

/// Result of one canary analysis interval.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisResult {
    /// The canary revision analysed.
    pub revision: String,
    /// When the interval ended (to the microsecond: a rollback is timed from it).
    pub time: MicroTime,
    /// Requests in the interval.
    pub requests: i64,
    /// Share of failed requests.
    pub error_rate: f64,
    /// 99th-percentile latency in seconds, if enough requests were seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p99_seconds: Option<f64>,
    /// `Passed`, `Failed` or `Inconclusive`.
    pub verdict: String,
    /// Why, in words.
    pub message: String,
    /// Failed intervals so far for this revision.
    pub failures: i32,
    /// The stable revision's figures over the same interval, for comparison (not judged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<RevisionFigures>,
}

/// Serving figures of one revision over an analysis interval.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RevisionFigures {
    /// Requests in the interval.
    pub requests: i64,
    /// Share of failed requests (5xx and timeouts).
    pub error_rate: f64,
    /// 99th-percentile latency in seconds, if any request was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p99_seconds: Option<f64>,
}

/// A canary rollout's state.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// The canary revision.
    pub revision: String,
    /// Where it stands.
    pub phase: CanaryPhase,
    /// Index of the current step in `spec.rollout.steps`.
    pub step: i32,
    /// When every replica of the step first served; the step's pause counts from then. Unset
    /// while the step's replicas start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_start_time: Option<Time>,
    /// Replicas of the stable revision and of the canary for this step.
    pub stable_replicas: i32,
    /// See `stableReplicas`.
    pub canary_replicas: i32,
    /// The canary's share of traffic in percent: of the ready replicas behind the one
    /// Service, or the HTTPRoute's exact weight with `trafficRouting.httpRoute`.
    pub effective_weight: i32,
    /// Failed analysis intervals so far.
    #[serde(default)]
    pub failures: i32,
    /// The latest analysis intervals, newest last (at most 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analyses: Vec<AnalysisResult>,
    /// What happens next, or why it was aborted, in words.
    pub message: String,
}

/// Where a canary rollout stands.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CanaryPhase {
    /// The step's replicas are starting, or it holds for its pause.
    Progressing,
    /// Held by `kubectl kandle pause` until `kubectl kandle resume`.
    Paused,
    /// The step has no pause: it waits for `kubectl kandle promote`.
    WaitingForPromote,
    /// Every step passed (or `promote --full`): the canary grows to full size and becomes
    /// the stable revision once available.
    Promoting,
    /// Rolled back: the canary has no replicas and the stable serves all traffic, until the
    /// spec changes or `kubectl kandle retry`.
    Aborted,
}
