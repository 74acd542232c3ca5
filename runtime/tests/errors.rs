//! Bad requests get their documented status in the API's own error shape, and never hurt the
//! server.

mod common;

use common::{TestServer, SERVED_NAME};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// OpenAI's error shape, returning `(code, message)`.
fn openai_error(body: &Value) -> (String, String) {
    let error = &body["error"];
    assert!(error["type"].is_string(), "no error type in {body}");
    assert!(error.get("param").is_some(), "no error param in {body}");
    (
        error["code"].as_str().unwrap_or_default().to_owned(),
        error["message"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_errors_have_their_status_and_shape() {
    let server = TestServer::start(|c| c.max_input_tokens = Some(16)).await;
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "malformed JSON",
            b"{\"input\": [\"a\",".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "input of the wrong type",
            br#"{"input": 42}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "model of the wrong type",
            br#"{"input": "a", "model": 7}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "missing input",
            br#"{"model": "x"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "empty list",
            br#"{"input": []}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "empty string",
            br#"{"input": ""}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "unknown model",
            br#"{"input": "a", "model": "gpt-9"}"#.to_vec(),
            StatusCode::NOT_FOUND,
            "model_not_found",
        ),
        (
            "too many dimensions",
            br#"{"input": "a", "dimensions": 1000}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "token id outside the vocabulary",
            br#"{"input": [101, 99999999]}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "unknown encoding",
            br#"{"input": "a", "encoding_format": "hex"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
    ];
    for (what, body, status, code) in cases {
        let (got, answer) = server.post_raw("/v1/embeddings", body).await;
        assert_eq!(got, status, "{what}: {answer}");
        assert_eq!(openai_error(&answer).0, code, "{what}: {answer}");
    }

    let long = "word ".repeat(40);
    let (status, body) = server
        .post("/v1/embeddings", &json!({"input": ["short", long]}))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (code, message) = openai_error(&body);
    assert_eq!(code, "context_length_exceeded");
    assert!(message.contains("limit of 16 tokens"), "{message}");
    assert!(message.contains("input 1"), "{message}");

    // The server is unharmed.
    assert_eq!(server.embed(json!("still fine")).await.len(), 1);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_errors_have_their_status_and_shape() {
    let server = TestServer::start(|c| c.max_input_tokens = Some(16)).await;
    let infer = format!("/v2/models/{SERVED_NAME}/infer");
    let text = |data: Value, shape: Value| json!({"inputs": [{"name": "text", "shape": shape, "datatype": "BYTES", "data": data}]});
    let long = "word ".repeat(40);
    let cases = vec![
        (
            "malformed JSON",
            b"not json".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "inputs of the wrong type",
            br#"{"inputs": "a"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "empty input",
            serde_json::to_vec(&text(json!([]), json!([0]))).unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "shape mismatch",
            serde_json::to_vec(&text(json!(["a"]), json!([2]))).unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "too long",
            serde_json::to_vec(&text(json!([long]), json!([1]))).unwrap(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (what, body, status) in cases {
        let (got, answer) = server.post_raw(&infer, body).await;
        assert_eq!(got, status, "{what}: {answer}");
        assert!(answer["error"].is_string(), "{what}: {answer}");
    }
    let (status, body) = server
        .post("/v2/models/other/infer", &text(json!(["a"]), json!([1])))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("other"), "{body}");
    assert_eq!(
        server.get("/v2/models/other/ready").await.0,
        StatusCode::NOT_FOUND
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_serves_long_inputs_when_enabled() {
    let server = TestServer::start(|c| {
        c.max_input_tokens = Some(16);
        c.truncate = true;
    })
    .await;
    let (status, body) = server
        .post("/v1/embeddings", &json!({"input": "word ".repeat(40)}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["usage"]["prompt_tokens"], 16);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_deadline_get_504_and_the_server_stays_ready() {
    let server =
        TestServer::start(|c| c.request_timeout = std::time::Duration::from_millis(1)).await;
    let heavy: Vec<String> = (0..32)
        .map(|i| format!("deadline {i} ").repeat(30))
        .collect();
    let (status, body) = server
        .post("/v1/embeddings", &json!({"input": heavy}))
        .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(openai_error(&body).0, "timeout");
    assert_eq!(server.get("/readyz").await.0, StatusCode::OK);
    assert_eq!(server.get("/healthz").await.0, StatusCode::OK);
    server.stop().await.unwrap();
}
