//! Test support: the real model, an in-process server on 127.0.0.1:0, and polling helpers.
#![allow(dead_code)]

pub mod generation;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kandle_runtime::Config;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const SERVED_NAME: &str = "all-minilm-l6-v2";
pub const LLM_NAME: &str = "smollm2";

/// The all-MiniLM-L6-v2 folder: `$KANDLE_TEST_MODEL_DIR`, else `<repo>/.model-cache/all-MiniLM-L6-v2`.
pub fn model_dir() -> PathBuf {
    let dir = std::env::var_os("KANDLE_TEST_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.model-cache/all-MiniLM-L6-v2")
        });
    assert!(
        dir.join("model.safetensors").is_file(),
        "the test model is missing at {}: run scripts/fetch-model.sh (or set KANDLE_TEST_MODEL_DIR)",
        dir.display()
    );
    dir
}

/// The SmolLM2-135M-Instruct GGUF file: in `$KANDLE_TEST_LLM_DIR`, else
/// `<repo>/.model-cache/SmolLM2-135M-Instruct`.
pub fn llm_file() -> PathBuf {
    let dir = std::env::var_os("KANDLE_TEST_LLM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.model-cache/SmolLM2-135M-Instruct")
        });
    let file = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        file.is_file(),
        "the test LLM is missing at {}: run scripts/fetch-llm.sh (or set KANDLE_TEST_LLM_DIR)",
        file.display()
    );
    file
}

#[derive(Deserialize)]
pub struct Reference {
    pub sentences: Vec<String>,
    pub tokens: Vec<usize>,
    pub embeddings: Vec<Vec<f32>>,
}

/// sentence-transformers' output for the fixed sentences (tests/reference/make_reference.py).
pub fn reference() -> Reference {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/reference/embeddings.json"
    );
    let text = std::fs::read_to_string(path).expect("reference embeddings are committed");
    serde_json::from_str(&text).expect("reference embeddings parse")
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "vector lengths differ");
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn as_vector(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .expect("embedding is an array")
        .iter()
        .map(|x| x.as_f64().expect("embedding values are numbers") as f32)
        .collect()
}

/// `$PYTHON` (default `python3`) when it can run `import_line`, or `None` after printing why
/// not, with `pip_hint` as the fix. Under `CI` a missing module is a failure, not a skip.
pub fn python_with(import_line: &str, pip_hint: &str) -> Option<String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let found = std::process::Command::new(&python)
        .args(["-c", import_line])
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(python);
    }
    let why = format!("{python} cannot run `{import_line}` ({pip_hint})");
    assert!(std::env::var_os("CI").is_none(), "{why}");
    eprintln!("skipped: {why}");
    None
}

/// Polls `check` until it is true, failing the test after `deadline`.
pub async fn wait_until<F, Fut>(deadline: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub struct TestServer {
    pub url: String,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Serves the test model with default limits changed by `configure`, and waits until ready.
    pub async fn start(configure: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::for_model(model_dir());
        config.served_name = Some(SERVED_NAME.to_owned());
        config.model_version = "test".to_owned();
        // Warm-up runs the largest batch; the default (16,384 tokens) takes seconds on a busy
        // 2-core machine, for every server a test starts.
        config.max_batch_tokens = 2048;
        // The measured default budget depends on how busy the machine was at warm-up; tests
        // that are about the budget set their own.
        config.max_queued_tokens = Some(1_000_000);
        configure(&mut config);
        Self::serve(config).await
    }

    /// Serves SmolLM2-135M-Instruct with small limits (a 1,024-token context, a 64-token step,
    /// a KV cache of about 1,400 tokens) changed by `configure`, and waits until ready.
    pub async fn start_llm(configure: impl FnOnce(&mut Config)) -> Self {
        let file = llm_file();
        Self::start_generation(file.parent().unwrap(), configure).await
    }

    /// [`TestServer::start_llm`]'s limits for the generation model in `dir`.
    pub async fn start_generation(
        dir: impl Into<PathBuf>,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        let mut config = Config::for_model(dir);
        config.served_name = Some(LLM_NAME.to_owned());
        config.model_version = "test".to_owned();
        config.max_input_tokens = Some(1024);
        config.step_tokens = 64;
        config.max_batch_requests = 16;
        config.kv_cache_memory = Some(64 << 20);
        configure(&mut config);
        Self::serve(config).await
    }

    /// Serves `config` as it is, and waits until ready.
    async fn serve(config: Config) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(kandle_runtime::serve(config, listener, async {
            let _ = signal.await;
        }));
        let mut server = Self {
            url,
            client: reqwest::Client::new(),
            shutdown: Some(shutdown),
            task: Some(task),
        };
        let started = Instant::now();
        while server.get("/readyz").await.0 != StatusCode::OK {
            if server.task.as_ref().is_some_and(JoinHandle::is_finished) {
                let result = server.task.take().unwrap().await.unwrap();
                panic!("the server stopped before it was ready: {result:?}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the server was not ready within 120 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        match self.client.get(format!("{}{path}", self.url)).send().await {
            Ok(response) => {
                let status = response.status();
                (status, response.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (StatusCode::SERVICE_UNAVAILABLE, Value::Null),
        }
    }

    pub async fn get_text(&self, path: &str) -> String {
        let response = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        response.text().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.post_raw(path, serde_json::to_vec(body).unwrap()).await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.bytes().await.unwrap();
        let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "{path} answered {status} with a non-JSON body: {:?}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, value)
    }

    /// OpenAI embeddings of `input`, asserting success.
    pub async fn embed(&self, input: Value) -> Vec<Vec<f32>> {
        let (status, body) = self
            .post(
                "/v1/embeddings",
                &serde_json::json!({"model": SERVED_NAME, "input": input}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, item)| {
                assert_eq!(item["index"], i);
                as_vector(&item["embedding"])
            })
            .collect()
    }

    /// Triggers shutdown and waits for `serve` to return.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.task.take() {
            Some(task) => tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("server stops within 30s")
                .expect("server task completes"),
            None => Ok(()),
        }
    }
}

/// A copy of the test model folder named `name`, with its files linked, for a test to change.
/// Write files with [`replace_file`], which never touches the original.
pub fn model_variant(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kandle-variant-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(model_dir()).unwrap() {
        let entry = entry.unwrap();
        std::os::unix::fs::symlink(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}

/// Replaces `file` of a model variant (a link to the original) with `contents`.
pub fn replace_file(dir: &std::path::Path, file: &str, contents: impl AsRef<[u8]>) {
    let path = dir.join(file);
    std::fs::remove_file(&path).unwrap();
    std::fs::write(path, contents).unwrap();
}

/// A Prometheus sample's value from an exposition, e.g. `kandle_queued_tokens`.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}
