//! Condition types and reasons of `ModelDeployment.status.conditions`: `Ready`, `Progressing`
//! and `Degraded`, plus kstatus' abnormal-true `Reconciling` and `Stalled`, so `kubectl wait`,
//! Flux and any kstatus reader get the right answer (Argo CD needs the Lua health check in
//! `manifests/integrations/argocd/`).

/// `True` when the stable revision serves with every desired replica ready.
pub const READY: &str = "Ready";
/// `True` while a revision is being rolled out (kstatus readers use `Reconciling`).
pub const PROGRESSING: &str = "Progressing";
/// `True` when something needs a human: an invalid spec, unschedulable pods, a failed canary.
pub const DEGRADED: &str = "Degraded";

/// kstatus: `True` while the operator works towards the spec (a rollout in progress, pods
/// waiting for room, an operator upgrade queued, replicas not ready yet); `False` otherwise.
pub const RECONCILING: &str = "Reconciling";
/// kstatus: `True` when the operator cannot make progress without a human (an invalid spec, an
/// object it does not own, a revision given up on, pods unschedulable past the grace period).
pub const STALLED: &str = "Stalled";

/// Reasons used on the conditions above and on events (PascalCase, stable: tools match on them).
pub mod reasons {
    /// Every desired replica of the stable revision is ready.
    pub const AVAILABLE: &str = "Available";
    /// Fewer replicas are ready than desired.
    pub const REPLICAS_NOT_READY: &str = "ReplicasNotReady";
    /// A new revision was recorded and its Deployment created.
    pub const REVISION_CREATED: &str = "RevisionCreated";
    /// The new revision's pods are becoming available.
    pub const ROLLING_OUT: &str = "RollingOut";
    /// A canary revision is receiving part of the traffic.
    pub const CANARY_PROGRESSING: &str = "CanaryProgressing";
    /// The rollout finished: the new revision is stable.
    pub const ROLLOUT_COMPLETE: &str = "RolloutComplete";
    /// Nothing is changing.
    pub const STABLE: &str = "Stable";
    /// The spec cannot be turned into pods (for example a missing PVC).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Pods cannot be scheduled (no node offers the GPU product, not enough GPUs).
    pub const UNSCHEDULABLE: &str = "Unschedulable";
    /// Canary analysis failed and the canary was aborted.
    pub const ANALYSIS_FAILED: &str = "AnalysisFailed";
    /// A canary analysis interval met every threshold.
    pub const ANALYSIS_PASSED: &str = "AnalysisPassed";
    /// A canary analysis interval had too few requests to judge.
    pub const ANALYSIS_INCONCLUSIVE: &str = "AnalysisInconclusive";
    /// Every canary step passed (or `kubectl kandle promote --full`): the canary grows to full
    /// size and becomes stable once available.
    pub const CANARY_PROMOTED: &str = "CanaryPromoted";
    /// The canary was aborted by hand (`kubectl kandle abort`).
    pub const CANARY_ABORTED: &str = "CanaryAborted";
    /// A `kandle.dev/command` could not be acted on (unknown, or nothing to act on).
    pub const COMMAND_IGNORED: &str = "CommandIgnored";
    /// The rollout was rolled back to a known revision.
    pub const ROLLED_BACK: &str = "RolledBack";
    /// `spec.paused` is set: the operator changes nothing.
    pub const PAUSED: &str = "Paused";
    /// The number of replicas changed.
    pub const SCALED: &str = "Scaled";
    /// Nothing is wrong.
    pub const HEALTHY: &str = "Healthy";
    /// New pods wait for room on the nodes (the cluster autoscaler may be adding one); they
    /// become `Unschedulable` after the operator's grace period.
    pub const WAITING_FOR_CAPACITY: &str = "WaitingForCapacity";
    /// A container of the new revision keeps exiting (`CrashLoopBackOff`).
    pub const CRASH_LOOP: &str = "CrashLoop";
    /// An image of the new revision cannot be pulled (`ErrImagePull`, `ImagePullBackOff`).
    pub const IMAGE_PULL_FAILED: &str = "ImagePullFailed";
    /// The init container fetching the model fails (download error, sha256 mismatch).
    pub const MODEL_FETCH_FAILED: &str = "ModelFetchFailed";
    /// Kubernetes refuses to create the new revision's pods (a ResourceQuota, an admission
    /// policy).
    pub const PODS_REFUSED: &str = "PodsRefused";
    /// The new revision did not become available within the progress deadline; kandle gave up
    /// on it.
    pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
    /// A new operator changes the pods of every ModelDeployment; this one waits for one of the
    /// operator's `--max-concurrent-upgrades` slots and its stable revision keeps serving.
    pub const UPGRADE_QUEUED: &str = "UpgradeQueued";
    /// An object kandle would create already exists and belongs to someone else; kandle does
    /// not adopt it.
    pub const NOT_OWNED: &str = "NotOwned";
}
