//! Argo CD's resource actions for ModelDeployments (`manifests/integrations/argocd/actions/`),
//! run in a Lua 5.1 interpreter as Argo CD runs them, against the resources the planner itself
//! produces: the actions offered are exactly the commands `kubectl kandle` accepts, and each one
//! only sets the `kandle.dev/command` annotation, which the operator then acts on as it acts on
//! the plugin's.

use kandle_crds::CanaryPhase;
use mlua::{Lua, LuaOptions, StdLib, Table, Value};

use super::states::{self, State};
use super::*;
use crate::command::{self, Command};
use crate::kubectl::verbs;

const ACTIONS_DIR: &str = "../../../../manifests/integrations/argocd/actions";
const CM_PATCH: &str =
    include_str!("../../../../manifests/integrations/argocd/argocd-cm-patch.yaml");
const ACTIONS_KEY: &str = "resource.customizations.actions.kandle.dev_ModelDeployment";

/// The actions with their scripts and the command each stands for.
const ACTIONS: [(&str, &str, Command); 6] = [
    (
        "promote",
        include_str!("../../../../manifests/integrations/argocd/actions/promote.lua"),
        Command::Promote { full: false },
    ),
    (
        "promote-full",
        include_str!("../../../../manifests/integrations/argocd/actions/promote-full.lua"),
        Command::Promote { full: true },
    ),
    (
        "abort",
        include_str!("../../../../manifests/integrations/argocd/actions/abort.lua"),
        Command::Abort,
    ),
    (
        "retry",
        include_str!("../../../../manifests/integrations/argocd/actions/retry.lua"),
        Command::Retry,
    ),
    (
        "pause",
        include_str!("../../../../manifests/integrations/argocd/actions/pause.lua"),
        Command::Pause,
    ),
    (
        "resume",
        include_str!("../../../../manifests/integrations/argocd/actions/resume.lua"),
        Command::Resume,
    ),
];
const DISCOVERY_LUA: &str =
    include_str!("../../../../manifests/integrations/argocd/actions/discovery.lua");

/// A Lua state as Argo CD gives actions: no io or package library (Argo CD's `os` offers only
/// `time` and `date`, which is all the scripts use), with `md` as the global `obj`.
fn lua_with(md: &ModelDeployment) -> Lua {
    let lua = Lua::new_with(
        StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::OS,
        LuaOptions::default(),
    )
    .expect("a Lua state");
    let json = serde_json::to_value(md).expect("a ModelDeployment serializes");
    let obj = super::argocd::to_lua(&lua, &json).expect("converted to Lua");
    lua.globals().set("obj", obj).expect("obj set");
    lua
}

/// A Lua value as JSON again; tables with keys 1..n are arrays (an empty table reads as `{}`
/// for both sides of a comparison alike).
fn to_json(value: &Value) -> serde_json::Value {
    use serde_json::Value as Json;
    match value {
        Value::Nil => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(i) => Json::from(*i),
        Value::Number(n) => serde_json::Number::from_f64(*n).map_or(Json::Null, Json::Number),
        Value::String(s) => Json::String(s.to_string_lossy()),
        Value::Table(table) => {
            let len = table.raw_len();
            let pairs: Vec<(Value, Value)> = table.pairs().map(|p| p.expect("a pair")).collect();
            if len > 0 && pairs.len() == len {
                Json::Array(
                    (1..=len)
                        .map(|i| to_json(&table.raw_get(i).expect("an item")))
                        .collect(),
                )
            } else {
                Json::Object(
                    pairs
                        .iter()
                        .map(|(k, v)| {
                            let key = match k {
                                Value::String(s) => s.to_string_lossy(),
                                other => format!("{other:?}"),
                            };
                            (key, to_json(v))
                        })
                        .collect(),
                )
            }
        }
        other => panic!("unexpected Lua value {other:?}"),
    }
}

/// The actions `discovery.lua` offers for `md`.
fn offered(md: &ModelDeployment) -> Vec<&'static str> {
    let lua = lua_with(md);
    let actions: Table = lua
        .load(DISCOVERY_LUA)
        .set_name("discovery.lua")
        .eval()
        .unwrap_or_else(|e| panic!("discovery.lua failed: {e}"));
    ACTIONS
        .iter()
        .filter(|(name, _, _)| {
            let action: Table = actions.get(*name).expect("every action is listed");
            !action.get::<bool>("disabled").expect("a disabled flag")
        })
        .map(|(name, _, _)| *name)
        .collect()
}

/// Runs the action `script` on `md`: the resource as Argo CD would then patch it.
fn act(script: &str, md: &ModelDeployment) -> (serde_json::Value, serde_json::Value) {
    let lua = lua_with(md);
    let before = to_json(&lua.globals().get::<Value>("obj").expect("obj"));
    let after: Value = lua
        .load(script)
        .set_name("action.lua")
        .eval()
        .unwrap_or_else(|e| panic!("action.lua failed: {e}"));
    (before, to_json(&after))
}

fn every_state() -> Vec<State> {
    vec![
        states::stable(),
        states::rolling(),
        states::paused(),
        states::canary_stepping(),
        states::canary_waiting_for_promote(),
        states::canary_paused(),
        states::canary_aborted(),
    ]
}

#[test]
fn argo_cd_offers_exactly_the_commands_kubectl_kandle_accepts() {
    for state in every_state() {
        let accepted: Vec<&str> = ACTIONS
            .iter()
            .filter(|(_, _, command)| verbs::check(&state.md, *command).is_ok())
            .map(|(name, _, _)| *name)
            .collect();
        let phase = state
            .md
            .status
            .as_ref()
            .and_then(|s| s.canary.as_ref())
            .map(|c| c.phase);
        assert_eq!(offered(&state.md), accepted, "canary phase {phase:?}");
    }
    assert_eq!(
        offered(&states::canary_paused().md),
        vec!["promote", "promote-full", "abort", "resume"]
    );
}

#[test]
fn each_action_only_sets_the_command_and_the_operator_acts_on_it() {
    let state = states::canary_waiting_for_promote();
    for (name, script, command) in ACTIONS {
        let (before, after) = act(script, &state.md);
        let value = after["metadata"]["annotations"][kandle_crds::labels::COMMAND_ANNOTATION]
            .as_str()
            .unwrap_or_else(|| panic!("{name} sets the annotation"))
            .to_string();
        assert_eq!(command::parse(&value), Ok(command), "{name}: {value}");
        let mut unchanged = after.clone();
        unchanged["metadata"]
            .as_object_mut()
            .expect("metadata")
            .remove("annotations");
        let mut expected = before.clone();
        expected["metadata"]
            .as_object_mut()
            .expect("metadata")
            .remove("annotations");
        assert_eq!(unchanged, expected, "{name} changes nothing else");
    }

    // promote, as Argo CD writes it, ends the step that waited for it.
    let (_, after) = act(ACTIONS[0].1, &state.md);
    let value = after["metadata"]["annotations"][kandle_crds::labels::COMMAND_ANNOTATION]
        .as_str()
        .expect("a command")
        .to_string();
    let mut md = state.md.clone();
    md.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(
            kandle_crds::labels::COMMAND_ANNOTATION.to_string(),
            value.clone(),
        );
    let plan = plan_at(&md, &state.cluster, 1_000);
    assert_eq!(plan.status.last_command, Some(value));
    // The only step ended: the canary is promoted (at once, its pods being ready).
    assert!(
        plan.events
            .iter()
            .any(|e| e.reason == kandle_crds::conditions::reasons::CANARY_PROMOTED),
        "{:?}",
        plan.events
    );
    assert!(plan
        .status
        .canary
        .as_ref()
        .is_none_or(|c| c.phase == CanaryPhase::Promoting));
}

#[test]
fn the_argocd_cm_patch_installs_the_actions_verbatim() {
    let patch: serde_yaml::Value = serde_yaml::from_str(CM_PATCH).expect("YAML");
    let text = patch["data"][ACTIONS_KEY]
        .as_str()
        .expect("the actions key");
    let actions: serde_yaml::Value = serde_yaml::from_str(text).expect("the actions are YAML");
    assert_eq!(actions["discovery.lua"].as_str(), Some(DISCOVERY_LUA));
    let definitions = actions["definitions"].as_sequence().expect("definitions");
    assert_eq!(definitions.len(), ACTIONS.len());
    for (name, script, _) in ACTIONS {
        let definition = definitions
            .iter()
            .find(|d| d["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("{name} is defined ({ACTIONS_DIR})"));
        assert_eq!(definition["action.lua"].as_str(), Some(script), "{name}");
    }
}
