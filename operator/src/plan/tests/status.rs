use kandle_crds::conditions::{self, reasons};

use super::*;
use crate::testing::{md, observed, starting_from};

#[test]
fn the_status_describes_the_generation_selector_and_url() {
    let md = md("bert").in_namespace("search").with_generation(4).build();
    let plan = plan_at(&md, &Observed::default(), 0);
    assert_eq!(plan.status.observed_generation, Some(4));
    assert_eq!(
        plan.status.url.as_deref(),
        Some("http://bert.search.svc.cluster.local")
    );
    assert_eq!(
        plan.status.selector.as_deref(),
        Some("kandle.dev/model-deployment=bert,app.kubernetes.io/name=kandle-model")
    );
    assert!(plan
        .status
        .conditions
        .iter()
        .all(|c| c.observed_generation == Some(4)));
    let types: Vec<&str> = plan
        .status
        .conditions
        .iter()
        .map(|c| c.type_.as_str())
        .collect();
    assert_eq!(
        types,
        vec![
            conditions::READY,
            conditions::PROGRESSING,
            conditions::DEGRADED,
            conditions::RECONCILING,
            conditions::STALLED
        ]
    );
}

#[test]
fn replica_counts_add_up_over_live_revisions() {
    let (md_v1, cluster) = settled(
        &md("bert").with_replicas(3).build(),
        &Observed::default(),
        0,
    );
    let md_v2 = respec(
        &md_v1,
        &md("bert").with_replicas(3).with_version("v2").build(),
    );
    let rolling = plan_at(&md_v2, &cluster, 100);
    let new = revision_of(&md_v2);
    let cluster = starting_from(&cluster)
        .from_plan(&rolling)
        .partly_ready(&new, 1)
        .build();
    let plan = plan_at(&with_status(&md_v2, &rolling), &cluster, 110);
    // 3 stable pods and the new revision's one surge pod, which is ready.
    assert_eq!(plan.status.replicas, 4);
    assert_eq!(plan.status.ready_replicas, 4);
    assert_eq!(plan.status.updated_replicas, 1);
    assert_eq!(
        plan.status.ready.as_deref(),
        Some("3/3"),
        "the stable revision serves all replicas"
    );
    assert_eq!(condition(&plan, conditions::READY).status, "True");
}

#[test]
fn the_service_selects_every_live_revision_on_the_named_port() {
    let plan = plan_at(&md("bert").build(), &Observed::default(), 0);
    let service = plan.service.expect("a service");
    assert_eq!(service.metadata.name.as_deref(), Some("bert"));
    let spec = service.spec.expect("spec");
    assert_eq!(
        spec.selector,
        Some(crate::plan::pod_selector_labels("bert"))
    );
    let port = &spec.ports.expect("ports")[0];
    assert_eq!((port.port, port.name.as_deref()), (80, Some("http")));
    assert_eq!(
        port.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("http".into()))
    );
}

#[test]
fn transition_times_hold_while_a_condition_keeps_its_status() {
    let md = md("bert").build();
    let first = plan_at(&md, &Observed::default(), 0);
    let md = with_status(&md, &first);
    let cluster = observed().from_plan(&first).build();
    let later = plan_at(&md, &cluster, 60);
    assert_eq!(first.status.conditions, later.status.conditions);

    let ready = plan_at(&md, &starting_from(&cluster).all_available().build(), 120);
    let before = condition(&first, conditions::READY);
    let after = condition(&ready, conditions::READY);
    assert_eq!(
        (after.status.as_str(), after.reason.as_str()),
        ("True", reasons::AVAILABLE)
    );
    assert!(after.last_transition_time > before.last_transition_time);
    assert_eq!(
        condition(&ready, conditions::DEGRADED).last_transition_time,
        condition(&first, conditions::DEGRADED).last_transition_time
    );
}
