//! The official OpenAI Python client against the generation API: models, chat and text
//! completions whole and streamed (same text, same usage), log-probabilities, and the client's
//! typed errors for a too-long request and an unknown model (tests/clients/openai_chat.py).

mod common;

use common::{TestServer, LLM_NAME};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_client_chats_and_completes_whole_and_streamed() {
    let Some(python) = common::python_with("import openai", "pip install openai") else {
        return;
    };
    let mut context = None;
    let server = TestServer::start_llm(|config| context = config.max_input_tokens).await;
    let context = context.expect("the test LLM is served with a context limit");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/openai_chat.py");
    let output = tokio::process::Command::new(python)
        .arg(script)
        .arg(&server.url)
        .arg(LLM_NAME)
        .arg(context.to_string())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the openai client failed ({}):\n{stderr}\n{stdout}",
        output.status
    );
    println!("{stdout}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(summary["models"]
        .as_array()
        .unwrap()
        .contains(&LLM_NAME.into()));
    server.stop().await.unwrap();
}
