//! Overload is answered at once with 429, and the server stays healthy.

mod common;

use common::TestServer;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excess_requests_get_429_and_the_server_recovers() {
    let server = TestServer::start(|c| c.max_concurrent_requests = 2).await;
    // Each request carries enough work that the first two are still running when the rest arrive.
    let heavy: Vec<String> = (0..32)
        .map(|i| format!("request {i} ").repeat(20))
        .collect();
    let body = json!({"input": heavy});
    let requests = (0..12).map(|_| server.post("/v1/embeddings", &body));
    let answers = futures::future::join_all(requests).await;

    let mut ok = 0;
    let mut rejected = 0;
    for (status, body) in &answers {
        match *status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                rejected += 1;
                assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
                assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(ok >= 1, "no request was served");
    assert!(rejected >= 1, "no request was rejected with 429");

    assert_eq!(server.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(server.get("/readyz").await.0, StatusCode::OK);
    assert_eq!(server.embed(json!("after the storm")).await.len(), 1);

    let metrics = server.get_text("/metrics").await;
    assert!(
        metrics.contains(r#"kandle_requests_total{route="/v1/embeddings",code="429"}"#),
        "429s are counted:\n{metrics}"
    );
    assert!(metrics.contains("kandle_requests_in_flight 0"), "{metrics}");
    assert!(metrics.contains("kandle_queue_depth 0"), "{metrics}");
    assert!(metrics.contains("kandle_queued_tokens 0"), "{metrics}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_give_up_are_not_counted_as_in_flight() {
    let server = TestServer::start(|_| {}).await;
    let heavy: Vec<String> = (0..64)
        .map(|i| format!("abandoned {i} ").repeat(30))
        .collect();
    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(50))
        .build()
        .unwrap();
    for _ in 0..4 {
        let answer = impatient
            .post(format!("{}/v1/embeddings", server.url))
            .json(&json!({"input": heavy}))
            .send()
            .await;
        assert!(answer.is_err(), "the client was expected to time out first");
    }
    common::wait_until(
        std::time::Duration::from_secs(30),
        "in-flight and queued work to drain",
        || async {
            let metrics = server.get_text("/metrics").await;
            metrics.contains("kandle_requests_in_flight 0")
                && metrics.contains("kandle_queue_depth 0")
                && metrics.contains("kandle_queued_tokens 0")
        },
    )
    .await;
    assert_eq!(server.embed(json!("still serving")).await.len(), 1);
    server.stop().await.unwrap();
}
