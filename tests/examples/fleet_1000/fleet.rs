//! The benchmark's own view of the fleet, from watches with the admin identity: which
//! ModelDeployments have a status for their generation and a Deployment, and when each
//! Deployment was first seen.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kandle_crds::{labels, ModelDeployment};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};

/// Stores of the namespace's ModelDeployments and Deployments, and first sightings.
pub struct Fleet {
    mds: Store<ModelDeployment>,
    deployments: Store<Deployment>,
    first_seen: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Fleet {
    /// Starts watching `namespace`.
    pub fn watch(client: &Client, namespace: &str) -> Self {
        let (mds, md_writer) = reflector::store();
        let md_api: Api<ModelDeployment> = Api::namespaced(client.clone(), namespace);
        tokio::spawn(
            reflector::reflector(
                md_writer,
                watcher::watcher(md_api, watcher::Config::default()).default_backoff(),
            )
            .for_each(|_| async {}),
        );
        let (deployments, writer) = reflector::store();
        let first_seen = Arc::new(Mutex::new(HashMap::new()));
        let seen = Arc::clone(&first_seen);
        let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
        tokio::spawn(
            reflector::reflector(
                writer,
                watcher::watcher(api, watcher::Config::default()).default_backoff(),
            )
            .applied_objects()
            .for_each(move |deployment| {
                if let Ok(d) = deployment {
                    lock(&seen).entry(d.name_any()).or_insert_with(Instant::now);
                }
                async {}
            }),
        );
        Self {
            mds,
            deployments,
            first_seen,
        }
    }

    /// How many of the ModelDeployments have a status for their generation and a Deployment.
    pub fn converged(&self) -> usize {
        let with_deployment: HashSet<String> = self
            .deployments
            .state()
            .iter()
            .filter_map(|d| d.labels().get(labels::MODEL_DEPLOYMENT).cloned())
            .collect();
        self.mds
            .state()
            .iter()
            .filter(|md| {
                md.status.as_ref().and_then(|s| s.observed_generation) == md.metadata.generation
                    && with_deployment.contains(&md.name_any())
            })
            .count()
    }

    /// Waits until `count` ModelDeployments have converged; returns when that was seen.
    pub async fn wait_converged(
        &self,
        count: usize,
        deadline: Duration,
    ) -> anyhow::Result<Instant> {
        let start = Instant::now();
        let mut last_report = start;
        loop {
            let done = self.converged();
            if done >= count {
                return Ok(Instant::now());
            }
            if start.elapsed() > deadline {
                bail!("{done} of {count} converged after {deadline:?}");
            }
            if last_report.elapsed() > Duration::from_secs(5) {
                eprintln!(
                    "{:>6.1}s {done}/{count} converged",
                    start.elapsed().as_secs_f64()
                );
                last_report = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The Deployments of ModelDeployment `md` seen so far.
    pub fn deployments_of(&self, md: &str) -> HashSet<String> {
        let prefix = format!("{md}-");
        lock(&self.first_seen)
            .keys()
            .filter(|name| name.starts_with(&prefix))
            .cloned()
            .collect()
    }

    /// When a Deployment of `md` not in `known` was first seen, once one is.
    pub async fn new_deployment(
        &self,
        md: &str,
        known: &HashSet<String>,
        deadline: Duration,
    ) -> anyhow::Result<Instant> {
        let start = Instant::now();
        let prefix = format!("{md}-");
        loop {
            let found = lock(&self.first_seen)
                .iter()
                .find(|(name, _)| name.starts_with(&prefix) && !known.contains(*name))
                .map(|(_, at)| *at);
            if let Some(at) = found {
                return Ok(at);
            }
            if start.elapsed() > deadline {
                bail!("no new Deployment of {md} after {deadline:?}");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The Deployments as the operator made them.
    pub fn deployment_objects(&self) -> Vec<Deployment> {
        self.deployments
            .state()
            .iter()
            .map(|d| (**d).clone())
            .collect()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
