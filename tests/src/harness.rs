//! The operator running against the fake API server: a harness that creates `ModelDeployment`s
//! through the API, runs the operator's real `reconcile` on the stored object, and plays the
//! parts of the cluster no operator code runs here (the Deployment controller reporting
//! availability, the scheduler marking pods).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kandle_crds::{conditions, labels, ModelDeployment};
use kandle_operator::controller::{self, Context};
use kandle_operator::OperatorConfig;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::ResourceExt;
use serde_json::json;

use crate::fake_api::FakeApiServer;
use crate::wait;

/// The fake API server, a client and the operator's context.
pub struct Harness {
    /// The fake API server.
    pub server: FakeApiServer,
    /// A client of it.
    pub client: kube::Client,
    /// The operator's context, as `run` would build it.
    pub ctx: Arc<Context>,
}

impl Harness {
    /// Starts a fake API server and an operator context with the default configuration.
    pub async fn start() -> anyhow::Result<Self> {
        let server = FakeApiServer::start().await?;
        let client = server.client()?;
        let ctx = Context::new(client.clone(), OperatorConfig::default());
        Ok(Self {
            server,
            client,
            ctx,
        })
    }

    /// The `ModelDeployment` API of `namespace`.
    pub fn mds(&self, namespace: &str) -> Api<ModelDeployment> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Creates `md` through the API, as `kubectl apply` would.
    pub async fn create(&self, md: &ModelDeployment) -> anyhow::Result<ModelDeployment> {
        let ns = md
            .namespace()
            .context("the ModelDeployment has a namespace")?;
        self.mds(&ns)
            .create(&PostParams::default(), md)
            .await
            .context("creating the ModelDeployment")
    }

    /// Runs one reconcile pass on the stored `ModelDeployment`.
    pub async fn reconcile(&self, namespace: &str, name: &str) -> anyhow::Result<Action> {
        let md = self
            .mds(namespace)
            .get(name)
            .await
            .context("reading the ModelDeployment")?;
        controller::reconcile(Arc::new(md), Arc::clone(&self.ctx))
            .await
            .context("reconcile")
    }

    /// The Deployments of the named `ModelDeployment`, by name.
    pub fn deployments_of(&self, md_name: &str) -> anyhow::Result<Vec<Deployment>> {
        let mut owned: Vec<Deployment> = self
            .server
            .objects::<Deployment>()?
            .into_iter()
            .filter(|d| {
                d.labels().get(labels::MODEL_DEPLOYMENT).map(String::as_str) == Some(md_name)
            })
            .collect();
        owned.sort_by_key(|d| d.name_any());
        Ok(owned)
    }

    /// Plays the Deployment controller: every Deployment reports its desired replicas as
    /// ready, available and updated, for its current generation.
    pub fn make_available(&self, deployment: &Deployment) -> anyhow::Result<Deployment> {
        let replicas = deployment
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(1);
        let status = json!({
            "observedGeneration": deployment.metadata.generation,
            "replicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "updatedReplicas": replicas,
        });
        let ns = deployment
            .namespace()
            .context("the Deployment has a namespace")?;
        self.server
            .set_status::<Deployment>(&ns, &deployment.name_any(), status)
    }

    /// Plays the ReplicaSet controller and a kubelet: creates a pod of `deployment` (its
    /// template's labels) with `status`, and returns it.
    pub async fn create_pod_of(
        &self,
        deployment: &Deployment,
        status: serde_json::Value,
    ) -> anyhow::Result<Pod> {
        let ns = deployment
            .namespace()
            .context("the Deployment has a namespace")?;
        let labels = deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .context("the Deployment's pods have labels")?;
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{}-7d9f-abcde", deployment.name_any()), "labels": labels},
            "spec": {"containers": [{"name": "runtime", "image": "ghcr.io/kandle-dev/kandle-runtime:0.1.0"}]}
        }))?;
        Api::<Pod>::namespaced(self.client.clone(), &ns)
            .create(&PostParams::default(), &pod)
            .await
            .context("creating the pod")?;
        self.server
            .set_status::<Pod>(&ns, &pod.name_any(), status)?;
        Ok(pod)
    }

    /// Reconciles and makes every Deployment of the `ModelDeployment` available until it is
    /// `Ready=True` and no longer `Progressing` for its current generation, or the deadline
    /// passes.
    pub async fn converge(&self, namespace: &str, name: &str) -> anyhow::Result<ModelDeployment> {
        wait::until(
            &format!("{namespace}/{name} to become Ready"),
            wait::DEFAULT_DEADLINE,
            || async {
                self.reconcile(namespace, name).await?;
                for deployment in self.deployments_of(name)? {
                    self.make_available(&deployment)?;
                }
                let md = self.mds(namespace).get(name).await?;
                let is = |type_: &str, status: &str| {
                    condition(&md, type_).is_some_and(|c| c.status == status)
                };
                let done = is(conditions::READY, "True")
                    && is(conditions::PROGRESSING, "False")
                    && observed_generation(&md) == md.metadata.generation;
                Ok(done.then_some(md))
            },
        )
        .await
    }
}

/// The named condition of the `ModelDeployment`'s status.
pub fn condition(md: &ModelDeployment, type_: &str) -> Option<Condition> {
    md.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

/// `status.observedGeneration`.
pub fn observed_generation(md: &ModelDeployment) -> Option<i64> {
    md.status.as_ref()?.observed_generation
}

/// How long tests give the full controller to react to a watch event.
pub const CONTROLLER_DEADLINE: Duration = Duration::from_secs(20);
