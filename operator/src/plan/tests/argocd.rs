//! Argo CD's health check for ModelDeployments (`manifests/integrations/argocd/health.lua`), run
//! in a Lua 5.1 interpreter as Argo CD runs it (the resource as the global `obj`), against the
//! resources the planner itself produces in each state.

use kandle_crds::conditions;
use mlua::{Lua, LuaOptions, StdLib, Table, Value};

use super::states::{self, State};
use super::*;
use crate::testing::md;

const HEALTH_LUA: &str = include_str!("../../../../manifests/integrations/argocd/health.lua");
const CM_PATCH: &str =
    include_str!("../../../../manifests/integrations/argocd/argocd-cm-patch.yaml");
const HEALTH_KEY: &str = "resource.customizations.health.kandle.dev_ModelDeployment";

/// JSON as Argo CD hands it to Lua: objects and arrays become tables (arrays from 1), `null`
/// becomes `nil`.
pub(super) fn to_lua(lua: &Lua, value: &serde_json::Value) -> mlua::Result<Value> {
    use serde_json::Value as Json;
    Ok(match value {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => Value::Number(n.as_f64().expect("a finite number")),
        Json::String(s) => Value::String(lua.create_string(s)?),
        Json::Array(items) => {
            let table = lua.create_table()?;
            for (i, item) in items.iter().enumerate() {
                table.raw_set(i + 1, to_lua(lua, item)?)?;
            }
            Value::Table(table)
        }
        Json::Object(fields) => {
            let table = lua.create_table()?;
            for (key, field) in fields {
                table.raw_set(key.as_str(), to_lua(lua, field)?)?;
            }
            Value::Table(table)
        }
    })
}

/// Runs `script` on `md`: its `(status, message)`.
fn run(script: &str, md: &ModelDeployment) -> (String, String) {
    // Like Argo CD: no io, os or package library.
    let lua = Lua::new_with(
        StdLib::TABLE | StdLib::STRING | StdLib::MATH,
        LuaOptions::default(),
    )
    .expect("a Lua state");
    let json = serde_json::to_value(md).expect("a ModelDeployment serializes");
    let obj = to_lua(&lua, &json).expect("converted to Lua");
    lua.globals().set("obj", obj).expect("obj set");
    let hs: Table = lua
        .load(script)
        .set_name("health.lua")
        .eval()
        .unwrap_or_else(|e| panic!("health.lua failed: {e}"));
    let field = |name: &str| -> String {
        hs.get::<Option<String>>(name)
            .expect("a string")
            .unwrap_or_else(|| panic!("hs.{name} is not set"))
    };
    (field("status"), field("message"))
}

fn health(md: &ModelDeployment) -> (String, String) {
    run(HEALTH_LUA, md)
}

#[track_caller]
fn assert_health(state: &State, status: &str, words: &[&str]) {
    let (got, message) = health(&state.md);
    assert_eq!(got, status, "{message}");
    for word in words {
        assert!(message.contains(word), "{word:?} not in {message:?}");
    }
}

fn message_of(state: &State, type_: &str) -> String {
    condition(&state.plan, type_).message.clone()
}

#[test]
fn without_a_status_it_waits_for_the_operator() {
    assert_eq!(
        health(&md("bert").build()),
        (
            "Progressing".to_string(),
            "Waiting for the operator".to_string()
        )
    );
}

#[test]
fn a_status_of_an_older_generation_is_progressing() {
    let (status, message) = health(&states::older_generation());
    assert_eq!(
        (status.as_str(), message.as_str()),
        (
            "Progressing",
            "Waiting for the operator to observe generation 2"
        )
    );
}

#[test]
fn a_first_rollout_is_progressing() {
    let state = states::first_rollout();
    let target = revision_of(&state.md);
    assert_health(
        &state,
        "Progressing",
        &[
            &format!("rolling out revision {target}"),
            "no revision is serving yet",
        ],
    );
}

#[test]
fn a_settled_deployment_is_healthy() {
    let state = states::stable();
    assert_health(&state, "Healthy", &["2/2 replicas of revision"]);
    assert_eq!(health(&state.md).1, message_of(&state, conditions::READY));
}

#[test]
fn a_new_version_rolling_out_is_progressing_with_its_revision() {
    let state = states::rolling();
    let (_, _, old, new) = rolling_v2(2);
    assert_health(
        &state,
        "Progressing",
        &[
            &format!("rolling out revision {new}"),
            &format!("revision {old} keeps serving"),
        ],
    );
}

#[test]
fn pods_waiting_for_room_are_progressing_then_degraded() {
    assert_health(
        &states::waiting_for_capacity(),
        "Progressing",
        &["waiting for room", "Insufficient nvidia.com/gpu"],
    );
    assert_health(
        &states::unschedulable(),
        "Degraded",
        &["pods cannot be scheduled", "Insufficient nvidia.com/gpu"],
    );
}

#[test]
fn a_crash_loop_is_degraded_with_the_containers_words() {
    let state = states::crash_loop();
    assert_health(&state, "Degraded", &["no model.safetensors"]);
    assert_eq!(
        health(&state.md).1,
        message_of(&state, conditions::DEGRADED)
    );
}

#[test]
fn a_revision_given_up_after_its_deadline_is_degraded() {
    assert_health(
        &states::given_up(),
        "Degraded",
        &["not available within 600s, gave up on it", "keeps serving"],
    );
    assert_health(
        &states::first_past_deadline(),
        "Degraded",
        &["kandle keeps trying"],
    );
}

#[test]
fn an_invalid_spec_is_degraded_with_what_is_wrong() {
    assert_health(&states::missing_pvc(), "Degraded", &["weights-v2"]);
    assert_health(
        &states::host_path_refused(),
        "Degraded",
        &["spec.model.source.hostPath", "/etc/models"],
    );
    assert_health(
        &states::refused_by_api_server(),
        "Degraded",
        &["the API server rejected Deployment"],
    );
}

#[test]
fn an_object_of_someone_else_is_degraded() {
    assert_health(&states::not_owned(), "Degraded", &["Service \"bert\""]);
}

#[test]
fn a_paused_deployment_is_suspended() {
    assert_health(&states::paused(), "Suspended", &["spec.paused is set"]);
}

#[test]
fn a_queued_upgrade_and_a_scale_up_are_progressing() {
    assert_health(
        &states::upgrade_queued(),
        "Progressing",
        &["--max-concurrent-upgrades"],
    );
    assert_health(
        &states::scaling_up(),
        "Progressing",
        &["2/3 replicas of revision"],
    );
}

#[test]
fn a_canary_progresses_with_its_step_holds_suspended_and_aborts_degraded() {
    assert_health(
        &states::canary_stepping(),
        "Progressing",
        &["step 1/1 (50%)", "effective weight 50%"],
    );
    assert_health(
        &states::canary_waiting_for_promote(),
        "Suspended",
        &["waits for kubectl kandle promote"],
    );
    assert_health(
        &states::canary_paused(),
        "Suspended",
        &["paused: kubectl kandle resume"],
    );
    assert_health(
        &states::canary_aborted(),
        "Degraded",
        &["rolled back", "kubectl kandle abort"],
    );
}

#[test]
fn healthy_exactly_when_the_current_generation_is_ready_and_nothing_rolls_or_fails() {
    let every = [
        states::canary_stepping(),
        states::canary_waiting_for_promote(),
        states::canary_paused(),
        states::canary_aborted(),
        states::first_rollout(),
        states::stable(),
        states::rolling(),
        states::waiting_for_capacity(),
        states::unschedulable(),
        states::crash_loop(),
        states::given_up(),
        states::first_past_deadline(),
        states::missing_pvc(),
        states::host_path_refused(),
        states::refused_by_api_server(),
        states::paused(),
        states::not_owned(),
        states::upgrade_queued(),
        states::scaling_up(),
    ];
    for state in &every {
        let status = state.md.status.as_ref().expect("a status");
        let is = |type_: &str| condition(&state.plan, type_).status == "True";
        let expected = status.observed_generation == state.md.metadata.generation
            && is(conditions::READY)
            && !is(conditions::PROGRESSING)
            && !is(conditions::RECONCILING)
            && !is(conditions::DEGRADED)
            && !is(conditions::STALLED)
            && status.canary_revision.is_none()
            && !state.md.spec.paused;
        let (health, message) = health(&state.md);
        assert_eq!(health == "Healthy", expected, "{health}: {message}");
        // kstatus readers agree: Stalled only where Argo CD says Degraded.
        if is(conditions::STALLED) {
            assert_eq!(health, "Degraded", "{message}");
        }
    }
}

#[test]
fn the_argocd_cm_patch_installs_health_lua_verbatim() {
    let patch: serde_yaml::Value = serde_yaml::from_str(CM_PATCH).expect("YAML");
    assert_eq!(patch["metadata"]["name"].as_str(), Some("argocd-cm"));
    assert_eq!(
        patch["data"][HEALTH_KEY].as_str(),
        Some(HEALTH_LUA),
        "argocd-cm-patch.yaml must carry health.lua as it is"
    );
}

/// What a reader of Argo CD's health and of kstatus' `Reconciling` sees for `md`.
fn seen(md: &ModelDeployment) -> (String, Option<String>) {
    let reconciling = md.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == conditions::RECONCILING)
            .map(|c| c.status.clone())
    });
    (health(md).0, reconciling)
}

#[test]
fn a_git_revert_of_the_model_version_reuses_the_known_revision_and_turns_healthy() {
    use crate::testing::starting_from;
    use kandle_crds::conditions::reasons;

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
    assert_eq!(health(&md_v2).0, "Healthy");

    // The revert is synced; the operator has not looked yet.
    let reverted = respec(&md_v2, &v1);
    assert_eq!(
        health(&reverted),
        (
            "Progressing".to_string(),
            "Waiting for the operator to observe generation 3".to_string()
        )
    );

    // Its first pass: the known revision is scaled back up, no new revision is recorded.
    let pass = plan_at(&reverted, &cluster, 200);
    assert_eq!(reasons(&pass), vec![reasons::ROLLED_BACK]);
    let rolling_back = with_status(&reverted, &pass);
    assert_eq!(
        seen(&rolling_back),
        ("Progressing".to_string(), Some("True".to_string()))
    );
    let (_, message) = health(&rolling_back);
    assert!(
        message.contains(&format!(
            "rolling out revision {first}: 0/2 replicas available"
        )) && message.contains(&format!("revision {} keeps serving", revision_of(&md_v2))),
        "{message}"
    );

    // Its pods are ready: stable again, healthy.
    let cluster = starting_from(&cluster).from_plan(&pass).build();
    let (back, _) = settled(&rolling_back, &cluster, 210);
    assert_eq!(
        back.status.as_ref().and_then(|s| s.stable_revision.clone()),
        Some(first)
    );
    assert_eq!(
        seen(&back),
        ("Healthy".to_string(), Some("False".to_string()))
    );
}

#[test]
fn a_git_revert_after_kandle_gave_up_is_healthy_on_the_first_pass() {
    use crate::observe::ProblemKind;
    use crate::testing::starting_from;

    let (md_v2, cluster, old, new) = rolling_v2(2);
    let crashing = starting_from(&cluster)
        .failing(
            "bert",
            hash_of(&new),
            ProblemKind::CrashLoop,
            "exited with code 1",
        )
        .build();
    let gave_up = plan_at(&md_v2, &crashing, 100 + 600);
    let md_v2 = with_status(&md_v2, &gave_up);
    assert_eq!(health(&md_v2).0, "Degraded");

    // The failed revision is scaled to zero: its pods are gone.
    let mut cluster = starting_from(&crashing).from_plan(&gave_up).build();
    cluster.pod_problems.clear();
    let reverted = respec(&md_v2, &md("bert").with_replicas(2).build());
    let pass = plan_at(&reverted, &cluster, 100 + 610);
    assert_eq!(pass.status.stable_revision, Some(old));
    assert_eq!(
        seen(&with_status(&reverted, &pass)),
        ("Healthy".to_string(), Some("False".to_string()))
    );
}

#[test]
fn a_git_revert_while_the_new_version_still_rolls_out_is_healthy_on_the_first_pass() {
    let (md_v2, cluster, old, _) = rolling_v2(2);
    let reverted = respec(&md_v2, &md("bert").with_replicas(2).build());
    let pass = plan_at(&reverted, &cluster, 110);
    assert_eq!(pass.status.stable_revision, Some(old));
    assert_eq!(
        seen(&with_status(&reverted, &pass)),
        ("Healthy".to_string(), Some("False".to_string()))
    );
}
