//! What the kubelet knows about one pod's containers: each container's current state, its last
//! termination and restart count, whether it has started and is ready. Container tasks change it
//! through the small transitions here; `status` turns it into the Pod's status.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// How a container process ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Termination {
    pub exit_code: i32,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<Time>,
    pub finished_at: Time,
}

impl Termination {
    /// An exit with `exit_code` (128 + signal for a signal), its output's last lines as message.
    pub fn exited(
        exit_code: i32,
        started_at: Time,
        finished_at: Time,
        output_tail: String,
    ) -> Self {
        let reason = if exit_code == 0 { "Completed" } else { "Error" };
        Self {
            exit_code,
            reason: reason.to_string(),
            message: (!output_tail.is_empty()).then_some(output_tail),
            started_at: Some(started_at),
            finished_at,
        }
    }

    /// A process that could not be started at all.
    pub fn start_error(message: String, at: Time) -> Self {
        Self {
            exit_code: 128,
            reason: "StartError".to_string(),
            message: Some(message),
            started_at: None,
            finished_at: at,
        }
    }
}

/// The state of a container right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunState {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Time,
    },
    Terminated(Termination),
}

/// One container as the status reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerRecord {
    pub name: String,
    pub image: String,
    pub image_id: Option<String>,
    pub state: RunState,
    pub last_termination: Option<Termination>,
    pub restart_count: i32,
    pub started: bool,
    pub ready: bool,
}

impl ContainerRecord {
    /// A container not created yet, waiting with `reason`.
    pub fn new(name: &str, image: &str, reason: &str) -> Self {
        Self {
            name: name.to_string(),
            image: image.to_string(),
            image_id: None,
            state: RunState::Waiting {
                reason: reason.to_string(),
                message: None,
            },
            last_termination: None,
            restart_count: 0,
            started: false,
            ready: false,
        }
    }

    /// Waits with `reason` (a pull failure, a bad config) without counting a restart.
    pub fn wait(&mut self, reason: &str, message: Option<String>) {
        self.state = RunState::Waiting {
            reason: reason.to_string(),
            message,
        };
        self.started = false;
        self.ready = false;
    }

    /// The process is running; `started` is false while a startup probe has yet to pass.
    pub fn run(&mut self, at: Time, image_id: String, started: bool) {
        self.image_id = Some(image_id);
        self.state = RunState::Running { started_at: at };
        self.started = started;
        self.ready = false;
    }

    /// The process ended.
    pub fn terminate(&mut self, termination: Termination) {
        self.state = RunState::Terminated(termination);
        self.started = false;
        self.ready = false;
    }

    /// Waits to be restarted after a termination: the termination becomes `lastState` and the
    /// restart is counted.
    pub fn back_off(&mut self, reason: &str, message: String) {
        if let RunState::Terminated(termination) = &self.state {
            self.last_termination = Some(termination.clone());
        }
        self.restart_count += 1;
        self.wait(reason, Some(message));
    }

    /// Whether it ended successfully (init containers).
    pub fn completed(&self) -> bool {
        matches!(&self.state, RunState::Terminated(t) if t.exit_code == 0)
    }
}

/// Which list a container belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Init,
    Main,
}

/// Everything the status of one pod is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodState {
    pub pod_ip: Option<Ipv4Addr>,
    pub host_ip: String,
    pub start_time: Time,
    pub scheduled_at: Time,
    pub init: Vec<ContainerRecord>,
    pub main: Vec<ContainerRecord>,
    pub initialized: bool,
}

impl PodState {
    /// The state of a pod just taken on: nothing started; times kept from an earlier status.
    pub fn new(pod: &Pod, host_ip: &str, now: Time) -> Self {
        let spec = pod.spec.clone().unwrap_or_default();
        let status = pod.status.clone().unwrap_or_default();
        let init = spec.init_containers.unwrap_or_default();
        let main_reason = if init.is_empty() {
            "ContainerCreating"
        } else {
            "PodInitializing"
        };
        // A pod taken over after a kubelet restart keeps counting its restarts.
        let earlier_restarts = |statuses: &Option<Vec<ContainerStatus>>, name: &str| {
            statuses
                .iter()
                .flatten()
                .find(|s| s.name == name)
                .map_or(0, |s| s.restart_count)
        };
        let record = |c: &Container, reason: &str, statuses: &Option<Vec<ContainerStatus>>| {
            let mut record =
                ContainerRecord::new(&c.name, c.image.as_deref().unwrap_or_default(), reason);
            record.restart_count = earlier_restarts(statuses, &c.name);
            record
        };
        let start_time = status.start_time.unwrap_or_else(|| now.clone());
        let scheduled_at = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "PodScheduled")
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| start_time.clone());
        Self {
            pod_ip: None,
            host_ip: host_ip.to_string(),
            start_time,
            scheduled_at,
            init: init
                .iter()
                .map(|c| record(c, "PodInitializing", &status.init_container_statuses))
                .collect(),
            main: spec
                .containers
                .iter()
                .map(|c| record(c, main_reason, &status.container_statuses))
                .collect(),
            initialized: init.is_empty(),
        }
    }

    /// The record of container `index` of `kind`.
    pub fn container_mut(&mut self, kind: Kind, index: usize) -> &mut ContainerRecord {
        match kind {
            Kind::Init => &mut self.init[index],
            Kind::Main => &mut self.main[index],
        }
    }
}

/// Now, to the second (what the API keeps).
pub fn now() -> Time {
    let now = k8s_openapi::jiff::Timestamp::now();
    Time(k8s_openapi::jiff::Timestamp::from_second(now.as_second()).unwrap_or(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(second).unwrap())
    }

    #[test]
    fn back_off_moves_the_termination_to_last_state_and_counts_a_restart() {
        let mut record = ContainerRecord::new("c", "img", "ContainerCreating");
        record.run(at(1), "img@host".into(), true);
        record.ready = true;
        record.terminate(Termination::exited(3, at(1), at(5), "boom".into()));
        assert!(!record.ready && !record.completed());
        record.back_off("CrashLoopBackOff", "back-off 1s".into());
        assert_eq!(record.restart_count, 1);
        assert_eq!(record.last_termination.as_ref().unwrap().exit_code, 3);
        assert_eq!(record.last_termination.as_ref().unwrap().reason, "Error");
        assert!(
            matches!(&record.state, RunState::Waiting { reason, .. } if reason == "CrashLoopBackOff")
        );
    }

    #[test]
    fn a_pod_taken_over_keeps_its_start_time_and_restart_counts() {
        use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                start_time: Some(at(7)),
                container_statuses: Some(vec![ContainerStatus {
                    name: "app".into(),
                    restart_count: 4,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let state = PodState::new(&pod, "127.0.0.1", at(100));
        assert_eq!(state.start_time, at(7));
        assert_eq!(state.scheduled_at, at(7));
        assert_eq!(state.main[0].restart_count, 4);
        assert!(state.initialized);
    }

    #[test]
    fn a_clean_exit_is_completed() {
        let termination = Termination::exited(0, at(1), at(2), String::new());
        assert_eq!(termination.reason, "Completed");
        assert_eq!(termination.message, None);
    }
}
