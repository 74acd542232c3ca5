//! The served vectors are sentence-transformers' vectors, whichever API or batching is used.

mod common;

use base64::Engine as _;
use common::{as_vector, cosine, max_abs_diff, reference, TestServer, SERVED_NAME};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_match_sentence_transformers() {
    let server = TestServer::start(|_| {}).await;
    let reference = reference();
    assert!(reference.sentences.len() >= 20);

    let (status, body) = server
        .post(
            "/v1/embeddings",
            &json!({"model": SERVED_NAME, "input": reference.sentences}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], SERVED_NAME);
    let expected_tokens: usize = reference.tokens.iter().sum();
    assert_eq!(body["usage"]["prompt_tokens"], expected_tokens);
    assert_eq!(body["usage"]["total_tokens"], expected_tokens);

    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), reference.sentences.len());
    for (i, (item, expected)) in data.iter().zip(&reference.embeddings).enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], i);
        let got = as_vector(&item["embedding"]);
        assert_eq!(got.len(), 384);
        let similarity = cosine(&got, expected);
        assert!(
            similarity >= 0.9999,
            "sentence {i} {:?}: cosine {similarity} to the reference",
            reference.sentences[i]
        );
        let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(
            (norm - 1.0).abs() < 1e-4,
            "sentence {i} is not normalized: {norm}"
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_results_equal_single_ones() {
    // A small token budget forces the batch to be split across several model batches too.
    let server = TestServer::start(|c| {
        c.max_batch_tokens = 128;
        c.max_input_tokens = Some(128);
    })
    .await;
    let sentences = reference().sentences;
    let batched = server.embed(json!(sentences)).await;
    let singles = futures::future::join_all(sentences.iter().map(|s| server.embed(json!(s)))).await;
    for (i, (one, single)) in batched.iter().zip(&singles).enumerate() {
        assert_eq!(single.len(), 1);
        let diff = max_abs_diff(one, &single[0]);
        assert!(
            diff < 1e-5,
            "sentence {i}: batched and single differ by {diff}"
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_and_v2_give_the_same_vectors() {
    let server = TestServer::start(|_| {}).await;
    let sentences = &reference().sentences[..6];
    let openai = server.embed(json!(sentences)).await;

    let (status, body) = server
        .post(
            &format!("/v2/models/{SERVED_NAME}/infer"),
            &json!({"id": "req-1", "inputs": [{
                "name": "text", "shape": [sentences.len()], "datatype": "BYTES", "data": sentences
            }]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], "req-1");
    assert_eq!(body["model_name"], SERVED_NAME);
    let output = &body["outputs"][0];
    assert_eq!(output["datatype"], "FP32");
    assert_eq!(output["shape"], json!([sentences.len(), 384]));
    let flat = as_vector(&output["data"]);
    for (i, row) in flat.chunks(384).enumerate() {
        let diff = max_abs_diff(row, &openai[i]);
        assert!(diff < 1e-5, "sentence {i}: v2 and OpenAI differ by {diff}");
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_ids_base64_and_dimensions_follow_openai() {
    let server = TestServer::start(|_| {}).await;
    // "hello world" in the model's vocabulary, with [CLS] and [SEP].
    let from_ids = server.embed(json!([101, 7592, 2088, 102])).await;
    let from_text = server.embed(json!("hello world")).await;
    assert!(max_abs_diff(&from_ids[0], &from_text[0]) < 1e-5);

    let (status, body) = server
        .post(
            "/v1/embeddings",
            &json!({"input": "hello world", "encoding_format": "base64", "dimensions": 64}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let short: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(short.len(), 64);
    let norm: f32 = short.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "shortened vector norm {norm}");
    assert!(cosine(&short, &from_text[0][..64]) > 0.99999);
    server.stop().await.unwrap();
}
