//! The controller's view of the cluster, kept current by watches instead of reads on every
//! pass: a reflector store per kind of child and of pods. Deployments, ControllerRevisions and
//! pods are watched by kandle's label; Services, PodDisruptionBudgets and HorizontalPodAutoscalers
//! by name is how a foreign one in the way is noticed, so those are watched whole. Every object is stripped of
//! what no pass reads (managedFields and the last-applied annotation; of a pod, all but its
//! name, labels and status), and children are kept [`Compact`]. [`Caches::observe`] reads one
//! `ModelDeployment`'s share.

use futures::stream::BoxStream;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::NamespaceResourceScope;
use kandle_crds::{labels, ModelDeployment};
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::compact::Compact;
use crate::error::Error;
use crate::observe::{assemble, pvc_exists, with_route, Children, Observed};

/// Annotation `kubectl apply` (client-side) leaves: a full copy of the object.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A stream of the objects a watch saw change (deleted ones included).
pub type Changes<K> = BoxStream<'static, Result<K, watcher::Error>>;

/// The stores, readable from every pass.
#[derive(Clone)]
pub struct Caches {
    deployments: Store<Compact<Deployment>>,
    revisions: Store<Compact<ControllerRevision>>,
    services: Store<Compact<Service>>,
    pdbs: Store<Compact<PodDisruptionBudget>>,
    hpas: Store<Compact<HorizontalPodAutoscaler>>,
    pods: Store<Pod>,
}

/// The watches that fill [`Caches`]; the controller polls them, and their changes wake passes.
pub struct Watches {
    /// Changed Deployments.
    pub deployments: Changes<Compact<Deployment>>,
    /// Changed ControllerRevisions.
    pub revisions: Changes<Compact<ControllerRevision>>,
    /// Changed Services.
    pub services: Changes<Compact<Service>>,
    /// Changed PodDisruptionBudgets.
    pub pdbs: Changes<Compact<PodDisruptionBudget>>,
    /// Changed HorizontalPodAutoscalers.
    pub hpas: Changes<Compact<HorizontalPodAutoscaler>>,
    /// Changed pods.
    pub pods: Changes<Pod>,
}

/// Starts (lazily: nothing runs until the streams are polled) the watches of `namespace`, or
/// of all namespaces, and the stores they fill.
pub fn watch(client: &Client, namespace: Option<&str>) -> (Caches, Watches) {
    let labelled = watcher::Config::default().labels(labels::MODEL_DEPLOYMENT);
    let all = watcher::Config::default();
    let (deployments, deployment_changes) = reflect(client, namespace, labelled.clone(), strip);
    let (revisions, revision_changes) = reflect(client, namespace, labelled.clone(), strip);
    let (services, service_changes) = reflect(client, namespace, all.clone(), strip);
    let (pdbs, pdb_changes) = reflect(client, namespace, all.clone(), strip);
    let (hpas, hpa_changes) = reflect(client, namespace, all, strip);
    let (pods, pod_changes) = reflect(client, namespace, labelled, slim_pod);
    (
        Caches {
            deployments,
            revisions,
            services,
            pdbs,
            hpas,
            pods,
        },
        Watches {
            deployments: deployment_changes,
            revisions: revision_changes,
            services: service_changes,
            pdbs: pdb_changes,
            hpas: hpa_changes,
            pods: pod_changes,
        },
    )
}

fn reflect<K>(
    client: &Client,
    namespace: Option<&str>,
    config: watcher::Config,
    slim: fn(&mut K),
) -> (Store<K>, Changes<K>)
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (store, writer) = reflector::store();
    let changes = reflector::reflector(
        writer,
        watcher::watcher(api, config).default_backoff().modify(slim),
    )
    .touched_objects()
    .boxed();
    (store, changes)
}

/// Drops what no pass reads from any object: managedFields and the last-applied copy.
pub fn strip<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// Keeps of a pod only what the findings about it read: name, namespace, labels, deletion and
/// status.
pub fn slim_pod(pod: &mut Pod) {
    strip(pod);
    pod.spec = None;
    let meta = &mut pod.metadata;
    meta.annotations = None;
    meta.owner_references = None;
    meta.generate_name = None;
}

impl Caches {
    /// The pod store (slim pods: name, labels, status).
    pub fn pods(&self) -> Store<Pod> {
        self.pods.clone()
    }

    /// Reads `md`'s children and pods from the stores (once they hold a first full list), and
    /// its PVC from the API server.
    pub async fn observe(&self, client: &Client, md: &ModelDeployment) -> Result<Observed, Error> {
        let name = md.name_any();
        let ns = md
            .namespace()
            .ok_or_else(|| Error::MissingNamespace { name: name.clone() })?;
        self.ready().await?;
        let mine = |meta: &ObjectMeta| {
            meta.namespace.as_deref() == Some(ns.as_str())
                && meta
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(labels::MODEL_DEPLOYMENT))
                    == Some(&name)
        };
        let deployments = owned(&self.deployments, &mine)?;
        let revisions = owned(&self.revisions, &mine)?;
        let service = self
            .services
            .get(&ObjectRef::new(&name).within(&ns))
            .map(|s| full(&s))
            .transpose()?;
        let pdb = self
            .pdbs
            .get(&ObjectRef::new(&name).within(&ns))
            .map(|p| full(&p))
            .transpose()?;
        let hpa = self
            .hpas
            .get(&ObjectRef::new(&name).within(&ns))
            .map(|h| full(&h))
            .transpose()?;
        let pods: Vec<_> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| mine(&p.metadata))
            .collect();
        let revision_services = owned(&self.services, &mine)?
            .into_iter()
            .filter(|s| s.name_any() != name)
            .collect();
        let pvc_exists = pvc_exists(client, md).await?;
        let observed = assemble(
            Children {
                deployments,
                revisions,
                service,
                pdb,
                hpa,
                revision_services,
            },
            pods.iter().map(AsRef::as_ref),
            pvc_exists,
        );
        let observed = with_route(client, md, observed).await?;
        Ok(crate::hub::with_resolution(client, md, observed).await)
    }

    async fn ready(&self) -> Result<(), Error> {
        let closed = |_| Error::CacheClosed;
        self.deployments.wait_until_ready().await.map_err(closed)?;
        self.revisions.wait_until_ready().await.map_err(closed)?;
        self.services.wait_until_ready().await.map_err(closed)?;
        self.pdbs.wait_until_ready().await.map_err(closed)?;
        self.hpas.wait_until_ready().await.map_err(closed)?;
        self.pods.wait_until_ready().await.map_err(closed)
    }
}

fn owned<K>(store: &Store<Compact<K>>, mine: &impl Fn(&ObjectMeta) -> bool) -> Result<Vec<K>, Error>
where
    K: k8s_openapi::Resource + Resource<DynamicType = ()> + DeserializeOwned + 'static,
{
    store
        .state()
        .into_iter()
        .filter(|o| mine(o.meta()))
        .map(|o| full(&o))
        .collect()
}

fn full<K>(object: &Compact<K>) -> Result<K, Error>
where
    K: k8s_openapi::Resource + Resource<DynamicType = ()> + DeserializeOwned,
{
    object.full().map_err(|source| Error::CachedObject {
        kind: <K as k8s_openapi::Resource>::KIND,
        name: format!(
            "{}/{}",
            object.namespace().unwrap_or_default(),
            object.name_any()
        ),
        source,
    })
}
