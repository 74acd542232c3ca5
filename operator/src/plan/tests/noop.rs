//! Writes that change nothing are left out: children the cluster holds as planned, a status
//! already written.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;

use super::plan_at;
use crate::observe::Observed;
use crate::plan::{without_no_ops, Plan, APPLIED_HASH};
use crate::testing::{md, observed, starting_from};

/// The first pass of `md` applied, then the cluster as it holds it (available, with the
/// status written): what the second pass sees.
fn converged(m: &kandle_crds::ModelDeployment) -> (kandle_crds::ModelDeployment, Observed) {
    let first = without_no_ops(plan_at(m, &observed().build(), 0), m, &observed().build());
    let seen = observed().from_plan(&first).all_available().build();
    let second = without_no_ops(plan_at(m, &seen, 1), m, &seen);
    let seen = starting_from(&seen).from_plan(&second).build();
    let mut m = m.clone();
    m.status = Some(second.status);
    (m, seen)
}

fn writes(plan: &Plan) -> usize {
    plan.deployments.len()
        + plan.revisions.len()
        + usize::from(plan.service.is_some())
        + usize::from(plan.pdb.is_some())
        + plan.revision_services.len()
        + usize::from(plan.route.is_some())
        + plan.delete.len()
        + usize::from(plan.write_status)
}

fn deployment_mut(seen: &mut Observed) -> &mut Deployment {
    seen.deployments.first_mut().expect("a Deployment")
}

#[test]
fn a_converged_model_deployment_needs_no_write() {
    let m = md("minilm").with_replicas(2).build();
    let (m, seen) = converged(&m);
    let plan = without_no_ops(plan_at(&m, &seen, 60), &m, &seen);
    assert_eq!(writes(&plan), 0, "{plan:#?}");
}

#[test]
fn a_converged_model_deployment_with_an_http_route_needs_no_write() {
    let m = md("minilm")
        .with_replicas(2)
        .with_http_route("public")
        .build();
    let (m, seen) = converged(&m);
    assert!(seen.route.is_some() && seen.revision_services.len() == 1);
    let plan = without_no_ops(plan_at(&m, &seen, 60), &m, &seen);
    assert_eq!(writes(&plan), 0, "{plan:#?}");
}

#[test]
fn every_written_child_carries_the_hash_of_what_was_planned() {
    let m = md("minilm").build();
    let plan = without_no_ops(plan_at(&m, &observed().build(), 0), &m, &observed().build());
    assert!(plan.write_status);
    let deployment = plan.deployments.first().expect("a Deployment");
    assert_eq!(
        deployment.annotations().get(APPLIED_HASH).map(String::len),
        Some(16)
    );
    assert!(plan
        .service
        .as_ref()
        .is_some_and(|s| s.annotations().contains_key(APPLIED_HASH)));
}

#[test]
fn defaults_and_fields_others_set_do_not_count() {
    let m = md("minilm").build();
    let (m, mut seen) = converged(&m);
    let d = deployment_mut(&mut seen);
    d.annotations_mut()
        .insert("deployment.kubernetes.io/revision".into(), "1".into());
    let spec = d.spec.as_mut().expect("spec");
    spec.progress_deadline_seconds = Some(600);
    spec.template.spec.as_mut().expect("pod spec").dns_policy = Some("ClusterFirst".into());
    let plan = without_no_ops(plan_at(&m, &seen, 60), &m, &seen);
    assert_eq!(writes(&plan), 0, "{plan:#?}");
}

#[test]
fn a_hand_edited_field_is_written_back() {
    let m = md("minilm").build();
    let (m, mut seen) = converged(&m);
    let containers = &mut deployment_mut(&mut seen)
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .expect("pod spec")
        .containers;
    containers[0].image = Some("someone/else:latest".into());
    let plan = without_no_ops(plan_at(&m, &seen, 60), &m, &seen);
    assert_eq!(plan.deployments.len(), 1);
    assert!(plan.write_status, "the status write guards the child's");
}

#[test]
fn a_field_the_plan_no_longer_sets_is_noticed_by_the_hash() {
    let m = md("minilm").build();
    let (m, mut seen) = converged(&m);
    // Held with a label the plan does not set (as if an older plan had set it), and an older
    // hash.
    let d = deployment_mut(&mut seen);
    d.labels_mut().insert("team".into(), "search".into());
    d.annotations_mut()
        .insert(APPLIED_HASH.into(), "0000000000000000".into());
    let plan = without_no_ops(plan_at(&m, &seen, 60), &m, &seen);
    assert_eq!(plan.deployments.len(), 1);
}

#[test]
fn amounts_written_another_way_are_the_same_amounts() {
    let m = md("minilm").with_requests("0.5", "1024Mi").build();
    let (m, mut seen) = converged(&m);
    let container = &mut deployment_mut(&mut seen)
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .expect("pod spec")
        .containers[0];
    let requests = container
        .resources
        .as_mut()
        .and_then(|r| r.requests.as_mut())
        .expect("requests");
    // As the API server canonicalises them.
    requests.insert("cpu".into(), Quantity("500m".into()));
    requests.insert("memory".into(), Quantity("1Gi".into()));
    let plan = without_no_ops(plan_at(&m, &seen, 60), &m, &seen);
    assert_eq!(writes(&plan), 0, "{plan:#?}");

    let requests = deployment_mut(&mut seen)
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .and_then(|p| p.containers[0].resources.as_mut())
        .and_then(|r| r.requests.as_mut())
        .expect("requests");
    requests.insert("cpu".into(), Quantity("600m".into()));
    let plan = without_no_ops(plan_at(&m, &seen, 60), &m, &seen);
    assert_eq!(plan.deployments.len(), 1);
}

#[test]
fn a_changed_status_is_written_alone() {
    let m = md("minilm").build();
    let (mut m, seen) = converged(&m);
    if let Some(status) = m.status.as_mut() {
        status.ready_replicas = 0;
    }
    let plan = without_no_ops(plan_at(&m, &seen, 60), &m, &seen);
    assert!(plan.write_status);
    assert_eq!(writes(&plan), 1, "{plan:#?}");
}
