//! The Pod status a real kubelet would report for a [`PodState`]: phase, IPs, start time,
//! conditions (with transition times kept while a condition holds) and container statuses.
//! Pure: the caller compares the result with what it last sent and patches only on change.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::state::{ContainerRecord, PodState, RunState, Termination};

/// The status of a pod in `state`; conditions whose truth did not change since `previous` keep
/// their transition time, the others move to `now`.
pub fn pod_status(state: &PodState, previous: Option<&PodStatus>, now: &Time) -> PodStatus {
    let pod_ip = state.pod_ip.map(|ip| ip.to_string());
    PodStatus {
        phase: Some(phase(state).to_string()),
        pod_ip: pod_ip.clone(),
        pod_ips: pod_ip.map(|ip| vec![PodIP { ip }]),
        host_ip: Some(state.host_ip.clone()),
        host_ips: Some(vec![HostIP {
            ip: state.host_ip.clone(),
        }]),
        start_time: Some(state.start_time.clone()),
        conditions: Some(conditions(state, previous, now)),
        init_container_statuses: (!state.init.is_empty())
            .then(|| state.init.iter().map(container_status).collect()),
        container_statuses: Some(state.main.iter().map(container_status).collect()),
        ..Default::default()
    }
}

/// Pending until initialized and every container has run at least once; then Running (the pod
/// restarts its containers, so it never ends on its own).
fn phase(state: &PodState) -> &'static str {
    if !state.initialized {
        return "Pending";
    }
    let never_ran = |c: &&ContainerRecord| {
        matches!(c.state, RunState::Waiting { .. }) && c.last_termination.is_none()
    };
    if state.main.is_empty() || state.main.iter().any(|c| never_ran(&c)) {
        "Pending"
    } else {
        "Running"
    }
}

fn conditions(state: &PodState, previous: Option<&PodStatus>, now: &Time) -> Vec<PodCondition> {
    let unready: Vec<&str> = state
        .main
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let incomplete: Vec<&str> = state
        .init
        .iter()
        .filter(|c| !c.completed())
        .map(|c| c.name.as_str())
        .collect();
    let initialized = state.initialized;
    let containers_ready = initialized && unready.is_empty();
    let unready_reason = || {
        (
            "ContainersNotReady",
            format!("containers with unready status: [{}]", unready.join(" ")),
        )
    };
    let not_initialized = (
        "ContainersNotInitialized",
        format!(
            "containers with incomplete status: [{}]",
            incomplete.join(" ")
        ),
    );
    let not_ready = if initialized {
        unready_reason()
    } else {
        not_initialized.clone()
    };
    let mut conditions = vec![
        condition("PodReadyToStartContainers", state.pod_ip.is_some(), None),
        condition("Initialized", initialized, Some(not_initialized)),
        condition("Ready", containers_ready, Some(not_ready.clone())),
        condition("ContainersReady", containers_ready, Some(not_ready)),
        condition("PodScheduled", true, None),
    ];
    let earlier = previous.and_then(|s| s.conditions.as_ref());
    for condition in &mut conditions {
        let kept = earlier
            .into_iter()
            .flatten()
            .find(|c| c.type_ == condition.type_ && c.status == condition.status)
            .and_then(|c| c.last_transition_time.clone());
        let fallback = if condition.type_ == "PodScheduled" {
            state.scheduled_at.clone()
        } else {
            now.clone()
        };
        condition.last_transition_time = Some(kept.unwrap_or(fallback));
    }
    conditions
}

fn condition(type_: &str, holds: bool, otherwise: Option<(&str, String)>) -> PodCondition {
    let (reason, message) = match otherwise {
        Some((reason, message)) if !holds => (Some(reason.to_string()), Some(message)),
        _ => (None, None),
    };
    PodCondition {
        type_: type_.to_string(),
        status: if holds { "True" } else { "False" }.to_string(),
        reason,
        message,
        ..Default::default()
    }
}

fn container_status(record: &ContainerRecord) -> ContainerStatus {
    ContainerStatus {
        name: record.name.clone(),
        image: record.image.clone(),
        image_id: record.image_id.clone().unwrap_or_default(),
        ready: record.ready,
        started: Some(record.started),
        restart_count: record.restart_count,
        state: Some(container_state(&record.state)),
        last_state: Some(
            record
                .last_termination
                .as_ref()
                .map(terminated)
                .unwrap_or_default(),
        ),
        ..Default::default()
    }
}

fn container_state(state: &RunState) -> ContainerState {
    match state {
        RunState::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..Default::default()
        },
        RunState::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(started_at.clone()),
            }),
            ..Default::default()
        },
        RunState::Terminated(termination) => terminated(termination),
    }
}

fn terminated(termination: &Termination) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: termination.exit_code,
            reason: Some(termination.reason.clone()),
            message: termination.message.clone(),
            started_at: termination.started_at.clone(),
            finished_at: Some(termination.finished_at.clone()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};

    use super::*;

    fn at(second: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(second).unwrap())
    }

    fn pod(init: &[&str], main: &[&str]) -> Pod {
        let container = |name: &&str| Container {
            name: name.to_string(),
            image: Some(format!("{name}:1")),
            ..Default::default()
        };
        Pod {
            spec: Some(PodSpec {
                init_containers: Some(init.iter().map(container).collect()),
                containers: main.iter().map(container).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn condition<'a>(status: &'a PodStatus, type_: &str) -> &'a PodCondition {
        status
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap()
    }

    fn waiting_reason(status: &ContainerStatus) -> Option<&str> {
        status.state.as_ref()?.waiting.as_ref()?.reason.as_deref()
    }

    #[test]
    fn a_new_pod_with_an_init_container_is_pending_and_initializing() {
        let mut state = PodState::new(&pod(&["fetch"], &["app"]), "127.0.0.1", at(10));
        state.pod_ip = Some(Ipv4Addr::new(127, 1, 0, 2));
        let status = pod_status(&state, None, &at(11));
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        assert_eq!(status.pod_ip.as_deref(), Some("127.1.0.2"));
        assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(status.start_time, Some(at(10)));
        let initialized = condition(&status, "Initialized");
        assert_eq!(initialized.status, "False");
        assert_eq!(
            initialized.message.as_deref(),
            Some("containers with incomplete status: [fetch]")
        );
        assert_eq!(
            condition(&status, "Ready").reason.as_deref(),
            Some("ContainersNotInitialized")
        );
        assert_eq!(
            condition(&status, "PodScheduled").last_transition_time,
            Some(at(10))
        );
        let main = &status.container_statuses.as_ref().unwrap()[0];
        assert_eq!(waiting_reason(main), Some("PodInitializing"));
        assert_eq!(main.image_id, "");
    }

    #[test]
    fn running_and_ready_containers_make_a_ready_running_pod() {
        let mut state = PodState::new(&pod(&[], &["a", "b"]), "127.0.0.1", at(10));
        state.pod_ip = Some(Ipv4Addr::new(127, 1, 0, 2));
        for record in &mut state.main {
            record.run(at(12), "img@host".into(), true);
        }
        let first = pod_status(&state, None, &at(12));
        assert_eq!(first.phase.as_deref(), Some("Running"));
        assert_eq!(condition(&first, "Ready").status, "False");
        assert_eq!(
            condition(&first, "ContainersReady").message.as_deref(),
            Some("containers with unready status: [a b]")
        );

        state.main[0].ready = true;
        state.main[1].ready = true;
        let second = pod_status(&state, Some(&first), &at(15));
        let ready = condition(&second, "Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("True", None)
        );
        assert_eq!(ready.last_transition_time, Some(at(15)));
        assert_eq!(
            condition(&second, "Initialized").last_transition_time,
            Some(at(12))
        );

        let third = pod_status(&state, Some(&second), &at(20));
        assert_eq!(
            third, second,
            "an unchanged state gives an identical status"
        );
    }

    #[test]
    fn a_crashing_container_keeps_the_pod_running_with_its_last_termination() {
        let mut state = PodState::new(&pod(&[], &["app"]), "127.0.0.1", at(10));
        let record = &mut state.main[0];
        record.run(at(11), "img@host".into(), true);
        record.terminate(Termination::exited(
            1,
            at(11),
            at(12),
            "line1\nline2".into(),
        ));
        record.back_off(
            "CrashLoopBackOff",
            "back-off 1s restarting failed container=app".into(),
        );
        let status = pod_status(&state, None, &at(12));
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let app = &status.container_statuses.as_ref().unwrap()[0];
        assert_eq!(app.restart_count, 1);
        assert_eq!(waiting_reason(app), Some("CrashLoopBackOff"));
        let last = app
            .last_state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap();
        assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
        assert_eq!(last.message.as_deref(), Some("line1\nline2"));
    }

    #[test]
    fn an_image_that_cannot_be_pulled_keeps_the_pod_pending() {
        let mut state = PodState::new(&pod(&[], &["app"]), "127.0.0.1", at(10));
        state.main[0].wait("ErrImagePull", Some("failed to pull image".into()));
        let status = pod_status(&state, None, &at(11));
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        let app = &status.container_statuses.as_ref().unwrap()[0];
        assert_eq!(waiting_reason(app), Some("ErrImagePull"));
        assert_eq!(app.last_state, Some(ContainerState::default()));
        assert_eq!(status.init_container_statuses, None);
    }

    #[test]
    fn a_failing_init_container_shows_its_termination_and_backs_off() {
        let mut state = PodState::new(&pod(&["fetch"], &["app"]), "127.0.0.1", at(10));
        let fetch = &mut state.init[0];
        fetch.run(at(11), "busybox@host".into(), true);
        fetch.terminate(Termination::exited(
            1,
            at(11),
            at(12),
            "sha256sum: FAILED".into(),
        ));
        let failed = pod_status(&state, None, &at(12));
        let init = &failed.init_container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            init.state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            1
        );

        state.init[0].back_off("CrashLoopBackOff", "back-off 1s".into());
        let status = pod_status(&state, Some(&failed), &at(13));
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        let init = &status.init_container_statuses.as_ref().unwrap()[0];
        assert_eq!(waiting_reason(init), Some("CrashLoopBackOff"));
        assert_eq!(init.restart_count, 1);
        let main = &status.container_statuses.as_ref().unwrap()[0];
        assert_eq!(waiting_reason(main), Some("PodInitializing"));
    }
}
