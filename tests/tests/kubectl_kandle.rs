//! `kubectl kandle` against the fake API server, through the library the binary calls: the
//! steering commands write the `kandle.dev/command` annotation and nothing else, refuse what
//! does not apply without writing, `undo` puts a ControllerRevision's spec parts back (and
//! refuses when a GitOps tool owns the spec), and `status` renders the stored objects, again
//! on each change with `--watch`.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::core::v1::Pod;
use kandle_crds::{
    labels, AnalysisResult, CanaryPhase, CanaryStatus, ModelDeployment, ModelDeploymentStatus,
    RevisionFigures, RevisionOutcome, RevisionRecord,
};
use kandle_operator::command::{annotation_value, Command};
use kandle_operator::kubectl::{api, Error, UndoOptions, FIELD_MANAGER};
use kandle_operator::plan::RevisionSnapshot;
use kandle_operator::testing::{md, MdBuilder, TEST_NAMESPACE};
use kandle_operator::OperatorConfig;
use kandle_tests::harness::Harness;
use kube::api::{Api, PostParams};
use kube::ResourceExt;
use serde_json::{json, Value};

const NAME: &str = "minilm";
const STABLE: &str = "minilm-5d8c7f9b21";
const CANARY: &str = "minilm-0a1b2c3d4e";

fn time(second: i64) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::from_second(1_764_150_000 + second).expect("a valid time"),
    )
}

fn record(revision: &str, number: i64, version: &str, outcome: RevisionOutcome) -> RevisionRecord {
    RevisionRecord {
        revision: revision.to_string(),
        number,
        model_version: Some(version.to_string()),
        outcome,
        time: time(number),
        message: None,
    }
}

/// A canary of v2 (revision 2) over the stable v1 (revision 1), in `phase` at `step`.
fn canary_status(phase: CanaryPhase, step: i32) -> ModelDeploymentStatus {
    ModelDeploymentStatus {
        observed_generation: Some(1),
        stable_revision: Some(STABLE.to_string()),
        canary_revision: Some(CANARY.to_string()),
        canary_weight: Some(50),
        current_step: Some(step),
        history: vec![
            record(STABLE, 1, "v1", RevisionOutcome::Stable),
            record(CANARY, 2, "v2", RevisionOutcome::Progressing),
        ],
        canary: Some(CanaryStatus {
            revision: CANARY.to_string(),
            phase,
            step,
            step_start_time: Some(time(0)),
            stable_replicas: 1,
            canary_replicas: 1,
            effective_weight: 50,
            failures: 0,
            analyses: vec![AnalysisResult {
                revision: CANARY.to_string(),
                time: time(60).0.into(),
                requests: 230,
                error_rate: 0.0043,
                latency_p99_seconds: Some(0.182),
                verdict: "Passed".to_string(),
                message: "error rate 0.43% (max 1.00%)".to_string(),
                failures: 0,
                stable: Some(RevisionFigures {
                    requests: 250,
                    error_rate: 0.0019,
                    latency_p99_seconds: Some(0.161),
                }),
            }],
            message: "step 2 waits for promote".to_string(),
        }),
        ..ModelDeploymentStatus::default()
    }
}

fn canary_md() -> MdBuilder {
    md(NAME).with_version("v2").with_canary(&[10, 50, 100])
}

async fn set_status(h: &Harness, status: &ModelDeploymentStatus) -> ModelDeployment {
    h.server
        .set_status::<ModelDeployment>(
            TEST_NAMESPACE,
            NAME,
            serde_json::to_value(status).expect("status"),
        )
        .expect("set the status")
}

async fn stored(h: &Harness) -> ModelDeployment {
    h.mds(TEST_NAMESPACE).get(NAME).await.expect("read back")
}

/// The managers of the object's main resource (not its status), with the top-level fields
/// each owns.
fn owners(md: &ModelDeployment) -> Vec<(String, Vec<String>)> {
    md.metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|e| e.subresource.as_deref().unwrap_or("").is_empty())
        .map(|e| {
            let fields = e
                .fields_v1
                .as_ref()
                .and_then(|f| f.0.as_object())
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            (e.manager.clone().unwrap_or_default(), fields)
        })
        .collect()
}

#[tokio::test]
async fn each_command_writes_exactly_the_annotation_and_never_the_spec() {
    let h = Harness::start().await.expect("harness");
    h.create(&canary_md().build()).await.expect("create");
    let cases = [
        (
            CanaryPhase::WaitingForPromote,
            Command::Promote { full: false },
            "moves canary",
        ),
        (
            CanaryPhase::Progressing,
            Command::Promote { full: true },
            "at once",
        ),
        (CanaryPhase::Progressing, Command::Abort, "aborts canary"),
        (
            CanaryPhase::Aborted,
            Command::Retry,
            "again from step 1 of 3 (10%)",
        ),
        (CanaryPhase::Progressing, Command::Pause, "holds canary"),
        (
            CanaryPhase::Paused,
            Command::Resume,
            "go on from step 2 of 3",
        ),
    ];
    for (i, (phase, command, expected)) in cases.into_iter().enumerate() {
        let before = set_status(&h, &canary_status(phase, 1)).await;
        let id = format!("17641500000000000{i:02}");

        let said = api::command(&h.client, TEST_NAMESPACE, NAME, command, &id)
            .await
            .unwrap_or_else(|e| panic!("{command}: {e:#}"));

        let value = annotation_value(command, &id);
        assert!(
            said.contains(&format!(
                "asked for `{command}` (kandle.dev/command={value})"
            )) && said.contains(expected),
            "{command}: {said}"
        );
        let after = stored(&h).await;
        assert_eq!(
            after.annotations().get(labels::COMMAND_ANNOTATION),
            Some(&value),
            "{command}"
        );
        assert_eq!(
            after.metadata.generation, before.metadata.generation,
            "{command}: the spec is untouched"
        );
        assert_eq!(after.spec, before.spec, "{command}");
        assert_eq!(
            after.status, before.status,
            "{command}: the status is the operator's"
        );
        let ours: Vec<_> = owners(&after)
            .into_iter()
            .filter(|(manager, _)| manager == FIELD_MANAGER)
            .collect();
        assert_eq!(
            ours,
            vec![(FIELD_MANAGER.to_string(), vec!["f:metadata".to_string()])],
            "{command}: kubectl-kandle owns only metadata (the annotation)"
        );
    }
}

#[tokio::test]
async fn a_command_that_does_not_apply_is_refused_without_a_write() {
    let h = Harness::start().await.expect("harness");
    h.create(&canary_md().build()).await.expect("create");
    let mut no_canary = canary_status(CanaryPhase::Progressing, 0);
    no_canary.canary = None;
    no_canary.canary_revision = None;
    let cases = [
        (no_canary.clone(), Command::Promote { full: false }, "has no canary in progress (stable revision minilm-5d8c7f9b21): nothing to promote"),
        (no_canary.clone(), Command::Abort, "nothing to abort"),
        (no_canary.clone(), Command::Pause, "nothing to pause"),
        (no_canary, Command::Resume, "nothing to resume"),
        (canary_status(CanaryPhase::Progressing, 1), Command::Retry, "retry needs an aborted canary or one being promoted: canary minilm-0a1b2c3d4e of modeldeployment \"minilm\" is Progressing at step 2 of 3 (50%)"),
        (canary_status(CanaryPhase::Aborted, 1), Command::Promote { full: true }, "was aborted"),
    ];
    for (status, command, expected) in cases {
        let before = set_status(&h, &status).await;
        let error = api::command(&h.client, TEST_NAMESPACE, NAME, command, "1")
            .await
            .expect_err("refused");
        assert!(matches!(error, Error::Refused(_)), "{command}: {error:?}");
        assert!(error.to_string().contains(expected), "{command}: {error}");
        let after = stored(&h).await;
        assert_eq!(
            after.metadata.resource_version, before.metadata.resource_version,
            "{command}: nothing was written"
        );
    }
}

#[tokio::test]
async fn every_command_names_a_missing_model_deployment() {
    let h = Harness::start().await.expect("harness");
    let expected = "modeldeployment \"nope\" not found in namespace \"models\"";
    let errors = [
        api::status(&h.client, TEST_NAMESPACE, "nope").await.err(),
        api::history(&h.client, TEST_NAMESPACE, "nope").await.err(),
        api::command(&h.client, TEST_NAMESPACE, "nope", Command::Abort, "1")
            .await
            .err(),
        api::undo(&h.client, TEST_NAMESPACE, "nope", &UndoOptions::default())
            .await
            .err(),
        api::watch(&h.client, TEST_NAMESPACE, "nope").await.err(),
    ];
    for error in errors {
        let error = error.expect("an error");
        assert_eq!(error.to_string(), expected);
    }
}

/// Creates the ControllerRevision of revision `number` recording `md`'s spec, as the operator
/// does: named `<md>-<hash>`, labelled with the ModelDeployment and the hash, the snapshot's
/// JSON as its data.
async fn record_revision(h: &Harness, recorded: &ModelDeployment, number: i64) -> String {
    let snapshot = RevisionSnapshot::of(recorded, &OperatorConfig::default());
    let hash = snapshot.hash();
    let name = format!("{NAME}-{hash}");
    let revision: ControllerRevision = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": name,
            "namespace": TEST_NAMESPACE,
            "labels": {labels::MODEL_DEPLOYMENT: NAME, labels::REVISION: hash},
        },
        "data": snapshot.canonical_json(),
        "revision": number,
    }))
    .expect("a ControllerRevision");
    Api::<ControllerRevision>::namespaced(h.client.clone(), TEST_NAMESPACE)
        .create(&PostParams::default(), &revision)
        .await
        .expect("create the ControllerRevision");
    name
}

/// v1 on CPU was revision 1; the spec now runs v2 with extra args, a GPU and a node selector
/// as revision 2. Returns the names of both revisions.
async fn rolled_to_v2(h: &Harness, field_manager: Option<&str>) -> (String, String) {
    let v1 = md(NAME).with_version("v1").build();
    let v2 = md(NAME)
        .with_version("v2")
        .with_args(&["--max-input-length", "512"])
        .with_gpu(1, Some("NVIDIA-L4"))
        .with_node_selector("pool", "gpu")
        .with_replicas(3)
        .build();
    Api::<ModelDeployment>::namespaced(h.client.clone(), TEST_NAMESPACE)
        .create(
            &PostParams {
                field_manager: field_manager.map(str::to_string),
                ..PostParams::default()
            },
            &v2,
        )
        .await
        .expect("create");
    let old = record_revision(h, &v1, 1).await;
    let new = record_revision(h, &v2, 2).await;
    set_status(
        h,
        &ModelDeploymentStatus {
            stable_revision: Some(new.clone()),
            history: vec![
                record(&old, 1, "v1", RevisionOutcome::Superseded),
                record(&new, 2, "v2", RevisionOutcome::Stable),
            ],
            ..ModelDeploymentStatus::default()
        },
    )
    .await;
    (old, new)
}

#[tokio::test]
async fn undo_puts_back_the_spec_parts_of_the_previous_stable_revision() {
    let h = Harness::start().await.expect("harness");
    let (old, _) = rolled_to_v2(&h, None).await;
    let before = stored(&h).await;

    let undone = api::undo(&h.client, TEST_NAMESPACE, NAME, &UndoOptions::default())
        .await
        .expect("undo");

    assert!(
        undone
            .said
            .contains(&format!("set to revision 1 ({old}, model v1)")),
        "{undone:?}"
    );
    assert_eq!(undone.warning, None);
    let after = stored(&h).await;
    let expected = RevisionSnapshot::of(
        &md(NAME).with_version("v1").build(),
        &OperatorConfig::default(),
    );
    assert_eq!(after.spec.model, expected.model);
    assert_eq!(
        after.spec.runtime, expected.runtime,
        "the args are gone, the image pinned"
    );
    assert_eq!(after.spec.resources, expected.resources, "no GPU any more");
    assert_eq!(
        after.spec.scheduling, expected.scheduling,
        "no node selector any more"
    );
    assert_eq!(
        after.spec.replicas, 3,
        "replicas are not part of a revision"
    );
    assert_eq!(after.spec.rollout, before.spec.rollout);
    assert_eq!(
        after.metadata.generation,
        before.metadata.generation.map(|g| g + 1)
    );
    let raw: Value = serde_json::to_value(&after).expect("json");
    assert!(
        raw.pointer("/spec/scheduling/nodeSelector").is_none(),
        "{raw}"
    );

    // The spec is revision 1's now: undoing to it again changes nothing.
    let again = api::undo(
        &h.client,
        TEST_NAMESPACE,
        NAME,
        &UndoOptions {
            to_revision: Some(1),
            yes: false,
        },
    )
    .await
    .expect_err("nothing to undo");
    assert!(
        matches!(again, Error::AlreadyAtRevision { number: 1, .. }),
        "{again}"
    );
}

#[tokio::test]
async fn undo_to_an_unknown_revision_lists_the_known_ones() {
    let h = Harness::start().await.expect("harness");
    let (old, new) = rolled_to_v2(&h, None).await;
    let before = stored(&h).await;
    let error = api::undo(
        &h.client,
        TEST_NAMESPACE,
        NAME,
        &UndoOptions {
            to_revision: Some(7),
            yes: false,
        },
    )
    .await
    .expect_err("unknown revision");
    assert_eq!(
        error.to_string(),
        format!(
            "modeldeployment \"minilm\" has no revision 7; known revisions: 1 ({old}, model v1), 2 ({new}, model v2)"
        )
    );
    assert_eq!(
        stored(&h).await.metadata.generation,
        before.metadata.generation
    );
}

#[tokio::test]
async fn undo_refuses_without_yes_when_argocd_manages_the_spec() {
    let h = Harness::start().await.expect("harness");
    rolled_to_v2(&h, Some("argocd-controller")).await;
    let before = stored(&h).await;
    assert!(
        owners(&before)
            .iter()
            .any(|(m, f)| m == "argocd-controller" && f.contains(&"f:spec".to_string())),
        "the fake records the creator as the spec's manager: {:?}",
        owners(&before)
    );

    let refused = api::undo(&h.client, TEST_NAMESPACE, NAME, &UndoOptions::default())
        .await
        .expect_err("refused");
    let message = refused.to_string();
    assert!(matches!(refused, Error::GitOpsManaged { .. }), "{message}");
    assert!(
        message.contains("managed by argocd-controller")
            && message.contains("git revert")
            && message.contains("--yes"),
        "{message}"
    );
    assert_eq!(
        stored(&h).await.metadata.generation,
        before.metadata.generation,
        "nothing changed"
    );

    let undone = api::undo(
        &h.client,
        TEST_NAMESPACE,
        NAME,
        &UndoOptions {
            to_revision: None,
            yes: true,
        },
    )
    .await
    .expect("undo with --yes");
    assert!(
        undone.warning.as_deref().is_some_and(|w| w
            .starts_with("the spec of modeldeployment \"minilm\" is managed by argocd-controller")),
        "{undone:?}"
    );
    let after = stored(&h).await;
    assert_eq!(after.spec.model.version.as_deref(), Some("v1"));
    assert!(
        owners(&after)
            .iter()
            .any(|(m, f)| m == FIELD_MANAGER && f.contains(&"f:spec".to_string())),
        "the change is recorded under kubectl-kandle: {:?}",
        owners(&after)
    );
}

/// A Deployment of `revision` with `replicas`, and its pods, `ready` of them ready, as the
/// Deployment controller and the kubelets would leave them.
async fn run_revision(h: &Harness, revision: &str, replicas: i32, ready: i32) {
    let hash = revision.trim_start_matches("minilm-");
    let pod_labels = json!({labels::MODEL_DEPLOYMENT: NAME, labels::REVISION: hash});
    let container =
        json!([{"name": "runtime", "image": "ghcr.io/kandle-dev/kandle-runtime:0.1.0"}]);
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": revision, "namespace": TEST_NAMESPACE, "labels": pod_labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": pod_labels},
            "template": {"metadata": {"labels": pod_labels}, "spec": {"containers": container}},
        },
    }))
    .expect("a Deployment");
    let deployments = Api::<Deployment>::namespaced(h.client.clone(), TEST_NAMESPACE);
    if deployments.get_opt(revision).await.expect("read").is_none() {
        deployments
            .create(&PostParams::default(), &deployment)
            .await
            .expect("create the Deployment");
    }
    for i in 0..replicas {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{revision}-{i}"), "labels": pod_labels},
            "spec": {"containers": container},
        }))
        .expect("a pod");
        let pods = Api::<Pod>::namespaced(h.client.clone(), TEST_NAMESPACE);
        if pods.get_opt(&pod.name_any()).await.expect("read").is_none() {
            pods.create(&PostParams::default(), &pod)
                .await
                .expect("create a pod");
        }
        let condition = if i < ready { "True" } else { "False" };
        h.server
            .set_status::<Pod>(
                TEST_NAMESPACE,
                &pod.name_any(),
                json!({"phase": "Running", "conditions": [{"type": "Ready", "status": condition}]}),
            )
            .expect("pod status");
    }
}

/// The next view that contains `wanted`, within the deadline.
async fn view_with(
    views: &mut (impl futures::Stream<Item = Result<String, Error>> + Unpin),
    wanted: &str,
) -> String {
    let deadline = Duration::from_secs(20);
    tokio::time::timeout(deadline, async {
        loop {
            let view = views
                .next()
                .await
                .expect("the watch goes on")
                .expect("a view");
            if view.contains(wanted) {
                return view;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no view with {wanted:?} within {deadline:?}"))
}

#[tokio::test]
async fn status_renders_the_stored_objects() {
    let h = Harness::start().await.expect("harness");
    h.create(&canary_md().build()).await.expect("create");
    set_status(&h, &canary_status(CanaryPhase::WaitingForPromote, 1)).await;
    run_revision(&h, STABLE, 1, 1).await;
    run_revision(&h, CANARY, 2, 1).await;

    let view = api::status(&h.client, TEST_NAMESPACE, NAME)
        .await
        .expect("status");

    for line in [
        "Stable:     minilm-5d8c7f9b21 (revision 1, model v1)\n",
        "Canary:     minilm-0a1b2c3d4e (revision 2, model v2)\n",
        "Phase:      WaitingForPromote, step 2 of 3\n",
        "Weight:     50% effective (50% wanted; stable 1 replicas, canary 1 replicas)\n",
        "  >  2     50%     until promote  waits for `kubectl kandle promote`\n",
        "  2025-11-26T09:41:00Z  230       0.43%   182ms  Passed   250              0.19%          161ms       error rate 0.43% (max 1.00%)\n",
        "  minilm-5d8c7f9b21  stable  v1     1        1/1\n",
        "  minilm-0a1b2c3d4e  canary  v2     2        1/2\n",
    ] {
        assert!(view.contains(line), "missing {line:?} in:\n{view}");
    }

    let history = api::history(&h.client, TEST_NAMESPACE, NAME)
        .await
        .expect("history");
    let rows: Vec<&str> = history.lines().collect();
    assert_eq!(rows.len(), 3, "{history}");
    assert!(
        rows[1].starts_with("1       minilm-5d8c7f9b21  v1             stable"),
        "{history}"
    );
    assert!(
        rows[2].starts_with("2       minilm-0a1b2c3d4e  v2             progressing"),
        "{history}"
    );
}

#[tokio::test]
async fn status_watch_renders_again_when_the_canary_moves() {
    let h = Harness::start().await.expect("harness");
    h.create(&canary_md().build()).await.expect("create");
    set_status(&h, &canary_status(CanaryPhase::Progressing, 0)).await;
    let views = api::watch(&h.client, TEST_NAMESPACE, NAME)
        .await
        .expect("watch");
    futures::pin_mut!(views);
    view_with(&mut views, "Phase:      Progressing, step 1 of 3").await;

    set_status(&h, &canary_status(CanaryPhase::Paused, 1)).await;
    let view = view_with(&mut views, "Phase:      Paused, step 2 of 3").await;
    assert!(view.contains("  >  2     50%"), "{view}");

    run_revision(&h, CANARY, 1, 1).await;
    view_with(
        &mut views,
        "  minilm-0a1b2c3d4e  canary  v2     1        1/1",
    )
    .await;
}

/// The `kubectl-kandle` binary beside this test's executable.
fn plugin_binary() -> std::path::PathBuf {
    let path = kandle_tests::e2e::binaries::profile_dir()
        .expect("the profile directory")
        .join("kubectl-kandle");
    assert!(
        path.is_file(),
        "{} does not exist: build it with `cargo build --workspace --bins` \
         (`cargo test --workspace` builds it too)",
        path.display()
    );
    path
}

#[tokio::test]
async fn the_binary_uses_the_kubeconfig_and_context_it_is_given() {
    let h = Harness::start().await.expect("harness");
    h.create(&canary_md().build()).await.expect("create");
    set_status(&h, &canary_status(CanaryPhase::WaitingForPromote, 1)).await;
    // The current context points nowhere; `--context fake` points at the fake API server.
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: nowhere\n\
         clusters:\n- name: nowhere\n  cluster: {{server: 'http://127.0.0.1:9'}}\n\
         - name: fake\n  cluster: {{server: '{}'}}\n\
         users:\n- name: someone\n  user: {{}}\n\
         contexts:\n- name: nowhere\n  context: {{cluster: nowhere, user: someone}}\n\
         - name: fake\n  context: {{cluster: fake, user: someone, namespace: {TEST_NAMESPACE}}}\n",
        h.server.url()
    );
    let dir = std::env::temp_dir().join(format!("kubectl-kandle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    let path = dir.join("kubeconfig");
    std::fs::write(&path, kubeconfig).expect("the kubeconfig is written");
    // The plugin runs while this test's runtime serves the fake API server: wait without
    // blocking it.
    let run = |context: Option<&'static str>| {
        let mut command = tokio::process::Command::new(plugin_binary());
        command
            .env_remove("KUBECONFIG")
            .arg("--kubeconfig")
            .arg(&path);
        if let Some(context) = context {
            command.args(["--context", context]);
        }
        command.args(["status", NAME]);
        async move { command.output().await.expect("the plugin runs") }
    };

    let out = run(Some("fake")).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(CANARY),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The context's namespace was used: no -n was given.
    assert!(stdout.contains(TEST_NAMESPACE), "{stdout}");

    let out = run(None).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "the current context points nowhere"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
