//! The operator sends no request that changes nothing: a pass with nothing new writes nothing,
//! a status change alone writes only the status, the running controller reads from its caches
//! instead of the API server, and a child the API server refuses as invalid is not applied
//! again until the spec changes. Its client counts its own requests by verb and resource.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kandle_crds::{conditions, ModelDeployment};
use kandle_operator::client::{self, Limits};
use kandle_operator::controller::{self, Context};
use kandle_operator::metrics::Metrics;
use kandle_operator::testing::{md, TEST_NAMESPACE};
use kandle_operator::OperatorConfig;
use kandle_tests::fake_api::RequestRecord;
use kandle_tests::harness::{condition, Harness, CONTROLLER_DEADLINE};
use kandle_tests::wait;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use serde_json::json;

fn writes(log: &[RequestRecord]) -> Vec<String> {
    log.iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[tokio::test]
async fn a_pass_with_nothing_new_sends_no_write() {
    let h = Harness::start().await.expect("harness");
    h.create(&md("minilm").with_replicas(2).build())
        .await
        .expect("create");
    h.converge(TEST_NAMESPACE, "minilm")
        .await
        .expect("converge");
    let before = h.server.request_log().len();
    h.reconcile(TEST_NAMESPACE, "minilm")
        .await
        .expect("idle pass");
    let log = h.server.request_log();
    assert_eq!(writes(&log[before..]), Vec::<String>::new());
}

#[tokio::test]
async fn a_status_change_alone_writes_only_the_status() {
    let h = Harness::start().await.expect("harness");
    h.create(&md("minilm").build()).await.expect("create");
    h.converge(TEST_NAMESPACE, "minilm")
        .await
        .expect("converge");
    let deployment = h.deployments_of("minilm").expect("deployments").remove(0);
    let status = json!({"observedGeneration": deployment.metadata.generation, "replicas": 1,
        "readyReplicas": 0, "availableReplicas": 0, "updatedReplicas": 1});
    h.server
        .set_status::<Deployment>(
            TEST_NAMESPACE,
            &deployment.metadata.name.clone().unwrap(),
            status,
        )
        .expect("a pod stops being ready");
    let before = h.server.request_log().len();
    h.reconcile(TEST_NAMESPACE, "minilm").await.expect("pass");
    let log = h.server.request_log();
    assert_eq!(
        writes(&log[before..]),
        vec![format!(
            "PATCH /apis/kandle.dev/v1alpha1/namespaces/{TEST_NAMESPACE}/modeldeployments/minilm/status"
        )]
    );
    let md = h.mds(TEST_NAMESPACE).get("minilm").await.expect("get");
    assert_eq!(md.status.map(|s| s.ready_replicas), Some(0));
}

#[tokio::test]
async fn the_running_controller_reads_its_caches_not_the_api_server() {
    let h = Harness::start().await.expect("harness");
    let ctx = Context::new(h.client.clone(), OperatorConfig::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(controller::run_with_context(Arc::clone(&ctx), async move {
        let _ = stopped.await;
    }));
    h.create(&md("minilm").build()).await.expect("create");
    let ready = wait::until("minilm to become Ready", CONTROLLER_DEADLINE, || async {
        for deployment in h.deployments_of("minilm")? {
            h.make_available(&deployment)?;
        }
        let md = h.mds(TEST_NAMESPACE).get("minilm").await?;
        Ok(condition(&md, conditions::READY).filter(|c| c.status == "True"))
    })
    .await;
    ready.expect("Ready");

    // Touching the ModelDeployment wakes a pass; it finds nothing to do and asks nothing.
    let passes = |ctx: &Context| reconciles(&ctx.metrics.render());
    let before_passes = passes(&ctx);
    let before = h.server.request_log().len();
    h.mds(TEST_NAMESPACE)
        .patch(
            "minilm",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await
        .expect("touch");
    wait::until("a pass after the touch", CONTROLLER_DEADLINE, || async {
        Ok((passes(&ctx) > before_passes).then_some(()))
    })
    .await
    .expect("a pass runs");
    let log = h.server.request_log();
    let operator: Vec<String> = log[before + 1..]
        .iter()
        .filter(|r| !r.query.contains("watch"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(operator, Vec::<String>::new(), "no read, no write");

    let _ = stop.send(());
    tokio::time::timeout(CONTROLLER_DEADLINE, running)
        .await
        .expect("the controller stops")
        .expect("task")
        .expect("run");
}

fn reconciles(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("kandle_operator_reconciles_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn a_refused_child_waits_for_a_spec_change() {
    let h = Harness::start().await.expect("harness");
    h.server
        .refuse_writes::<Deployment>(
            "BAD NAME",
            "Deployment.apps \"x\" is invalid: spec.template.spec.containers[0].env[0].name: \
             Invalid value: \"BAD NAME\": a valid environment variable name must consist of \
             alphabetic characters, digits, '_', '-', or '.'",
        )
        .expect("refusal");
    let mds = h.mds(TEST_NAMESPACE);
    h.create(&md("minilm").with_env("BAD NAME", "1").build())
        .await
        .expect("create");
    let pass = |md: ModelDeployment| controller::reconcile(Arc::new(md), Arc::clone(&h.ctx));

    let err = pass(mds.get("minilm").await.expect("get"))
        .await
        .expect_err("the Deployment is refused");
    let action = controller::error_policy(
        Arc::new(mds.get("minilm").await.expect("get")),
        &err,
        Arc::clone(&h.ctx),
    );
    assert_eq!(action, Action::await_change(), "no retry of a refusal");
    let refused = mds.get("minilm").await.expect("get");
    let degraded = condition(&refused, conditions::DEGRADED).expect("Degraded");
    assert_eq!(degraded.status, "True");
    assert!(
        degraded.message.contains("BAD NAME"),
        "{}",
        degraded.message
    );

    // The status write wakes a pass: it applies no child (and settles the status in the
    // words of a pass that knows of the refusal); the pass after it sends nothing at all.
    let before = h.server.request_log().len();
    let action = pass(refused).await.expect("a quiet pass");
    assert!(action != Action::await_change());
    let log = h.server.request_log();
    assert!(
        writes(&log[before..])
            .iter()
            .all(|w| w.ends_with("/status")),
        "{:?}",
        writes(&log[before..])
    );
    let before = h.server.request_log().len();
    pass(mds.get("minilm").await.expect("get"))
        .await
        .expect("a quiet pass");
    let log = h.server.request_log();
    assert_eq!(writes(&log[before..]), Vec::<String>::new());

    // A fixed spec goes through at once.
    mds.patch(
        "minilm",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"runtime": {"env": [{"name": "GOOD_NAME", "value": "1"}]}}})),
    )
    .await
    .expect("fix the spec");
    pass(mds.get("minilm").await.expect("get"))
        .await
        .expect("the fixed spec applies");
    assert_eq!(h.deployments_of("minilm").expect("deployments").len(), 1);
}

#[tokio::test]
async fn the_client_counts_its_requests_and_keeps_its_rate() {
    let h = Harness::start().await.expect("harness");
    let metrics = Arc::new(Metrics::new());
    let config = kube::Config::new(h.server.url().parse().expect("url"));
    let limits = Limits {
        qps: 20.0,
        burst: 2,
    };
    let polite = client::client(config, limits, Arc::clone(&metrics)).expect("client");
    let mds: Api<ModelDeployment> = Api::namespaced(polite, TEST_NAMESPACE);
    let started = Instant::now();
    mds.create(&Default::default(), &md("minilm").build())
        .await
        .expect("create");
    mds.get("minilm").await.expect("get");
    mds.list(&ListParams::default()).await.expect("list");
    assert!(mds.get("missing").await.is_err());
    // Two went at once, the other two waited a twentieth of a second each.
    assert!(
        started.elapsed() >= Duration::from_millis(95),
        "{:?}",
        started.elapsed()
    );
    let text = metrics.render();
    for line in [
        r#"kandle_operator_api_requests_total{verb="create",resource="modeldeployments",code="201"} 1"#,
        r#"kandle_operator_api_requests_total{verb="get",resource="modeldeployments",code="200"} 1"#,
        r#"kandle_operator_api_requests_total{verb="list",resource="modeldeployments",code="200"} 1"#,
        r#"kandle_operator_api_requests_total{verb="get",resource="modeldeployments",code="404"} 1"#,
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}
