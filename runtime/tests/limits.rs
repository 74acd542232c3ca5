//! Admission and bounded memory: token budgets, fair batches, body size and body time limits,
//! and limits enforced while parsing.

mod common;

use std::time::{Duration, Instant};

use common::{sample, wait_until, TestServer};
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_budget_answers_429_at_once_and_admitted_requests_finish() {
    let server = TestServer::start(|c| c.max_queued_tokens = Some(600)).await;
    // About 16 x 22 tokens per request: at most one or two fit in the budget at a time.
    let texts: Vec<String> = (0..16)
        .map(|i| format!("request number {i} carries a sentence of some twenty tokens or so, ok"))
        .collect();
    let body = json!({"input": texts});
    let requests = (0..16).map(|_| async {
        let started = Instant::now();
        let (status, answer) = server.post("/v1/embeddings", &body).await;
        (status, answer, started.elapsed())
    });
    let answers = futures::future::join_all(requests).await;

    let mut served = Vec::new();
    let mut refused = Vec::new();
    for (status, answer, took) in &answers {
        match *status {
            StatusCode::OK => served.push(*took),
            StatusCode::TOO_MANY_REQUESTS => {
                let message = answer["error"]["message"].as_str().unwrap();
                assert!(message.contains("tokens of work queued"), "{message}");
                refused.push(*took);
            }
            other => panic!("unexpected {other}: {answer}"),
        }
    }
    assert!(
        !served.is_empty() && !refused.is_empty(),
        "{served:?} {refused:?}"
    );
    let slowest_refusal = refused.iter().max().unwrap();
    let fastest_answer = served.iter().min().unwrap();
    assert!(
        slowest_refusal < fastest_answer,
        "a 429 ({slowest_refusal:?}) must come sooner than any answer ({fastest_answer:?})"
    );

    let metrics = server.get_text("/metrics").await;
    assert_eq!(sample(&metrics, "kandle_max_queued_tokens"), Some(600.0));
    assert_eq!(
        sample(&metrics, "kandle_queued_tokens"),
        Some(0.0),
        "{metrics}"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_request_is_not_held_back_by_a_long_one_queued_before_it() {
    // Small batches, so the long request needs many of them.
    let server = TestServer::start(|c| c.max_batch_tokens = 1024).await;
    let long: Vec<String> = (0..64)
        .map(|i| format!("long request input {i} ").repeat(25))
        .collect();
    let long_body = json!({"input": long, "model": common::SERVED_NAME});
    let url = format!("{}/v1/embeddings", server.url);
    let client = server.client.clone();
    let long_request =
        tokio::spawn(async move { client.post(url).json(&long_body).send().await.unwrap() });
    wait_until(
        Duration::from_secs(30),
        "the long request to queue",
        || async {
            let metrics = server.get_text("/metrics").await;
            sample(&metrics, "kandle_queue_depth").unwrap_or(0.0) > 0.0
        },
    )
    .await;

    assert_eq!(server.embed(json!("a short one")).await.len(), 1);
    assert!(
        !long_request.is_finished(),
        "the short request had to wait for the whole long one"
    );
    assert_eq!(long_request.await.unwrap().status(), StatusCode::OK);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_bounded_by_size_and_time_and_inputs_while_parsing() {
    let server = TestServer::start(|c| {
        c.max_body_bytes = 64 * 1024;
        c.max_pending_body_bytes = 1024 * 1024;
        c.body_timeout = Duration::from_millis(300);
    })
    .await;

    let too_big = format!(r#"{{"input": "{}"}}"#, "a".repeat(70 * 1024));
    let (status, body) = server.post_raw("/v1/embeddings", too_big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "body_too_large");

    // 60 KiB of token ids: refused at the 257th id, not after building a tree of 30,000 numbers.
    let ids = format!(r#"{{"input": [{}]}}"#, vec!["7"; 30_000].join(","));
    let (status, body) = server.post_raw("/v1/embeddings", ids).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("more than 256 token ids"),
        "{body}"
    );
    let texts = format!(r#"{{"input": [{}]}}"#, vec![r#""a""#; 10_000].join(","));
    let (status, body) = server.post_raw("/v1/embeddings", texts).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("more than 64 inputs"),
        "{body}"
    );

    // A client that announces a body and never sends it gets 408, and its slot back.
    let address = server.url.trim_start_matches("http://");
    let mut slow = tokio::net::TcpStream::connect(address).await.unwrap();
    slow.write_all(
        b"POST /v1/embeddings HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
          content-length: 100\r\n\r\n{\"input\":",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 1024];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = slow.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed without an answer");
            answer.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("the server answers a stalled body");
    let head = String::from_utf8_lossy(&answer);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");

    assert_eq!(server.embed(json!("still serving")).await.len(), 1);
    server.stop().await.unwrap();
}
