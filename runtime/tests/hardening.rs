//! The server under faults and abuse: a model that produces NaN, a tokenizer that does not fit
//! its model, limits that cannot work, `dimensions` on a model that does not normalize.

mod common;

use std::path::Path;
use std::time::Duration;

use candle_core::{Device, Tensor};
use common::{model_variant, replace_file, sample, TestServer};
use kandle_runtime::Config;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A token id the warm-up text does not use; its embedding row is poisoned below.
const POISONED_ID: u32 = 28000;

fn poison_embedding_row(dir: &Path) {
    let path = dir.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let key = tensors
        .keys()
        .find(|k| k.ends_with("word_embeddings.weight"))
        .cloned()
        .expect("the model has word embeddings");
    let mut rows = tensors[&key].to_vec2::<f32>().unwrap();
    rows[POISONED_ID as usize].fill(f32::NAN);
    let (n, dim) = (rows.len(), rows[0].len());
    let poisoned = Tensor::from_vec(rows.concat(), (n, dim), &Device::Cpu).unwrap();
    tensors.insert(key, poisoned);
    std::fs::remove_file(&path).unwrap();
    candle_core::safetensors::save(&tensors, &path).unwrap();
}

async fn fails(config: Config) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        kandle_runtime::serve(config, listener, std::future::pending()),
    )
    .await
    .expect("serve gives up instead of hanging");
    format!("{:#}", result.expect_err("the server must refuse to start"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nan_outputs_fail_the_request_and_repeated_failures_fail_the_liveness_probe() {
    let dir = model_variant("nan");
    poison_embedding_row(&dir);
    let server = TestServer::start(|c| {
        c.model_dir = dir.clone();
        c.unhealthy_after_failures = 3;
    })
    .await;
    let poisoned = json!({"input": [[101, POISONED_ID, 102]]});
    for attempt in 1..=3 {
        let (status, body) = server.post("/v1/embeddings", &poisoned).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("non-finite"), "{message}");
        let (health, _) = server.get("/healthz").await;
        let expected = if attempt < 3 {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        assert_eq!(health, expected, "/healthz after {attempt} failed batches");
    }
    let (_, health) = server.get("/healthz").await;
    assert!(
        health["reason"].as_str().unwrap().contains("NaN"),
        "{health}"
    );
    assert_eq!(
        server.get("/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        server.get("/v2/health/live").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let metrics = server.get_text("/metrics").await;
    assert_eq!(
        sample(
            &metrics,
            r#"kandle_batch_failures_total{reason="non_finite"}"#
        ),
        Some(3.0),
        "{metrics}"
    );

    // A batch that works again heals the probe: the failure was in the input, not the model.
    assert_eq!(server.embed(json!("a healthy sentence")).await.len(), 1);
    assert_eq!(server.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(server.get("/readyz").await.0, StatusCode::OK);
    server.stop().await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokenizer_larger_than_the_embedding_table_is_refused_at_load() {
    let dir = model_variant("vocab");
    let mut tokenizer: Value =
        serde_json::from_slice(&std::fs::read(dir.join("tokenizer.json")).unwrap()).unwrap();
    tokenizer["added_tokens"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "id": 30522, "content": "[EXTRA]", "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true
        }));
    replace_file(&dir, "tokenizer.json", tokenizer.to_string());
    let message = fails(Config::for_model(&dir)).await;
    assert!(
        message.contains("30523 tokens") && message.contains("30522 rows"),
        "{message}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_budget_below_the_longest_input_is_refused_at_load() {
    let mut config = Config::for_model(common::model_dir());
    config.max_batch_tokens = 100;
    let message = fails(config).await;
    assert!(
        message.contains("--max-batch-tokens 100") && message.contains("256 tokens"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dimensions_renormalize_only_when_the_model_normalizes() {
    let dir = model_variant("unnormalized");
    let modules: Vec<Value> =
        serde_json::from_slice(&std::fs::read(dir.join("modules.json")).unwrap()).unwrap();
    let without: Vec<Value> = modules
        .into_iter()
        .filter(|m| !m["type"].as_str().unwrap_or("").ends_with("Normalize"))
        .collect();
    replace_file(&dir, "modules.json", serde_json::to_vec(&without).unwrap());
    let server = TestServer::start(|c| c.model_dir = dir.clone()).await;

    let full = server.embed(json!("hello world")).await.remove(0);
    let norm: f32 = full.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!(
        (norm - 1.0).abs() > 0.01,
        "this model's output is not normalized"
    );
    for dims in [8, 384] {
        let (status, body) = server
            .post(
                "/v1/embeddings",
                &json!({"input": "hello world", "dimensions": dims}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let short = common::as_vector(&body["data"][0]["embedding"]);
        assert_eq!(short.len(), dims);
        assert!(
            common::max_abs_diff(&short, &full[..dims]) < 1e-6,
            "dimensions {dims} must be the prefix, not rescaled"
        );
    }
    server.stop().await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}
