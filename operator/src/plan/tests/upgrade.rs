//! Operator upgrades: a new default runtime image rolls out only where an upgrade slot is free.

use kandle_crds::conditions::{self, reasons};

use super::*;
use crate::testing::md;

fn upgraded() -> OperatorConfig {
    OperatorConfig {
        runtime_image: "ghcr.io/kandle-dev/kandle-runtime:0.2.0".to_string(),
        ..config()
    }
}

#[test]
fn a_new_default_image_waits_for_a_slot_and_the_stable_revision_keeps_serving() {
    let (md_v1, cluster) = settled(
        &md("bert").with_replicas(2).build(),
        &Observed::default(),
        0,
    );
    let stable = revision_of(&md_v1);
    assert!(plan(&md_v1, &cluster, at(100), &upgraded()).operator_upgrade);
    assert!(!plan(&md_v1, &cluster, at(100), &config()).operator_upgrade);

    let mut full = cluster.clone();
    full.upgrade_waits = true;
    let queued = plan(&md_v1, &full, at(100), &upgraded());
    assert_eq!(names(&queued), vec![stable.clone()], "no new revision yet");
    assert_eq!(replicas(&queued, &stable), 2);
    let progressing = condition(&queued, conditions::PROGRESSING);
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        ("True", reasons::UPGRADE_QUEUED)
    );
    assert!(
        progressing.message.contains("kandle-runtime:0.2.0"),
        "{}",
        progressing.message
    );
    assert!(queued.waiting, "looked at again until a slot frees");

    let rolling = plan(&md_v1, &cluster, at(110), &upgraded());
    assert_eq!(rolling.deployments.len(), 2, "with a slot it rolls out");
    assert_eq!(
        condition(&rolling, conditions::PROGRESSING).reason,
        reasons::ROLLING_OUT
    );
}

#[test]
fn a_change_of_the_users_own_spec_never_waits_for_a_slot() {
    let (md_v1, cluster) = settled(&md("bert").build(), &Observed::default(), 0);
    let md_v2 = respec(&md_v1, &md("bert").with_version("v2").build());
    assert!(!plan(&md_v2, &cluster, at(100), &upgraded()).operator_upgrade);
    let mut full = cluster.clone();
    full.upgrade_waits = true;
    let plan = plan(&md_v2, &full, at(100), &upgraded());
    assert_eq!(plan.deployments.len(), 2);
}

#[test]
fn an_http_revision_fetched_by_busybox_rolls_once_as_an_operator_upgrade() {
    let md = md("bert")
        .from_http("https://models.example.com/bert.tar", &"a".repeat(64))
        .build();
    let fresh = RevisionSnapshot::of(&md, &config());
    assert_eq!(fresh.fetch_image, None, "the runtime image fetches now");
    let recorded_before = RevisionSnapshot {
        fetch_image: Some("busybox:1.36".to_string()),
        ..fresh.clone()
    };
    assert_ne!(fresh.hash(), recorded_before.hash(), "a new revision");
    assert!(
        super::super::upgrade::operator_only_change(&md, &fresh, &recorded_before),
        "caused by the operator alone: it takes an upgrade slot"
    );
}
