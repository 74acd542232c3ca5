//! The anchor: how long kube-controller-manager takes to give the same Deployments their
//! ReplicaSets, on the same control plane.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;

/// Creates copies of `deployments` in `namespace` (without their owner) and returns how long
/// from the first create until every one has a ReplicaSet.
pub async fn deployment_to_replicaset(
    client: &Client,
    namespace: &str,
    deployments: Vec<Deployment>,
    deadline: Duration,
) -> anyhow::Result<Duration> {
    let count = deployments.len();
    let owners = Arc::new(Mutex::new(HashSet::new()));
    let seen = Arc::clone(&owners);
    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), namespace);
    let watch = tokio::spawn(
        watcher::watcher(replicasets, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .for_each(move |rs| {
                if let Ok(rs) = rs {
                    let owner = rs
                        .metadata
                        .owner_references
                        .unwrap_or_default()
                        .into_iter()
                        .next()
                        .map(|o| o.name);
                    if let Some(owner) = owner {
                        seen.lock().unwrap_or_else(|e| e.into_inner()).insert(owner);
                    }
                }
                async {}
            }),
    );
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let started = Instant::now();
    futures::stream::iter(deployments.into_iter().map(|d| copy(d, namespace)))
        .map(|d| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &d).await.map(|_| ()) }
        })
        .buffer_unordered(32)
        .try_collect::<()>()
        .await
        .context("creating the anchor's Deployments")?;
    eprintln!(
        "anchor: {count} Deployments created in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    loop {
        let done = owners.lock().unwrap_or_else(|e| e.into_inner()).len();
        if done >= count {
            watch.abort();
            return Ok(started.elapsed());
        }
        if started.elapsed() > deadline {
            watch.abort();
            bail!("anchor: {done} of {count} Deployments have a ReplicaSet after {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn copy(d: Deployment, namespace: &str) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: d.metadata.name,
            namespace: Some(namespace.to_string()),
            labels: d.metadata.labels,
            ..Default::default()
        },
        spec: d.spec,
        status: None,
    }
}
