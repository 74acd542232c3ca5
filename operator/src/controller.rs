//! The kube-runtime controller: watches `ModelDeployment`s and the children they own, and runs
//! observe → plan → apply for each. The reconcile function holds no rules of its own.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kandle_crds::{labels, ModelDeployment};
use kube::api::Api;
use kube::runtime::controller::{Action, Controller, Error as ControllerError};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

use crate::apply::apply_with;
use crate::config::{OperatorConfig, CONTROLLER_NAME};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::observe::observe;
use crate::plan::{plan, rejected};

/// How soon a failed pass is retried.
const ERROR_REQUEUE: Duration = Duration::from_secs(15);
/// Backstop after a stale pass; the watch event of the newer object usually comes first.
const STALE_REQUEUE: Duration = Duration::from_secs(1);

/// What every reconcile pass shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// The operator's settings.
    pub config: OperatorConfig,
    /// Publishes events on `ModelDeployment`s.
    pub recorder: Recorder,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
}

impl Context {
    /// A context with fresh metrics.
    pub fn new(client: Client, config: OperatorConfig) -> Arc<Context> {
        Self::with_metrics(client, config, Arc::new(Metrics::new()), None)
    }

    /// A context reporting into `metrics`, publishing events as `instance` (the pod name).
    pub fn with_metrics(
        client: Client,
        config: OperatorConfig,
        metrics: Arc<Metrics>,
        instance: Option<String>,
    ) -> Arc<Context> {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: CONTROLLER_NAME.to_string(),
                instance,
            },
        );
        Arc::new(Context {
            client,
            config,
            recorder,
            metrics,
        })
    }
}

/// One pass for one `ModelDeployment`: observe, plan at the current time, apply.
pub async fn reconcile(md: Arc<ModelDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_once(&md, &ctx).await;
    match &result {
        Ok(_) => ctx.metrics.record_success(started.elapsed()),
        Err(err) => ctx.metrics.record_failure(err, started.elapsed()),
    }
    result
}

async fn reconcile_once(md: &ModelDeployment, ctx: &Context) -> Result<Action, Error> {
    if md.meta().deletion_timestamp.is_some() {
        // Owner references take the children with it.
        return Ok(Action::await_change());
    }
    let observed = observe(&ctx.client, md).await?;
    let now = chrono::Utc::now();
    let plan = plan(md, &observed, now, &ctx.config);
    tracing::debug!(
        md = %md.name_any(),
        deployments = plan.deployments.len(),
        deletions = plan.delete.len(),
        events = plan.events.len(),
        waiting = plan.waiting,
        "applying plan"
    );
    if let Err(err) = apply_with(&ctx.client, &ctx.recorder, md, &plan).await {
        if err.is_stale_status() {
            // The object changed while this pass ran; the watch brings the newer one.
            tracing::debug!(md = %md.name_any(), "status write refused as stale; replanning");
            return Ok(Action::requeue(STALE_REQUEUE));
        }
        // A child Kubernetes refuses as invalid is the user's to fix: say so in the status.
        if let Some(refusal) = err.refusal() {
            let report = rejected(md, &plan, &refusal, now);
            if let Err(report_err) = apply_with(&ctx.client, &ctx.recorder, md, &report).await {
                tracing::warn!(md = %md.name_any(), error = %report_err, "reporting a refused child failed");
            }
        }
        return Err(err);
    }
    Ok(Action::requeue(if plan.waiting {
        ctx.config.requeue_waiting
    } else {
        ctx.config.requeue_idle
    }))
}

/// Logs a failed pass and retries it later (failures are counted in [`reconcile`]).
pub fn error_policy(md: Arc<ModelDeployment>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(md = %md.name_any(), error = %error, cause = ?std::error::Error::source(error), "reconcile failed");
    Action::requeue(ERROR_REQUEUE)
}

/// Runs the controller until `shutdown` resolves, with a fresh context.
pub async fn run(
    client: Client,
    config: OperatorConfig,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    run_with_context(Context::new(client, config), shutdown).await
}

/// Runs the controller with `ctx` until `shutdown` resolves, letting running passes finish.
pub async fn run_with_context(
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let client = ctx.client.clone();
    let namespace = ctx.config.namespace.clone();
    let mds: Api<ModelDeployment> = scoped(&client, namespace.as_deref());
    // Only children carrying kandle's label are watched.
    let children = watcher::Config::default().labels(labels::MODEL_DEPLOYMENT);
    Controller::new(mds, watcher::Config::default())
        .owns(
            scoped::<Deployment>(&client, namespace.as_deref()),
            children.clone(),
        )
        .owns(
            scoped::<ControllerRevision>(&client, namespace.as_deref()),
            children.clone(),
        )
        .owns(
            scoped::<Service>(&client, namespace.as_deref()),
            children.clone(),
        )
        .owns(
            scoped::<PodDisruptionBudget>(&client, namespace.as_deref()),
            children,
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(md = %object.name, "reconciled"),
                // Failed passes are logged by `error_policy`; a failing watch is logged here.
                Err(ControllerError::QueueError(err)) => {
                    tracing::warn!(error = %err, "watching failed; retrying")
                }
                Err(err) => tracing::debug!(error = %err, "controller event"),
            }
        })
        .await;
    tracing::info!("controller stopped");
    Ok(())
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}
