//! The OpenAI generation API on SmolLM2-135M-Instruct over real HTTP: whole and streamed
//! answers, sampling options, limits and errors, cancellation, preemption and metrics.

mod common;

use std::time::Duration;

use common::{wait_until, TestServer, LLM_NAME};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn chat(content: &str, extra: Value) -> Value {
    let mut body = json!({
        "model": LLM_NAME,
        "messages": [{"role": "user", "content": content}],
        "temperature": 0,
        "max_tokens": 12,
    });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

fn content(answer: &Value) -> &str {
    answer["choices"][0]["message"]["content"].as_str().unwrap()
}

/// The `data:` payloads of a server-sent event stream, in order.
async fn stream(server: &TestServer, path: &str, body: &Value) -> Vec<String> {
    let response = server
        .client
        .post(format!("{}{path}", server.url))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    text.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

/// A metric's value from `/metrics` (the first series whose line starts with `name`).
async fn metric(server: &TestServer, name: &str) -> f64 {
    let text = server.get_text("/metrics").await;
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test]
async fn chat_answers_whole_and_streamed_alike() {
    let server = TestServer::start_llm(|_| {}).await;
    let (status, models) = server.get("/v1/models").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(models["data"][0]["id"], LLM_NAME);

    let body = chat("What is the capital of France?", json!({}));
    let (status, whole) = server.post("/v1/chat/completions", &body).await;
    assert_eq!(status, StatusCode::OK, "{whole}");
    assert_eq!(whole["object"], "chat.completion");
    assert_eq!(whole["choices"][0]["message"]["role"], "assistant");
    let text = content(&whole);
    assert!(!text.is_empty());
    assert!(
        !text.contains("<|im_end|>"),
        "special tokens are not text: {text:?}"
    );
    // The template's system prompt and the user turn: 37 tokens, as transformers renders them.
    assert_eq!(whole["usage"]["prompt_tokens"], 37);
    let completion = whole["usage"]["completion_tokens"].as_u64().unwrap();
    assert!((1..=12).contains(&completion));
    let finish = whole["choices"][0]["finish_reason"].as_str().unwrap();
    assert_eq!(finish == "length", completion == 12, "{whole}");

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let events = stream(&server, "/v1/chat/completions", &streamed).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let joined: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(joined, text, "streamed text equals the whole answer");
    let finished = &chunks[chunks.len() - 2];
    assert_eq!(finished["choices"][0]["finish_reason"], finish);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"], whole["usage"]);
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));
}

#[tokio::test]
async fn completions_stop_at_stop_strings_and_report_logprobs() {
    let server = TestServer::start_llm(|_| {}).await;
    let body = json!({"prompt": "1, 2, 3, 4,", "max_tokens": 20, "temperature": 0});
    let (status, whole) = server.post("/v1/completions", &body).await;
    assert_eq!(status, StatusCode::OK, "{whole}");
    let text = whole["choices"][0]["text"].as_str().unwrap().to_owned();
    assert!(text.contains('8'), "the model counts on: {text:?}");

    let stopped =
        json!({"prompt": "1, 2, 3, 4,", "max_tokens": 20, "temperature": 0, "stop": ["8"]});
    let (_, answer) = server.post("/v1/completions", &stopped).await;
    let cut = answer["choices"][0]["text"].as_str().unwrap();
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        cut,
        &text[..text.find('8').unwrap()],
        "the text ends before the stop"
    );

    let with_logprobs =
        json!({"prompt": "The sky is", "max_tokens": 4, "temperature": 0, "logprobs": 3});
    let (_, answer) = server.post("/v1/completions", &with_logprobs).await;
    let logprobs = &answer["choices"][0]["logprobs"];
    let tokens = logprobs["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 4);
    for (i, top) in logprobs["top_logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let top = top.as_object().unwrap();
        assert_eq!(top.len(), 3);
        let chosen = logprobs["token_logprobs"][i].as_f64().unwrap();
        assert!(chosen <= 0.0);
        // Greedy: the chosen token is the most likely one.
        let best = top
            .values()
            .map(|v| v.as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        assert!((best - chosen).abs() < 1e-5, "{top:?} vs {chosen}");
    }
}

#[tokio::test]
async fn the_same_seed_gives_the_same_text_alone_or_beside_others() {
    let server = TestServer::start_llm(|_| {}).await;
    let sampled = |seed: u64| {
        chat(
            "Write a short poem about the sea.",
            json!({"temperature": 0.9, "top_p": 0.95, "seed": seed, "max_tokens": 16}),
        )
    };
    let (_, alone) = server.post("/v1/chat/completions", &sampled(42)).await;
    let (_, other_seed) = server.post("/v1/chat/completions", &sampled(7)).await;
    assert_ne!(content(&alone), content(&other_seed), "the seed matters");

    let crowd: Vec<Value> = (0..5)
        .map(|i| chat(&format!("Count to {i}."), json!({"max_tokens": 16})))
        .collect();
    let server = &server;
    let together = futures::future::join_all(
        std::iter::once(sampled(42))
            .chain(crowd)
            .map(|body| async move { server.post("/v1/chat/completions", &body).await }),
    )
    .await;
    assert_eq!(together[0].0, StatusCode::OK);
    assert_eq!(content(&together[0].1), content(&alone));
}

#[tokio::test]
async fn bad_requests_get_openai_errors_that_name_the_problem() {
    let server = TestServer::start_llm(|_| {}).await;
    let cases = [
        (
            chat("hi", json!({"max_tokens": 2000})),
            "context_length_exceeded",
            "max_tokens",
            "1024",
        ),
        (
            chat("hi", json!({"temperature": 3})),
            "invalid_input",
            "temperature",
            "between 0 and 2",
        ),
        (
            chat("hi", json!({"n": 2})),
            "invalid_input",
            "n",
            "n other than 1",
        ),
        (
            chat("hi", json!({"max_tokens": 0})),
            "invalid_input",
            "max_tokens",
            "at least 1",
        ),
        (
            json!({"messages": []}),
            "invalid_input",
            "messages",
            "must not be empty",
        ),
        (
            chat("hi", json!({"logprobs": true, "top_logprobs": 50})),
            "invalid_input",
            "top_logprobs",
            "at most 20",
        ),
    ];
    for (body, code, param, words) in cases {
        let (status, error) = server.post("/v1/chat/completions", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {error}");
        assert_eq!(error["error"]["code"], code, "{error}");
        assert_eq!(error["error"]["param"], param, "{error}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{message:?} should say {words:?}");
    }
    let (status, error) = server
        .post("/v1/embeddings", &json!({"input": "hello"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/v1/chat/completions"));
    let (status, _) = server.post_raw("/v1/completions", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The server still answers.
    let (status, _) = server
        .post("/v1/chat/completions", &chat("hi", json!({})))
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_client_that_leaves_frees_its_cache_at_once() {
    let server = TestServer::start_llm(|_| {}).await;
    let body = chat(
        "Tell me a long story.",
        json!({"max_tokens": 900, "stream": true, "ignore_eos": true}),
    );
    let response = server
        .client
        .post(format!("{}/v1/chat/completions", server.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut bytes = response.bytes_stream();
    // Wait for a few tokens, then hang up.
    let mut seen = 0;
    while seen < 3 {
        let chunk = bytes.next().await.unwrap().unwrap();
        seen += String::from_utf8_lossy(&chunk).matches("data: ").count();
    }
    assert!(metric(&server, "kandle_kv_cache_usage_ratio").await > 0.0);
    drop(bytes);
    wait_until(Duration::from_secs(10), "the cache to be freed", || async {
        metric(&server, "kandle_kv_cache_usage_ratio").await == 0.0
            && metric(&server, "kandle_running_requests").await == 0.0
    })
    .await;
    assert_eq!(
        metric(&server, "kandle_abandoned_requests_total").await,
        1.0,
        "counted as cancelled"
    );
}

#[tokio::test]
async fn a_full_cache_preempts_and_resumes_without_failing_or_changing_answers() {
    // About 5 blocks of 64 tokens: four 100-token conversations cannot all hold their cache.
    let server = TestServer::start_llm(|c| {
        c.kv_cache_memory = Some(15 << 20);
        c.max_input_tokens = Some(256);
    })
    .await;
    let bodies: Vec<Value> = (0..4)
        .map(|i| {
            chat(
                &format!("List {} animals.", i + 3),
                json!({"max_tokens": 60, "ignore_eos": true}),
            )
        })
        .collect();
    let mut alone = Vec::new();
    for body in &bodies {
        let (status, answer) = server.post("/v1/chat/completions", body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        alone.push(content(&answer).to_owned());
    }
    let server = &server;
    let together = futures::future::join_all(
        bodies
            .iter()
            .map(|body| async move { server.post("/v1/chat/completions", body).await }),
    )
    .await;
    for ((status, answer), expected) in together.iter().zip(&alone) {
        assert_eq!(*status, StatusCode::OK, "{answer}");
        assert_eq!(
            content(answer),
            expected,
            "greedy answers do not change when preempted"
        );
    }
    assert!(metric(server, "kandle_preemptions_total").await > 0.0);
    assert_eq!(metric(server, "kandle_kv_cache_usage_ratio").await, 0.0);
}

#[tokio::test]
async fn overload_is_refused_at_once_and_metrics_are_exported() {
    let server = TestServer::start_llm(|c| c.max_queued_tokens = Some(1024)).await;
    let long = chat(
        "Tell me a long story.",
        json!({"max_tokens": 900, "stream": true, "ignore_eos": true}),
    );
    let holder = server
        .client
        .post(format!("{}/v1/chat/completions", server.url))
        .json(&long)
        .send()
        .await
        .unwrap();
    // 937 tokens are booked; 37 + 200 more do not fit in 1,024.
    let (status, error) = server
        .post(
            "/v1/chat/completions",
            &chat("hi", json!({"max_tokens": 200})),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{error}");
    assert_eq!(error["error"]["type"], "rate_limit_error");
    drop(holder);

    wait_until(
        Duration::from_secs(10),
        "the budget to come back",
        || async {
            server
                .post("/v1/chat/completions", &chat("hi", json!({})))
                .await
                .0
                == StatusCode::OK
        },
    )
    .await;
    for name in [
        "kandle_time_to_first_token_seconds_count",
        "kandle_inter_token_latency_seconds_count",
        "kandle_generation_duration_seconds_count",
        "kandle_prompt_tokens_total",
        "kandle_generated_tokens_total",
    ] {
        assert!(metric(&server, name).await > 0.0, "{name}");
    }
    assert!(metric(&server, "kandle_kv_cache_blocks").await > 0.0);
}
