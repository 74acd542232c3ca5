use kandle_crds::conditions::{self, reasons};
use kandle_crds::RevisionOutcome;

use super::*;
use crate::plan::ChildKind;
use crate::testing::{md, observed, starting_from};

#[test]
fn a_first_deployment_records_a_revision_and_waits_for_it() {
    let md = md("bert").with_replicas(2).build();
    let plan = plan_at(&md, &Observed::default(), 0);
    let target = revision_of(&md);
    assert_eq!(names(&plan), vec![target.clone()]);
    assert_eq!(replicas(&plan, &target), 2);
    assert_eq!(plan.revisions.len(), 1);
    assert_eq!(plan.revisions[0].revision, 1);
    assert_eq!(reasons(&plan), vec![reasons::REVISION_CREATED]);
    assert_eq!(plan.status.stable_revision, None);
    assert_eq!(
        plan.status.canary_revision, None,
        "nothing runs beside a first revision"
    );
    assert_eq!(condition(&plan, conditions::PROGRESSING).status, "True");
    assert_eq!(condition(&plan, conditions::READY).status, "False");
    assert!(plan.waiting);
    assert!(plan.delete.is_empty());
}

#[test]
fn a_revision_becomes_stable_once_its_pods_are_available() {
    let md = md("bert").with_replicas(2).build();
    let first = plan_at(&md, &Observed::default(), 0);
    let md = with_status(&md, &first);
    let target = revision_of(&md);

    let not_yet = observed()
        .from_plan(&first)
        .partly_ready(&target, 1)
        .build();
    let waiting = plan_at(&md, &not_yet, 10);
    assert_eq!(waiting.status.stable_revision, None);
    assert!(
        waiting.events.is_empty(),
        "nothing changed: {:?}",
        waiting.events
    );

    let ready = observed().from_plan(&first).all_available().build();
    let plan = plan_at(&md, &ready, 20);
    assert_eq!(plan.status.stable_revision, Some(target.clone()));
    assert_eq!(reasons(&plan), vec![reasons::ROLLOUT_COMPLETE]);
    assert_eq!(condition(&plan, conditions::READY).status, "True");
    assert_eq!(condition(&plan, conditions::PROGRESSING).status, "False");
    assert_eq!(plan.status.history.len(), 1);
    assert_eq!(plan.status.history[0].outcome, RevisionOutcome::Stable);
    assert!(!plan.waiting);
}

#[test]
fn the_old_revision_is_scaled_down_only_after_the_new_one_is_available() {
    let (md_v1, cluster) = settled(
        &md("bert").with_replicas(3).build(),
        &Observed::default(),
        0,
    );
    let old = revision_of(&md_v1);
    let md_v2 = respec(
        &md_v1,
        &md("bert").with_replicas(3).with_version("v2").build(),
    );
    let new = revision_of(&md_v2);
    assert_ne!(old, new);

    let rolling = plan_at(&md_v2, &cluster, 100);
    assert_eq!(
        replicas(&rolling, &new),
        1,
        "the new revision starts with its surge (25% of 3, rounded up)"
    );
    assert_eq!(
        replicas(&rolling, &old),
        3,
        "the stable revision keeps serving at full size"
    );
    assert_eq!(reasons(&rolling), vec![reasons::REVISION_CREATED]);
    assert_eq!(rolling.status.stable_revision, Some(old.clone()));
    assert_eq!(rolling.status.canary_revision, Some(new.clone()));
    assert_eq!(
        rolling
            .revisions
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(new.as_str()))
            .map(|r| r.revision),
        Some(2)
    );

    // Each new pod that becomes available lets one old pod go, never below 3 serving.
    let mut md_v2 = with_status(&md_v2, &rolling);
    let mut plan = rolling;
    let mut cluster = cluster;
    for (available, new_replicas, old_replicas) in [(1, 2, 2), (2, 3, 1)] {
        cluster = starting_from(&cluster)
            .from_plan(&plan)
            .partly_ready(&new, available)
            .build();
        plan = plan_at(&md_v2, &cluster, 110 + i64::from(available));
        assert_eq!(
            (replicas(&plan, &new), replicas(&plan, &old)),
            (new_replicas, old_replicas),
            "with {available} new pods available"
        );
        assert_eq!(plan.status.stable_revision, Some(old.clone()));
        assert!(plan.events.is_empty());
        md_v2 = with_status(&md_v2, &plan);
    }
    let half = starting_from(&cluster).from_plan(&plan).build();
    let ready = starting_from(&half).available(&new).build();
    let done = plan_at(&md_v2, &ready, 120);
    assert_eq!(replicas(&done, &old), 0, "kept in history at zero replicas");
    assert_eq!(replicas(&done, &new), 3);
    assert_eq!(done.status.stable_revision, Some(new.clone()));
    assert_eq!(done.status.canary_revision, None);
    assert_eq!(reasons(&done), vec![reasons::ROLLOUT_COMPLETE]);
    let outcomes: Vec<_> = done
        .status
        .history
        .iter()
        .map(|r| (r.revision.clone(), r.outcome))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (old, RevisionOutcome::Superseded),
            (new, RevisionOutcome::Stable)
        ]
    );
}

#[test]
fn returning_to_a_known_spec_reuses_its_revision() {
    let v1 = md("bert").with_replicas(2).build();
    let (md_v1, cluster) = settled(&v1, &Observed::default(), 0);
    let first = revision_of(&md_v1);
    let (md_v2, cluster) = settled(
        &respec(
            &md_v1,
            &md("bert").with_replicas(2).with_version("v2").build(),
        ),
        &cluster,
        100,
    );

    // A `git revert` of the spec.
    let reverted = respec(&md_v2, &v1);
    assert_eq!(revision_of(&reverted), first);
    let plan = plan_at(&reverted, &cluster, 200);
    assert_eq!(
        reasons(&plan),
        vec![reasons::ROLLED_BACK],
        "no new revision is recorded"
    );
    assert_eq!(
        replicas(&plan, &first),
        1,
        "the known Deployment is scaled back up, within the surge budget"
    );
    assert_eq!(
        replicas(&plan, &revision_of(&md_v2)),
        2,
        "v2 serves until v1 is back"
    );
    let number = plan
        .revisions
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(first.as_str()))
        .map(|r| r.revision);
    assert_eq!(number, Some(3), "the reused revision becomes the newest");
    assert_eq!(plan.revisions.len(), 2);
}

#[test]
fn reverting_while_the_old_revision_still_serves_is_immediate() {
    let v1 = md("bert").with_replicas(2).build();
    let (md_v1, cluster) = settled(&v1, &Observed::default(), 0);
    let stable = revision_of(&md_v1);
    let md_v2 = respec(
        &md_v1,
        &md("bert").with_replicas(2).with_version("v2").build(),
    );
    let rolling = plan_at(&md_v2, &cluster, 100);
    let md_v2 = with_status(&md_v2, &rolling);
    let cluster = starting_from(&cluster).from_plan(&rolling).build();

    let plan = plan_at(&respec(&md_v2, &v1), &cluster, 110);
    assert_eq!(plan.status.stable_revision, Some(stable.clone()));
    assert_eq!(replicas(&plan, &stable), 2);
    assert_eq!(
        replicas(&plan, &revision_of(&md_v2)),
        0,
        "the abandoned rollout is scaled down"
    );
    assert_eq!(condition(&plan, conditions::PROGRESSING).status, "False");
    assert_eq!(condition(&plan, conditions::READY).status, "True");
    let abandoned = plan
        .status
        .history
        .iter()
        .find(|r| r.revision == revision_of(&md_v2))
        .expect("recorded");
    assert_eq!(abandoned.outcome, RevisionOutcome::RolledBack);
    assert!(!reasons(&plan).contains(&reasons::ROLLOUT_COMPLETE));
}

#[test]
fn history_is_pruned_to_the_revision_history_limit() {
    let mut md_now = md("bert").with_history_limit(2).build();
    let mut cluster = Observed::default();
    let mut names_in_order = Vec::new();
    for (i, version) in ["v1", "v2", "v3", "v4", "v5"].into_iter().enumerate() {
        let next = respec(
            &md_now,
            &md("bert")
                .with_history_limit(2)
                .with_version(version)
                .build(),
        );
        let (settled_md, settled_cluster) = settled(&next, &cluster, 100 * i as i64);
        names_in_order.push(revision_of(&settled_md));
        md_now = settled_md;
        cluster = settled_cluster;
    }
    let kept: Vec<String> = cluster.revisions.iter().map(|r| r.name_any()).collect();
    let mut expected = names_in_order[2..].to_vec();
    expected.sort();
    assert_eq!(
        kept, expected,
        "the stable revision and the two newest before it"
    );
    let live: Vec<String> = cluster.deployments.iter().map(|d| d.name_any()).collect();
    assert_eq!(live, expected);
    let serving: Vec<String> = cluster
        .deployments
        .iter()
        .filter(|d| d.spec.as_ref().and_then(|s| s.replicas) != Some(0))
        .map(|d| d.name_any())
        .collect();
    assert_eq!(serving, vec![names_in_order[4].clone()]);
    let numbers: Vec<i64> = md_now
        .status
        .as_ref()
        .expect("status")
        .history
        .iter()
        .map(|r| r.number)
        .collect();
    assert_eq!(numbers, vec![3, 4, 5]);
}

#[test]
fn a_pruning_pass_deletes_the_oldest_revision_and_its_deployment() {
    let (md_v1, cluster) = settled(
        &md("bert").with_history_limit(0).build(),
        &Observed::default(),
        0,
    );
    let old = revision_of(&md_v1);
    let (md_v2, cluster) = settled(
        &respec(
            &md_v1,
            &md("bert").with_history_limit(0).with_version("v2").build(),
        ),
        &cluster,
        100,
    );
    let plan = plan_at(&md_v2, &cluster, 200);
    assert!(
        cluster.deployments.iter().all(|d| d.name_any() != old),
        "{:?}",
        cluster.deployments
    );
    assert!(plan.delete.is_empty(), "already pruned: {:?}", plan.delete);
    assert_eq!(names(&plan), vec![revision_of(&md_v2)]);
}

#[test]
fn scaling_the_stable_revision_is_announced_once() {
    let (md_now, cluster) = settled(&md("bert").build(), &Observed::default(), 0);
    let target = revision_of(&md_now);
    let scaled = respec(&md_now, &md("bert").with_replicas(3).build());
    let plan = plan_at(&scaled, &cluster, 100);
    assert_eq!(replicas(&plan, &target), 3);
    assert_eq!(reasons(&plan), vec![reasons::SCALED]);
    assert!(plan.pdb.is_some(), "three replicas get a disruption budget");
    assert_eq!(
        plan.status.selector.as_deref(),
        Some("kandle.dev/model-deployment=bert,app.kubernetes.io/name=kandle-model")
    );

    let again = plan_at(
        &with_status(&scaled, &plan),
        &starting_from(&cluster).from_plan(&plan).build(),
        110,
    );
    assert!(again.events.is_empty(), "{:?}", again.events);
    assert_eq!(
        condition(&again, conditions::READY).status,
        "False",
        "two more replicas are starting"
    );
}

#[test]
fn the_disruption_budget_goes_when_one_replica_is_left() {
    let (md_now, cluster) = settled(
        &md("bert").with_replicas(3).build(),
        &Observed::default(),
        0,
    );
    assert!(cluster.pdb.is_some());
    let plan = plan_at(
        &respec(&md_now, &md("bert").with_replicas(1).build()),
        &cluster,
        100,
    );
    assert_eq!(plan.pdb, None);
    assert!(plan
        .delete
        .iter()
        .any(|c| c.kind == ChildKind::PodDisruptionBudget && c.name == "bert"));
}

#[test]
fn a_paused_deployment_changes_nothing() {
    let (md_v1, cluster) = settled(
        &md("bert").with_replicas(2).build(),
        &Observed::default(),
        0,
    );
    let paused = respec(
        &md_v1,
        &md("bert")
            .with_replicas(5)
            .with_version("v2")
            .paused()
            .build(),
    );
    let plan = plan_at(&paused, &cluster, 100);
    assert!(plan.deployments.is_empty() && plan.revisions.is_empty() && plan.delete.is_empty());
    assert_eq!((plan.service.clone(), plan.pdb.clone()), (None, None));
    assert!(plan.events.is_empty());
    let progressing = condition(&plan, conditions::PROGRESSING);
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        ("False", reasons::PAUSED)
    );
    assert_eq!(plan.status.stable_revision, Some(revision_of(&md_v1)));
    assert_eq!(plan.status.observed_generation, Some(2));
}

#[test]
fn a_lost_status_keeps_the_serving_revision_as_stable() {
    let (md_v1, cluster) = settled(
        &md("bert").with_replicas(2).build(),
        &Observed::default(),
        0,
    );
    let mut md_v2 = respec(
        &md_v1,
        &md("bert").with_replicas(2).with_version("v2").build(),
    );
    md_v2.status = None;
    let plan = plan_at(&md_v2, &cluster, 100);
    assert_eq!(plan.status.stable_revision, Some(revision_of(&md_v1)));
    assert_eq!(replicas(&plan, &revision_of(&md_v1)), 2);
}
