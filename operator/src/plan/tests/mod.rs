//! Unit and property tests of the planner, written against the builders in
//! [`crate::testing`].

mod argocd;
mod argocd_actions;
mod autoscaling;
mod canary;
mod failures;
mod hub;
mod invalid;
mod kstatus;
mod noop;
mod pod;
mod properties;
mod revision;
mod rollout;
mod states;
mod status;
mod upgrade;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use kandle_crds::ModelDeployment;
use kube::ResourceExt;

use super::{plan, Plan, RevisionSnapshot};
use crate::config::OperatorConfig;
use crate::observe::Observed;

/// A fixed point in time, `seconds` after an arbitrary origin.
fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_790_000_000 + seconds, 0).expect("a valid time")
}

fn config() -> OperatorConfig {
    OperatorConfig {
        allowed_host_paths: vec!["/var/lib/models".to_string()],
        ..OperatorConfig::default()
    }
}

fn plan_at(md: &ModelDeployment, observed: &Observed, seconds: i64) -> Plan {
    plan(md, observed, at(seconds), &config())
}

/// The revision name of `md`'s current spec.
fn revision_of(md: &ModelDeployment) -> String {
    super::revision_name(&md.name_any(), &RevisionSnapshot::of(md, &config()).hash())
}

fn deployment<'a>(plan: &'a Plan, name: &str) -> &'a Deployment {
    plan.deployments
        .iter()
        .find(|d| d.name_any() == name)
        .unwrap_or_else(|| panic!("the plan has no Deployment {name}: {:?}", names(plan)))
}

fn replicas(plan: &Plan, name: &str) -> i32 {
    deployment(plan, name)
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .expect("replicas set")
}

fn names(plan: &Plan) -> Vec<String> {
    plan.deployments.iter().map(|d| d.name_any()).collect()
}

fn pod_spec(deployment: &Deployment) -> &PodSpec {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod spec")
}

fn runtime_container(deployment: &Deployment) -> &Container {
    pod_spec(deployment)
        .containers
        .iter()
        .find(|c| c.name == super::RUNTIME_CONTAINER)
        .expect("the runtime container")
}

fn reasons(plan: &Plan) -> Vec<&'static str> {
    plan.events.iter().map(|e| e.reason).collect()
}

fn condition<'a>(
    plan: &'a Plan,
    type_: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    plan.status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"))
}

/// `md` as it reads after `plan`'s status was written.
fn with_status(md: &ModelDeployment, plan: &Plan) -> ModelDeployment {
    let mut md = md.clone();
    md.status = Some(plan.status.clone());
    md
}

/// `md` deployed and settled: its revision recorded, grown within its rollout budget until
/// available, and stable. Returns the resource with its status and the cluster as observed.
fn settled(md: &ModelDeployment, observed: &Observed, t: i64) -> (ModelDeployment, Observed) {
    use crate::testing::starting_from;
    let target = revision_of(md);
    let mut md = md.clone();
    let mut observed = observed.clone();
    let steps = md.spec.replicas.max(1) + 2;
    for step in 0..steps {
        let plan = plan_at(&md, &observed, t + i64::from(step));
        md = with_status(&md, &plan);
        observed = starting_from(&observed)
            .from_plan(&plan)
            .all_available()
            .build();
        if plan.status.stable_revision.as_deref() == Some(target.as_str()) {
            return (md, observed);
        }
    }
    panic!("{target} did not settle within {steps} passes");
}

/// `md` with its spec replaced by `next`'s (metadata and status kept, generation bumped).
fn respec(md: &ModelDeployment, next: &ModelDeployment) -> ModelDeployment {
    let mut md = md.clone();
    md.spec = next.spec.clone();
    md.metadata.generation = md.metadata.generation.map(|g| g + 1);
    md
}

fn hash_of(revision: &str) -> &str {
    revision.rsplit('-').next().expect("a hash")
}

/// A settled v1 with `replicas`, and the v2 spec (a new model version) planned once at t=100.
/// Returns v2 with that pass' status, the cluster after it, and the old and new revisions.
fn rolling_v2(replicas: i32) -> (ModelDeployment, Observed, String, String) {
    use crate::testing::{md, starting_from};
    let (md_v1, cluster) = settled(
        &md("bert").with_replicas(replicas).build(),
        &Observed::default(),
        0,
    );
    let old = revision_of(&md_v1);
    let md_v2 = respec(
        &md_v1,
        &md("bert")
            .with_replicas(replicas)
            .with_version("v2")
            .build(),
    );
    let first = plan_at(&md_v2, &cluster, 100);
    let cluster = starting_from(&cluster).from_plan(&first).build();
    let new = revision_of(&md_v2);
    (with_status(&md_v2, &first), cluster, old, new)
}
