//! Load from the test: closed-loop clients, each sending embedding requests one after the
//! other, spread round-robin over the ready endpoints of the ModelDeployment's Service, as
//! kube-proxy spreads connections. The endpoints are those the EndpointSlice controller would
//! list: the ready pods the Service's selector matches that are not terminating. (The control
//! plane's EndpointSlices stay empty here: the stand-in kubelet gives pods loopback addresses,
//! which the API server refuses in an EndpointSlice.) The number of clients is the load's
//! concurrency, which is what `metric: concurrency` autoscaling reads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams};
use serde_json::json;
use tokio::task::JoinHandle;

use super::serving::RUNTIME_PORT;
use super::waits::{pod_ip, pod_is_ready};

/// How often the list of ready endpoints is refreshed.
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
    /// Starts refreshing the ready endpoints of the Service `md_name` (the ModelDeployment's)
    /// in the namespace of `services` and `pods`, with no client yet.
    pub fn on(services: Api<Service>, pods: Api<Pod>, md_name: &str) -> Self {
        let targets = Arc::new(RwLock::new(Vec::new()));
        let md_name = md_name.to_string();
        let refresher = tokio::spawn({
            let targets = targets.clone();
            async move {
                let mut ticks = tokio::time::interval(REFRESH);
                loop {
                    ticks.tick().await;
                    if let Ok(ready) = ready_endpoints(&services, &pods, &md_name).await {
                        let ips = ready.into_iter().map(|e| e.ip).collect();
                        *targets.write().unwrap_or_else(|e| e.into_inner()) = ips;
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

/// A ready endpoint of a Service: its address and the pod behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The pod's address.
    pub ip: String,
    /// The pod's name.
    pub pod: String,
}

/// The ready endpoints of the Service `service`, as the EndpointSlice controller lists them and
/// kube-proxy routes to them: pods its selector matches that are ready, have an address and are
/// not terminating.
pub async fn ready_endpoints(
    services: &Api<Service>,
    pods: &Api<Pod>,
    service: &str,
) -> anyhow::Result<Vec<Endpoint>> {
    let selector = services
        .get(service)
        .await?
        .spec
        .and_then(|s| s.selector)
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    if selector.is_empty() {
        return Ok(Vec::new());
    }
    let list = pods.list(&ListParams::default().labels(&selector)).await?;
    Ok(list
        .items
        .iter()
        .filter(|p| pod_is_ready(p) && p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            Some(Endpoint {
                ip: pod_ip(p)?,
                pod: p.metadata.name.clone()?,
            })
        })
        .collect())
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
