//! The autoscaler in the running controller, on the fake API server with a fake metrics
//! source: load read from a ready pod scales the Deployment up within seconds, and its going
//! away scales it down after the stabilization window, never below `minReplicas`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kandle_crds::AutoscalingSpec;
use kandle_operator::autoscale::{reasons, Windows};
use kandle_operator::config::AutoscaleConfig;
use kandle_operator::controller::{self, Context};
use kandle_operator::metrics::Metrics;
use kandle_operator::scrape::{FakeMetrics, PodMetrics};
use kandle_operator::testing::{md, TEST_NAMESPACE};
use kandle_operator::OperatorConfig;
use kandle_tests::harness::{Harness, CONTROLLER_DEADLINE};
use kandle_tests::wait;
use serde_json::json;

const POD_IP: &str = "10.1.0.7";

fn in_flight(n: f64) -> PodMetrics {
    PodMetrics {
        in_flight: n,
        ..PodMetrics::default()
    }
}

/// Waits until the Deployment asks for `want` replicas, making it available as it goes (the
/// Deployment controller's part), and returns how long that took.
async fn replicas_reach(h: &Harness, want: i32, what: &str) -> Duration {
    let started = Instant::now();
    wait::until(what, CONTROLLER_DEADLINE * 3, || async {
        let Some(deployment) = h.deployments_of("minilm")?.into_iter().next() else {
            return Ok(None);
        };
        h.make_available(&deployment)?;
        Ok((deployment.spec.and_then(|s| s.replicas) == Some(want)).then_some(()))
    })
    .await
    .expect(what);
    started.elapsed()
}

#[tokio::test]
async fn replicas_follow_the_load_read_from_the_pods() {
    let h = Harness::start().await.expect("harness");
    let fake = Arc::new(FakeMetrics::default());
    let config = OperatorConfig {
        autoscale: AutoscaleConfig {
            interval: Duration::from_millis(200),
            windows: Windows {
                stable: Duration::from_secs(3),
                panic: Duration::from_secs(1),
                ..Windows::default()
            },
        },
        ..OperatorConfig::default()
    };
    let metrics = Arc::new(Metrics::new());
    let ctx = Context::with_source(
        h.client.clone(),
        config,
        metrics.clone(),
        None,
        fake.clone(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(controller::run_with_context(ctx, async move {
        let _ = stopped.await;
    }));

    let mut minilm = md("minilm").build();
    minilm.spec.autoscaling = Some(AutoscalingSpec {
        min_replicas: 1,
        max_replicas: 6,
        metric: Default::default(),
        target: 8.0,
        scale_up_stabilization: "0s".to_string(),
        scale_down_stabilization: "2s".to_string(),
    });
    h.create(&minilm).await.expect("create");
    replicas_reach(&h, 1, "one replica at first").await;

    let deployment = h.deployments_of("minilm").expect("deployments").remove(0);
    h.create_pod_of(
        &deployment,
        json!({"phase": "Running", "podIP": POD_IP,
               "conditions": [{"type": "Ready", "status": "True"}]}),
    )
    .await
    .expect("a ready pod");

    fake.set(POD_IP, in_flight(32.0));
    let took = replicas_reach(&h, 4, "32 in flight at 8 each asks for 4 replicas").await;
    assert!(took < Duration::from_secs(5), "scaled up after {took:?}");
    let md = h.mds(TEST_NAMESPACE).get("minilm").await.expect("get");
    let status = md
        .status
        .and_then(|s| s.autoscaling)
        .expect("autoscaling status");
    assert_eq!(status.desired_replicas, 4);
    assert!(status.last_scale_time.is_some());

    fake.set(POD_IP, in_flight(200.0));
    replicas_reach(&h, 6, "more load than maxReplicas carry stops at 6").await;

    fake.set(POD_IP, in_flight(0.0));
    let took = replicas_reach(&h, 1, "no load goes back to minReplicas").await;
    assert!(
        took >= Duration::from_secs(2),
        "scaled down after {took:?}, inside the 2 s window"
    );
    let md = h.mds(TEST_NAMESPACE).get("minilm").await.expect("get");
    let status = md
        .status
        .and_then(|s| s.autoscaling)
        .expect("autoscaling status");
    assert_eq!(status.reason, reasons::SCALED_DOWN);

    let rendered = metrics.render();
    assert!(
        rendered.contains("kandle_operator_pod_metrics_reads_total{result=\"ok\"}"),
        "the readings are counted: {rendered}"
    );

    let _ = stop.send(());
    tokio::time::timeout(CONTROLLER_DEADLINE, running)
        .await
        .expect("the controller stops on shutdown")
        .expect("controller task")
        .expect("controller run");
}
