//! The operator's own life on a real control plane: killed with SIGKILL in the middle of a
//! rollout and started again, and two replicas under leader election where exactly one writes
//! and the survivor takes over when the leader dies. Skips (saying why) without a control
//! plane; see `kandle_tests::e2e`.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::coordination::v1::Lease;
use kandle_crds::RevisionOutcome;
use kandle_tests::e2e::{is_ready_for_generation, stable_revision, E2e};
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

/// The Lease the leader-election Role allows (`manifests/rbac/leader-election-role.yaml`).
const LEASE: &str = "kandle-operator";
const LEASE_NAMESPACE: &str = "kandle-system";
/// The lease duration the operator uses.
const LEASE_DURATION: Duration = Duration::from_secs(15);
/// A line the operator logs (at debug) for every pass that writes.
const WRITES: &str = "applying plan";

#[tokio::test]
async fn an_operator_killed_mid_rollout_resumes_it_with_no_duplicate_revision_or_lost_history() {
    let Some(mut e2e) = E2e::start("restart").await else {
        return;
    };
    let md = E2e::cpu_example(1);
    let name = md.name_any();
    e2e.expect(e2e.apply(&md).await, "the example applies")
        .await;
    let ready = e2e
        .expect(e2e.wait_ready(&name).await, "v1 becomes Ready")
        .await;
    let old = stable_revision(&ready).unwrap_or_default();

    let mut next = md.clone();
    next.spec.model.version = Some("restarted".into());
    e2e.expect(e2e.apply(&next).await, "the new version applies")
        .await;
    let started = e2e
        .eventually("the new revision's Deployment", || async {
            let names = e2e.names::<Deployment>().await?;
            Ok((names.len() == 2).then_some(()))
        })
        .await;
    e2e.expect(started, "the rollout starts").await;
    e2e.operator().kill();

    let again = e2e.spawn_operator("operator-again", &[]);
    let _again = e2e.expect(again, "the operator starts again").await;
    let done = e2e
        .wait_md(&name, "the new version stable and Ready", |md| {
            stable_revision(md).is_some_and(|r| r != old) && is_ready_for_generation(md)
        })
        .await;
    let done = e2e.expect(done, "the rollout resumes and completes").await;

    let revisions = e2e
        .expect(e2e.names::<ControllerRevision>().await, "revisions")
        .await;
    e2e.ensure(
        revisions.len() == 2,
        format!("one ControllerRevision per version, got {revisions:?}"),
    )
    .await;
    let history: Vec<(i64, RevisionOutcome)> = done
        .status
        .clone()
        .unwrap_or_default()
        .history
        .iter()
        .map(|r| (r.number, r.outcome))
        .collect();
    e2e.ensure(
        history
            == vec![
                (1, RevisionOutcome::Superseded),
                (2, RevisionOutcome::Stable),
            ],
        format!("both revisions in the history, numbered once: {history:?}"),
    )
    .await;
}

async fn holder(leases: &Api<Lease>) -> anyhow::Result<Option<String>> {
    Ok(leases
        .get_opt(LEASE)
        .await?
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty()))
}

#[tokio::test]
async fn of_two_operators_one_leads_and_the_other_takes_over_when_it_dies() {
    let Some(e2e) = E2e::start_without_operator("leader").await else {
        return;
    };
    let leases: Api<Lease> = Api::namespaced(e2e.client.clone(), LEASE_NAMESPACE);
    let ids = [
        format!("e2e-{}-a", std::process::id()),
        format!("e2e-{}-b", std::process::id()),
    ];
    let flags = |id: &str| {
        vec![
            "--leader-election".to_string(),
            format!("--lease-namespace={LEASE_NAMESPACE}"),
            format!("--lease-name={LEASE}"),
            format!("--identity={id}"),
        ]
    };
    let mut operators = Vec::new();
    for id in &ids {
        let args = flags(id);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let operator = e2e.spawn_operator(id, &args);
        operators.push(e2e.expect(operator, "an operator starts").await);
    }
    // A lease left by an earlier run expires within its duration.
    let leader = e2e
        .eventually("one of the two to hold the lease", || async {
            Ok(holder(&leases).await?.filter(|h| ids.contains(h)))
        })
        .await;
    let leader = e2e.expect(leader, "a leader is elected").await;
    let (lead, standby) = if leader == ids[0] { (0, 1) } else { (1, 0) };

    let md = E2e::cpu_example(1);
    let name = md.name_any();
    e2e.expect(e2e.apply(&md).await, "the example applies")
        .await;
    e2e.expect(e2e.wait_ready(&name).await, "the leader makes it Ready")
        .await;
    let standby_log = operators[standby].log();
    e2e.ensure(
        operators[lead].log().contains(WRITES) && !standby_log.contains(WRITES),
        format!("only the leader writes; the standby's log:\n{standby_log}"),
    )
    .await;

    operators[lead].kill();
    let killed = Instant::now();
    let took_over = e2e
        .eventually("the standby to hold the lease", || async {
            Ok((holder(&leases).await? == Some(ids[standby].clone())).then_some(()))
        })
        .await;
    e2e.expect(took_over, "the standby takes over").await;
    let takeover = killed.elapsed();
    eprintln!("the standby took over {takeover:?} after the leader was killed");
    // The standby waits one lease duration from the last renewal it saw; renewals come every
    // 2 s, and it looks every 2 s.
    e2e.ensure(
        takeover <= LEASE_DURATION + Duration::from_secs(5),
        format!("takeover within the lease duration and a renewal period, took {takeover:?}"),
    )
    .await;

    let scale = json!({ "spec": { "replicas": 2 } });
    let scaled = e2e
        .mds()
        .patch_scale(&name, &PatchParams::default(), &Patch::Merge(&scale))
        .await;
    e2e.expect(scaled, "scaling applies").await;
    let followed = e2e
        .wait_md(&name, "2 ready replicas under the new leader", |md| {
            is_ready_for_generation(md) && md.status.as_ref().is_some_and(|s| s.ready_replicas == 2)
        })
        .await;
    e2e.expect(followed, "the new leader reconciles").await;
    e2e.ensure(
        operators[standby].log().contains(WRITES),
        "the new leader writes",
    )
    .await;
}
