//! What a failing end-to-end test prints: the ModelDeployments' status, the Deployments, each
//! pod's node, IP, readiness and container states, recent events, and the tails of the
//! operator's, the kubelet's and the unready containers' logs.

use std::fmt::{Display, Write as _};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use kube::api::ListParams;
use kube::ResourceExt;

use super::operator::tail;
use super::waits::{event_time, pod_ip, pod_is_ready};
use super::E2e;
use kandle_crds::ModelDeployment;

const OPERATOR_LINES: usize = 40;
const KUBELET_LINES: usize = 20;
const CONTAINER_LINES: usize = 10;
const EVENTS: usize = 25;

impl E2e {
    /// The value of `result`, or a panic naming `what` with the error and [`E2e::report`].
    pub async fn expect<T, E: Display>(&self, result: Result<T, E>, what: &str) -> T {
        match result {
            Ok(value) => value,
            Err(e) => {
                let report = self.report().await;
                panic!("{}: {what}: {e:#}\n{report}", self.test)
            }
        }
    }

    /// Panics naming `what` with [`E2e::report`] unless `holds`.
    pub async fn ensure(&self, holds: bool, what: impl Display) {
        if !holds {
            let report = self.report().await;
            panic!("{}: expected {what}\n{report}", self.test);
        }
    }

    /// The state of the test's namespace and the logs that explain it.
    pub async fn report(&self) -> String {
        let mut out = format!("===== state of namespace {} =====\n", self.namespace);
        self.report_objects(&mut out).await;
        let _ = writeln!(out, "--- operator log (last {OPERATOR_LINES} lines) ---");
        let _ = writeln!(out, "{}", tail(&self.operator_log(), OPERATOR_LINES));
        let _ = writeln!(out, "--- kubelet log (last {KUBELET_LINES} lines) ---");
        let _ = writeln!(out, "{}", tail(&self.kubelet_log(), KUBELET_LINES));
        out
    }

    async fn report_objects(&self, out: &mut String) {
        let all = ListParams::default();
        match self.mds().list(&all).await {
            Ok(mds) => mds.items.iter().for_each(|md| describe_md(out, md)),
            Err(e) => {
                let _ = writeln!(out, "listing ModelDeployments: {e}");
            }
        }
        let _ = writeln!(out, "--- Deployments ---");
        match self.api::<Deployment>().list(&all).await {
            Ok(list) => list.items.iter().for_each(|d| describe_deployment(out, d)),
            Err(e) => {
                let _ = writeln!(out, "listing Deployments: {e}");
            }
        }
        let _ = writeln!(out, "--- Pods ---");
        match self.api::<Pod>().list(&all).await {
            Ok(list) => {
                for pod in &list.items {
                    describe_pod(out, pod);
                    if !pod_is_ready(pod) {
                        self.container_logs(out, pod);
                    }
                }
            }
            Err(e) => {
                let _ = writeln!(out, "listing Pods: {e}");
            }
        }
        let _ = writeln!(out, "--- Events (last {EVENTS}) ---");
        match self.api::<Event>().list(&all).await {
            Ok(list) => describe_events(out, list.items),
            Err(e) => {
                let _ = writeln!(out, "listing Events: {e}");
            }
        }
    }

    fn container_logs(&self, out: &mut String, pod: &Pod) {
        let containers = pod.spec.iter().flat_map(|s| {
            let init = s.init_containers.iter().flatten();
            init.chain(s.containers.iter()).map(|c| c.name.clone())
        });
        for container in containers {
            let log = self.container_log(&pod.name_any(), &container);
            if !log.is_empty() {
                let _ = writeln!(out, "    {container} log (last {CONTAINER_LINES} lines):");
                for line in tail(&log, CONTAINER_LINES).lines() {
                    let _ = writeln!(out, "      {line}");
                }
            }
        }
    }
}

fn describe_md(out: &mut String, md: &ModelDeployment) {
    let status = serde_yaml::to_string(&md.status).unwrap_or_default();
    let _ = writeln!(
        out,
        "--- ModelDeployment {} (generation {}) status ---\n{status}",
        md.name_any(),
        md.metadata.generation.unwrap_or_default()
    );
}

fn describe_deployment(out: &mut String, d: &Deployment) {
    let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or_default();
    let status = d.status.clone().unwrap_or_default();
    let _ = writeln!(
        out,
        "{}: replicas {wanted}, ready {}, available {}, updated {}",
        d.name_any(),
        status.ready_replicas.unwrap_or_default(),
        status.available_replicas.unwrap_or_default(),
        status.updated_replicas.unwrap_or_default()
    );
}

fn describe_pod(out: &mut String, pod: &Pod) {
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    let status = pod.status.clone().unwrap_or_default();
    let deleting = if pod.metadata.deletion_timestamp.is_some() {
        ", deleting"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "{}: node {}, phase {}, ip {}, ready {}{deleting}",
        pod.name_any(),
        node.as_deref().unwrap_or("<unscheduled>"),
        status.phase.as_deref().unwrap_or("?"),
        pod_ip(pod).as_deref().unwrap_or("-"),
        pod_is_ready(pod),
    );
    let unscheduled = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False");
    if let Some(condition) = unscheduled {
        let _ = writeln!(
            out,
            "    unschedulable: {}",
            condition.message.as_deref().unwrap_or("")
        );
    }
    let containers = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for container in containers {
        let _ = writeln!(
            out,
            "    {}: {} (restarts {})",
            container.name,
            container_state(container),
            container.restart_count
        );
    }
}

fn container_state(container: &ContainerStatus) -> String {
    let Some(state) = &container.state else {
        return "unknown".to_string();
    };
    if let Some(waiting) = &state.waiting {
        return format!(
            "waiting {}: {}",
            waiting.reason.as_deref().unwrap_or(""),
            waiting.message.as_deref().unwrap_or("")
        );
    }
    if let Some(terminated) = &state.terminated {
        return format!(
            "terminated {} (exit {})",
            terminated.reason.as_deref().unwrap_or(""),
            terminated.exit_code
        );
    }
    format!("running, ready {}", container.ready)
}

fn describe_events(out: &mut String, mut events: Vec<Event>) {
    events.sort_by_key(event_time);
    for event in events.iter().rev().take(EVENTS).rev() {
        let _ = writeln!(
            out,
            "{} {} {}/{}: {}",
            event.type_.as_deref().unwrap_or(""),
            event.reason.as_deref().unwrap_or(""),
            event.involved_object.kind.as_deref().unwrap_or(""),
            event.involved_object.name.as_deref().unwrap_or(""),
            event.message.as_deref().unwrap_or("")
        );
    }
}
