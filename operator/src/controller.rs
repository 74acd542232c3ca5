//! The kube-runtime controller: watches `ModelDeployment`s, the children they own and their
//! pods (see [`crate::cache`]), and runs observe → plan → apply for each, leaving out the writes
//! that would change nothing. A pod change wakes only its own `ModelDeployment`, and only when
//! what the planner reads of it changed. Failed passes back off per object; a child the API
//! server refuses as invalid waits for a spec change. The reconcile function holds no rules of
//! its own.

use std::collections::hash_map::DefaultHasher;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kandle_crds::{labels, ModelDeployment};
use kube::api::Api;
use kube::runtime::controller::{self, Action, Controller, Error as ControllerError};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{watcher, PredicateConfig, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};

use crate::apply::apply_with;
use crate::autoscale::collector::Collector;
use crate::backoff::{retry_delay, spread, Failures};
use crate::cache::{self, Caches};
use crate::config::{OperatorConfig, CONTROLLER_NAME};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::observe::observe;
use crate::plan::{plan, rejected, scraped, without_no_ops};
use crate::pod_problems::{pod_problem, scheduling_failure};
use crate::scrape::{HttpScraper, MetricsSource};
use crate::upgrades::UpgradeSlots;

/// Added to a recheck at a verdict's turning point, which is counted in whole seconds.
const RECHECK_MARGIN: Duration = Duration::from_secs(1);
/// A slot of a `ModelDeployment` that no pass refreshed for this long is freed (rolling ones
/// are looked at every `requeue_waiting`).
const UPGRADE_SLOT_EXPIRY: Duration = Duration::from_secs(300);
/// How long a pod may take to answer for its metrics.
const SCRAPE_TIMEOUT: Duration = Duration::from_millis(800);
/// Wake-ups from the autoscaler waiting for the controller; more are dropped (the next round
/// sends them again).
const WAKE_QUEUE: usize = 1024;
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
    /// The running controller's caches; without them (a pass run on its own) passes read
    /// from the API server.
    pub caches: OnceLock<Caches>,
    /// Consecutive failed passes per `ModelDeployment`, for the backoff.
    pub failures: Failures,
    /// The load histories of autoscaled `ModelDeployment`s.
    pub autoscaler: Arc<Collector>,
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
        let scraper = Arc::new(HttpScraper::new(SCRAPE_TIMEOUT));
        Self::with_source(client, config, metrics, instance, scraper)
    }

    /// A context reading pods' metrics through `source` (a fake, in tests).
    pub fn with_source(
        client: Client,
        config: OperatorConfig,
        metrics: Arc<Metrics>,
        instance: Option<String>,
        source: Arc<dyn MetricsSource>,
    ) -> Arc<Context> {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: CONTROLLER_NAME.to_string(),
                instance,
            },
        );
        let upgrades = UpgradeSlots::new(config.max_concurrent_upgrades, UPGRADE_SLOT_EXPIRY);
        let autoscaler = Arc::new(Collector::new(
            source,
            config.autoscale.clone(),
            metrics.clone(),
        ));
        Arc::new(Context {
            autoscaler,
            client,
            config,
            recorder,
            metrics,
            upgrades,
            caches: OnceLock::new(),
            failures: Failures::default(),
        })
    }
}

/// One pass for one `ModelDeployment`: observe, plan at the current time, apply.
pub async fn reconcile(md: Arc<ModelDeployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_once(&md, &ctx).await;
    match &result {
        Ok(_) => {
            ctx.failures.succeeded(&key_of(&md));
            ctx.metrics.record_success(started.elapsed())
        }
        Err(err) => ctx.metrics.record_failure(err, started.elapsed()),
    }
    result
}

fn key_of(md: &ModelDeployment) -> String {
    format!("{}/{}", md.namespace().unwrap_or_default(), md.name_any())
}

async fn reconcile_once(md: &ModelDeployment, ctx: &Context) -> Result<Action, Error> {
    if md.meta().deletion_timestamp.is_some() {
        // Owner references take the children with it.
        return Ok(Action::await_change());
    }
    let mut observed = match ctx.caches.get() {
        Some(caches) => caches.observe(&ctx.client, md).await?,
        None => observe(&ctx.client, md).await?,
    };
    if scraped(md).is_some() {
        observed.load = ctx.autoscaler.history(&key_of(md));
    }
    observed.analysis = ctx.autoscaler.analysis(&key_of(md));
    let now = chrono::Utc::now();
    let mut plan = plan(md, &observed, now, &ctx.config);
    // A rollout the operator itself caused needs an upgrade slot; without one, plan again with
    // the upgrade held back (only those passes plan twice).
    let key = key_of(md);
    if !plan.operator_upgrade {
        ctx.upgrades.release(&key);
    } else if !ctx.upgrades.try_hold(&key, Instant::now()) {
        observed.upgrade_waits = true;
        plan = crate::plan::plan(md, &observed, now, &ctx.config);
    }
    let plan = without_no_ops(plan, md, &observed);
    tracing::debug!(
        md = %md.name_any(),
        deployments = plan.deployments.len(),
        revisions = plan.revisions.len(),
        deletions = plan.delete.len(),
        status = plan.write_status,
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
        // Once said, the pass waits for a spec change (see `error_policy`); if saying it
        // failed, that failure is retried instead.
        if let Some(refusal) = err.refusal() {
            let report = rejected(md, &plan, &refusal, now);
            let current = fresh(&ctx.client, md).await?;
            apply_with(&ctx.client, &ctx.recorder, &current, &report).await?;
        }
        return Err(err);
    }
    record_canary(ctx, &key, &plan);
    let period = if plan.waiting {
        ctx.config.requeue_waiting
    } else {
        ctx.config.requeue_idle
    };
    let period = match plan.recheck_in {
        Some(turn) => period.min(turn + RECHECK_MARGIN),
        None => period,
    };
    Ok(Action::requeue(spread(period, fastrand::f64())))
}

/// The canary's share of the operator's metrics: verdicts judged in this pass, the latency of
/// a rollback it applied, and whether a canary is in progress.
fn record_canary(ctx: &Context, key: &str, plan: &crate::plan::Plan) {
    use kandle_crds::conditions::reasons;
    for event in &plan.events {
        let verdict = match event.reason {
            reasons::ANALYSIS_PASSED => "Passed",
            reasons::ANALYSIS_FAILED if event.action == "Analyze" => "Failed",
            reasons::ANALYSIS_INCONCLUSIVE => "Inconclusive",
            _ => continue,
        };
        ctx.metrics.record_verdict(verdict);
    }
    if let Some(since) = plan.rolled_back_since {
        let seconds = (chrono::Utc::now() - since).num_milliseconds() as f64 / 1000.0;
        tracing::info!(md = %key, seconds, "canary rolled back");
        ctx.metrics.record_rollback(seconds);
    }
    let in_progress = plan
        .status
        .canary
        .as_ref()
        .is_some_and(|c| c.phase != kandle_crds::CanaryPhase::Aborted);
    ctx.metrics.record_canary(key, in_progress);
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

/// Logs a failed pass and retries it after a jittered, per-object exponential backoff (failures
/// are counted in [`reconcile`]). A child refused as invalid, already reported in the status,
/// is not retried: only a change of the `ModelDeployment` can help.
pub fn error_policy(md: Arc<ModelDeployment>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(md = %md.name_any(), error = %error, cause = ?std::error::Error::source(error), "reconcile failed");
    if error.refusal().is_some() {
        ctx.failures.succeeded(&key_of(&md));
        return Action::await_change();
    }
    let failures = ctx.failures.failed(&key_of(&md));
    Action::requeue(retry_delay(failures, fastrand::f64()))
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
    let (caches, watches) = cache::watch(&client, namespace.as_deref());
    let pods = caches.pods();
    if ctx.caches.set(caches).is_err() {
        anyhow::bail!("this context already runs a controller");
    }
    let mds: Api<ModelDeployment> = match namespace.as_deref() {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (reader, writer) = reflector::store();
    let md_changes = reflector::reflector(
        writer,
        watcher::watcher(mds, watcher::Config::default())
            .default_backoff()
            .modify(cache::strip::<ModelDeployment>),
    )
    .applied_objects();
    // The collector wakes a ModelDeployment whose autoscaling decision changed.
    let (wake, woken) = futures::channel::mpsc::channel(WAKE_QUEUE);
    let collector = tokio::spawn(ctx.autoscaler.clone().run(reader.clone(), pods, wake));
    let settings = controller::Config::default()
        .concurrency(ctx.config.reconcile_concurrency)
        .debounce(ctx.config.debounce);
    Controller::for_stream(md_changes, reader)
        .with_config(settings)
        .owns_stream(watches.deployments)
        .owns_stream(watches.revisions)
        .owns_stream(watches.services)
        .owns_stream(watches.pdbs)
        .owns_stream(watches.hpas)
        // Pods belong to ReplicaSets, not to the ModelDeployment: map them by label. A pod that
        // crashes, cannot pull its image or finds no node wakes its ModelDeployment at once;
        // one that only starts or becomes ready does not (its Deployment's status says so).
        .watches_stream(
            watches
                .pods
                .predicate_filter(pod_findings, PredicateConfig::default()),
            |pod| {
                let md = pod.labels().get(labels::MODEL_DEPLOYMENT)?;
                Some(ObjectRef::new(md).within(&pod.namespace()?))
            },
        )
        .reconcile_on(woken)
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
    collector.abort();
    tracing::info!("controller stopped");
    Ok(())
}

/// A hash of what the planner reads of a pod: its scheduling failure, its failing container,
/// whether it is on its way out. A pod event that changes none of these wakes nothing.
fn pod_findings(pod: &Pod) -> Option<u64> {
    let mut hasher = DefaultHasher::new();
    format!(
        "{:?}{:?}{}",
        scheduling_failure(pod),
        pod_problem(pod),
        pod.metadata.deletion_timestamp.is_some()
    )
    .hash(&mut hasher);
    Some(hasher.finish())
}
