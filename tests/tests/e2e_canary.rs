//! Progressive delivery on a real control plane, with real runtime pods and load spread over
//! the Service's ready endpoints as kube-proxy spreads it (`kandle_tests::e2e::load`): a
//! healthy canary walks its steps and is promoted; a canary answering 504s is rolled back
//! within the goal while the stable keeps serving; a slow canary fails on latency while a quiet
//! interval does not fail; `kubectl kandle` promotes, aborts and retries, a GitOps revert ends a
//! canary, and `undo --to-revision` returns to a revision without steps; with
//! `trafficRouting.httpRoute` the HTTPRoute (its CRD installed from the `gateway-api` crate's
//! types) carries each step's weight. Skips (saying why) without a control plane; see
//! `kandle_tests::e2e`.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kandle_crds::conditions::{self, reasons};
use kandle_crds::{
    AnalysisSpec, CanaryPhase, CanaryStatus, CanaryStep, GatewayParentRef, HttpRouteRouting,
    ModelDeployment, RevisionOutcome, RolloutStrategy, TrafficRouting,
};
use kandle_tests::e2e::install;
use kandle_tests::e2e::load::ready_endpoints;
use kandle_tests::e2e::{has_condition, E2e, Load};
use kube::ResourceExt;

/// From the failing verdict to every ready endpoint being the stable's.
const ROLLBACK_GOAL: Duration = Duration::from_secs(2);
/// Between two looks at the EndpointSlices while timing a rollback.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// The CPU example named `name` with `replicas`, rolled out as a canary with `steps` and, when
/// given, analysis every 2 s.
fn canary(
    name: &str,
    replicas: i32,
    steps: &[(i32, Option<&str>)],
    analysis: Option<AnalysisSpec>,
) -> ModelDeployment {
    let mut md = E2e::cpu_example(replicas);
    md.metadata.name = Some(name.to_string());
    md.spec.rollout.strategy = RolloutStrategy::Canary;
    md.spec.rollout.steps = steps
        .iter()
        .map(|&(weight, pause)| CanaryStep {
            weight,
            pause: pause.map(str::to_string),
        })
        .collect();
    md.spec.rollout.analysis = analysis;
    md
}

fn analysis(min_requests: i64, max_latency_p99: Option<&str>) -> AnalysisSpec {
    AnalysisSpec {
        interval: "2s".to_string(),
        min_requests,
        max_error_rate: 0.05,
        max_latency_p99: max_latency_p99.map(str::to_string),
        failure_limit: 0,
    }
}

/// `md` at model version `version` (a new revision).
fn at_version(md: &ModelDeployment, version: &str) -> ModelDeployment {
    let mut next = md.clone();
    next.spec.model.version = Some(version.to_string());
    next.metadata.resource_version = None;
    next.status = None;
    next
}

fn canary_of(md: &ModelDeployment) -> Option<CanaryStatus> {
    md.status.as_ref().and_then(|s| s.canary.clone())
}

fn stable_of(md: &ModelDeployment) -> Option<String> {
    md.status.as_ref().and_then(|s| s.stable_revision.clone())
}

fn phase_is(md: &ModelDeployment, revision: &str, phase: CanaryPhase) -> bool {
    canary_of(md).is_some_and(|c| c.revision == revision && c.phase == phase)
}

/// Ready endpoints of the Service `name`, split into (stable, canary) by the pods' revision.
async fn endpoints_by_revision(
    e2e: &E2e,
    name: &str,
    canary: &str,
) -> anyhow::Result<(usize, usize)> {
    let ready = ready_endpoints(&e2e.api(), &e2e.api(), name).await?;
    let of_canary = ready
        .iter()
        .filter(|e| e.pod.starts_with(&format!("{canary}-")))
        .count();
    Ok((ready.len() - of_canary, of_canary))
}

/// Applies `md` and waits for its new revision (the target of the spec) to be named canary.
async fn start_canary(e2e: &E2e, md: &ModelDeployment) -> String {
    e2e.expect(e2e.apply(md).await, "the new version applies")
        .await;
    let started = e2e
        .wait_md(&md.name_any(), "a canary starts", |m| {
            canary_of(m).is_some()
        })
        .await;
    let started = e2e
        .expect(started, "the new version starts as a canary")
        .await;
    canary_of(&started).expect("a canary").revision
}

#[tokio::test]
async fn a_healthy_canary_walks_its_steps_under_load_and_is_promoted() {
    let Some(e2e) = E2e::start("canary-walk").await else {
        return;
    };
    let v1 = canary(
        "walk",
        2,
        &[(25, Some("4s")), (50, Some("4s"))],
        Some(analysis(1, None)),
    );
    let (_, old) = e2e.apply_until_ready(&v1).await;
    let mut load = Load::on(e2e.api(), e2e.api(), "walk");
    load.set_clients(2);
    let new = start_canary(&e2e, &at_version(&v1, "v2")).await;

    // Watch until promoted: the effective weight of each step, and the endpoints behind it.
    let mut weights: Vec<(i32, i32)> = Vec::new();
    let mut split_seen: Vec<(i32, (usize, usize))> = Vec::new();
    let mut view: Option<String> = None;
    let mut judged: std::collections::BTreeMap<String, String> = Default::default();
    let started = Instant::now();
    loop {
        let md = e2e
            .expect(e2e.mds().get("walk").await, "read the ModelDeployment")
            .await;
        if let Some(c) = canary_of(&md) {
            if c.phase != CanaryPhase::Promoting
                && weights.last() != Some(&(c.step, c.effective_weight))
            {
                weights.push((c.step, c.effective_weight));
            }
            let split = e2e
                .expect(
                    endpoints_by_revision(&e2e, "walk", &new).await,
                    "read the EndpointSlices",
                )
                .await;
            split_seen.push((c.step, split));
            for a in &c.analyses {
                judged.insert(format!("{:?}", a.time), a.verdict.clone());
            }
            if c.step == 1 && split.1 == 2 && view.is_none() {
                let out = e2e
                    .expect(
                        e2e.kandle(&["status", "walk"]).await,
                        "kubectl kandle status",
                    )
                    .await;
                view = Some(String::from_utf8_lossy(&out.stdout).to_string());
            }
        }
        if stable_of(&md).as_deref() == Some(new.as_str()) {
            break;
        }
        e2e.ensure(
            started.elapsed() < Duration::from_secs(240),
            format!("the healthy canary is promoted within 4 minutes: {weights:?}"),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    e2e.ensure(
        weights == vec![(0, 33), (1, 50)],
        format!("step weights: one of three replicas, then two of four: {weights:?}"),
    )
    .await;
    // The canary's ready endpoints reach each step's count; the stable always has some (a
    // stable pod may miss a readiness probe on a busy machine, which is not the canary's doing).
    let reached = |step: i32, canary: usize| {
        split_seen
            .iter()
            .any(|(s, (_, c))| *s == step && *c == canary)
    };
    e2e.ensure(
        reached(0, 1) && reached(1, 2) && split_seen.iter().all(|(_, (stable, _))| *stable > 0),
        format!("the Service's endpoints carried each step's split: {split_seen:?}"),
    )
    .await;
    let view = view.unwrap_or_default();
    println!("kubectl kandle status walk, at step 2:\n{view}");
    e2e.ensure(
        view.contains(&new) && view.contains("step 2 of 2"),
        format!("the plugin's view names the canary at its step:\n{view}"),
    )
    .await;
    let passed = e2e
        .expect(
            e2e.eventually("the history settles", || async {
                let md = e2e.mds().get("walk").await?;
                let history = md.status.clone().unwrap_or_default().history;
                let outcomes: Vec<_> = history
                    .iter()
                    .map(|r| (r.revision.clone(), r.outcome))
                    .collect();
                Ok((outcomes
                    == vec![
                        (old.clone(), RevisionOutcome::Superseded),
                        (new.clone(), RevisionOutcome::Stable),
                    ])
                .then_some(md))
            })
            .await,
            "v1 superseded, v2 stable",
        )
        .await;
    let verdicts: Vec<&String> = judged.values().collect();
    e2e.ensure(
        verdicts.iter().any(|v| *v == "Passed") && !verdicts.iter().any(|v| *v == "Failed"),
        format!("the canary passed its analysis under load, never failed: {verdicts:?}"),
    )
    .await;
    e2e.ensure(
        has_condition(&passed, conditions::READY, "True"),
        "Ready after promotion",
    )
    .await;
}

#[tokio::test]
async fn a_canary_answering_504s_is_rolled_back_within_the_goal_and_the_stable_keeps_serving() {
    let Some(e2e) = E2e::start("canary-fail").await else {
        return;
    };
    let v1 = canary("fail", 2, &[(50, Some("1h"))], Some(analysis(3, None)));
    e2e.apply_until_ready(&v1).await;
    let mut load = Load::on(e2e.api(), e2e.api(), "fail");
    load.set_clients(3);
    // Every request of v2 runs out of its 1 ms deadline while it waits for the model: a 504.
    let mut v2 = at_version(&v1, "v2");
    v2.spec.runtime.args = vec![
        "--request-timeout=1ms".to_string(),
        "--max-queued-tokens=1000000".to_string(),
    ];
    let new = start_canary(&e2e, &v2).await;

    // Sample the endpoints until the canary is aborted and has no ready endpoint left.
    let mut samples: Vec<(DateTime<Utc>, usize, usize)> = Vec::new();
    let mut canary_served = false;
    let started = Instant::now();
    let aborted = loop {
        let (stable, canary) = e2e
            .expect(
                endpoints_by_revision(&e2e, "fail", &new).await,
                "read the EndpointSlices",
            )
            .await;
        samples.push((Utc::now(), stable, canary));
        canary_served |= canary > 0;
        let md = e2e
            .expect(e2e.mds().get("fail").await, "read the ModelDeployment")
            .await;
        if phase_is(&md, &new, CanaryPhase::Aborted) && canary == 0 {
            break md;
        }
        e2e.ensure(
            started.elapsed() < Duration::from_secs(240),
            "the failing canary is aborted within 4 minutes",
        )
        .await;
        tokio::time::sleep(SAMPLE_EVERY).await;
    };
    e2e.ensure(canary_served, "the canary served before it was judged")
        .await;
    let status = aborted.status.clone().unwrap_or_default();
    let verdict = status
        .last_analysis
        .clone()
        .expect("the failing analysis is in the status");
    e2e.ensure(
        verdict.verdict == "Failed" && verdict.error_rate > 0.05,
        format!("{verdict:?}"),
    )
    .await;
    let judged_at: DateTime<Utc> =
        DateTime::from_timestamp_micros(verdict.time.0.as_microsecond()).expect("a time");
    let gone_at = samples
        .iter()
        .rev()
        .take_while(|(_, _, canary)| *canary == 0)
        .last()
        .map(|(at, _, _)| *at)
        .expect("a sample with no canary endpoint");
    let took = (gone_at - judged_at).to_std().unwrap_or_default();
    println!(
        "rollback: {} ms from the failing verdict ({} requests, error rate {:.1}%) to 100% of the ready endpoints on the stable",
        took.as_millis(),
        verdict.requests,
        verdict.error_rate * 100.0
    );
    e2e.ensure(
        took <= ROLLBACK_GOAL,
        format!("rolled back in {took:?}, goal {ROLLBACK_GOAL:?}"),
    )
    .await;
    let short = samples.iter().find(|(_, stable, _)| *stable < 2);
    e2e.ensure(
        short.is_none(),
        format!("the stable kept both ready endpoints throughout: {short:?}"),
    )
    .await;
    e2e.ensure(
        has_condition(&aborted, conditions::DEGRADED, "True")
            && aborted
                .status
                .as_ref()
                .and_then(|s| {
                    s.conditions
                        .iter()
                        .find(|c| c.type_ == conditions::DEGRADED)
                })
                .is_some_and(|c| {
                    c.reason == reasons::ANALYSIS_FAILED && c.message.contains("error rate")
                }),
        format!("Degraded says why: {:?}", status.conditions),
    )
    .await;
    let record = status.history.iter().find(|r| r.revision == new);
    e2e.ensure(
        record.is_some_and(|r| {
            r.outcome == RevisionOutcome::Aborted
                && r.message.as_deref().unwrap_or("").contains("error rate")
        }),
        format!("the history records the abort with its figures: {record:?}"),
    )
    .await;
}

#[tokio::test]
async fn a_slow_canary_fails_on_latency_and_a_quiet_interval_does_not_fail() {
    let Some(e2e) = E2e::start("canary-slow").await else {
        return;
    };
    // Every real request takes more than a millisecond: any judged interval fails on p99.
    let v1 = canary(
        "slow",
        1,
        &[(50, Some("1h"))],
        Some(analysis(1, Some("1ms"))),
    );
    e2e.apply_until_ready(&v1).await;
    let new = start_canary(&e2e, &at_version(&v1, "v2")).await;
    let quiet = e2e
        .wait_md("slow", "two quiet intervals judged", |md| {
            canary_of(md).is_some_and(|c| c.analyses.len() >= 2)
        })
        .await;
    let quiet = e2e.expect(quiet, "quiet intervals are judged").await;
    let c = canary_of(&quiet).expect("a canary");
    e2e.ensure(
        c.analyses.iter().all(|a| a.verdict == "Inconclusive") && c.phase != CanaryPhase::Aborted,
        format!("without requests the intervals are inconclusive and the canary goes on: {c:?}"),
    )
    .await;

    let mut load = Load::on(e2e.api(), e2e.api(), "slow");
    load.set_clients(2);
    let failed = e2e
        .wait_md("slow", "aborted on latency", |md| {
            phase_is(md, &new, CanaryPhase::Aborted)
        })
        .await;
    let failed = e2e.expect(failed, "the slow canary is aborted").await;
    let last = failed.status.as_ref().and_then(|s| s.last_analysis.clone());
    e2e.ensure(
        last.as_ref().is_some_and(|a| {
            a.verdict == "Failed" && a.message.contains("above maxLatencyP99 1 ms")
        }),
        format!("it failed on p99: {last:?}"),
    )
    .await;
}

fn outcome_of(md: &ModelDeployment, revision: &str) -> Option<RevisionOutcome> {
    md.status
        .as_ref()?
        .history
        .iter()
        .find(|r| r.revision == revision)
        .map(|r| r.outcome)
}

#[tokio::test]
async fn kubectl_kandle_promotes_aborts_and_retries_a_gitops_revert_ends_a_canary_and_undo_skips_the_steps(
) {
    let Some(e2e) = E2e::start("canary-commands").await else {
        return;
    };
    let v1 = canary("cmd", 1, &[(50, None), (75, Some("1s"))], None);
    let (_, old) = e2e.apply_until_ready(&v1).await;
    let new = start_canary(&e2e, &at_version(&v1, "v2")).await;

    let waiting = e2e
        .wait_md("cmd", "the first step waits for promote", |md| {
            phase_is(md, &new, CanaryPhase::WaitingForPromote)
        })
        .await;
    let waiting = e2e.expect(waiting, "a step without a pause waits").await;
    let generation = waiting.metadata.generation;
    let run = |args: &'static [&'static str]| {
        let e2e = &e2e;
        async move {
            let out = e2e
                .expect(e2e.kandle(args).await, "kubectl-kandle runs")
                .await;
            e2e.ensure(
                out.status.success(),
                format!(
                    "kubectl kandle {args:?}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            )
            .await;
            String::from_utf8_lossy(&out.stdout).to_string()
        }
    };
    run(&["abort", "cmd"]).await;
    let aborted = e2e
        .wait_md("cmd", "aborted by hand", |md| {
            phase_is(md, &new, CanaryPhase::Aborted)
        })
        .await;
    let aborted = e2e.expect(aborted, "abort rolls back").await;
    e2e.ensure(
        aborted.metadata.generation == generation,
        "commands never change the spec",
    )
    .await;
    e2e.ensure(
        !aborted
            .annotations()
            .contains_key(kandle_crds::labels::COMMAND_ANNOTATION),
        "the operator removed the command it acted on",
    )
    .await;
    run(&["retry", "cmd"]).await;
    let retried = e2e
        .wait_md("cmd", "retried, waiting again", |md| {
            phase_is(md, &new, CanaryPhase::WaitingForPromote)
        })
        .await;
    e2e.expect(retried, "retry starts the steps again").await;
    run(&["pause", "cmd"]).await;
    let paused = e2e
        .wait_md("cmd", "paused", |md| {
            phase_is(md, &new, CanaryPhase::Paused)
        })
        .await;
    e2e.expect(paused, "pause holds the step").await;
    // promote of a paused step ends it.
    run(&["promote", "cmd"]).await;
    let promoted = e2e
        .wait_md("cmd", "promoted after the last step", |md| {
            stable_of(md).as_deref() == Some(new.as_str())
        })
        .await;
    e2e.expect(promoted, "promote walks on to the end").await;
    let status = run(&["status", "cmd"]).await;
    e2e.ensure(
        status.contains(&new),
        format!("status names the stable revision:\n{status}"),
    )
    .await;

    // undo --to-revision 1: v1 served as stable before, so it is promoted without steps.
    run(&["undo", "cmd", "--to-revision", "1"]).await;
    let undone = e2e
        .wait_md("cmd", "back on v1", |md| {
            stable_of(md).as_deref() == Some(old.as_str())
        })
        .await;
    let undone = e2e.expect(undone, "undo rolls back to revision 1").await;
    e2e.ensure(
        undone.spec.model.version.as_deref()
            == Some(v1.spec.model.version.as_deref().unwrap_or("")),
        "undo restored the model spec",
    )
    .await;

    // A GitOps revert mid-canary: v3 starts, the spec returns to v1, the canary ends at once.
    let v3 = start_canary(&e2e, &at_version(&v1, "v3")).await;
    e2e.expect(e2e.apply(&v1).await, "the spec returns to v1")
        .await;
    let reverted = e2e
        .wait_md("cmd", "the canary ended", |md| {
            canary_of(md).is_none() && outcome_of(md, &v3) == Some(RevisionOutcome::RolledBack)
        })
        .await;
    let reverted = e2e.expect(reverted, "a revert ends the canary").await;
    e2e.ensure(
        stable_of(&reverted).as_deref() == Some(old.as_str()),
        "v1 keeps serving",
    )
    .await;
    let history = run(&["history", "cmd"]).await;
    e2e.ensure(
        history.contains(&v3),
        format!("history lists the rolled-back canary:\n{history}"),
    )
    .await;
}

/// Installs the HTTPRoute CustomResourceDefinition as the `gateway-api` crate defines it.
async fn install_http_route_crd(e2e: &E2e) {
    use gateway_api_kube::CustomResourceExt;
    let mut crd = serde_json::to_value(gateway_api::httproutes::HttpRoute::crd()).expect("the CRD");
    // The API server refuses a *.k8s.io CRD without this annotation; the Gateway API's own
    // manifests carry it.
    crd["metadata"]["annotations"]["api-approved.kubernetes.io"] =
        serde_json::json!("https://github.com/kubernetes-sigs/gateway-api/pull/2466");
    let client = &e2e.client;
    e2e.expect(
        install::apply(client, &crd).await,
        "install the HTTPRoute CRD",
    )
    .await;
    e2e.expect(
        install::wait_established(client, "httproutes.gateway.networking.k8s.io").await,
        "the HTTPRoute CRD is established",
    )
    .await;
}

/// The HTTPRoute's `(backend, weight)` pairs.
async fn route_weights(e2e: &E2e, name: &str) -> anyhow::Result<Vec<(String, i32)>> {
    let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        e2e.client.clone(),
        &e2e.namespace,
        &kandle_operator::plan::http_route_resource(),
    );
    Ok(kandle_operator::plan::weights_of(&api.get(name).await?))
}

#[tokio::test]
async fn an_http_route_carries_each_steps_exact_weight() {
    let Some(e2e) = E2e::start("canary-route").await else {
        return;
    };
    install_http_route_crd(&e2e).await;
    let mut v1 = canary("routed", 2, &[(10, Some("3s")), (40, Some("3s"))], None);
    v1.spec.rollout.traffic_routing = Some(TrafficRouting {
        http_route: Some(HttpRouteRouting {
            parent_refs: vec![GatewayParentRef {
                name: "public".to_string(),
                namespace: None,
                section_name: None,
            }],
            hostnames: vec!["routed.example.com".to_string()],
        }),
    });
    let (_, old) = e2e.apply_until_ready(&v1).await;
    let first = e2e
        .expect(route_weights(&e2e, "routed").await, "the HTTPRoute exists")
        .await;
    e2e.ensure(
        first == vec![(old.clone(), 100)],
        format!("all on v1 at first: {first:?}"),
    )
    .await;
    let new = start_canary(&e2e, &at_version(&v1, "v2")).await;

    let mut seen: Vec<Vec<(String, i32)>> = Vec::new();
    let started = Instant::now();
    loop {
        let weights = e2e
            .expect(route_weights(&e2e, "routed").await, "read the HTTPRoute")
            .await;
        if seen.last() != Some(&weights) {
            seen.push(weights.clone());
        }
        if weights == vec![(new.clone(), 100)] {
            break;
        }
        e2e.ensure(
            started.elapsed() < Duration::from_secs(240),
            format!("the routed canary is promoted within 4 minutes: {seen:?}"),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let step = |w: i32| vec![(old.clone(), 100 - w), (new.clone(), w)];
    e2e.ensure(
        seen.contains(&step(10)) && seen.contains(&step(40)),
        format!("the route carried 10% then 40%: {seen:?}"),
    )
    .await;
    // The old revision's Service goes after the route stops naming it, in a later reconcile.
    e2e.expect(
        e2e.eventually("a Service per live revision, the old one gone", || async {
            let services = e2e.names::<k8s_openapi::api::core::v1::Service>().await?;
            Ok((services.contains(&new) && !services.contains(&old)).then_some(()))
        })
        .await,
        "a Service per live revision, the old one gone",
    )
    .await;
}
