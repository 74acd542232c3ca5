//! A stand-in kubelet for end-to-end tests on a control plane without nodes: it plays the
//! Nodes matching a label selector, runs each Pod bound to them as local processes on the pod's
//! own loopback address, reports pod status, probes and restarts containers, and carries out
//! deletions, as a real kubelet would, within reason. See [`KubeletConfig`] for how images,
//! volumes and claims map to this machine, and [`run`] to start it.

mod backoff;
mod container;
mod image;
mod ip;
mod launch;
mod pod;
mod probe;
mod process;
mod report;
mod state;
mod status;
mod volumes;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinSet;

use ip::IpPool;
use pod::{deletion_grace, run_pod, PodWorld, Stop};

/// How long processes get to end when the kubelet itself shuts down.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the kubelet plays and how pods map to this machine.
#[derive(Clone, Debug)]
pub struct KubeletConfig {
    /// Label selector of the Nodes this kubelet plays; nodes are picked up and dropped as they
    /// come and go.
    pub node_selector: String,
    /// Image reference prefix -> local executable run in place of the image's entrypoint with
    /// the container's args. An image matching no prefix here nor in `shell_images` cannot be
    /// pulled: ErrImagePull, then ImagePullBackOff, retried with back-off.
    pub images: Vec<(String, PathBuf)>,
    /// Image reference prefixes whose containers run their `command` + `args` with the host's
    /// programs (`command[0]` looked up on `PATH`).
    pub shell_images: Vec<String>,
    /// PVC claim name -> local folder standing for the volume (subPath is joined under it).
    pub claims: Vec<(String, PathBuf)>,
    /// OCI image-volume reference -> local folder.
    pub image_volumes: Vec<(String, PathBuf)>,
    /// Where emptyDirs and container logs live: `work_dir/<namespace>/<pod>/`.
    pub work_dir: PathBuf,
    /// How often probes run, whatever their `periodSeconds` (real periods are 5-10 s).
    pub probe_period: Duration,
    /// Extra environment for every container, before the container's own env.
    pub env: Vec<(String, String)>,
}

impl KubeletConfig {
    /// Plays nodes labelled `kandle.dev/e2e-node=true`, runs `busybox` images with the host's
    /// programs, probes every 300 ms; no images, claims or image volumes mapped yet.
    pub fn new(work_dir: PathBuf) -> Self {
        Self {
            node_selector: "kandle.dev/e2e-node=true".to_string(),
            images: Vec::new(),
            shell_images: vec!["busybox".to_string()],
            claims: Vec::new(),
            image_volumes: Vec::new(),
            work_dir,
            probe_period: Duration::from_millis(300),
            env: Vec::new(),
        }
    }
}

/// Plays the kubelet for the selected nodes until `shutdown` resolves; then stops every local
/// process (SIGTERM, grace, SIGKILL). Pods stay in the API untouched at shutdown.
pub async fn run(
    client: Client,
    config: KubeletConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.work_dir)
        .with_context(|| format!("creating {}", config.work_dir.display()))?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the probe client")?;
    let world = Arc::new(PodWorld {
        client: client.clone(),
        ips: Arc::new(Mutex::new(IpPool::for_this_process())),
        config: Arc::new(config),
        http,
    });

    let (nodes, node_writer) = reflector::store::<Node>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let node_watch = watcher::Config::default().labels(&world.config.node_selector);
    let pod_watch = watcher::Config::default().fields("spec.nodeName!=");
    let node_events = watcher(Api::<Node>::all(client.clone()), node_watch)
        .default_backoff()
        .reflect(node_writer)
        .map(|event| event.map(|_| ()))
        .boxed();
    let pod_events = watcher(Api::<Pod>::all(client), pod_watch)
        .default_backoff()
        .reflect(pod_writer)
        .map(|event| event.map(|_| ()))
        .boxed();
    let mut events = futures::stream::select(node_events, pod_events);

    let mut kubelet = Kubelet {
        world,
        workers: HashMap::new(),
        tasks: JoinSet::new(),
    };
    tracing::info!(selector = %kubelet.world.config.node_selector, "kubelet running");
    let shutdown = shutdown;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            event = events.next() => match event {
                Some(Ok(())) => kubelet.reconcile(&nodes, &pods),
                Some(Err(error)) => tracing::warn!("watch: {error}"),
                None => break,
            },
            Some(done) = kubelet.tasks.join_next(), if !kubelet.tasks.is_empty() => {
                if let Ok(uid) = done {
                    if let Some(worker) = kubelet.workers.get_mut(&uid) {
                        worker.finished = true;
                    }
                }
                kubelet.reconcile(&nodes, &pods);
            }
        }
    }
    kubelet.shut_down().await;
    Ok(())
}

/// The pods being driven, by uid.
struct Kubelet {
    world: Arc<PodWorld>,
    workers: HashMap<String, Worker>,
    tasks: JoinSet<String>,
}

struct Worker {
    stop: watch::Sender<Stop>,
    /// When the kubelet first saw the pod's deletion.
    deleting_since: Option<Instant>,
    finished: bool,
}

impl Kubelet {
    /// Starts workers for new pods on our nodes, passes deletions on, and kills the processes
    /// of pods that are gone (or whose node is).
    fn reconcile(&mut self, nodes: &Store<Node>, pods: &Store<Pod>) {
        let ours: HashSet<String> = nodes.state().iter().map(|n| n.name_any()).collect();
        let bound: HashMap<String, Arc<Pod>> = pods
            .state()
            .into_iter()
            .filter(|p| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_ref())
                    .is_some_and(|n| ours.contains(n))
            })
            .filter_map(|p| Some((p.uid()?, p)))
            .collect();

        for (uid, pod) in &bound {
            let deleting = pod.metadata.deletion_timestamp.is_some();
            let worker = match self.workers.get_mut(uid) {
                Some(worker) => worker,
                None if is_terminal(pod) => continue,
                None => self.start(uid, pod),
            };
            if deleting {
                let since = *worker.deleting_since.get_or_insert_with(Instant::now);
                let wanted = Stop::Graceful {
                    deadline: since + deletion_grace(pod),
                    pre_stop: true,
                    delete: true,
                };
                worker.stop.send_if_modified(|stop| escalate(stop, wanted));
            }
        }

        self.workers.retain(|uid, worker| {
            if bound.contains_key(uid) {
                return true;
            }
            worker
                .stop
                .send_if_modified(|stop| escalate(stop, Stop::Now));
            !worker.finished
        });
    }

    fn start(&mut self, uid: &str, pod: &Arc<Pod>) -> &mut Worker {
        let (stop, stop_rx) = watch::channel(Stop::No);
        let world = self.world.clone();
        let (pod, task_uid) = (pod.clone(), uid.to_string());
        self.tasks.spawn(async move {
            run_pod(world, pod, stop_rx).await;
            task_uid
        });
        self.workers.entry(uid.to_string()).or_insert(Worker {
            stop,
            deleting_since: None,
            finished: false,
        })
    }

    /// Stops every pod's processes without touching the API, waiting out a short grace.
    async fn shut_down(mut self) {
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        let wanted = Stop::Graceful {
            deadline,
            pre_stop: false,
            delete: false,
        };
        for worker in self.workers.values() {
            worker.stop.send_if_modified(|stop| escalate(stop, wanted));
        }
        let all_ended = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE * 2, all_ended)
            .await
            .is_err()
        {
            tracing::warn!("pods did not stop in time; killing them");
            self.tasks.shutdown().await;
        }
        tracing::info!("kubelet stopped");
    }
}

/// Moves `stop` towards `wanted` but never back: a kill stays a kill, an earlier deadline wins.
fn escalate(stop: &mut Stop, wanted: Stop) -> bool {
    let next = match (*stop, wanted) {
        (Stop::Now, _) => Stop::Now,
        (_, Stop::Now) => Stop::Now,
        (Stop::No, wanted) => wanted,
        (
            Stop::Graceful {
                deadline,
                pre_stop,
                delete,
            },
            Stop::Graceful {
                deadline: other, ..
            },
        ) => Stop::Graceful {
            deadline: deadline.min(other),
            pre_stop,
            delete,
        },
        (current, Stop::No) => current,
    };
    let changed = next != *stop;
    *stop = next;
    changed
}

/// A pod that has ended for good is not started again.
fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_only_escalate() {
        let soon = Instant::now();
        let later = soon + Duration::from_secs(5);
        let graceful = |deadline| Stop::Graceful {
            deadline,
            pre_stop: true,
            delete: true,
        };
        let mut stop = Stop::No;
        assert!(escalate(&mut stop, graceful(later)));
        assert!(!escalate(&mut stop, graceful(later)));
        assert!(escalate(&mut stop, graceful(soon)));
        assert_eq!(stop, graceful(soon));
        assert!(!escalate(&mut stop, graceful(later)));
        assert!(escalate(&mut stop, Stop::Now));
        assert!(!escalate(&mut stop, graceful(soon)));
        assert_eq!(stop, Stop::Now);
    }
}
