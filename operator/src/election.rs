//! Runs work only while this replica holds the leader Lease: acquire (or wait for) the lease,
//! renew it while the work runs, stop when it is lost, and hand it back on a clean exit. The
//! decisions come from [`crate::leader`]; this module only reads and writes the Lease.

use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::sync::watch;
use tokio::time::{interval, sleep, Instant, MissedTickBehavior};

use crate::leader::{decide, next_spec, released_spec};

/// Where the lease lives, who we are and how long terms last.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a term lasts without renewal.
    pub duration: Duration,
    /// How often the holder renews.
    pub renew_period: Duration,
    /// How often a standby tries to take the lease.
    pub retry_period: Duration,
}

impl LeaseSettings {
    /// Settings with the usual timing: 15 s terms, renewed every 5 s, retried every 2 s.
    pub fn new(namespace: String, name: String, identity: String) -> Self {
        Self {
            namespace,
            name,
            identity,
            duration: Duration::from_secs(15),
            renew_period: Duration::from_secs(5),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Waits for the lease, then runs `work` while renewing it. Returns `work`'s result, an error
/// when the lease is lost, or `Ok` when `shutdown` turns true before the lease was won.
pub async fn run_while_leading<F>(
    client: Client,
    settings: LeaseSettings,
    mut shutdown: watch::Receiver<bool>,
    work: F,
) -> anyhow::Result<()>
where
    F: Future<Output = anyhow::Result<()>>,
{
    let api = Api::<Lease>::namespaced(client, &settings.namespace);
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        match try_hold(&api, &settings).await {
            Ok(true) => break,
            Ok(false) => tracing::debug!(lease = %settings.name, "another replica leads; waiting"),
            Err(err) => {
                tracing::warn!(lease = %settings.name, error = %err, "reading the leader lease failed")
            }
        }
        tokio::select! {
            _ = sleep(settings.retry_period) => {}
            _ = shutdown.changed() => {}
        }
    }
    tracing::info!(identity = %settings.identity, lease = %settings.name, "became the leader");

    let mut ticker = interval(settings.renew_period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut renewed_at = Instant::now();
    let work = std::pin::pin!(work);
    let mut work = work;
    let result = loop {
        tokio::select! {
            result = &mut work => break result,
            _ = ticker.tick() => match try_hold(&api, &settings).await {
                Ok(true) => renewed_at = Instant::now(),
                Ok(false) => break Err(anyhow::anyhow!(
                    "lost the leader lease {}/{} to another replica", settings.namespace, settings.name
                )),
                Err(err) => {
                    tracing::warn!(error = %err, "renewing the leader lease failed");
                    if renewed_at.elapsed() >= settings.duration {
                        break Err(anyhow::anyhow!(
                            "could not renew the leader lease {}/{} for {:?}",
                            settings.namespace, settings.name, settings.duration
                        ));
                    }
                }
            },
        }
    };
    if result.is_ok() {
        if let Err(err) = release(&api, &settings).await {
            tracing::warn!(error = %err, "handing back the leader lease failed");
        }
    }
    result
}

/// Acquires or renews the lease; `Ok(false)` when another replica holds it or won a race.
async fn try_hold(api: &Api<Lease>, settings: &LeaseSettings) -> Result<bool, kube::Error> {
    let current = api.get_opt(&settings.name).await?;
    let spec = current.as_ref().and_then(|lease| lease.spec.as_ref());
    let now = Utc::now();
    let decision = decide(spec, now, &settings.identity);
    let Some(next) = next_spec(spec, &decision, now, &settings.identity, settings.duration) else {
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
