//! Command-line and environment configuration of the server.
//!
//! [`Config`] is the single source of every tunable: clap parses it from flags with `KANDLE_*`
//! environment fallbacks, and tests build it with [`Config::for_model`].

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Which device the model runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// CUDA device 0 when built with `cuda` and a GPU is present, else CPU.
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| format!("expected auto, cpu or cuda:N, got {other:?}")),
        }
    }
}

/// Element type of the weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DTypeChoice {
    /// f32 on CPU, f16 on GPU.
    Auto,
    F32,
    F16,
    Bf16,
}

/// What the server does with the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TaskChoice {
    /// Generation when the folder holds a `.gguf` file or a `...ForCausalLM` config.json, else
    /// embedding.
    Auto,
    Embedding,
    Generation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Parses `500ms`, `30s`, `2m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("expected a duration like 500ms, 30s or 2m, got {s:?}"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("duration must be positive, got {s:?}"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

/// Parses a size in bytes: `512MiB`, `2GiB`, `1.5G`, `300M` or a bare number of bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let units: [(&str, f64); 8] = [
        ("KiB", 1024.0),
        ("MiB", 1024.0 * 1024.0),
        ("GiB", 1024.0 * 1024.0 * 1024.0),
        ("K", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("B", 1.0),
        ("", 1.0),
    ];
    let (number, scale) = units
        .iter()
        .find_map(|&(unit, scale)| s.strip_suffix(unit).map(|n| (n, scale)))
        .unwrap_or((s, 1.0));
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("expected a size like 512MiB, 2GiB or 1000000, got {s:?}"))?;
    if !value.is_finite() || value <= 0.0 {
        return Err(format!("size must be positive, got {s:?}"));
    }
    Ok((value * scale) as u64)
}

/// kandle's inference server: serves a Hugging Face embedding model folder over the OpenAI and
/// KServe Open Inference Protocol v2 APIs, or a decoder LLM (GGUF) over the OpenAI completions
/// and chat completions APIs.
#[derive(Debug, Clone, Parser)]
#[command(name = "kandle-runtime", version)]
pub struct Config {
    /// The model folder: a Hugging Face embedding model (config.json, model.safetensors,
    /// tokenizer.json, modules.json), or a folder holding a GGUF file for generation.
    #[arg(long, env = "KANDLE_MODEL_DIR")]
    pub model_dir: PathBuf,

    /// embedding, generation, or auto: generation when the folder holds a `.gguf` file.
    #[arg(long, env = "KANDLE_TASK", value_enum, default_value = "auto")]
    pub task: TaskChoice,

    /// The GGUF file to serve, within the model folder. Default: the folder's only `.gguf`.
    #[arg(long, env = "KANDLE_MODEL_FILE")]
    pub model_file: Option<String>,

    /// Generation: memory for the KV cache (e.g. 2GiB). Default: 40% of the container's memory
    /// limit (of the GPU's free memory after the weights), at most what --max-batch-requests
    /// full-context sequences need.
    #[arg(long, env = "KANDLE_KV_CACHE_MEMORY", value_parser = parse_bytes)]
    pub kv_cache_memory: Option<u64>,

    /// Generation: tokens in one model step, one per decoding request and the rest for prompt
    /// chunks, so a long prompt never stalls the requests already generating.
    #[arg(long, env = "KANDLE_STEP_TOKENS", default_value_t = 512)]
    pub step_tokens: usize,

    /// Model name clients use (OpenAI `model`, v2 model name). Default: the folder's name.
    #[arg(long, env = "KANDLE_SERVED_NAME")]
    pub served_name: Option<String>,

    /// Free-form version label, reported in /v1/models, /v2/models/{name} and kandle_model_info.
    #[arg(long, env = "KANDLE_MODEL_VERSION", default_value = "unversioned")]
    pub model_version: String,

    /// Expected sha256 (hex) of the weights: of model.safetensors, or of the shards
    /// concatenated in file-name order.
    #[arg(long, env = "KANDLE_MODEL_SHA256")]
    pub model_sha256: Option<String>,

    /// auto, cpu or cuda:N.
    #[arg(long, env = "KANDLE_DEVICE", default_value = "auto")]
    pub device: DeviceChoice,

    /// Weights precision. With `auto`, a GGUF model's weights stay quantized on a CPU when all
    /// are Q4_0, Q4_1 or Q8_0 (the CPU row kernels multiply them, dequantized exactly, with f32
    /// activations); other types are dequantized to f32 when that takes at most a quarter of the
    /// memory (else they stay quantized). On a GPU `auto` is f16; f32, f16 and bf16 dequantize
    /// them at load.
    #[arg(long, env = "KANDLE_DTYPE", value_enum, default_value = "auto")]
    pub dtype: DTypeChoice,

    /// CPU threads for inference. Default: the container's CPU limit (cgroup), else all cores.
    #[arg(long, env = "KANDLE_THREADS")]
    pub threads: Option<usize>,

    #[arg(long, env = "KANDLE_HOST", default_value = "0.0.0.0")]
    pub host: String,

    #[arg(long, env = "KANDLE_PORT", default_value_t = 8080)]
    pub port: u16,

    /// Token budget of one model batch (sum of the sequence lengths).
    #[arg(long, env = "KANDLE_MAX_BATCH_TOKENS", default_value_t = 16384)]
    pub max_batch_tokens: usize,

    /// Most sequences in one model batch.
    #[arg(long, env = "KANDLE_MAX_BATCH_REQUESTS", default_value_t = 64)]
    pub max_batch_requests: usize,

    /// Requests admitted at once (from before their body is read to their answer); more get 429
    /// immediately.
    #[arg(long, env = "KANDLE_MAX_CONCURRENT_REQUESTS", default_value_t = 512)]
    pub max_concurrent_requests: usize,

    /// Tokens of work admitted and not yet answered; more get 429 immediately. Default: what the
    /// model gets through in half the request timeout, measured at warm-up.
    #[arg(long, env = "KANDLE_MAX_QUEUED_TOKENS")]
    pub max_queued_tokens: Option<usize>,

    /// Largest request body; larger ones get 413, unread when announced by Content-Length.
    #[arg(long, env = "KANDLE_MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Bytes of request bodies held at once (announced length, else --max-body-bytes); more
    /// requests get 429 before their body is read.
    #[arg(long, env = "KANDLE_MAX_PENDING_BODY_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_pending_body_bytes: usize,

    /// How long a client may take to send its request body (408 after).
    #[arg(long, env = "KANDLE_BODY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub body_timeout: Duration,

    /// Open connections at once; further connections wait in the listen backlog.
    #[arg(long, env = "KANDLE_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// Threads that tokenize requests. Default: a quarter of the CPU threads (at least 1) on the
    /// CPU, all but one core on a GPU.
    #[arg(long, env = "KANDLE_TOKENIZER_THREADS")]
    pub tokenizer_threads: Option<usize>,

    /// Failed model batches in a row after which /healthz fails, so Kubernetes restarts the pod.
    #[arg(long, env = "KANDLE_UNHEALTHY_AFTER_FAILURES", default_value_t = 3)]
    pub unhealthy_after_failures: usize,

    /// Most inputs in one client request.
    #[arg(long, env = "KANDLE_MAX_CLIENT_BATCH_SIZE", default_value_t = 64)]
    pub max_client_batch_size: usize,

    /// Longest input in tokens. Default: sentence_bert_config.json's max_seq_length, else the
    /// model's max_position_embeddings.
    #[arg(long, env = "KANDLE_MAX_INPUT_TOKENS")]
    pub max_input_tokens: Option<usize>,

    /// Truncate inputs longer than the limit instead of answering 413.
    #[arg(long, env = "KANDLE_TRUNCATE", default_value_t = false)]
    pub truncate: bool,

    /// Deadline of one request, queueing included (e.g. 30s, 500ms).
    #[arg(long, env = "KANDLE_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// How long in-flight requests may run after SIGTERM before the server exits anyway.
    #[arg(long, env = "KANDLE_DRAIN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    #[arg(long, env = "KANDLE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl Config {
    /// The defaults for serving `model_dir`, as if only `--model-dir` were given.
    pub fn for_model(model_dir: impl Into<PathBuf>) -> Self {
        let dir: PathBuf = model_dir.into();
        Self::parse_from([
            std::ffi::OsString::from("kandle-runtime"),
            "--model-dir".into(),
            dir.into_os_string(),
        ])
    }

    /// The served name: `--served-name`, else the model folder's name.
    pub fn served_name(&self) -> String {
        self.served_name.clone().unwrap_or_else(|| {
            self.model_dir
                .canonicalize()
                .unwrap_or_else(|_| self.model_dir.clone())
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".to_owned())
        })
    }

    /// Rejects limits that could never serve a request.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("--max-batch-tokens", self.max_batch_tokens),
            ("--max-batch-requests", self.max_batch_requests),
            ("--max-concurrent-requests", self.max_concurrent_requests),
            ("--max-client-batch-size", self.max_client_batch_size),
            ("--max-body-bytes", self.max_body_bytes),
            ("--max-connections", self.max_connections),
            ("--unhealthy-after-failures", self.unhealthy_after_failures),
            ("--step-tokens", self.step_tokens),
        ];
        for (flag, value) in positive {
            if value == 0 {
                return Err(format!("{flag} must be at least 1"));
            }
        }
        for (flag, value) in [
            ("--threads", self.threads),
            ("--tokenizer-threads", self.tokenizer_threads),
            ("--max-queued-tokens", self.max_queued_tokens),
        ] {
            if value == Some(0) {
                return Err(format!("{flag} must be at least 1"));
            }
        }
        if self.max_pending_body_bytes < self.max_body_bytes {
            return Err(format!(
                "--max-pending-body-bytes ({}) must be at least --max-body-bytes ({})",
                self.max_pending_body_bytes, self.max_body_bytes
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_common_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn sizes_accept_binary_and_decimal_units() {
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("1.5G"), Ok(1_500_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("0").is_err());
    }

    #[test]
    fn devices_parse() {
        assert_eq!("auto".parse(), Ok(DeviceChoice::Auto));
        assert_eq!("cpu".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("cuda:1".parse(), Ok(DeviceChoice::Cuda(1)));
        assert!("tpu".parse::<DeviceChoice>().is_err());
    }

    #[test]
    fn defaults_follow_the_folder_name() {
        let config = Config::for_model("/models/all-MiniLM-L6-v2");
        assert_eq!(config.served_name(), "all-MiniLM-L6-v2");
        assert_eq!(config.port, 8080);
        assert!(config.validate().is_ok());
    }
}
