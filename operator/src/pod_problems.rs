//! Reads what is wrong with a pod from its status, as the kubelet reports it: a container that
//! keeps exiting, an image that cannot be pulled, an init container (the model fetch) that
//! fails, or the scheduler finding no room. Pure; the planner decides what each one means.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kandle_crds::labels;
use kube::ResourceExt;

/// Waiting reasons that mean an image cannot be pulled.
const IMAGE_PULL_REASONS: [&str; 4] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];
/// Waiting reasons that mean a container cannot start or keeps exiting.
const CRASH_REASONS: [&str; 3] = [
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// A pod of the `ModelDeployment` that the scheduler could not place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulingFailure {
    /// Pod name.
    pub pod: String,
    /// The pod's `kandle.dev/revision` label, if any.
    pub revision: Option<String>,
    /// The scheduler's message, e.g. `0/3 nodes are available: 3 Insufficient nvidia.com/gpu.`
    pub message: String,
    /// When the scheduler first said so (the condition's last transition).
    pub since: Option<Time>,
}

impl SchedulingFailure {
    /// Whether the scheduler found nodes that would fit but lack room (`Insufficient
    /// nvidia.com/gpu`), so freeing a pod elsewhere or a new node helps; not when no node
    /// matches at all (a GPU product nobody has).
    pub fn for_lack_of_room(&self) -> bool {
        self.message.contains("Insufficient ")
    }
}

/// What kind of failure a container shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProblemKind {
    /// An init container exits with an error (for kandle: the model fetch).
    InitFailed,
    /// An image cannot be pulled.
    ImagePull,
    /// A container exits and is restarted with back-off, or cannot be created.
    CrashLoop,
}

/// A failing container of a pod of the `ModelDeployment`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodProblem {
    /// Pod name.
    pub pod: String,
    /// The pod's `kandle.dev/revision` label, if any.
    pub revision: Option<String>,
    /// What is wrong.
    pub kind: ProblemKind,
    /// The failing container.
    pub container: String,
    /// The kubelet's words: the last termination message or the waiting message.
    pub message: String,
    /// Restarts of that container so far.
    pub restarts: i32,
}

/// The scheduler's complaint about a pod, if it could not be scheduled.
pub fn scheduling_failure(pod: &Pod) -> Option<SchedulingFailure> {
    let condition = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")?;
    if condition.status != "False" || condition.reason.as_deref() != Some("Unschedulable") {
        return None;
    }
    Some(SchedulingFailure {
        pod: pod.name_any(),
        revision: revision_label(pod),
        message: condition
            .message
            .clone()
            .unwrap_or_else(|| "no message from the scheduler".into()),
        since: condition.last_transition_time.clone(),
    })
}

/// The first failing container of a pod (init containers first: they run first), if any.
pub fn pod_problem(pod: &Pod) -> Option<PodProblem> {
    let status = pod.status.as_ref()?;
    let init = status.init_container_statuses.iter().flatten();
    let main = status.container_statuses.iter().flatten();
    let (kind, container) = init
        .filter_map(|c| init_failure(c).map(|kind| (kind, c)))
        .chain(main.filter_map(|c| container_failure(c).map(|kind| (kind, c))))
        .next()?;
    Some(PodProblem {
        pod: pod.name_any(),
        revision: revision_label(pod),
        kind,
        container: container.name.clone(),
        message: message_of(container),
        restarts: container.restart_count,
    })
}

fn revision_label(pod: &Pod) -> Option<String> {
    pod.labels().get(labels::REVISION).cloned()
}

fn waiting_reason(status: &ContainerStatus) -> Option<&str> {
    status.state.as_ref()?.waiting.as_ref()?.reason.as_deref()
}

fn init_failure(status: &ContainerStatus) -> Option<ProblemKind> {
    let failed_now = status
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .is_some_and(|t| t.exit_code != 0);
    match waiting_reason(status) {
        Some(reason) if IMAGE_PULL_REASONS.contains(&reason) => Some(ProblemKind::ImagePull),
        Some(reason) if CRASH_REASONS.contains(&reason) => Some(ProblemKind::InitFailed),
        _ if failed_now => Some(ProblemKind::InitFailed),
        _ => None,
    }
}

fn container_failure(status: &ContainerStatus) -> Option<ProblemKind> {
    match waiting_reason(status) {
        Some(reason) if IMAGE_PULL_REASONS.contains(&reason) => Some(ProblemKind::ImagePull),
        Some(reason) if CRASH_REASONS.contains(&reason) => Some(ProblemKind::CrashLoop),
        _ => None,
    }
}

/// The most useful words about a failing container: what it printed when it last exited (its
/// exit code when it printed nothing), then what the kubelet says while waiting.
fn message_of(status: &ContainerStatus) -> String {
    let terminated = status
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .or_else(|| {
            status
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
        });
    let waiting = status
        .state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.message.clone())
        .filter(|m| !m.is_empty());
    let exited = terminated.map(|t| {
        let said = t
            .message
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        format!("exited with code {}{said}", t.exit_code)
    });
    match (exited, waiting) {
        (Some(exited), Some(waiting)) => format!("{exited} ({waiting})"),
        (Some(exited), None) => exited,
        (None, Some(waiting)) => waiting,
        (None, None) => waiting_reason(status)
            .unwrap_or("failing with no message")
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "m-abc-1", "labels": {"kandle.dev/revision": "abc"}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_crash_looping_runtime_reports_its_last_words() {
        let p = pod(json!({"containerStatuses": [{
            "name": "kandle-runtime", "image": "i", "imageID": "", "ready": false, "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container"}},
            "lastState": {"terminated": {"exitCode": 2, "message": "error: no model.safetensors in /models/model"}}
        }]}));
        let problem = pod_problem(&p).unwrap();
        assert_eq!(problem.kind, ProblemKind::CrashLoop);
        assert_eq!(problem.restarts, 3);
        assert_eq!(problem.revision.as_deref(), Some("abc"));
        assert_eq!(
            problem.message,
            "exited with code 2: error: no model.safetensors in /models/model \
             (back-off 10s restarting failed container)"
        );
    }

    #[test]
    fn an_unpullable_image_is_an_image_problem() {
        let p = pod(json!({"containerStatuses": [{
            "name": "kandle-runtime", "image": "nope", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"nope\""}}
        }]}));
        let problem = pod_problem(&p).unwrap();
        assert_eq!(problem.kind, ProblemKind::ImagePull);
        assert_eq!(problem.message, "Back-off pulling image \"nope\"");
    }

    #[test]
    fn a_failing_init_container_comes_before_the_waiting_runtime() {
        let p = pod(json!({
            "initContainerStatuses": [{
                "name": "fetch-model", "image": "busybox", "imageID": "", "ready": false, "restartCount": 1,
                "state": {"terminated": {"exitCode": 1, "message": "sha256sum: WARNING: 1 computed checksum did NOT match"}}
            }],
            "containerStatuses": [{
                "name": "kandle-runtime", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "PodInitializing"}}
            }]
        }));
        let problem = pod_problem(&p).unwrap();
        assert_eq!(problem.kind, ProblemKind::InitFailed);
        assert_eq!(problem.container, "fetch-model");
        assert!(
            problem.message.contains("did NOT match"),
            "{}",
            problem.message
        );
    }

    #[test]
    fn a_running_or_starting_pod_has_no_problem() {
        let p = pod(json!({"containerStatuses": [{
            "name": "kandle-runtime", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}}
        }]}));
        assert_eq!(pod_problem(&p), None);
        assert_eq!(pod_problem(&pod(json!({}))), None);
    }

    #[test]
    fn an_unschedulable_pod_says_since_when() {
        let p = pod(json!({"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
            "lastTransitionTime": "2026-01-01T00:00:00Z"
        }]}));
        let failure = scheduling_failure(&p).unwrap();
        assert!(failure.message.contains("Insufficient nvidia.com/gpu"));
        assert!(failure.since.is_some());
    }
}
