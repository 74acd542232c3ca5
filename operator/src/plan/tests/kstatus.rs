//! kstatus' `Reconciling` and `Stalled` in each state the planner produces: at most one is
//! `True`, `Stalled` only where no retry of the operator helps, `Ready` only when the stable
//! revision serves every replica.

use kandle_crds::conditions::{self, reasons};

use super::states::{self, State};
use super::*;

/// (status, reason) of `type_` in `state`'s status.
fn said(state: &State, type_: &str) -> (String, String) {
    let c = condition(&state.plan, type_);
    (c.status.clone(), c.reason.clone())
}

fn pair(status: &str, reason: &str) -> (String, String) {
    (status.to_string(), reason.to_string())
}

/// Asserts `Reconciling` and `Stalled` of `state`, and that they are never both `True`.
#[track_caller]
fn assert_kstatus(state: &State, reconciling: (&str, &str), stalled: (&str, &str)) {
    let got = (
        said(state, conditions::RECONCILING),
        said(state, conditions::STALLED),
    );
    assert_eq!(
        got,
        (
            pair(reconciling.0, reconciling.1),
            pair(stalled.0, stalled.1)
        ),
        "{:#?}",
        state.plan.status.conditions
    );
}

#[track_caller]
fn assert_ready(state: &State, status: &str) {
    assert_eq!(condition(&state.plan, conditions::READY).status, status);
}

#[test]
fn every_status_carries_the_five_conditions_for_the_current_generation() {
    let state = states::rolling();
    let types: Vec<&str> = state
        .plan
        .status
        .conditions
        .iter()
        .map(|c| c.type_.as_str())
        .collect();
    assert_eq!(
        types,
        vec![
            conditions::READY,
            conditions::PROGRESSING,
            conditions::DEGRADED,
            conditions::RECONCILING,
            conditions::STALLED
        ]
    );
    assert!(state
        .plan
        .status
        .conditions
        .iter()
        .all(|c| c.observed_generation == state.md.metadata.generation));
    assert_eq!(
        state.plan.status.observed_generation,
        state.md.metadata.generation
    );
}

#[test]
fn a_first_rollout_is_reconciling_and_not_ready() {
    let state = states::first_rollout();
    assert_kstatus(
        &state,
        ("True", reasons::ROLLING_OUT),
        ("False", reasons::HEALTHY),
    );
    assert_ready(&state, "False");
}

#[test]
fn a_settled_deployment_is_ready_and_neither_reconciling_nor_stalled() {
    let state = states::stable();
    assert_kstatus(
        &state,
        ("False", reasons::STABLE),
        ("False", reasons::HEALTHY),
    );
    assert_ready(&state, "True");
}

#[test]
fn a_new_version_rolling_out_is_reconciling_with_the_progressing_message() {
    let state = states::rolling();
    assert_kstatus(
        &state,
        ("True", reasons::ROLLING_OUT),
        ("False", reasons::HEALTHY),
    );
    assert_eq!(
        condition(&state.plan, conditions::RECONCILING).message,
        condition(&state.plan, conditions::PROGRESSING).message
    );
    assert_ready(&state, "True");
}

#[test]
fn pods_waiting_for_room_reconcile_until_the_grace_period_then_stall() {
    let waiting = states::waiting_for_capacity();
    assert_kstatus(
        &waiting,
        ("True", reasons::WAITING_FOR_CAPACITY),
        ("False", reasons::HEALTHY),
    );
    let stuck = states::unschedulable();
    assert_kstatus(
        &stuck,
        ("False", reasons::UNSCHEDULABLE),
        ("True", reasons::UNSCHEDULABLE),
    );
    assert_eq!(
        condition(&stuck.plan, conditions::STALLED).message,
        condition(&stuck.plan, conditions::DEGRADED).message
    );
}

#[test]
fn a_crash_loop_is_degraded_but_not_stalled_while_the_rollout_keeps_trying() {
    let state = states::crash_loop();
    assert_kstatus(
        &state,
        ("True", reasons::ROLLING_OUT),
        ("False", reasons::CRASH_LOOP),
    );
    let stalled = condition(&state.plan, conditions::STALLED);
    assert!(
        stalled
            .message
            .starts_with("kandle keeps trying: revision "),
        "{}",
        stalled.message
    );
}

#[test]
fn a_revision_given_up_after_its_deadline_stalls_while_the_stable_one_serves() {
    let state = states::given_up();
    assert_kstatus(
        &state,
        ("False", reasons::PROGRESS_DEADLINE_EXCEEDED),
        ("True", reasons::PROGRESS_DEADLINE_EXCEEDED),
    );
    assert_ready(&state, "True");
    let first = states::first_past_deadline();
    assert_kstatus(
        &first,
        ("False", reasons::PROGRESS_DEADLINE_EXCEEDED),
        ("True", reasons::PROGRESS_DEADLINE_EXCEEDED),
    );
    assert_ready(&first, "False");
}

#[test]
fn an_invalid_spec_stalls() {
    for state in [
        states::missing_pvc(),
        states::host_path_refused(),
        states::refused_by_api_server(),
    ] {
        assert_kstatus(
            &state,
            ("False", reasons::INVALID_SPEC),
            ("True", reasons::INVALID_SPEC),
        );
    }
    assert_ready(&states::missing_pvc(), "True");
    assert_ready(&states::host_path_refused(), "False");
}

#[test]
fn an_object_of_someone_else_stalls() {
    assert_kstatus(
        &states::not_owned(),
        ("False", reasons::NOT_OWNED),
        ("True", reasons::NOT_OWNED),
    );
}

#[test]
fn a_paused_deployment_neither_reconciles_nor_stalls() {
    let state = states::paused();
    assert_kstatus(
        &state,
        ("False", reasons::PAUSED),
        ("False", reasons::HEALTHY),
    );
    assert_ready(&state, "True");
}

#[test]
fn a_queued_operator_upgrade_is_reconciling() {
    assert_kstatus(
        &states::upgrade_queued(),
        ("True", reasons::UPGRADE_QUEUED),
        ("False", reasons::HEALTHY),
    );
}

#[test]
fn a_stable_revision_short_of_ready_pods_is_reconciling_and_not_ready() {
    let state = states::scaling_up();
    assert_kstatus(
        &state,
        ("True", reasons::REPLICAS_NOT_READY),
        ("False", reasons::HEALTHY),
    );
    assert_ready(&state, "False");
}

#[test]
fn reconciling_keeps_its_transition_time_while_it_holds_and_turns_false_when_settled() {
    let (md_v2, cluster, _, new) = rolling_v2(2);
    let started = condition(&plan_at(&md_v2, &cluster, 100), conditions::RECONCILING).clone();
    let later = plan_at(&md_v2, &cluster, 130);
    let still = condition(&later, conditions::RECONCILING);
    assert_eq!(still.status, "True");
    assert_eq!(still.last_transition_time, started.last_transition_time);

    let md_v2 = with_status(&md_v2, &later);
    let (done, _) = settled(&md_v2, &cluster, 200);
    assert_eq!(
        done.status.as_ref().and_then(|s| s.stable_revision.clone()),
        Some(new)
    );
    let written = &done.status.as_ref().expect("a status").conditions;
    let reconciling =
        crate::plan::status::find(written, conditions::RECONCILING).expect("Reconciling");
    assert_eq!(reconciling.status, "False");
    assert_ne!(
        reconciling.last_transition_time,
        started.last_transition_time
    );
}
