//! What real clusters do to a rollout: pods that crash, images that cannot be pulled, model
//! fetches that fail, no room on the nodes, a deadline that runs out, objects that belong to
//! someone else.

use k8s_openapi::api::core::v1::Service;
use kandle_crds::conditions::{self, reasons};
use kandle_crds::RevisionOutcome;

use super::*;
use crate::observe::ProblemKind;
use crate::testing::{md, starting_from};

#[test]
fn a_crash_looping_revision_is_degraded_with_its_last_words_and_the_stable_keeps_serving() {
    let (md_v2, cluster, old, new) = rolling_v2(2);
    let cluster = starting_from(&cluster)
        .failing(
            "bert",
            hash_of(&new),
            ProblemKind::CrashLoop,
            "exited with code 1: error: no model.safetensors",
        )
        .build();
    let plan = plan_at(&md_v2, &cluster, 110);
    let degraded = condition(&plan, conditions::DEGRADED);
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", reasons::CRASH_LOOP)
    );
    assert!(
        degraded
            .message
            .starts_with(&format!("revision {new}: container kandle-runtime"))
            && degraded.message.contains("no model.safetensors"),
        "{}",
        degraded.message
    );
    assert_eq!(condition(&plan, conditions::PROGRESSING).status, "True");
    assert_eq!(replicas(&plan, &old), 2, "the stable revision is untouched");
    assert_eq!(plan.status.stable_revision, Some(old));
    assert_eq!(reasons(&plan), vec![reasons::CRASH_LOOP]);
}

#[test]
fn image_and_fetch_failures_have_their_own_reasons() {
    for (kind, reason) in [
        (ProblemKind::ImagePull, reasons::IMAGE_PULL_FAILED),
        (ProblemKind::InitFailed, reasons::MODEL_FETCH_FAILED),
    ] {
        let (md_v2, cluster, _, new) = rolling_v2(1);
        let cluster = starting_from(&cluster)
            .failing("bert", hash_of(&new), kind, "it failed")
            .build();
        let plan = plan_at(&md_v2, &cluster, 110);
        assert_eq!(condition(&plan, conditions::DEGRADED).reason, reason);
    }
}

#[test]
fn the_same_complaint_in_new_words_is_not_announced_again() {
    let (md_v2, cluster, _, new) = rolling_v2(1);
    let failing = |restarts: &str| {
        starting_from(&cluster)
            .failing("bert", hash_of(&new), ProblemKind::CrashLoop, restarts)
            .build()
    };
    let first = plan_at(&md_v2, &failing("back-off 10s"), 110);
    assert_eq!(reasons(&first), vec![reasons::CRASH_LOOP]);
    let md_v2 = with_status(&md_v2, &first);
    let again = plan_at(&md_v2, &failing("back-off 20s"), 140);
    assert!(again.events.is_empty(), "{:?}", again.events);
    assert!(condition(&again, conditions::DEGRADED)
        .message
        .contains("back-off 20s"));
}

#[test]
fn past_the_progress_deadline_the_new_revision_is_given_up_and_the_stable_restored() {
    let (md_v2, cluster, old, new) = rolling_v2(2);
    let cluster = starting_from(&cluster)
        .failing(
            "bert",
            hash_of(&new),
            ProblemKind::CrashLoop,
            "exited with code 1",
        )
        .build();
    let before = plan_at(&md_v2, &cluster, 100 + 599);
    assert_eq!(condition(&before, conditions::PROGRESSING).status, "True");

    let plan = plan_at(&md_v2, &cluster, 100 + 600);
    assert_eq!(replicas(&plan, &new), 0, "its pods stop holding resources");
    assert_eq!(replicas(&plan, &old), 2);
    assert_eq!(plan.status.stable_revision, Some(old.clone()));
    assert_eq!(plan.status.canary_revision, None);
    let progressing = condition(&plan, conditions::PROGRESSING);
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        ("False", reasons::PROGRESS_DEADLINE_EXCEEDED)
    );
    let degraded = condition(&plan, conditions::DEGRADED);
    assert_eq!(degraded.reason, reasons::PROGRESS_DEADLINE_EXCEEDED);
    assert!(
        degraded.message.contains("600s") && degraded.message.contains("exited with code 1"),
        "{}",
        degraded.message
    );
    let outcome = |plan: &Plan| {
        plan.status
            .history
            .iter()
            .find(|r| r.revision == new)
            .map(|r| r.outcome)
    };
    assert_eq!(outcome(&plan), Some(RevisionOutcome::Failed));

    // It stays given up, quietly, even once the pods are gone.
    let md_v2 = with_status(&md_v2, &plan);
    let cluster = starting_from(&cluster).from_plan(&plan).build();
    let mut quiet = cluster.clone();
    quiet.pod_problems.clear();
    let later = plan_at(&md_v2, &quiet, 2000);
    assert_eq!(replicas(&later, &new), 0);
    assert_eq!(outcome(&later), Some(RevisionOutcome::Failed));
    assert!(later.events.is_empty(), "{:?}", later.events);
}

#[test]
fn a_first_revision_past_its_deadline_keeps_trying() {
    let md = md("bert").with_replicas(2).build();
    let first = plan_at(&md, &Observed::default(), 0);
    let md = with_status(&md, &first);
    let cluster = crate::testing::observed().from_plan(&first).build();
    let plan = plan_at(&md, &cluster, 600);
    let target = revision_of(&md);
    assert_eq!(replicas(&plan, &target), 2);
    let degraded = condition(&plan, conditions::DEGRADED);
    assert_eq!(degraded.reason, reasons::PROGRESS_DEADLINE_EXCEEDED);
    assert!(
        degraded.message.contains("keeps trying"),
        "{}",
        degraded.message
    );
}

#[test]
fn pods_waiting_for_room_are_degraded_only_after_the_grace_period() {
    let (md_v2, cluster, old, new) = rolling_v2(2);
    let message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.";
    let cluster = starting_from(&cluster)
        .unschedulable_since("bert", hash_of(&new), message, at(100))
        .build();
    let waiting = plan_at(&md_v2, &cluster, 100 + 299);
    assert_eq!(condition(&waiting, conditions::DEGRADED).status, "False");
    let progressing = condition(&waiting, conditions::PROGRESSING);
    assert_eq!(progressing.reason, reasons::WAITING_FOR_CAPACITY);
    assert!(
        progressing.message.contains(message),
        "{}",
        progressing.message
    );
    assert!(
        waiting.waiting,
        "looked at again until the grace period ends"
    );
    // No room: one old pod makes room for a new one (maxUnavailable 1).
    assert_eq!((replicas(&waiting, &new), replicas(&waiting, &old)), (2, 1));

    let late = plan_at(&md_v2, &cluster, 100 + 300);
    let degraded = condition(&late, conditions::DEGRADED);
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", reasons::UNSCHEDULABLE)
    );
    assert_eq!(reasons(&late), vec![reasons::UNSCHEDULABLE]);
}

#[test]
fn with_max_unavailable_zero_a_full_cluster_waits_for_room() {
    let (md_v1, cluster) = settled(
        &md("bert").with_replicas(2).with_budget(1, 0).build(),
        &Observed::default(),
        0,
    );
    let old = revision_of(&md_v1);
    let md_v2 = respec(
        &md_v1,
        &md("bert")
            .with_replicas(2)
            .with_budget(1, 0)
            .with_version("v2")
            .build(),
    );
    let new = revision_of(&md_v2);
    let cluster = starting_from(&cluster)
        .unschedulable(
            "bert",
            hash_of(&new),
            "0/1 nodes are available: 1 Insufficient cpu.",
        )
        .build();
    let plan = plan_at(&md_v2, &cluster, 100);
    assert_eq!((replicas(&plan, &new), replicas(&plan, &old)), (1, 2));
}

#[test]
fn objects_of_someone_else_are_never_adopted_or_deleted() {
    let md_v1 = md("bert").with_replicas(2).build();
    let mut cluster = Observed::default();
    let mut foreign_service = Service::default();
    foreign_service.metadata.name = Some("bert".into());
    cluster.service = Some(foreign_service);
    let mut stray = crate::testing::observed()
        .from_plan(&plan_at(
            &md("bert").with_version("v0").build(),
            &cluster,
            0,
        ))
        .build()
        .deployments
        .remove(0);
    stray.metadata.owner_references = None;
    cluster.deployments.push(stray.clone());

    let plan = plan_at(&md_v1, &cluster, 10);
    assert_eq!(
        plan.service, None,
        "the Service of that name is not taken over"
    );
    assert!(plan.delete.is_empty(), "{:?}", plan.delete);
    assert!(!names(&plan).contains(&stray.name_any()));
    assert!(plan
        .deployments
        .iter()
        .any(|d| d.name_any() == revision_of(&md_v1)));
    let degraded = condition(&plan, conditions::DEGRADED);
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", reasons::NOT_OWNED)
    );
    assert!(
        degraded.message.contains("Service \"bert\""),
        "{}",
        degraded.message
    );
}

#[test]
fn the_disruption_budget_covers_the_serving_revision_and_never_blocks_on_unready_pods() {
    let (md_v2, cluster, old, _) = rolling_v2(3);
    let plan = plan_at(&md_v2, &cluster, 110);
    let pdb = plan.pdb.expect("a budget for 3 replicas");
    let spec = pdb.spec.expect("a spec");
    assert_eq!(
        spec.unhealthy_pod_eviction_policy.as_deref(),
        Some("AlwaysAllow")
    );
    let selector = spec.selector.and_then(|s| s.match_labels).expect("labels");
    assert_eq!(
        selector
            .get(kandle_crds::labels::REVISION)
            .map(String::as_str),
        Some(hash_of(&old))
    );
}

#[test]
fn host_paths_are_refused_unless_the_operator_allows_their_folder() {
    let md = md("bert").from_host_path("/etc").build();
    for allowed in [
        vec![],
        vec!["/var/lib/models".to_string()],
        vec!["/et".to_string()],
    ] {
        let config = OperatorConfig {
            allowed_host_paths: allowed.clone(),
            ..OperatorConfig::default()
        };
        let plan = plan(&md, &Observed::default(), at(0), &config);
        assert!(plan.deployments.is_empty(), "{allowed:?}");
        let degraded = condition(&plan, conditions::DEGRADED);
        assert_eq!(degraded.reason, reasons::INVALID_SPEC);
        assert!(degraded.message.starts_with("spec.model.source.hostPath"));
    }
    let climbing = md_with_path("/var/lib/models/../../etc");
    assert!(plan_at(&climbing, &Observed::default(), 0)
        .deployments
        .is_empty());
    let inside = md_with_path("/var/lib/models/bert");
    assert!(!plan_at(&inside, &Observed::default(), 0)
        .deployments
        .is_empty());
}

fn md_with_path(path: &str) -> ModelDeployment {
    md("bert").from_host_path(path).build()
}

#[test]
fn an_old_revision_is_rescaled_as_rendered_not_as_the_server_filled_it_in() {
    let (md_v2, mut cluster, old, _) = rolling_v2(2);
    for deployment in cluster
        .deployments
        .iter_mut()
        .filter(|d| d.name_any() == old)
    {
        let spec = deployment.spec.as_mut().expect("a spec");
        spec.min_ready_seconds = Some(0);
        if let Some(pod) = spec.template.spec.as_mut() {
            pod.dns_policy = Some("ClusterFirst".into());
        }
    }
    let plan = plan_at(&md_v2, &cluster, 110);
    let stable = deployment(&plan, &old);
    let spec = stable.spec.as_ref().expect("a spec");
    assert_eq!(spec.min_ready_seconds, None);
    assert_eq!(pod_spec(stable).dns_policy, None);
}

#[test]
fn a_revision_whose_record_could_not_be_written_keeps_its_number() {
    let md = md("bert").build();
    let first = plan_at(&md, &Observed::default(), 0);
    let md = with_status(&md, &first);
    // The ControllerRevision write failed: nothing is observed, the status was written.
    let again = plan_at(&md, &Observed::default(), 1);
    let numbers: Vec<i64> = again.status.history.iter().map(|r| r.number).collect();
    assert_eq!(numbers, vec![1]);
    assert_eq!(again.status, with_status(&md, &first).status.unwrap());
}

#[test]
fn a_child_the_api_server_refused_is_not_applied_again_until_the_spec_changes() {
    let (md_v1, cluster) = settled(&md("bert").build(), &Observed::default(), 0);
    let md_v2 = respec(&md_v1, &md("bert").with_version("v2").build());
    let planned = plan_at(&md_v2, &cluster, 100);
    let refusal = format!(
        "{}Deployment bert-x: spec.template: Invalid value",
        crate::plan::REJECTED_PREFIX
    );
    let report = crate::plan::rejected(&md_v2, &planned, &refusal, at(100));
    let md_v2 = with_status(&md_v2, &report);

    let next = plan_at(&md_v2, &cluster, 110);
    assert!(next.deployments.is_empty() && next.revisions.is_empty());
    assert_eq!(
        next.status.conditions, report.status.conditions,
        "no flip-flop"
    );
    assert!(next.events.is_empty());

    let fixed = respec(&md_v2, &md("bert").with_version("v3").build());
    assert!(!plan_at(&fixed, &cluster, 120).deployments.is_empty());
}
