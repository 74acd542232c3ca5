//! Waiting for what a user would see, with a deadline: a ModelDeployment Ready for its
//! generation, the Ready pods of a revision, a pod's IP; and reading children and events.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Pod};
use kandle_crds::{conditions, labels, ModelDeployment};
use kube::api::ListParams;
use kube::ResourceExt;

use super::E2e;
use crate::wait;

/// How long a test waits for the cluster to converge (pods start real runtimes).
pub const E2E_DEADLINE: Duration = Duration::from_secs(90);
// Between two looks at the API server: it shares two cores with the runtimes under test.
const POLL_PAUSE: Duration = Duration::from_millis(100);

/// Whether the pod reports `Ready=True` and is not being deleted.
pub fn pod_is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pod's IP, once reported.
pub fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .pod_ip
        .clone()
        .filter(|ip| !ip.is_empty())
}

/// Whether the named condition of the ModelDeployment has `status`.
pub fn has_condition(md: &ModelDeployment, type_: &str, status: &str) -> bool {
    md.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == status)
    })
}

/// Whether the named condition says `status` with `reason` for the current generation.
pub fn condition_is(md: &ModelDeployment, type_: &str, status: &str, reason: &str) -> bool {
    md.status.as_ref().is_some_and(|s| {
        s.conditions.iter().any(|c| {
            c.type_ == type_
                && c.status == status
                && c.reason == reason
                && c.observed_generation == md.metadata.generation
        })
    })
}

/// The message of the named condition; empty when there is none.
pub fn condition_message(md: &ModelDeployment, type_: &str) -> String {
    md.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// Whether the status describes the current generation and says `Ready=True`.
pub fn is_ready_for_generation(md: &ModelDeployment) -> bool {
    let observed = md.status.as_ref().and_then(|s| s.observed_generation);
    observed.is_some()
        && observed == md.metadata.generation
        && has_condition(md, conditions::READY, "True")
}

/// `status.stableRevision`.
pub fn stable_revision(md: &ModelDeployment) -> Option<String> {
    md.status.as_ref()?.stable_revision.clone()
}

/// When the event last happened (`lastTimestamp`, else `eventTime` of events.k8s.io events).
pub fn event_time(event: &Event) -> Option<k8s_openapi::jiff::Timestamp> {
    let last = event.last_timestamp.as_ref().map(|t| t.0);
    last.or_else(|| event.event_time.as_ref().map(|t| t.0))
}

impl E2e {
    /// Polls `check` until it returns `Some`, for at most [`E2E_DEADLINE`]; fails at once if
    /// the test's operator exits without the test stopping it.
    pub async fn eventually<T, F, Fut>(&self, describe: &str, mut check: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<Option<T>>>,
    {
        let mut first = true;
        let waiting = wait::until(describe, E2E_DEADLINE, || {
            let pause = !std::mem::replace(&mut first, false);
            let look = check();
            async move {
                if pause {
                    tokio::time::sleep(POLL_PAUSE).await;
                }
                look.await
            }
        });
        let operator_exit = async {
            loop {
                if let Some(status) = self.operator.as_ref().and_then(|o| o.unexpected_exit()) {
                    return status;
                }
                tokio::time::sleep(POLL_PAUSE).await;
            }
        };
        tokio::select! {
            outcome = waiting => outcome,
            status = operator_exit => {
                anyhow::bail!("the operator exited ({status}) while waiting for {describe}")
            }
        }
    }

    /// Waits until the ModelDeployment satisfies `done`; returns it.
    pub async fn wait_md(
        &self,
        name: &str,
        describe: &str,
        done: impl Fn(&ModelDeployment) -> bool,
    ) -> anyhow::Result<ModelDeployment> {
        let mds = self.mds();
        self.eventually(&format!("ModelDeployment {name}: {describe}"), || async {
            let md = mds.get(name).await?;
            Ok(done(&md).then_some(md))
        })
        .await
    }

    /// Applies `md` and waits until it is `Ready=True` for its generation; returns it and its
    /// stable revision. Fails the test with the cluster's state otherwise.
    pub async fn apply_until_ready(&self, md: &ModelDeployment) -> (ModelDeployment, String) {
        let name = md.name_any();
        self.expect(self.apply(md).await, &format!("{name} applies"))
            .await;
        let md = self
            .expect(
                self.wait_ready(&name).await,
                &format!("{name} becomes Ready"),
            )
            .await;
        let stable = stable_revision(&md).expect("a Ready ModelDeployment has a stable revision");
        (md, stable)
    }

    /// Waits until the ModelDeployment is `Degraded=True` with `reason` for its generation and
    /// its message holds `needle`; returns it and the message. Fails the test otherwise.
    pub async fn wait_degraded(
        &self,
        name: &str,
        reason: &str,
        needle: &str,
    ) -> (ModelDeployment, String) {
        let degraded = self
            .wait_md(name, &format!("Degraded with {reason}: {needle}"), |md| {
                condition_is(md, conditions::DEGRADED, "True", reason)
                    && condition_message(md, conditions::DEGRADED).contains(needle)
            })
            .await;
        let md = self
            .expect(degraded, &format!("{name} reports {reason}"))
            .await;
        let message = condition_message(&md, conditions::DEGRADED);
        (md, message)
    }

    /// Waits until the ModelDeployment is `Ready=True` for its current generation.
    pub async fn wait_ready(&self, name: &str) -> anyhow::Result<ModelDeployment> {
        self.wait_md(name, "Ready for its generation", is_ready_for_generation)
            .await
    }

    /// The pods of the ModelDeployment, all revisions, by name.
    pub async fn pods_of(&self, md_name: &str) -> anyhow::Result<Vec<Pod>> {
        let selector = format!("{}={md_name}", labels::MODEL_DEPLOYMENT);
        let mut pods = self
            .api::<Pod>()
            .list(&ListParams::default().labels(&selector))
            .await?
            .items;
        pods.sort_by_key(|p| p.name_any());
        Ok(pods)
    }

    /// The pods of a revision (named as in `status.stableRevision`), found through the
    /// selector of the revision's Deployment.
    pub async fn pods_of_revision(&self, revision: &str) -> anyhow::Result<Vec<Pod>> {
        let deployment = self
            .api::<Deployment>()
            .get(revision)
            .await
            .with_context(|| format!("the Deployment of revision {revision}"))?;
        let match_labels = deployment
            .spec
            .and_then(|s| s.selector.match_labels)
            .unwrap_or_default();
        let selector: Vec<String> = match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut pods = self
            .api::<Pod>()
            .list(&ListParams::default().labels(&selector.join(",")))
            .await?
            .items;
        pods.sort_by_key(|p| p.name_any());
        Ok(pods)
    }

    /// Waits until the revision has exactly `count` pods, all Ready and none being deleted.
    pub async fn wait_ready_pods(&self, revision: &str, count: usize) -> anyhow::Result<Vec<Pod>> {
        self.eventually(
            &format!("{count} Ready pods of revision {revision}"),
            || async {
                let pods = self.pods_of_revision(revision).await?;
                let done = pods.len() == count && pods.iter().all(pod_is_ready);
                Ok(done.then_some(pods))
            },
        )
        .await
    }

    /// Waits until the pod has an IP.
    pub async fn wait_pod_ip(&self, pod: &str) -> anyhow::Result<String> {
        let pods = self.api::<Pod>();
        self.eventually(&format!("pod {pod} to have an IP"), || async {
            Ok(pod_ip(&pods.get(pod).await?))
        })
        .await
    }

    /// Events about the ModelDeployment, oldest first.
    pub async fn events_of(&self, md_name: &str) -> anyhow::Result<Vec<Event>> {
        let fields = format!("involvedObject.kind=ModelDeployment,involvedObject.name={md_name}");
        let mut events = self
            .api::<Event>()
            .list(&ListParams::default().fields(&fields))
            .await
            .context("listing events")?
            .items;
        events.sort_by_key(event_time);
        Ok(events)
    }
}
