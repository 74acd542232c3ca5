//! The canary strategy through whole passes of the planner: steps and their weights, analysis
//! verdicts, commands, aborts, GitOps reverts and returns to a revision that served before.

use kandle_crds::conditions::{self, reasons};
use kandle_crds::{labels, AnalysisSpec, CanaryPhase, RevisionOutcome, StableDuringCanary};
use proptest::prelude::*;

use super::*;
use crate::analysis::intervals::{Interval, Intervals};
use crate::analysis::Totals;
use crate::plan::EventKind;
use crate::testing::{md, starting_from};

/// A settled v1 and its v2 spec rolled out as a canary, pass by pass.
struct Run {
    md: ModelDeployment,
    cluster: Observed,
    t: i64,
    old: String,
    new: String,
}

fn analysis(failure_limit: i32) -> AnalysisSpec {
    AnalysisSpec {
        interval: "5s".to_string(),
        min_requests: 20,
        max_error_rate: 0.05,
        max_latency_p99: Some("250ms".to_string()),
        failure_limit,
    }
}

fn canary_v2(replicas: i32, steps: &[(i32, Option<&str>)], spec: Option<AnalysisSpec>) -> Run {
    let (md_v1, cluster) = settled(
        &md("bert").with_replicas(replicas).build(),
        &Observed::default(),
        0,
    );
    let mut v2 = md("bert")
        .with_replicas(replicas)
        .with_version("v2")
        .with_steps(steps);
    if let Some(spec) = spec {
        v2 = v2.with_analysis(spec);
    }
    let md_v2 = respec(&md_v1, &v2.build());
    Run {
        old: revision_of(&md_v1),
        new: revision_of(&md_v2),
        md: md_v2,
        cluster,
        t: 100,
    }
}

impl Run {
    /// One pass; the cluster then has every planned pod ready when `ready`.
    fn pass_seeing(&mut self, ready: bool, intervals: Option<Intervals>) -> Plan {
        let mut observed = self.cluster.clone();
        observed.analysis = intervals;
        let plan = plan_at(&self.md, &observed, self.t);
        assert_eq!(plan, plan_at(&self.md, &observed, self.t), "deterministic");
        self.md = with_status(&self.md, &plan);
        let next = starting_from(&self.cluster).from_plan(&plan);
        self.cluster = if ready { next.all_available() } else { next }.build();
        self.t += 1;
        plan
    }

    fn pass(&mut self) -> Plan {
        self.pass_seeing(true, None)
    }

    /// A pass that sees one finished analysis interval with these canary figures.
    fn judged(&mut self, requests: f64, failed: f64, slow: bool) -> Plan {
        self.judged_seeing(true, requests, failed, slow)
    }

    /// The same, the cluster then having every planned pod ready when `ready`.
    fn judged_seeing(&mut self, ready: bool, requests: f64, failed: f64, slow: bool) -> Plan {
        let bound = if slow { 1.0 } else { 0.05 };
        let mut intervals = Intervals::new(&self.new, at(0));
        intervals.done.push(Interval {
            ended: at(self.t),
            canary: Totals {
                requests,
                failed,
                buckets: vec![(bound, requests), (f64::INFINITY, requests)],
            },
            stable: Totals {
                requests: 4.0 * requests,
                failed: 0.0,
                buckets: vec![(0.05, 4.0 * requests), (f64::INFINITY, 4.0 * requests)],
            },
        });
        self.pass_seeing(ready, Some(intervals))
    }

    fn command(&mut self, value: &str) -> Plan {
        self.md
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(labels::COMMAND_ANNOTATION.to_string(), value.to_string());
        self.pass()
    }

    fn canary(&self) -> kandle_crds::CanaryStatus {
        self.md
            .status
            .as_ref()
            .and_then(|s| s.canary.clone())
            .expect("a canary in the status")
    }
}

#[test]
fn a_healthy_canary_walks_its_steps_and_is_promoted() {
    let mut run = canary_v2(4, &[(20, Some("10s")), (50, Some("10s"))], None);
    let first = run.pass();
    assert_eq!(
        replicas(&first, &run.new),
        1,
        "20% of 4 stable: one canary pod"
    );
    assert_eq!(replicas(&first, &run.old), 4, "the stable keeps its size");
    assert!(reasons(&first).contains(&reasons::CANARY_PROGRESSING));
    let progressing = condition(&first, conditions::PROGRESSING);
    assert_eq!(progressing.reason, reasons::CANARY_PROGRESSING);
    assert!(
        progressing.message.contains("step 1/2"),
        "{}",
        progressing.message
    );
    assert_eq!(run.canary().effective_weight, 20);
    assert_eq!(first.status.current_step, Some(0));

    let mut seen = Vec::new();
    for _ in 0..40 {
        let plan = run.pass();
        if let Some(c) = &plan.status.canary {
            seen.push((c.step, c.effective_weight, plan.status.canary_weight));
        }
        if plan.status.stable_revision.as_deref() == Some(run.new.as_str()) {
            break;
        }
    }
    let status = run.md.status.clone().unwrap();
    assert_eq!(
        status.stable_revision.as_deref(),
        Some(run.new.as_str()),
        "{seen:?}"
    );
    assert!(status.canary.is_none() && status.canary_weight.is_none());
    assert!(
        seen.contains(&(1, 50, Some(50))),
        "step 2 at 50% with all pods ready: {seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[0].1 <= w[1].1),
        "weights only rise: {seen:?}"
    );
    let outcomes: Vec<_> = status.history.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        vec![RevisionOutcome::Superseded, RevisionOutcome::Stable]
    );
}

#[test]
fn a_step_waits_for_its_pods_before_its_pause_counts() {
    let mut run = canary_v2(2, &[(50, Some("5s"))], None);
    for _ in 0..20 {
        run.pass_seeing(false, None);
    }
    let canary = run.canary();
    assert_eq!((canary.step, canary.step_start_time), (0, None));
    assert!(
        canary.message.contains("waiting for the step's replicas"),
        "{}",
        canary.message
    );
}

#[test]
fn a_step_entered_with_a_verdict_waits_for_its_own_pods() {
    let mut run = canary_v2(4, &[(20, Some("2s")), (50, Some("2s"))], Some(analysis(0)));
    run.pass();
    run.pass();
    run.pass();
    // The first step's pause ends in a pass that also judges an interval; the second step's
    // pods are not ready after it.
    for _ in 0..3 {
        run.judged_seeing(false, 100.0, 0.0, false);
    }
    let canary = run.canary();
    assert_eq!(canary.step, 1);
    assert_eq!(
        canary.step_start_time, None,
        "the 50% step has not served yet: {canary:?}"
    );
}

#[test]
fn a_failed_analysis_rolls_back_in_one_pass_and_says_why() {
    let mut run = canary_v2(4, &[(20, Some("1h"))], Some(analysis(0)));
    run.pass();
    run.pass();
    let plan = run.judged(100.0, 30.0, false);
    assert_eq!(
        replicas(&plan, &run.new),
        0,
        "the canary is scaled to zero at once"
    );
    assert_eq!(replicas(&plan, &run.old), 4, "the stable serves everything");
    let canary = plan.status.canary.clone().unwrap();
    assert_eq!(
        (canary.phase, canary.effective_weight),
        (CanaryPhase::Aborted, 0)
    );
    let degraded = condition(&plan, conditions::DEGRADED);
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", reasons::ANALYSIS_FAILED)
    );
    assert!(
        degraded.message.contains("error rate 30.00%"),
        "{}",
        degraded.message
    );
    assert_eq!(condition(&plan, conditions::STALLED).status, "True");
    assert_eq!(condition(&plan, conditions::READY).status, "True");
    let record = plan
        .status
        .history
        .iter()
        .find(|r| r.revision == run.new)
        .unwrap();
    assert_eq!(record.outcome, RevisionOutcome::Aborted);
    assert!(record
        .message
        .as_deref()
        .unwrap_or("")
        .contains("error rate 30.00%"));
    let last = plan.status.last_analysis.clone().unwrap();
    assert_eq!((last.verdict.as_str(), last.requests), ("Failed", 100));
    assert_eq!(last.stable.map(|s| s.requests), Some(400));
    assert!(plan
        .events
        .iter()
        .any(|e| e.kind == EventKind::Warning && e.reason == reasons::ANALYSIS_FAILED));
    assert!(!plan.waiting, "an aborted canary waits for a human");

    // It stays aborted until retried, then starts from the first step.
    for _ in 0..5 {
        let plan = run.pass();
        assert_eq!(replicas(&plan, &run.new), 0);
    }
    let plan = run.command("retry@1");
    assert_eq!(replicas(&plan, &run.new), 1);
    assert_eq!(run.canary().phase, CanaryPhase::Progressing);
    assert_eq!(condition(&plan, conditions::DEGRADED).status, "False");
    assert_eq!(plan.status.last_command.as_deref(), Some("retry@1"));
}

#[test]
fn latency_fails_quiet_intervals_do_not_and_the_failure_limit_tolerates() {
    let mut run = canary_v2(4, &[(20, Some("1h"))], Some(analysis(1)));
    run.pass();
    let quiet = run.judged(5.0, 5.0, true);
    assert_eq!(quiet.status.last_analysis.unwrap().verdict, "Inconclusive");
    assert_eq!(run.canary().failures, 0);
    let slow = run.judged(100.0, 0.0, true);
    let last = slow.status.last_analysis.clone().unwrap();
    assert_eq!(last.verdict, "Failed");
    assert!(
        last.message.contains("above maxLatencyP99 250 ms"),
        "{}",
        last.message
    );
    assert_eq!(
        run.canary().phase,
        CanaryPhase::Progressing,
        "one failure is tolerated"
    );
    // The same interval seen again is not judged twice.
    let mut again = Intervals::new(&run.new, at(0));
    again.done = vec![Interval {
        ended: at(run.t - 1),
        canary: Totals {
            requests: 100.0,
            failed: 100.0,
            buckets: vec![],
        },
        stable: Totals::default(),
    }];
    run.pass_seeing(true, Some(again));
    assert_eq!(run.canary().failures, 1);
    let good = run.judged(100.0, 0.0, false);
    assert_eq!(good.status.last_analysis.unwrap().verdict, "Passed");
    run.judged(100.0, 0.0, true);
    assert_eq!(run.canary().phase, CanaryPhase::Aborted);
    assert_eq!(run.canary().analyses.len(), 4);
}

#[test]
fn commands_promote_pause_resume_and_abort_once_each() {
    let mut run = canary_v2(4, &[(20, None), (50, Some("2s"))], None);
    for _ in 0..10 {
        run.pass();
    }
    assert_eq!(run.canary().phase, CanaryPhase::WaitingForPromote);
    run.command("promote@1");
    assert_eq!(run.canary().step, 1);
    // The same value again is not acted on twice.
    run.pass();
    run.pass();
    assert_eq!(run.canary().step, 1);
    let paused = run.command("pause@2");
    assert_eq!(run.canary().phase, CanaryPhase::Paused);
    assert!(reasons(&paused).contains(&reasons::CANARY_PROGRESSING));
    for _ in 0..10 {
        run.pass();
    }
    assert_eq!(run.canary().step, 1, "held while paused");
    // A paused step can also be ended by promote (checked on a copy).
    let mut promoted = Run {
        md: run.md.clone(),
        cluster: run.cluster.clone(),
        t: run.t,
        old: run.old.clone(),
        new: run.new.clone(),
    };
    promoted.command("promote@p");
    assert!(
        promoted
            .md
            .status
            .as_ref()
            .unwrap()
            .stable_revision
            .as_deref()
            == Some(run.new.as_str())
            || promoted.canary().phase == CanaryPhase::Promoting,
        "promote ends a paused last step"
    );
    // Its pause is long over: resumed, it is promoted (its pods already serve every replica).
    let resumed = run.command("resume@3");
    assert!(reasons(&resumed).contains(&reasons::CANARY_PROMOTED));
    assert_eq!(
        resumed.status.stable_revision.as_deref(),
        Some(run.new.as_str())
    );
    let aborted = run.command("abort@4");
    let warning = aborted
        .events
        .iter()
        .find(|e| e.reason == reasons::COMMAND_IGNORED);
    assert!(
        warning.is_some_and(|w| w.message.contains("no canary rollout is in progress")),
        "abort does not apply once promoted: {:?}",
        aborted.events
    );
    let bogus = run.command("rollback@5");
    let warning = bogus
        .events
        .iter()
        .find(|e| e.reason == reasons::COMMAND_IGNORED)
        .unwrap();
    assert!(
        warning.message.contains("\"rollback\""),
        "{}",
        warning.message
    );
}

#[test]
fn abort_by_hand_and_promote_full() {
    let mut run = canary_v2(3, &[(10, Some("1h")), (50, Some("1h"))], None);
    run.pass();
    let plan = run.command("abort@a");
    assert_eq!(replicas(&plan, &run.new), 0);
    let degraded = condition(&plan, conditions::DEGRADED);
    assert_eq!(degraded.reason, reasons::CANARY_ABORTED);
    assert!(
        degraded.message.contains("kubectl kandle abort"),
        "{}",
        degraded.message
    );

    let mut run = canary_v2(3, &[(10, Some("1h")), (50, Some("1h"))], None);
    run.pass();
    let plan = run.command("promote --full@b");
    assert!(reasons(&plan).contains(&reasons::CANARY_PROMOTED));
    for _ in 0..10 {
        run.pass();
    }
    assert_eq!(
        run.md.status.as_ref().unwrap().stable_revision.as_deref(),
        Some(run.new.as_str())
    );
}

#[test]
fn a_gitops_revert_mid_canary_ends_it_at_once_without_analysis() {
    let mut run = canary_v2(4, &[(20, Some("1h"))], Some(analysis(0)));
    run.pass();
    run.pass();
    let reverted = respec(
        &run.md,
        &md("bert")
            .with_replicas(4)
            .with_steps(&[(20, Some("1h"))])
            .build(),
    );
    assert_eq!(revision_of(&reverted), run.old);
    run.md = reverted;
    let plan = run.judged(100.0, 100.0, true);
    assert_eq!(replicas(&plan, &run.new), 0);
    assert_eq!(replicas(&plan, &run.old), 4);
    assert!(plan.status.canary.is_none() && plan.status.last_analysis.is_none());
    let record = plan
        .status
        .history
        .iter()
        .find(|r| r.revision == run.new)
        .unwrap();
    assert_eq!(record.outcome, RevisionOutcome::RolledBack);
    assert_eq!(condition(&plan, conditions::DEGRADED).status, "False");
}

#[test]
fn a_return_to_a_revision_that_served_before_skips_the_steps() {
    let mut run = canary_v2(2, &[(50, Some("1s"))], None);
    for _ in 0..20 {
        run.pass();
    }
    assert_eq!(
        run.md.status.as_ref().unwrap().stable_revision.as_deref(),
        Some(run.new.as_str())
    );
    // Undo: back to v1, which served as stable before.
    run.md = respec(
        &run.md,
        &md("bert")
            .with_replicas(2)
            .with_steps(&[(50, Some("1s"))])
            .build(),
    );
    let plan = run.pass();
    assert_eq!(run.canary().phase, CanaryPhase::Promoting);
    assert!(reasons(&plan).contains(&reasons::CANARY_PROMOTED));
    assert_eq!(
        replicas(&plan, &run.old),
        1,
        "grows within the rolling budget, no 50% step"
    );
    for _ in 0..10 {
        run.pass();
    }
    assert_eq!(
        run.md.status.as_ref().unwrap().stable_revision.as_deref(),
        Some(run.old.as_str())
    );
}

#[test]
fn scale_down_gives_the_stable_fewer_replicas_and_an_abort_restores_them() {
    let mut run = canary_v2(10, &[(30, Some("1h"))], None);
    run.md.spec.rollout.stable_during_canary = StableDuringCanary::ScaleDown;
    let plan = run.pass();
    assert_eq!(
        (replicas(&plan, &run.old), replicas(&plan, &run.new)),
        (7, 3)
    );
    let plan = run.command("abort@x");
    assert_eq!(
        (replicas(&plan, &run.old), replicas(&plan, &run.new)),
        (10, 0)
    );
}

/// One pass of the property: pods ready, an interval judged (requests, failed, slow), a command.
type Event = (bool, Option<(f64, f64, bool)>, Option<&'static str>);

fn any_event() -> impl Strategy<Value = Event> {
    let verdict = prop_oneof![
        4 => Just(None),
        2 => Just(Some((100.0, 0.0, false))),
        1 => Just(Some((100.0, 50.0, false))),
        1 => Just(Some((3.0, 0.0, true))),
    ];
    let command = prop_oneof![
        8 => Just(None),
        1 => Just(Some("promote")),
        1 => Just(Some("pause")),
        1 => Just(Some("resume")),
        1 => Just(Some("abort")),
        1 => Just(Some("retry")),
        1 => Just(Some("promote --full")),
    ];
    (prop::bool::weighted(0.8), verdict, command)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn the_stable_always_serves_and_an_abort_ends_with_all_traffic_on_it(
        events in prop::collection::vec(any_event(), 1..60),
        limit in 0i32..2,
    ) {
        let mut run = canary_v2(3, &[(10, Some("2s")), (40, None), (70, Some("1s"))], Some(analysis(limit)));
        let mut last_weight = 0;
        for (i, (ready, verdict, command)) in events.into_iter().enumerate() {
            if let Some(c) = command {
                run.md.metadata.annotations.get_or_insert_with(Default::default)
                    .insert(labels::COMMAND_ANNOTATION.to_string(), format!("{c}@{i}"));
            }
            let before = run.cluster.clone();
            let plan = match verdict {
                Some((requests, failed, slow)) if ready => run.judged(requests, failed, slow),
                _ => run.pass_seeing(ready, None),
            };
            let stable = plan.status.stable_revision.clone().unwrap();
            let planned = |name: &str| plan.deployments.iter().find(|d| d.name_any() == name)
                .and_then(|d| d.spec.as_ref()?.replicas).unwrap_or(0);
            // The stable keeps replicas until a promoted canary has every desired one ready.
            let serving = planned(&stable) > 0
                || (stable == run.new && planned(&run.new) > 0)
                || before.deployments.iter().any(|d| d.name_any() == run.new
                    && crate::plan::deployment::counts(d).available >= 3);
            prop_assert!(serving, "no serving replica planned: {:?}", plan.status);
            match &plan.status.canary {
                Some(c) if c.phase == CanaryPhase::Aborted => {
                    prop_assert_eq!(planned(&run.new), 0);
                    prop_assert_eq!(planned(&run.old), 3);
                    last_weight = 0;
                }
                Some(c) if c.phase != CanaryPhase::Promoting => {
                    prop_assert!(c.effective_weight >= last_weight, "weight fell: {} after {}", c.effective_weight, last_weight);
                    last_weight = c.effective_weight;
                }
                // A retry after this starts the steps again.
                _ => last_weight = 0,
            }
        }
    }
}

fn with_route(md: &mut ModelDeployment) {
    md.spec.rollout.traffic_routing = crate::testing::md("bert")
        .with_http_route("public")
        .build()
        .spec
        .rollout
        .traffic_routing;
}

fn route_weights(plan: &Plan) -> Vec<(String, i32)> {
    crate::plan::weights_of(plan.route.as_ref().expect("an HTTPRoute in the plan"))
}

#[test]
fn an_http_route_gets_the_exact_step_weights_and_all_on_the_stable_after_an_abort() {
    let mut run = canary_v2(4, &[(20, Some("1h")), (60, Some("1h"))], None);
    with_route(&mut run.md);
    let plan = run.pass();
    assert_eq!(replicas(&plan, &run.new), 1, "just enough replicas for 20%");
    assert_eq!(
        route_weights(&plan),
        vec![(run.old.clone(), 80), (run.new.clone(), 20)]
    );
    let services: Vec<String> = plan
        .revision_services
        .iter()
        .map(|s| s.name_any())
        .collect();
    assert_eq!(services, vec![run.old.clone(), run.new.clone()]);
    assert_eq!(plan.status.canary_weight, Some(20));
    let plan = run.command("promote@1");
    assert_eq!(replicas(&plan, &run.new), 3, "ceil(60% of 4)");
    assert_eq!(route_weights(&plan)[1], (run.new.clone(), 60));
    let plan = run.command("abort@2");
    assert_eq!(route_weights(&plan), vec![(run.old.clone(), 100)]);
    assert_eq!(replicas(&plan, &run.new), 0);
}

#[test]
fn a_promoted_route_sends_everything_to_the_new_stable_and_drops_the_old_service() {
    let mut run = canary_v2(2, &[(50, Some("1s"))], None);
    with_route(&mut run.md);
    for _ in 0..10 {
        run.pass();
    }
    let plan = run.pass();
    assert_eq!(
        plan.status.stable_revision.as_deref(),
        Some(run.new.as_str())
    );
    assert_eq!(route_weights(&plan), vec![(run.new.clone(), 100)]);
    let mut seen = run.cluster.clone();
    seen.revision_services = vec![
        crate::plan::route::revision_service(&run.md, &run.old),
        crate::plan::route::revision_service(&run.md, &run.new),
    ];
    let plan = plan_at(&run.md, &seen, run.t);
    assert!(plan
        .delete
        .iter()
        .any(|c| c.kind == crate::plan::ChildKind::Service && c.name == run.old));

    // Without httpRoute the route and the per-revision Services go.
    run.md.spec.rollout.traffic_routing = None;
    seen.route = plan.route.clone();
    let plan = plan_at(&run.md, &seen, run.t);
    assert!(plan.route.is_none() && plan.revision_services.is_empty());
    let kinds: Vec<_> = plan.delete.iter().map(|c| c.kind).collect();
    assert!(
        kinds.contains(&crate::plan::ChildKind::HttpRoute),
        "{kinds:?}"
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == crate::plan::ChildKind::Service)
            .count(),
        2
    );
}

#[test]
fn a_route_without_the_gateway_api_is_an_invalid_spec_that_touches_nothing() {
    let mut run = canary_v2(2, &[(50, Some("1h"))], None);
    with_route(&mut run.md);
    run.cluster.route_api_missing = true;
    let plan = run.pass();
    assert!(plan.deployments.is_empty() && plan.route.is_none());
    let degraded = condition(&plan, conditions::DEGRADED);
    assert_eq!(degraded.reason, reasons::INVALID_SPEC);
    assert!(
        degraded.message.contains("no HTTPRoute API"),
        "{}",
        degraded.message
    );
}
