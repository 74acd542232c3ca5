//! Talking to the runtime in a pod the way a client in the cluster would: OpenAI embeddings and
//! chat completion requests to the pod's IP on the runtime port, and reading streamed answers.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::{json, Value};

/// The port `kandle-runtime` serves on in a pod.
pub const RUNTIME_PORT: u16 = 8080;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A completion decodes token by token on CPUs the whole cluster shares.
const GENERATION_TIMEOUT: Duration = Duration::from_secs(60);

/// POSTs `body` to `path` of the runtime at `pod_ip` within `timeout`; the status and the
/// answer's text.
async fn post(
    pod_ip: &str,
    path: &str,
    body: &Value,
    timeout: Duration,
) -> anyhow::Result<(reqwest::StatusCode, String)> {
    let url = format!("http://{pod_ip}:{RUNTIME_PORT}{path}");
    let response = reqwest::Client::builder()
        .timeout(timeout)
        .build()?
        .post(&url)
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .with_context(|| format!("POST {url}: reading the answer ({status})"))?;
    Ok((status, text))
}

/// Embeds `text` with the model served at `pod_ip`; the vector, or why there is none.
pub async fn embed(pod_ip: &str, text: &str) -> anyhow::Result<Vec<f32>> {
    let path = "/v1/embeddings";
    let request = json!({ "input": [text] });
    let (status, text) = post(pod_ip, path, &request, REQUEST_TIMEOUT).await?;
    let body: Value = serde_json::from_str(&text)
        .with_context(|| format!("{pod_ip}: POST {path} answered {status}, not JSON: {text}"))?;
    anyhow::ensure!(
        status.is_success(),
        "{pod_ip}: POST {path} answered {status}: {body}"
    );
    embedding_of(&body).with_context(|| format!("{pod_ip}: POST {path}: no embedding in {body}"))
}

/// POSTs the chat completion request `body` to the model served at `pod_ip`; the status and
/// the answer as sent: JSON, or server-sent events when `body` asks to stream.
pub async fn post_chat(
    pod_ip: &str,
    body: &Value,
) -> anyhow::Result<(reqwest::StatusCode, String)> {
    post(pod_ip, "/v1/chat/completions", body, GENERATION_TIMEOUT).await
}

/// The `data:` payloads of a server-sent event stream, in order.
pub fn sse_data(stream: &str) -> Vec<&str> {
    stream
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim_start)
        .collect()
}

/// The text a streamed chat completion carries: its chunks' `delta.content`, concatenated.
/// `None` when a payload other than the closing `[DONE]` is not a JSON chunk.
pub fn streamed_content(stream: &str) -> Option<String> {
    let mut content = String::new();
    for data in sse_data(stream).into_iter().filter(|d| *d != "[DONE]") {
        let chunk: Value = serde_json::from_str(data).ok()?;
        content.push_str(
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or(""),
        );
    }
    Some(content)
}

/// The first embedding of an OpenAI embeddings answer.
pub fn embedding_of(body: &Value) -> Option<Vec<f32>> {
    body["data"][0]["embedding"]
        .as_array()?
        .iter()
        .map(|v| v.as_f64().map(|f| f as f32))
        .collect()
}

impl super::E2e {
    /// Embeds `text` through the first Ready pod of the ModelDeployment that answers, as a
    /// Service would route it; the pod's name and the vector, or each Ready pod's failure.
    pub async fn embed_via_ready_pod(
        &self,
        md_name: &str,
        text: &str,
    ) -> anyhow::Result<(String, Vec<f32>)> {
        use kube::ResourceExt as _;
        let mut failures = Vec::new();
        for pod in self.pods_of(md_name).await? {
            let Some(ip) = super::waits::pod_ip(&pod).filter(|_| super::waits::pod_is_ready(&pod))
            else {
                continue;
            };
            match embed(&ip, text).await {
                Ok(vector) => return Ok((pod.name_any(), vector)),
                Err(e) => failures.push(format!("{} ({ip}): {e:#}", pod.name_any())),
            }
        }
        if failures.is_empty() {
            anyhow::bail!("no Ready pod of {md_name}");
        }
        anyhow::bail!(
            "no Ready pod of {md_name} answered: {}",
            failures.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_embedding_is_read() {
        let body = json!({"object": "list", "data": [{"index": 0, "embedding": [0.5, -1.0]}]});
        assert_eq!(embedding_of(&body), Some(vec![0.5, -1.0]));
        assert_eq!(embedding_of(&json!({"error": "x"})), None);
    }

    #[test]
    fn streamed_deltas_are_concatenated() {
        let stream = concat!(
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}\n\n",
            "data: [DONE]\n\n",
        );
        assert_eq!(sse_data(stream).last(), Some(&"[DONE]"));
        assert_eq!(streamed_content(stream).as_deref(), Some("Hello"));
        assert_eq!(streamed_content("data: {oops\n\n"), None);
    }
}
