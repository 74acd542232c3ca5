//! The kube-runtime controller: watches `ModelDeployment`s, the children they own and their
//! pods, and runs observe → plan → apply for each. The reconcile function holds no rules of its own.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kandle_crds::{labels, ModelDeployment};
use kube::api::Api;
use kube::runtime::controller::{Action, Controller, Error as ControllerError};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

use crate::apply::apply_with;
use crate::config::{OperatorConfig, CONTROLLER_NAME};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::observe::observe;
use crate::plan::{plan, rejected};
use crate::upgrades::UpgradeSlots;

/// How soon a failed pass is retried.
const ERROR_REQUEUE: Duration = Duration::from_secs(15);
/// A slot of a `ModelDeployment` that no pass refreshed for this long is freed (rolling ones
/// are looked at every `requeue_waiting`).
const UPGRADE_SLOT_EXPIRY: Duration = Duration::from_secs(300);
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
    /// Slots for rollouts the operator itself causes.
    pub upgrades: UpgradeSlots,
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
        let upgrades = UpgradeSlots::new(config.max_concurrent_upgrades, UPGRADE_SLOT_EXPIRY);
        Arc::new(Context {
            client,
            config,
            recorder,
            metrics,
            upgrades,
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
    let mut observed = observe(&ctx.client, md).await?;
    let now = chrono::Utc::now();
    let mut plan = plan(md, &observed, now, &ctx.config);
    // A rollout the operator itself caused needs an upgrade slot; without one, plan again with
    // the upgrade held back (only those passes plan twice).
    let key = format!("{}/{}", md.namespace().unwrap_or_default(), md.name_any());
    if !plan.operator_upgrade {
        ctx.upgrades.release(&key);
    } else if !ctx.upgrades.try_hold(&key, Instant::now()) {
        observed.upgrade_waits = true;
        plan = crate::plan::plan(md, &observed, now, &ctx.config);
    }
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
        // A child Kubernetes refuses as invalid is the user's to fix: say so in the status,
        // on the object as it is now (the plan's status write moved its resourceVersion on).
        if let Some(refusal) = err.refusal() {
            let report = rejected(md, &plan, &refusal, now);
            let reported = match fresh(&ctx.client, md).await {
                Ok(current) => apply_with(&ctx.client, &ctx.recorder, &current, &report).await,
                Err(read_err) => Err(read_err),
            };
            if let Err(report_err) = reported {
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

/// The `ModelDeployment` as the API server holds it now.
async fn fresh(client: &Client, md: &ModelDeployment) -> Result<ModelDeployment, Error> {
    let ns = md.namespace().ok_or_else(|| Error::MissingNamespace {
        name: md.name_any(),
    })?;
    Api::<ModelDeployment>::namespaced(client.clone(), &ns)
        .get(&md.name_any())
        .await
        .map_err(|source| Error::ApplyStatus {
            md: format!("{ns}/{}", md.name_any()),
            source,
        })
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
            children.clone(),
        )
        // Pods belong to ReplicaSets, not to the ModelDeployment: map them by label. A pod that
        // crashes, cannot pull its image or finds no node wakes its ModelDeployment at once.
        .watches(
            scoped::<Pod>(&client, namespace.as_deref()),
            children,
            |pod| {
                let md = pod.labels().get(labels::MODEL_DEPLOYMENT)?;
                Some(ObjectRef::new(md).within(&pod.namespace()?))
            },
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
