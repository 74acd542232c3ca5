//! The autoscaler's decision sizes the revisions and shows in `status.autoscaling`.

use std::time::Duration;

use kandle_crds::AutoscalingMetric;

use super::*;
use crate::autoscale::{reasons, History, Sample, Windows};
use crate::plan::HPA_REASON;
use crate::testing::{md, observed, starting_from};

/// A history of `seconds` samples of `load` over `ready` replicas, ending at `at(end)`.
fn load(load: f64, ready: i32, end: i64, seconds: i64) -> History {
    let mut history = History::default();
    for s in end - seconds..=end {
        let sample = Sample {
            at: at(s),
            total: load,
            ready,
        };
        history.record(sample, &Windows::default(), Duration::from_secs(600));
    }
    history
}

#[test]
fn without_metrics_the_bounds_size_the_deployment() {
    let md = md("bert").with_replicas(1).with_autoscaling(2, 10).build();
    let plan = plan_at(&md, &Observed::default(), 0);
    assert_eq!(replicas(&plan, &revision_of(&md)), 2);
    let status = plan.status.autoscaling.expect("an autoscaling status");
    assert_eq!(status.desired_replicas, 2);
    assert_eq!(status.reason, reasons::NO_METRICS);
    assert_eq!(plan.status.ready.as_deref(), Some("0/2"));
}

#[test]
fn load_sizes_the_serving_revision_and_the_status_says_why() {
    let md = md("bert").with_autoscaling(2, 10).build();
    let first = plan_at(&md, &Observed::default(), 0);
    let cluster = observed().from_plan(&first).all_available().build();
    let md = crate::testing::md("bert")
        .with_autoscaling(2, 10)
        .with_status(first.status.clone())
        .build();
    let loaded = Observed {
        load: Some(load(40.0, 2, 100, 100)),
        ..cluster
    };
    let plan = plan_at(&md, &loaded, 100);
    assert_eq!(
        replicas(&plan, &revision_of(&md)),
        5,
        "40 in flight at 8 each"
    );
    let status = plan
        .status
        .autoscaling
        .clone()
        .expect("an autoscaling status");
    assert_eq!(status.desired_replicas, 5);
    assert_eq!(status.value, Some(40.0));
    assert_eq!(status.ready_replicas, 2);
    assert_eq!(
        status.last_scale_time,
        Some(crate::plan::kube_time(at(100)))
    );
    assert!(
        status.message.contains("scaling 2 -> 5"),
        "{}",
        status.message
    );
    assert_eq!(plan.status.ready.as_deref(), Some("2/5"));
    let why = status
        .last_scale_reason
        .clone()
        .expect("why it last scaled");
    assert!(why.starts_with("Panic: "), "{why}");

    // A later steady pass keeps the time and the reason of that change.
    let md = crate::testing::md("bert")
        .with_autoscaling(2, 10)
        .with_status(plan.status.clone())
        .build();
    let steady = Observed {
        load: Some(load(40.0, 5, 101, 101)),
        ..observed().from_plan(&plan).all_available().build()
    };
    let later = plan_at(&md, &steady, 101)
        .status
        .autoscaling
        .expect("a status");
    assert_eq!(later.desired_replicas, 5);
    assert_eq!(later.reason, reasons::STEADY);
    assert_eq!(later.last_scale_time, status.last_scale_time);
    assert_eq!(later.last_scale_reason, Some(why));
}

#[test]
fn a_paused_deployment_is_not_scaled() {
    let md = md("bert").with_autoscaling(2, 10).build();
    let first = plan_at(&md, &Observed::default(), 0);
    let cluster = starting_from(&observed().from_plan(&first).build())
        .all_available()
        .build();
    let paused = crate::testing::md("bert")
        .with_autoscaling(2, 10)
        .paused()
        .with_status(first.status.clone())
        .build();
    let loaded = Observed {
        load: Some(load(80.0, 2, 100, 100)),
        ..cluster
    };
    let plan = plan_at(&paused, &loaded, 100);
    assert!(plan.deployments.is_empty());
    assert_eq!(plan.status.autoscaling, first.status.autoscaling);
}

#[test]
fn cpu_leaves_the_count_to_a_horizontal_pod_autoscaler() {
    let mut md = md("bert").with_replicas(3).with_autoscaling(2, 10).build();
    if let Some(a) = md.spec.autoscaling.as_mut() {
        a.metric = AutoscalingMetric::Cpu;
    }
    let loaded = Observed {
        load: Some(load(80.0, 2, 100, 100)),
        ..Observed::default()
    };
    let plan = plan_at(&md, &loaded, 100);
    assert_eq!(replicas(&plan, &revision_of(&md)), 3);
    let status = plan
        .status
        .autoscaling
        .clone()
        .expect("an autoscaling status");
    assert_eq!(status.reason, HPA_REASON);
    assert_eq!(status.desired_replicas, 3);

    let hpa = plan.hpa.clone().expect("an HPA");
    let spec = hpa.spec.expect("spec");
    assert_eq!(spec.scale_target_ref.kind, "ModelDeployment");
    assert_eq!(spec.scale_target_ref.name, "bert");
    assert_eq!(
        spec.scale_target_ref.api_version.as_deref(),
        Some("kandle.dev/v1alpha1")
    );
    assert_eq!((spec.min_replicas, spec.max_replicas), (Some(2), 10));
    let metric = &spec.metrics.expect("metrics")[0];
    let target = &metric.resource.as_ref().expect("a resource metric").target;
    assert_eq!(target.average_utilization, Some(8));
    let behavior = spec.behavior.expect("behavior");
    let window = |rules: Option<k8s_openapi::api::autoscaling::v2::HPAScalingRules>| {
        rules.and_then(|r| r.stabilization_window_seconds)
    };
    assert_eq!(window(behavior.scale_up), Some(0));
    assert_eq!(window(behavior.scale_down), Some(300));

    // Back to a runtime metric: the HPA goes, and kandle decides again.
    let cluster = observed().from_plan(&plan).build();
    let concurrency = crate::testing::md("bert")
        .with_replicas(3)
        .with_autoscaling(2, 10)
        .with_status(plan.status.clone())
        .build();
    let next = plan_at(&concurrency, &cluster, 110);
    assert!(next.hpa.is_none());
    assert!(next
        .delete
        .iter()
        .any(|c| c.kind == crate::plan::ChildKind::HorizontalPodAutoscaler && c.name == "bert"));
    let status = next.status.autoscaling.expect("an autoscaling status");
    assert_eq!(
        (status.desired_replicas, status.reason.as_str()),
        (3, reasons::NO_METRICS)
    );
}

#[test]
fn removing_autoscaling_clears_its_status_and_spec_replicas_rule_again() {
    let md = md("bert").with_autoscaling(2, 10).build();
    let first = plan_at(&md, &Observed::default(), 0);
    let plain = crate::testing::md("bert")
        .with_replicas(1)
        .with_status(first.status.clone())
        .build();
    let plan = plan_at(&plain, &Observed::default(), 10);
    assert_eq!(plan.status.autoscaling, None);
    assert_eq!(replicas(&plan, &revision_of(&plain)), 1);
}

#[test]
fn ready_pods_of_someone_elses_deployment_do_not_count() {
    let asked = md("bert").with_autoscaling(1, 10).build();
    let mut status = plan_at(&asked, &Observed::default(), 0).status;
    if let Some(a) = status.autoscaling.as_mut() {
        a.desired_replicas = 4;
    }
    let md = crate::testing::md("bert")
        .with_autoscaling(1, 10)
        .with_status(status)
        .build();
    let four = plan_at(&md, &Observed::default(), 0);
    assert_eq!(replicas(&four, &revision_of(&md)), 4);
    let mut stray = observed()
        .from_plan(&plan_at(
            &crate::testing::md("bert").with_version("v0").build(),
            &Observed::default(),
            0,
        ))
        .all_available()
        .build()
        .deployments
        .remove(0);
    stray.metadata.owner_references = None;
    if let Some(s) = stray.status.as_mut() {
        s.ready_replicas = Some(2);
    }
    let cluster = observed()
        .from_plan(&four)
        .partly_ready(&revision_of(&md), 2)
        .with_deployment(stray)
        .build();
    let quiet = Observed {
        load: Some(load(0.0, 2, 400, 400)),
        ..cluster
    };
    let status = plan_at(&md, &quiet, 400)
        .status
        .autoscaling
        .expect("a status");
    assert_eq!(
        (status.desired_replicas, status.reason.as_str()),
        (4, reasons::WAITING_FOR_PODS),
        "2 of its own 4 replicas are ready: {}",
        status.message
    );
}
