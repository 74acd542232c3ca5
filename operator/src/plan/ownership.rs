//! Ownership: kandle only changes or deletes what this `ModelDeployment` controls (an owner
//! reference with `controller: true` and its UID). Labelled objects it does not control are left
//! out of the view the planner works from, and an object in the way of one kandle must write (a
//! Service, PodDisruptionBudget or HorizontalPodAutoscaler of the same name made by
//! someone else) is reported, never
//! adopted.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kandle_crds::ModelDeployment;
use kube::{Resource, ResourceExt};

use crate::observe::Observed;

/// Whether `meta` names `md` as its controller.
pub fn controlled_by(meta: &ObjectMeta, md: &ModelDeployment) -> bool {
    let uid = md.uid();
    meta.owner_references.iter().flatten().any(|owner| {
        owner.controller == Some(true)
            && owner.kind == ModelDeployment::kind(&())
            && owner.name == md.name_any()
            && uid.as_deref().is_none_or(|uid| owner.uid == uid)
    })
}

/// What the planner may act on, and what stands in the way.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnedView {
    /// The observed state with only the children `md` controls.
    pub observed: Observed,
    /// A Service of the `ModelDeployment`'s name exists and belongs to someone else.
    pub service_taken: bool,
    /// A PodDisruptionBudget of the `ModelDeployment`'s name exists and belongs to someone else.
    pub pdb_taken: bool,
    /// A HorizontalPodAutoscaler of the `ModelDeployment`'s name exists and belongs to someone
    /// else.
    pub hpa_taken: bool,
    /// An HTTPRoute of the `ModelDeployment`'s name exists and belongs to someone else.
    pub route_taken: bool,
    /// Labelled Deployments, ControllerRevisions and per-revision Services `md` does not
    /// control, by name.
    pub foreign: Vec<String>,
}

impl OwnedView {
    /// Whether kandle may write the child named `name` (of any kind).
    pub fn may_write(&self, md: &ModelDeployment, name: &str) -> bool {
        let own_name = name == md.name_any();
        !self.foreign.iter().any(|f| f == name)
            && !(own_name
                && (self.service_taken || self.pdb_taken || self.hpa_taken || self.route_taken))
    }

    /// The complaint for `Degraded`, if anything stands in the way of `target` (the revision
    /// of the current spec) or of the Service and PodDisruptionBudget.
    pub fn conflict(&self, md: &ModelDeployment, target: &str) -> Option<String> {
        let name = md.name_any();
        let mut taken = Vec::new();
        if self.foreign.iter().any(|f| f == target) {
            taken.push(format!("Deployment or ControllerRevision {target:?}"));
        }
        if self.service_taken {
            taken.push(format!("Service {name:?}"));
        }
        if self.pdb_taken {
            taken.push(format!("PodDisruptionBudget {name:?}"));
        }
        if self.hpa_taken {
            taken.push(format!("HorizontalPodAutoscaler {name:?}"));
        }
        if self.route_taken {
            taken.push(format!("HTTPRoute {name:?}"));
        }
        if taken.is_empty() {
            return None;
        }
        Some(format!(
            "{} already exists and is not controlled by this ModelDeployment; kandle does not \
             adopt it: delete or rename it, or rename the ModelDeployment",
            taken.join(" and ")
        ))
    }
}

/// Splits `observed` into what `md` controls and what it does not.
pub fn owned_view(md: &ModelDeployment, observed: &Observed) -> OwnedView {
    let mut view = observed.clone();
    let mut foreign: Vec<String> = observed
        .deployments
        .iter()
        .filter(|d| !controlled_by(&d.metadata, md))
        .map(|d| d.name_any())
        .chain(
            observed
                .revisions
                .iter()
                .filter(|r| !controlled_by(&r.metadata, md))
                .map(|r| r.name_any()),
        )
        .chain(
            observed
                .revision_services
                .iter()
                .filter(|s| !controlled_by(&s.metadata, md))
                .map(|s| s.name_any()),
        )
        .collect();
    foreign.sort();
    foreign.dedup();
    view.deployments.retain(|d| controlled_by(&d.metadata, md));
    view.revisions.retain(|r| controlled_by(&r.metadata, md));
    view.revision_services
        .retain(|s| controlled_by(&s.metadata, md));
    let service_taken = take_if_foreign(&mut view.service, md);
    let pdb_taken = take_if_foreign(&mut view.pdb, md);
    let hpa_taken = take_if_foreign(&mut view.hpa, md);
    let route_taken = take_if_foreign(&mut view.route, md);
    OwnedView {
        route_taken,
        observed: view,
        service_taken,
        pdb_taken,
        hpa_taken,
        foreign,
    }
}

/// Whether `child` exists and someone else controls it; such a child is taken out of the view.
fn take_if_foreign<K: Resource>(child: &mut Option<K>, md: &ModelDeployment) -> bool {
    let foreign = child.as_ref().is_some_and(|c| !controlled_by(c.meta(), md));
    if foreign {
        *child = None;
    }
    foreign
}
