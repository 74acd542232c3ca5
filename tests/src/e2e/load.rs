//! Load from the test: closed-loop clients, each sending embedding requests one after the
//! other, spread over the ModelDeployment's ready pods round-robin (as kube-proxy spreads a
//! Service's connections over its EndpointSlices). The number of clients is the load's
//! concurrency, which is what `metric: concurrency` autoscaling reads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kandle_crds::labels;
use kube::api::{Api, ListParams};
use serde_json::json;
use tokio::task::JoinHandle;

use super::serving::RUNTIME_PORT;
use super::waits::{pod_ip, pod_is_ready};

/// How often the list of ready pods is refreshed.
const REFRESH: Duration = Duration::from_millis(300);
/// Pause of a client with no ready pod to send to.
const IDLE: Duration = Duration::from_millis(100);
/// Inputs per request: enough work that a request stays in flight for a while.
const INPUTS: usize = 16;

/// Running clients; dropping it stops them all.
pub struct Load {
    targets: Arc<RwLock<Vec<String>>>,
    next: Arc<AtomicUsize>,
    http: reqwest::Client,
    clients: Vec<JoinHandle<()>>,
    refresher: JoinHandle<()>,
}

impl Load {
    /// Starts refreshing the ready pods of `md_name` in `pods`' namespace, with no client yet.
    pub fn on(pods: Api<Pod>, md_name: &str) -> Self {
        let targets = Arc::new(RwLock::new(Vec::new()));
        let selector = format!("{}={md_name}", labels::MODEL_DEPLOYMENT);
        let refresher = tokio::spawn({
            let targets = targets.clone();
            async move {
                let mut ticks = tokio::time::interval(REFRESH);
                loop {
                    ticks.tick().await;
                    if let Ok(list) = pods.list(&ListParams::default().labels(&selector)).await {
                        let ready = list
                            .items
                            .iter()
                            .filter(|p| pod_is_ready(p) && p.metadata.deletion_timestamp.is_none())
                            .filter_map(pod_ip)
                            .collect();
                        *targets.write().unwrap_or_else(|e| e.into_inner()) = ready;
                    }
                }
            }
        });
        Self {
            targets,
            next: Arc::new(AtomicUsize::new(0)),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
            clients: Vec::new(),
            refresher,
        }
    }

    /// Runs exactly `count` clients.
    pub fn set_clients(&mut self, count: usize) {
        while self.clients.len() > count {
            if let Some(client) = self.clients.pop() {
                client.abort();
            }
        }
        while self.clients.len() < count {
            self.clients.push(tokio::spawn(client(
                self.http.clone(),
                self.targets.clone(),
                self.next.clone(),
            )));
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.set_clients(0);
        self.refresher.abort();
    }
}

async fn client(http: reqwest::Client, targets: Arc<RwLock<Vec<String>>>, next: Arc<AtomicUsize>) {
    let text =
        "kandle keeps the replicas of a model in step with the requests it serves. ".repeat(6);
    let body = json!({ "input": vec![text; INPUTS] });
    loop {
        let target = {
            let targets = targets.read().unwrap_or_else(|e| e.into_inner());
            (!targets.is_empty())
                .then(|| targets[next.fetch_add(1, Ordering::Relaxed) % targets.len()].clone())
        };
        let Some(ip) = target else {
            tokio::time::sleep(IDLE).await;
            continue;
        };
        let url = format!("http://{ip}:{RUNTIME_PORT}/v1/embeddings");
        // Failures (a pod going away) are part of load; the next request goes elsewhere.
        let _ = http.post(&url).json(&body).send().await;
    }
}
