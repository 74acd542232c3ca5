//! The full kube-runtime controller (`kandle_operator::controller::run`) against the fake's
//! watches: a new ModelDeployment gets its Deployment without anyone calling reconcile, and the
//! Deployment becoming available makes the ModelDeployment Ready.

use k8s_openapi::api::apps::v1::Deployment;
use kandle_crds::conditions;
use kandle_operator::controller;
use kandle_operator::testing::{md, TEST_NAMESPACE};
use kandle_operator::OperatorConfig;
use kandle_tests::harness::{condition, Harness, CONTROLLER_DEADLINE};
use kandle_tests::wait;

#[tokio::test]
async fn the_controller_reacts_to_watch_events() {
    let h = Harness::start().await.expect("harness");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(controller::run(
        h.client.clone(),
        OperatorConfig::default(),
        async move {
            let _ = stopped.await;
        },
    ));

    h.create(&md("minilm").with_replicas(2).build())
        .await
        .expect("create");
    let deployment: Deployment = wait::until(
        "the controller to create a Deployment",
        CONTROLLER_DEADLINE,
        || async { Ok(h.deployments_of("minilm")?.into_iter().next()) },
    )
    .await
    .expect("a Deployment appears");
    assert_eq!(deployment.spec.as_ref().and_then(|s| s.replicas), Some(2));

    h.make_available(&deployment).expect("available");
    wait::until(
        "the ModelDeployment to become Ready",
        CONTROLLER_DEADLINE,
        || async {
            let md = h.mds(TEST_NAMESPACE).get("minilm").await?;
            Ok(condition(&md, conditions::READY).filter(|c| c.status == "True"))
        },
    )
    .await
    .expect("Ready after the Deployment's status changed");

    let _ = stop.send(());
    let result = tokio::time::timeout(CONTROLLER_DEADLINE, running)
        .await
        .expect("the controller stops on shutdown");
    result.expect("controller task").expect("controller run");
}
