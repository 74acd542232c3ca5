//! One pod's life on this kubelet: its folder and scratch volumes, its init containers in
//! order, then its main containers side by side, and on deletion the stop of every process and
//! the final removal of the Pod object.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{DeleteParams, Preconditions};
use kube::{Api, Client, ResourceExt};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use super::backoff::Backoff;
use super::container::{run_container, Outcome};
use super::ip::IpPool;
use super::launch::PodFacts;
use super::report;
use super::state::{now, ContainerRecord, Kind, PodState, RunState};
use super::volumes::{volume_dirs, VolumeDirs};
use super::KubeletConfig;

/// The address every pod's host is reported at.
pub const HOST_IP: &str = "127.0.0.1";

/// What the kubelet asks of a pod's processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Keep running.
    No,
    /// End by `deadline`: run preStop hooks first if `pre_stop`, remove the Pod after if `delete`.
    Graceful {
        deadline: Instant,
        pre_stop: bool,
        delete: bool,
    },
    /// Kill at once: the pod is gone.
    Now,
}

/// Everything a pod's container tasks share.
pub struct PodContext {
    pub config: Arc<KubeletConfig>,
    pub pod: Arc<Pod>,
    pub facts: PodFacts,
    pub pod_dir: PathBuf,
    pub volumes: VolumeDirs,
    pub http: reqwest::Client,
    pub backoff: Backoff,
    pub state: Mutex<PodState>,
    /// Signalled on every change of `state`, for the status reporter.
    pub changed: Notify,
}

impl PodContext {
    /// The spec of container `index` of `kind`.
    pub fn container(&self, kind: Kind, index: usize) -> &Container {
        let spec = self
            .pod
            .spec
            .as_ref()
            .expect("pods are only taken on with a spec");
        match kind {
            Kind::Init => &spec.init_containers.as_deref().unwrap_or_default()[index],
            Kind::Main => &spec.containers[index],
        }
    }

    /// Changes container `index` of `kind` and tells the reporter.
    pub fn update(&self, kind: Kind, index: usize, change: impl FnOnce(&mut ContainerRecord)) {
        self.update_pod(|state| change(state.container_mut(kind, index)));
    }

    /// Changes the pod's state and tells the reporter.
    pub fn update_pod(&self, change: impl FnOnce(&mut PodState)) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut state);
        drop(state);
        self.changed.notify_one();
    }

    /// `namespace/name` for logs.
    pub fn key(&self) -> String {
        format!("{}/{}", self.facts.namespace, self.facts.name)
    }
}

/// What a pod worker needs from the kubelet.
pub struct PodWorld {
    pub client: Client,
    pub config: Arc<KubeletConfig>,
    pub ips: Arc<Mutex<IpPool>>,
    pub http: reqwest::Client,
}

/// Drives `pod` until `stop` asks it to end; removes the Pod afterwards if asked to.
pub async fn run_pod(world: Arc<PodWorld>, pod: Arc<Pod>, stop: watch::Receiver<Stop>) {
    let ip = pod_ip(&world.ips, &pod);
    let key = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
    let (namespace, name, uid) = (
        pod.namespace().unwrap_or_default(),
        pod.name_any(),
        pod.uid(),
    );
    let mut stopped = stop.clone();
    if let Err(error) = drive(&world, pod, ip, stop).await {
        tracing::warn!(pod = %key, "pod failed: {error:#}");
        // Nothing runs, but the pod is still ours: carry out its deletion when it comes.
        let _ = stopped.wait_for(|s| *s != Stop::No).await;
        let ending = *stopped.borrow();
        if let Stop::Graceful { delete: true, .. } = ending {
            let api = Api::namespaced(world.client.clone(), &namespace);
            if let Err(error) = delete_pod(&api, &name, uid).await {
                tracing::warn!(pod = %key, "{error:#}");
            }
        }
    }
    world
        .ips
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .release(ip);
}

/// The pod's address: the one it already has (a pod taken over after a kubelet restart keeps
/// its IP, as the API requires) if free, else a new one.
fn pod_ip(ips: &Mutex<IpPool>, pod: &Pod) -> Ipv4Addr {
    let mut ips = ips.lock().unwrap_or_else(|e| e.into_inner());
    let earlier = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
    match earlier {
        Some(ip) if ips.claim(ip) => ip,
        _ => ips.allocate(),
    }
}

async fn drive(
    world: &PodWorld,
    pod: Arc<Pod>,
    ip: Ipv4Addr,
    stop: watch::Receiver<Stop>,
) -> anyhow::Result<()> {
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let pod_dir = world.config.work_dir.join(&namespace).join(&name);
    let spec = pod.spec.clone().unwrap_or_default();
    // Per uid, so a new pod of the same name never shares or loses scratch folders.
    let scratch_root = pod_dir.join("volumes").join(pod.uid().unwrap_or_default());
    let volumes = volume_dirs(
        spec.volumes.as_deref().unwrap_or_default(),
        &world.config.claims,
        &world.config.image_volumes,
        &scratch_root,
    );
    prepare_folders(&pod_dir, &volumes)?;

    let mut state = PodState::new(&pod, HOST_IP, now());
    state.pod_ip = Some(ip);
    let facts = PodFacts {
        name: name.clone(),
        namespace: namespace.clone(),
        uid: pod.uid().unwrap_or_default(),
        node_name: spec.node_name.clone().unwrap_or_default(),
        service_account: spec.service_account_name.clone().unwrap_or_default(),
        pod_ip: ip.to_string(),
        host_ip: HOST_IP.to_string(),
    };
    let ctx = Arc::new(PodContext {
        config: world.config.clone(),
        pod: pod.clone(),
        facts,
        pod_dir: pod_dir.clone(),
        volumes,
        http: world.http.clone(),
        backoff: Backoff::default(),
        state: Mutex::new(state),
        changed: Notify::new(),
    });
    tracing::info!(pod = %ctx.key(), %ip, "starting pod");
    ctx.changed.notify_one();
    let api: Api<Pod> = Api::namespaced(world.client.clone(), &namespace);
    let reporter = tokio::spawn(report::run(api.clone(), name.clone(), ctx.clone()));

    if run_init_containers(&ctx, &stop).await {
        run_main_containers(&ctx, &stop).await;
    }
    reporter.abort();

    let ending = *stop.borrow();
    if !matches!(ending, Stop::Graceful { delete: false, .. }) {
        if let Err(error) = std::fs::remove_dir_all(&scratch_root) {
            tracing::debug!(pod = %ctx.key(), "removing {}: {error}", scratch_root.display());
        }
    }
    tracing::info!(pod = %ctx.key(), "pod stopped");
    if let Stop::Graceful { delete: true, .. } = ending {
        delete_pod(&api, &name, pod.uid()).await?;
    }
    Ok(())
}

/// Runs the init containers in order; true once all have completed.
async fn run_init_containers(ctx: &Arc<PodContext>, stop: &watch::Receiver<Stop>) -> bool {
    let count = ctx
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .init
        .len();
    for index in 0..count {
        if run_container(ctx.clone(), Kind::Init, index, stop.clone()).await == Outcome::Stopped {
            return false;
        }
    }
    ctx.update_pod(|state| {
        state.initialized = true;
        for record in &mut state.main {
            if matches!(&record.state, RunState::Waiting { reason, .. } if reason == "PodInitializing") {
                record.wait("ContainerCreating", None);
            }
        }
    });
    true
}

/// Runs the main containers until all have been stopped.
async fn run_main_containers(ctx: &Arc<PodContext>, stop: &watch::Receiver<Stop>) {
    let count = ctx
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .main
        .len();
    let mut containers = JoinSet::new();
    for index in 0..count {
        containers.spawn(run_container(ctx.clone(), Kind::Main, index, stop.clone()));
    }
    while containers.join_next().await.is_some() {}
}

/// The pod's folder and its scratch volumes (kept if the pod had them before a kubelet restart).
fn prepare_folders(pod_dir: &std::path::Path, volumes: &VolumeDirs) -> anyhow::Result<()> {
    std::fs::create_dir_all(pod_dir).with_context(|| format!("creating {}", pod_dir.display()))?;
    for volume in volumes.values().flatten().filter(|v| v.scratch) {
        std::fs::create_dir_all(&volume.dir)
            .with_context(|| format!("creating {}", volume.dir.display()))?;
    }
    Ok(())
}

/// Removes the Pod object once its processes are gone, only if it is still the same pod.
async fn delete_pod(api: &Api<Pod>, name: &str, uid: Option<String>) -> anyhow::Result<()> {
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid,
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(error) => Err(error).with_context(|| format!("deleting pod {name}")),
    }
}

/// The grace period of a pod being deleted: what the deletion asked for, else the pod's own.
pub fn deletion_grace(pod: &Pod) -> Duration {
    let seconds = pod
        .metadata
        .deletion_grace_period_seconds
        .or(pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30);
    Duration::from_secs(seconds.max(0) as u64)
}
