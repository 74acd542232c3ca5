//! Talking to the runtime in a pod the way a client in the cluster would: an OpenAI embeddings
//! request to the pod's IP on the runtime port.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::{json, Value};

/// The port `kandle-runtime` serves on in a pod.
pub const RUNTIME_PORT: u16 = 8080;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Embeds `text` with the model served at `pod_ip`; the vector, or why there is none.
pub async fn embed(pod_ip: &str, text: &str) -> anyhow::Result<Vec<f32>> {
    let url = format!("http://{pod_ip}:{RUNTIME_PORT}/v1/embeddings");
    let response = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()?
        .post(&url)
        .json(&json!({ "input": [text] }))
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .with_context(|| format!("POST {url}: reading the answer ({status})"))?;
    anyhow::ensure!(status.is_success(), "POST {url} answered {status}: {body}");
    embedding_of(&body).with_context(|| format!("POST {url}: no embedding in {body}"))
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
}
