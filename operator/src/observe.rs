//! Reads what the cluster holds for one `ModelDeployment`: its labelled children, its pods'
//! scheduling failures and whether the PVC of its model source exists. Reading only; all
//! judgement is left to [`crate::plan`].

use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kandle_crds::{labels, ModelDeployment};
use kube::api::{Api, DynamicObject, ListParams};
use kube::{Client, ResourceExt};

use crate::analysis::intervals::Intervals;
use crate::autoscale::History;
use crate::error::Error;
use crate::plan::{http_route_resource, routing};
use crate::pod_problems::{pod_problem, scheduling_failure};
pub use crate::pod_problems::{PodProblem, ProblemKind, SchedulingFailure};

/// Everything the cluster holds for one `ModelDeployment`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// Deployments labelled with the ModelDeployment's name, sorted by name.
    pub deployments: Vec<Deployment>,
    /// ControllerRevisions labelled with the ModelDeployment's name, sorted by name.
    pub revisions: Vec<ControllerRevision>,
    /// The Service named after the ModelDeployment, if it exists.
    pub service: Option<Service>,
    /// The PodDisruptionBudget named after the ModelDeployment, if it exists.
    pub pdb: Option<PodDisruptionBudget>,
    /// The HorizontalPodAutoscaler named after the ModelDeployment, if it exists.
    pub hpa: Option<HorizontalPodAutoscaler>,
    /// Pods the scheduler marked `PodScheduled=False` with reason `Unschedulable`, sorted by pod.
    pub unschedulable: Vec<SchedulingFailure>,
    /// Pods with a failing container (crash loop, image pull, model fetch), sorted by pod.
    pub pod_problems: Vec<PodProblem>,
    /// The operator's upgrade budget is full: a rollout caused only by the operator (see
    /// [`crate::plan::Plan::operator_upgrade`]) must wait. Set by the controller, not read from
    /// the cluster.
    pub upgrade_waits: bool,
    /// Whether the PVC named by a `pvc` model source exists; `None` when the source is not a
    /// PVC.
    pub pvc_exists: Option<bool>,
    /// The load history of the `ModelDeployment`'s pods, when it is autoscaled on a runtime
    /// metric and the collector keeps one. Set by the controller, not read from the cluster.
    pub load: Option<History>,
    /// The per-revision Services of an HTTPRoute, by name.
    pub revision_services: Vec<Service>,
    /// The HTTPRoute named after the `ModelDeployment`, when it routes with one.
    pub route: Option<DynamicObject>,
    /// The cluster has no HTTPRoute API (the Gateway API CRDs are not installed).
    pub route_api_missing: bool,
    /// The analysis intervals of its canary, when one is analysed.
    pub analysis: Option<Intervals>,
    /// The commit a `huggingFace` source's branch or tag named when the Hub was asked in this
    /// pass, or why it could not be resolved; `None` when there was nothing to resolve.
    pub hub_resolution: Option<Result<String, String>>,
}

/// The label selector of every child (and pod) of the named `ModelDeployment`.
pub fn children_selector(md_name: &str) -> String {
    format!("{}={md_name}", labels::MODEL_DEPLOYMENT)
}

/// Reads the children, pods and PVC of `md` from its namespace with LISTs and GETs: for a pass
/// run on its own, without the controller's caches (see [`crate::cache`]).
pub async fn observe(client: &Client, md: &ModelDeployment) -> Result<Observed, Error> {
    let name = md.name_any();
    let ns = md
        .namespace()
        .ok_or_else(|| Error::MissingNamespace { name: name.clone() })?;
    let key = format!("{ns}/{name}");
    let lp = ListParams::default().labels(&children_selector(&name));

    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns)
        .list(&lp)
        .await
        .map_err(|source| Error::ObserveDeployments {
            md: key.clone(),
            source,
        })?
        .items;
    let revisions = Api::<ControllerRevision>::namespaced(client.clone(), &ns)
        .list(&lp)
        .await
        .map_err(|source| Error::ObserveRevisions {
            md: key.clone(),
            source,
        })?
        .items;

    let service = Api::<Service>::namespaced(client.clone(), &ns)
        .get_opt(&name)
        .await
        .map_err(|source| Error::ObserveService {
            md: key.clone(),
            source,
        })?;
    let pdb = Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns)
        .get_opt(&name)
        .await
        .map_err(|source| Error::ObservePdb {
            md: key.clone(),
            source,
        })?;

    let hpa = Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), &ns)
        .get_opt(&name)
        .await
        .map_err(|source| Error::ObserveHpa {
            md: key.clone(),
            source,
        })?;

    let revision_services = Api::<Service>::namespaced(client.clone(), &ns)
        .list(&lp)
        .await
        .map_err(|source| Error::ObserveService {
            md: key.clone(),
            source,
        })?
        .items
        .into_iter()
        .filter(|s| s.name_any() != name)
        .collect();
    let pods = Api::<Pod>::namespaced(client.clone(), &ns)
        .list(&lp)
        .await
        .map_err(|source| Error::ObservePods {
            md: key.clone(),
            source,
        })?
        .items;
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
        pods.iter(),
        pvc_exists,
    );
    let observed = with_route(client, md, observed).await?;
    Ok(crate::hub::with_resolution(client, md, observed).await)
}

/// `observed` with the `ModelDeployment`'s HTTPRoute, read when it routes with one or per-revision
/// Services remain (the route then has to go too). HTTPRoutes are not watched: the cluster may
/// not have the Gateway API at all, which is what [`Observed::route_api_missing`] says.
pub async fn with_route(
    client: &Client,
    md: &ModelDeployment,
    mut observed: Observed,
) -> Result<Observed, Error> {
    if routing(md).is_none() && observed.revision_services.is_empty() {
        return Ok(observed);
    }
    let ns = md.namespace().unwrap_or_default();
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &http_route_resource());
    match api.get(&md.name_any()).await {
        Ok(route) => observed.route = Some(route),
        // A missing kind answers 404 too, in other words than a missing object.
        Err(kube::Error::Api(status)) if status.code == 404 => {
            observed.route_api_missing = status
                .message
                .contains("could not find the requested resource");
        }
        Err(source) => {
            return Err(Error::ObserveRoute {
                md: format!("{ns}/{}", md.name_any()),
                source,
            })
        }
    }
    Ok(observed)
}

/// The children of one `ModelDeployment`, as read.
pub struct Children {
    /// Its Deployments.
    pub deployments: Vec<Deployment>,
    /// Its ControllerRevisions.
    pub revisions: Vec<ControllerRevision>,
    /// Its Service.
    pub service: Option<Service>,
    /// Its PodDisruptionBudget.
    pub pdb: Option<PodDisruptionBudget>,
    /// Its HorizontalPodAutoscaler.
    pub hpa: Option<HorizontalPodAutoscaler>,
    /// Its per-revision Services (an HTTPRoute's backends).
    pub revision_services: Vec<Service>,
}

/// What was read, in the planner's terms: children sorted by name, and what is wrong with the
/// pods that are not on their way out.
pub fn assemble<'a>(
    children: Children,
    pods: impl Iterator<Item = &'a Pod> + Clone,
    pvc_exists: Option<bool>,
) -> Observed {
    let Children {
        mut deployments,
        mut revisions,
        service,
        pdb,
        hpa,
        mut revision_services,
    } = children;
    revision_services.sort_by_key(|s| s.name_any());
    deployments.sort_by_key(|d| d.name_any());
    revisions.sort_by_key(|r| r.name_any());
    // Pods on their way out say nothing about the revision's health.
    let live = pods.filter(|p| p.metadata.deletion_timestamp.is_none());
    let mut unschedulable: Vec<SchedulingFailure> =
        live.clone().filter_map(scheduling_failure).collect();
    unschedulable.sort_by(|a, b| a.pod.cmp(&b.pod));
    let mut pod_problems: Vec<PodProblem> = live.filter_map(pod_problem).collect();
    pod_problems.sort_by(|a, b| a.pod.cmp(&b.pod));
    Observed {
        deployments,
        revisions,
        service,
        pdb,
        hpa,
        unschedulable,
        pod_problems,
        upgrade_waits: false,
        pvc_exists,
        load: None,
        revision_services,
        route: None,
        route_api_missing: false,
        analysis: None,
        hub_resolution: None,
    }
}

/// Whether the PVC named by `md`'s `pvc` model source exists; `None` for other sources. PVCs
/// are not watched: this is a read each time.
pub async fn pvc_exists(client: &Client, md: &ModelDeployment) -> Result<Option<bool>, Error> {
    let Some(pvc) = &md.spec.model.source.pvc else {
        return Ok(None);
    };
    let ns = md.namespace().unwrap_or_default();
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
        .get_opt(&pvc.claim_name)
        .await
        .map(|found| Some(found.is_some()))
        .map_err(|source| Error::ObservePvc {
            md: format!("{ns}/{}", md.name_any()),
            claim: pvc.claim_name.clone(),
            source,
        })
}
