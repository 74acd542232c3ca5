//! Runs work only while this replica holds the leader Lease: wait for the lease and acquire it,
//! renew it while the work runs, drop the work when the lease is lost or cannot be renewed in
//! time, and hand it back on a clean exit. The decisions and the timing rules come from
//! [`crate::leader`] (see its module docs); this module only reads and writes the Lease and
//! keeps the time on the monotonic clock.

use std::future::Future;

use chrono::Utc;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, timeout_at, Instant};

use crate::leader::{
    decide, leading_until, next_spec, observe, released_spec, LeaseRecord, LeaseTiming, Observation,
};

/// Where the lease lives, who we are and how long terms last.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// Term, renew deadline and retry period.
    pub timing: LeaseTiming,
}

impl LeaseSettings {
    /// Settings with the usual timing: 15 s terms, a 10 s renew deadline, 2 s retries.
    pub fn new(namespace: String, name: String, identity: String) -> Self {
        Self {
            namespace,
            name,
            identity,
            timing: LeaseTiming::default(),
        }
    }
}

/// Waits for the lease, then runs `work` while renewing it. Returns `work`'s result, an error
/// when the lease is lost or not renewed within the renew deadline (`work` is dropped first),
/// or `Ok` when `shutdown` turns true before the lease was won.
pub async fn run_while_leading<F>(
    client: Client,
    settings: LeaseSettings,
    mut shutdown: watch::Receiver<bool>,
    work: F,
) -> anyhow::Result<()>
where
    F: Future<Output = anyhow::Result<()>>,
{
    settings.timing.validate()?;
    let api = Api::<Lease>::namespaced(client, &settings.namespace);
    let mut seen: Option<Observation> = None;
    let acquired_at = loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let attempt_started = Instant::now();
        match try_hold(&api, &settings, &mut seen).await {
            Ok(true) => break attempt_started,
            Ok(false) => tracing::debug!(lease = %settings.name, "another replica leads; waiting"),
            Err(err) => {
                tracing::warn!(lease = %settings.name, error = %err, "reading the leader lease failed")
            }
        }
        tokio::select! {
            _ = sleep(settings.timing.retry_period) => {}
            _ = shutdown.changed() => {}
        }
    };
    tracing::info!(identity = %settings.identity, lease = %settings.name, "became the leader");

    let mut work = Box::pin(work);
    let result = tokio::select! {
        result = &mut work => result,
        lost = keep_renewing(&api, &settings, acquired_at) => Err(lost),
    };
    // Stop the work before anything else, so nothing more is written once the lease is lost.
    drop(work);
    if result.is_ok() {
        if let Err(err) = release(&api, &settings).await {
            tracing::warn!(error = %err, "handing back the leader lease failed");
        }
    }
    result
}

/// Renews the lease every retry period; returns why leading must stop: another replica holds
/// the lease, or no renewal succeeded within the renew deadline of the last successful one
/// (`acquired_at` at first). A renewal counts from when it was sent.
async fn keep_renewing(
    api: &Api<Lease>,
    settings: &LeaseSettings,
    acquired_at: Instant,
) -> anyhow::Error {
    let timing = settings.timing;
    let lease = format!("{}/{}", settings.namespace, settings.name);
    let mut renewed_at = acquired_at;
    loop {
        let deadline = Instant::from_std(leading_until(renewed_at.into_std(), &timing));
        sleep_until((Instant::now() + timing.retry_period).min(deadline)).await;
        let attempt_started = Instant::now();
        if attempt_started >= deadline {
            return anyhow::anyhow!(
                "could not renew the leader lease {lease} within {:?}; stopped leading",
                timing.renew_deadline
            );
        }
        // An attempt may not outlast the deadline, so a hung request cannot keep us leading.
        match timeout_at(deadline, try_hold(api, settings, &mut None)).await {
            Ok(Ok(true)) => renewed_at = attempt_started,
            Ok(Ok(false)) => {
                return anyhow::anyhow!("lost the leader lease {lease} to another replica")
            }
            Ok(Err(err)) => tracing::warn!(error = %err, "renewing the leader lease failed"),
            Err(_) => tracing::warn!("renewing the leader lease timed out"),
        }
    }
}

/// Acquires or renews the lease; `Ok(false)` when another replica holds it or won a race.
/// `seen` carries what this replica last observed of the lease, and when, between calls.
async fn try_hold(
    api: &Api<Lease>,
    settings: &LeaseSettings,
    seen: &mut Option<Observation>,
) -> Result<bool, kube::Error> {
    let current = api.get_opt(&settings.name).await?;
    let now = Instant::now().into_std();
    let observation = observe(seen.take(), LeaseRecord::of(current.as_ref()), now);
    let decision = decide(
        &observation,
        now,
        &settings.identity,
        settings.timing.duration,
    );
    *seen = Some(observation);
    let spec = current.as_ref().and_then(|lease| lease.spec.as_ref());
    let duration = settings.timing.duration;
    let Some(next) = next_spec(spec, &decision, Utc::now(), &settings.identity, duration) else {
        return Ok(false);
    };
    // Create and replace carry the resource version read above, so of two replicas racing for
    // the same lease exactly one wins; the other gets a conflict.
    let written = match current {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(settings.name.clone()),
                    namespace: Some(settings.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(next),
            };
            api.create(&PostParams::default(), &lease).await
        }
        Some(mut lease) => {
            lease.spec = Some(next);
            api.replace(&settings.name, &PostParams::default(), &lease)
                .await
        }
    };
    match written {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.is_conflict() || status.is_already_exists() => {
            Ok(false)
        }
        Err(err) => Err(err),
    }
}

async fn release(api: &Api<Lease>, settings: &LeaseSettings) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&settings.name).await? else {
        return Ok(());
    };
    let Some(spec) = lease.spec.as_ref() else {
        return Ok(());
    };
    if spec.holder_identity.as_deref() != Some(settings.identity.as_str()) {
        return Ok(());
    }
    lease.spec = Some(released_spec(spec, Utc::now()));
    api.replace(&settings.name, &PostParams::default(), &lease)
        .await?;
    tracing::info!(lease = %settings.name, "handed back the leader lease");
    Ok(())
}
