use kandle_crds::conditions::{self, reasons};
use kandle_crds::Task;

use super::*;
use crate::plan::{rejected, EventKind};
use crate::testing::{md, observed, starting_from};

#[test]
fn a_name_that_cannot_name_the_service_degrades_and_creates_nothing() {
    for name in [
        "a".repeat(64),
        "9lives".to_string(),
        "models.bert".to_string(),
    ] {
        let plan = plan_at(&md(&name).build(), &Observed::default(), 0);
        assert!(
            plan.deployments.is_empty() && plan.revisions.is_empty() && plan.service.is_none(),
            "{name}"
        );
        let degraded = condition(&plan, conditions::DEGRADED);
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", reasons::INVALID_SPEC)
        );
        assert!(
            degraded.message.starts_with("metadata.name"),
            "{}",
            degraded.message
        );
    }
    let longest = "b".repeat(63);
    assert!(!plan_at(&md(&longest).build(), &Observed::default(), 0)
        .deployments
        .is_empty());
}

#[test]
fn a_child_the_api_server_refuses_is_reported_once_and_touches_nothing() {
    let md_now = md("bert").build();
    let planned = plan_at(&md_now, &Observed::default(), 0);
    let refusal = "the API server rejected Deployment bert-0123456789: spec.template.spec.tolerations[1].operator: Unsupported value";
    let report = rejected(&md_now, &planned, refusal, at(0));
    assert!(
        report.deployments.is_empty() && report.revisions.is_empty() && report.delete.is_empty()
    );
    assert_eq!((report.service.clone(), report.pdb.clone()), (None, None));
    let degraded = condition(&report, conditions::DEGRADED);
    assert_eq!(
        (
            degraded.status.as_str(),
            degraded.reason.as_str(),
            degraded.message.as_str()
        ),
        ("True", reasons::INVALID_SPEC, refusal)
    );
    assert_eq!(condition(&report, conditions::PROGRESSING).status, "False");
    assert_eq!(report.events.len(), 1);
    assert_eq!(
        (report.events[0].kind, report.events[0].reason),
        (EventKind::Warning, reasons::INVALID_SPEC)
    );

    let md_after = with_status(&md_now, &report);
    let again = rejected(
        &md_after,
        &plan_at(&md_after, &Observed::default(), 30),
        refusal,
        at(30),
    );
    assert!(
        again.events.is_empty(),
        "the same refusal is not announced twice"
    );
    assert_eq!(
        condition(&again, conditions::DEGRADED).last_transition_time,
        degraded.last_transition_time
    );
}

#[test]
fn a_missing_pvc_degrades_without_touching_the_running_revision() {
    let v1 = md("bert")
        .from_pvc("weights-v1", None)
        .with_replicas(2)
        .build();
    let (md_v1, cluster) = settled(&v1, &observed().with_pvc(true).build(), 0);
    let stable = revision_of(&md_v1);
    let md_v2 = respec(
        &md_v1,
        &md("bert")
            .from_pvc("weights-v2", None)
            .with_replicas(2)
            .build(),
    );
    let cluster = starting_from(&cluster).with_pvc(false).build();

    let plan = plan_at(&md_v2, &cluster, 100);
    assert!(plan.deployments.is_empty() && plan.revisions.is_empty() && plan.delete.is_empty());
    assert_eq!(plan.service, None);
    let degraded = condition(&plan, conditions::DEGRADED);
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", reasons::INVALID_SPEC)
    );
    assert!(
        degraded.message.contains("weights-v2"),
        "{}",
        degraded.message
    );
    assert_eq!(plan.events.len(), 1);
    assert_eq!(
        (plan.events[0].kind, plan.events[0].reason),
        (EventKind::Warning, reasons::INVALID_SPEC)
    );
    assert!(plan.events[0].message.contains("weights-v2"));
    assert_eq!(plan.status.stable_revision, Some(stable));
    assert_eq!(
        condition(&plan, conditions::READY).status,
        "True",
        "the stable revision still serves"
    );

    let again = plan_at(&with_status(&md_v2, &plan), &cluster, 110);
    assert!(
        again.events.is_empty(),
        "the warning is not repeated: {:?}",
        again.events
    );
}

#[test]
fn classification_is_refused_without_touching_the_running_revision() {
    let (md_v1, cluster) = settled(
        &md("bert").with_replicas(2).build(),
        &Observed::default(),
        0,
    );
    let stable = revision_of(&md_v1);
    let md_v2 = respec(
        &md_v1,
        &md("bert")
            .with_replicas(2)
            .with_task(Task::Classification)
            .build(),
    );

    let plan = plan_at(&md_v2, &cluster, 100);
    assert!(plan.deployments.is_empty() && plan.revisions.is_empty() && plan.delete.is_empty());
    assert_eq!((plan.service.clone(), plan.pdb.clone()), (None, None));
    let degraded = condition(&plan, conditions::DEGRADED);
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", reasons::INVALID_SPEC)
    );
    assert!(
        degraded
            .message
            .starts_with("spec.model.task: classification is not served"),
        "{}",
        degraded.message
    );
    let progressing = condition(&plan, conditions::PROGRESSING);
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        ("False", reasons::INVALID_SPEC)
    );
    assert_eq!(
        (
            plan.events.len(),
            plan.events[0].kind,
            plan.events[0].reason
        ),
        (1, EventKind::Warning, reasons::INVALID_SPEC)
    );
    assert_eq!(plan.status.stable_revision, Some(stable));
    assert_eq!(condition(&plan, conditions::READY).status, "True");

    let generation = respec(
        &with_status(&md_v2, &plan),
        &md("bert")
            .with_replicas(2)
            .with_task(Task::Generation)
            .build(),
    );
    let plan = plan_at(&generation, &cluster, 110);
    assert_eq!(
        condition(&plan, conditions::DEGRADED).status,
        "False",
        "a served task clears the refusal"
    );
    assert!(names(&plan).contains(&revision_of(&generation)));
}

#[test]
fn a_missing_pvc_on_creation_creates_nothing() {
    let md = md("bert").from_pvc("nowhere", Some("bert")).build();
    let plan = plan_at(&md, &observed().with_pvc(false).build(), 0);
    assert!(plan.deployments.is_empty() && plan.revisions.is_empty());
    assert_eq!(
        condition(&plan, conditions::DEGRADED).reason,
        reasons::INVALID_SPEC
    );
    assert_eq!(condition(&plan, conditions::READY).status, "False");
}

#[test]
fn unschedulable_pods_degrade_with_the_schedulers_message() {
    let (md_v1, cluster) = settled(
        &md("bert").with_replicas(2).build(),
        &Observed::default(),
        0,
    );
    let stable = revision_of(&md_v1);
    let md_v2 = respec(
        &md_v1,
        &md("bert")
            .with_replicas(2)
            .with_gpu(1, Some("NVIDIA-B200"))
            .build(),
    );
    let rolling = plan_at(&md_v2, &cluster, 100);
    let md_v2 = with_status(&md_v2, &rolling);
    let hash = RevisionSnapshot::of(&md_v2, &config()).hash();
    let message = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.";
    let cluster = starting_from(&cluster)
        .from_plan(&rolling)
        .unschedulable("bert", &hash, message)
        .build();

    let plan = plan_at(&md_v2, &cluster, 110);
    let degraded = condition(&plan, conditions::DEGRADED);
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", reasons::UNSCHEDULABLE)
    );
    assert!(degraded.message.contains(message), "{}", degraded.message);
    assert_eq!(plan.events.len(), 1);
    assert_eq!(
        (plan.events[0].kind, plan.events[0].reason),
        (EventKind::Warning, reasons::UNSCHEDULABLE)
    );
    assert_eq!(
        replicas(&plan, &stable),
        2,
        "the stable revision keeps serving: no node matches, so giving up a pod would not help"
    );
    assert_eq!(plan.status.stable_revision, Some(stable));
    assert!(plan.delete.is_empty());
}

#[test]
fn the_target_revisions_scheduling_failure_is_the_one_reported() {
    let (md_v1, cluster) = settled(&md("bert").build(), &Observed::default(), 0);
    let old_hash = RevisionSnapshot::of(&md_v1, &config()).hash();
    let md_v2 = respec(&md_v1, &md("bert").with_gpu(4, None).build());
    let new_hash = RevisionSnapshot::of(&md_v2, &config()).hash();
    let cluster = starting_from(&cluster)
        .unschedulable(
            "bert",
            &old_hash,
            "0/3 nodes are available: 3 Insufficient memory.",
        )
        .unschedulable(
            "bert",
            &new_hash,
            "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
        )
        .build();
    let plan = plan_at(&md_v2, &cluster, 100);
    let degraded = condition(&plan, conditions::DEGRADED);
    assert!(
        degraded.message.contains("Insufficient nvidia.com/gpu"),
        "{}",
        degraded.message
    );
    assert!(degraded.message.contains(&new_hash), "{}", degraded.message);
}
