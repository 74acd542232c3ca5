//! Hugging Face sources in the planner: a branch is pinned to the commit it named when it was
//! resolved, and a branch that cannot be resolved leaves the running revision alone.

use kandle_crds::conditions::{self, reasons};
use kandle_crds::HuggingFaceStatus;

use super::*;
use crate::testing::md;

const REPO: &str = "sentence-transformers/all-MiniLM-L6-v2";
const FIRST: &str = "1111111111111111111111111111111111111111";
const SECOND: &str = "2222222222222222222222222222222222222222";

fn fetched_revision(deployment: &Deployment) -> String {
    let init = &pod_spec(deployment).init_containers.as_ref().expect("init")[0];
    let args = init.args.as_ref().expect("args");
    let at = args
        .iter()
        .position(|a| a == "--revision")
        .expect("--revision");
    args[at + 1].clone()
}

#[test]
fn a_branch_is_pinned_to_its_commit_and_an_unresolved_one_changes_nothing() {
    let (v1, cluster) = settled(
        &md("minilm").from_hub(REPO, FIRST, None).build(),
        &Observed::default(),
        0,
    );
    let stable = revision_of(&v1);
    assert_eq!(
        v1.status.as_ref().and_then(|s| s.hugging_face.clone()),
        Some(HuggingFaceStatus {
            repo: REPO.into(),
            revision: FIRST.into(),
            commit: FIRST.into()
        })
    );

    let on_main = respec(&v1, &md("minilm").from_hub(REPO, "main", None).build());
    let failing = Observed {
        hub_resolution: Some(Err(
            "cannot resolve revision \"main\": the Hub answered 503".into(),
        )),
        ..cluster.clone()
    };
    let plan = plan_at(&on_main, &failing, 100);
    let degraded = condition(&plan, conditions::DEGRADED);
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", reasons::MODEL_FETCH_FAILED)
    );
    assert!(
        degraded.message.contains("the Hub answered 503"),
        "{}",
        degraded.message
    );
    assert!(
        plan.deployments.is_empty() && plan.delete.is_empty(),
        "nothing is touched"
    );
    assert_eq!(
        plan.status.stable_revision.as_deref(),
        Some(stable.as_str())
    );
    assert_eq!(
        plan.status.hugging_face.as_ref().map(|h| h.commit.as_str()),
        Some(FIRST),
        "the last resolution stays"
    );
    assert!(plan.waiting, "resolving is tried again");

    let resolved = Observed {
        hub_resolution: Some(Ok(SECOND.into())),
        ..cluster.clone()
    };
    let plan = plan_at(&on_main, &resolved, 110);
    let recorded = plan.status.hugging_face.clone().expect("recorded");
    assert_eq!(
        (recorded.revision.as_str(), recorded.commit.as_str()),
        ("main", SECOND)
    );
    let target = plan
        .deployments
        .iter()
        .find(|d| d.name_any() != stable)
        .expect("a new revision");
    assert_eq!(
        fetched_revision(target),
        SECOND,
        "the pods fetch the commit, not the branch"
    );

    // Later passes read the commit from the status: the Hub is not asked again and the
    // revision stays the same even if the branch has moved on.
    let on_main = with_status(&on_main, &plan);
    assert!(crate::hub::to_resolve(&on_main).is_none());
    let again = plan_at(&on_main, &cluster, 120);
    assert!(again
        .deployments
        .iter()
        .any(|d| d.name_any() == target.name_any()));
    assert_eq!(again.status.hugging_face, Some(recorded));
}
