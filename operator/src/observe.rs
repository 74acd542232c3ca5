//! Reads what the cluster holds for one `ModelDeployment`: its labelled children, its pods'
//! scheduling failures and whether the PVC of its model source exists. Reading only; all
//! judgement is left to [`crate::plan`].

use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kandle_crds::{labels, ModelDeployment};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use crate::error::Error;

/// A pod of the `ModelDeployment` that the scheduler could not place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulingFailure {
    /// Pod name.
    pub pod: String,
    /// The pod's `kandle.dev/revision` label, if any.
    pub revision: Option<String>,
    /// The scheduler's message, e.g. `0/3 nodes are available: 3 Insufficient nvidia.com/gpu.`
    pub message: String,
}

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
    /// Pods the scheduler marked `PodScheduled=False` with reason `Unschedulable`, sorted by pod.
    pub unschedulable: Vec<SchedulingFailure>,
    /// Whether the PVC named by a `pvc` model source exists; `None` when the source is not a
    /// PVC.
    pub pvc_exists: Option<bool>,
}

/// The label selector of every child (and pod) of the named `ModelDeployment`.
pub fn children_selector(md_name: &str) -> String {
    format!("{}={md_name}", labels::MODEL_DEPLOYMENT)
}

/// Reads the children, pods and PVC of `md` from its namespace.
pub async fn observe(client: &Client, md: &ModelDeployment) -> Result<Observed, Error> {
    let name = md.name_any();
    let ns = md
        .namespace()
        .ok_or_else(|| Error::MissingNamespace { name: name.clone() })?;
    let key = format!("{ns}/{name}");
    let lp = ListParams::default().labels(&children_selector(&name));

    let mut deployments = Api::<Deployment>::namespaced(client.clone(), &ns)
        .list(&lp)
        .await
        .map_err(|source| Error::ObserveDeployments {
            md: key.clone(),
            source,
        })?
        .items;
    deployments.sort_by_key(|d| d.name_any());

    let mut revisions = Api::<ControllerRevision>::namespaced(client.clone(), &ns)
        .list(&lp)
        .await
        .map_err(|source| Error::ObserveRevisions {
            md: key.clone(),
            source,
        })?
        .items;
    revisions.sort_by_key(|r| r.name_any());

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

    let pods = Api::<Pod>::namespaced(client.clone(), &ns)
        .list(&lp)
        .await
        .map_err(|source| Error::ObservePods {
            md: key.clone(),
            source,
        })?
        .items;
    let mut unschedulable: Vec<SchedulingFailure> =
        pods.iter().filter_map(scheduling_failure).collect();
    unschedulable.sort_by(|a, b| a.pod.cmp(&b.pod));

    let pvc_exists = match &md.spec.model.source.pvc {
        Some(pvc) => Some(
            Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
                .get_opt(&pvc.claim_name)
                .await
                .map_err(|source| Error::ObservePvc {
                    md: key.clone(),
                    claim: pvc.claim_name.clone(),
                    source,
                })?
                .is_some(),
        ),
        None => None,
    };

    Ok(Observed {
        deployments,
        revisions,
        service,
        pdb,
        unschedulable,
        pvc_exists,
    })
}

/// The scheduler's complaint about a pod, if it could not be scheduled.
pub fn scheduling_failure(pod: &Pod) -> Option<SchedulingFailure> {
    let condition = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")?;
    if condition.status != "False" || condition.reason.as_deref() != Some("Unschedulable") {
        return None;
    }
    Some(SchedulingFailure {
        pod: pod.name_any(),
        revision: pod.labels().get(labels::REVISION).cloned(),
        message: condition
            .message
            .clone()
            .unwrap_or_else(|| "no message from the scheduler".into()),
    })
}
