//! The generation engine: loads a model (a GGUF file, or a Hugging Face safetensors folder) with
//! its tokenizer and chat template, sizes the KV cache, warms the model up, starts the model
//! thread, and admits requests into it.
//!
//! A request is admitted twice, as for embeddings: a request slot before its body is read, then
//! its tokens (prompt plus `max_tokens`) from the queued-token budget once tokenized; both are
//! answered at once with 429 when full.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use candle_core::quantized::gguf_file;
use candle_core::{DType, Device};
use tokenizers::Tokenizer;
use tokio::sync::mpsc;

use super::chat_template::{ChatMessage, ChatTemplate};
use super::kv_cache::{BlockPool, BLOCK_TOKENS};
use super::llama::{Chunk, Llama, WeightFormat};
use super::row_kernels::BlockMatrix;
use super::safetensors::Checkpoint;
use super::sampling::SamplingParams;
use super::scheduler::{Scheduler, SchedulerLimits};
use super::tokenizer::{self, SpecialTokens};
use super::worker::{Event, GenerationRequest, Settings, Worker};
use crate::admission::{Admission, AdmissionLimits};
use crate::config::{Config, DTypeChoice};
use crate::device;
use crate::engine::{Admitted, Health};
use crate::error::ApiError;
use crate::metrics::{Metrics, ModelLabels};

/// What the APIs report about the served model.
#[derive(Debug, Clone)]
pub struct GenerationInfo {
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub device: String,
    /// `quantized` or the float type the weights were dequantized to.
    pub weights: String,
    /// Longest sequence, prompt plus completion.
    pub context_length: usize,
    /// Tokens the KV cache holds across all requests.
    pub kv_cache_tokens: usize,
    pub created: u64,
}

/// A request's generation options, after the API checked them.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// `None`: as many as the context allows.
    pub max_tokens: Option<usize>,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
}

pub struct Generator {
    pub info: GenerationInfo,
    tokenizer: Arc<Tokenizer>,
    template: Option<ChatTemplate>,
    admission: Admission,
    queue: Mutex<std::sync::mpsc::Sender<GenerationRequest>>,
    health: Arc<Health>,
    timeout: Duration,
    body_timeout: Duration,
}

impl Generator {
    /// Loads and warms up the model, then starts the model thread. Blocking.
    pub fn load(config: &Config, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let started = Instant::now();
        let device = device::select_device(config.device)?;
        let Loaded {
            model,
            weights,
            tokenizer,
            special,
            template,
            source,
        } = if uses_safetensors(config)? {
            load_safetensors(config, &device)?
        } else {
            load_gguf(config, &device)?
        };
        let tokenizer = Arc::new(tokenizer);
        let config_limit = config
            .max_input_tokens
            .unwrap_or(model.config.context_length);
        anyhow::ensure!(
            config_limit <= model.config.context_length,
            "--max-input-tokens {config_limit} exceeds the model's context of {} tokens",
            model.config.context_length
        );
        let context_length = config_limit;
        anyhow::ensure!(
            config.step_tokens >= config.max_batch_requests,
            "--step-tokens ({}) must be at least --max-batch-requests ({}): every running \
             request decodes one token per step",
            config.step_tokens,
            config.max_batch_requests
        );

        let per_token = model.config.kv_bytes_per_token();
        let wanted = (config.max_batch_requests * context_length * per_token) as u64;
        let budget = match config.kv_cache_memory {
            Some(bytes) => bytes,
            None => default_kv_memory(&device).map_or(wanted, |m| m.min(wanted)),
        };
        let pool = BlockPool::sized(budget, per_token);
        anyhow::ensure!(
            pool.total() * BLOCK_TOKENS >= context_length,
            "the KV cache ({budget} bytes, {} tokens) cannot hold one sequence of the context \
             ({context_length} tokens); raise --kv-cache-memory or lower --max-input-tokens",
            pool.total() * BLOCK_TOKENS
        );
        let warmup = warm_up(&model, config.step_tokens.min(context_length))?;
        let kv_cache_tokens = pool.total() * BLOCK_TOKENS;
        tracing::info!(
            source = %source.display(),
            architecture = %model.config.architecture,
            weights = %weights,
            context_length,
            kv_cache_tokens,
            kv_cache_bytes = budget,
            warmup_seconds = warmup.as_secs_f64(),
            "generation model loaded"
        );

        let info = GenerationInfo {
            name: config.served_name(),
            version: config.model_version.clone(),
            architecture: model.config.architecture.clone(),
            device: device::device_name(&device),
            weights,
            context_length,
            kv_cache_tokens,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        let max_queued_tokens = config
            .max_queued_tokens
            .unwrap_or(2 * kv_cache_tokens)
            .max(context_length);
        metrics.generation.kv_cache_blocks.set(pool.total() as i64);
        metrics.record_load(
            started.elapsed().as_secs_f64(),
            max_queued_tokens,
            ModelLabels {
                model: info.name.clone(),
                version: info.version.clone(),
                device: info.device.clone(),
                dtype: info.weights.clone(),
            },
        );

        let health = Arc::new(Health::new(config.unhealthy_after_failures));
        let (queue, requests) = std::sync::mpsc::channel();
        let scheduler = Scheduler::new(
            SchedulerLimits {
                max_running: config.max_batch_requests,
                step_tokens: config.step_tokens,
            },
            pool,
        );
        let settings = Settings {
            eos: special.eos.clone(),
            context_length,
            timeout: config.request_timeout,
        };
        let (thread_tokenizer, thread_health, thread_metrics) =
            (tokenizer.clone(), health.clone(), metrics.clone());
        std::thread::Builder::new()
            .name("kandle-generate".to_owned())
            .spawn(move || {
                Worker::new(
                    &model,
                    thread_tokenizer,
                    settings,
                    scheduler,
                    thread_health,
                    thread_metrics,
                )
                .run(requests)
            })
            .context("cannot start the model thread")?;
        Ok(Self {
            info,
            tokenizer,
            template,
            admission: Admission::new(
                AdmissionLimits::from_config(config, max_queued_tokens),
                metrics.queued_tokens.clone(),
            ),
            queue: Mutex::new(queue),
            health,
            timeout: config.request_timeout,
            body_timeout: config.body_timeout,
        })
    }

    /// Admits a request before its body is read (429 when full, 413 when announced too large).
    pub fn admit(&self, content_length: Option<u64>) -> Result<Admitted, ApiError> {
        let permit = self.admission.admit_request(content_length)?;
        Ok(Admitted::new(permit, Instant::now() + self.timeout))
    }

    pub fn max_body_bytes(&self) -> usize {
        self.admission.limits().max_body_bytes
    }

    pub fn body_timeout(&self) -> Duration {
        self.body_timeout
    }

    pub fn health_problem(&self) -> Option<String> {
        self.health.problem()
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The prompt of a chat: the model's template applied to `messages`.
    pub fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, ApiError> {
        let template = self.template.as_ref().ok_or_else(|| {
            ApiError::invalid(
                "this model has no chat template; use /v1/completions",
                "messages",
            )
        })?;
        template
            .render(messages, true)
            .map_err(|err| ApiError::invalid(format!("{err}"), "messages"))
    }

    /// Tokenizes a prompt, with the special tokens the model's tokenizer adds.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ApiError> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|err| ApiError::Internal(format!("cannot tokenize the prompt: {err}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of one token, as log-probabilities report it.
    pub fn token_text(&self, id: u32) -> String {
        self.tokenizer.decode(&[id], false).unwrap_or_default()
    }

    /// Queues `prompt` for generation and returns its stream of events.
    pub fn submit(
        &self,
        admitted: &Admitted,
        prompt: Vec<u32>,
        options: GenerateOptions,
    ) -> Result<mpsc::UnboundedReceiver<Event>, ApiError> {
        if prompt.is_empty() {
            return Err(ApiError::invalid("the prompt is empty", "prompt"));
        }
        let limit = self.info.context_length;
        let room = limit.saturating_sub(prompt.len());
        let max_tokens = options.max_tokens.unwrap_or(room);
        if prompt.len() + max_tokens > limit || room == 0 {
            return Err(ApiError::ContextLength {
                prompt: prompt.len(),
                requested: max_tokens,
                limit,
            });
        }
        let tokens = self.admission.admit_tokens(prompt.len() + max_tokens)?;
        let (events, receiver) = mpsc::unbounded_channel();
        let request = GenerationRequest {
            prompt,
            max_tokens,
            sampling: options.sampling,
            stop: options.stop,
            ignore_eos: options.ignore_eos,
            deadline: admitted.deadline,
            events,
            _tokens: tokens,
        };
        self.queue
            .lock()
            .map_err(|_| ApiError::Internal("the model queue is poisoned".to_owned()))?
            .send(request)
            .map_err(|_| ApiError::Internal("the model thread has stopped".to_owned()))?;
        Ok(receiver)
    }
}

/// A model read from its files, with its tokenizer and chat template.
struct Loaded {
    model: Llama,
    /// What the weights are held as, as [`GenerationInfo::weights`] reports it.
    weights: String,
    tokenizer: Tokenizer,
    special: SpecialTokens,
    template: Option<ChatTemplate>,
    /// The file or folder read.
    source: PathBuf,
}

/// Whether to read a Hugging Face safetensors folder: no `--model-file`, no `.gguf` file, and a
/// `config.json`.
fn uses_safetensors(config: &Config) -> anyhow::Result<bool> {
    Ok(config.model_file.is_none()
        && gguf_files(&config.model_dir)?.is_empty()
        && config.model_dir.join("config.json").is_file())
}

fn load_gguf(config: &Config, device: &Device) -> anyhow::Result<Loaded> {
    let path = gguf_path(&config.model_dir, config.model_file.as_deref())?;
    let mut file =
        std::fs::File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let content = gguf_file::Content::read(&mut file)
        .with_context(|| format!("{} is not a readable GGUF file", path.display()))?;
    let f32_bytes: u64 = content
        .tensor_infos
        .values()
        .map(|t| t.shape.elem_count() as u64 * 4)
        .sum();
    let format = weight_format(
        config.dtype,
        device,
        f32_bytes,
        memory_limit(),
        all_have_row_kernels(&content),
    )?;
    let model = Llama::from_gguf(&content, &mut file, device, format)
        .with_context(|| format!("cannot load {}", path.display()))?;
    let special = SpecialTokens::from_gguf(&content)?;
    Ok(Loaded {
        model,
        weights: weights_name(format),
        tokenizer: tokenizer::from_gguf(&content)?,
        template: ChatTemplate::from_gguf(&content, &special)?,
        special,
        source: path,
    })
}

/// A safetensors folder, with the GGUF rule for the weights' type: on a CPU, `auto` holds them
/// in f32 when that takes at most a quarter of the memory, else as stored.
fn load_safetensors(config: &Config, device: &Device) -> anyhow::Result<Loaded> {
    let dir = &config.model_dir;
    let checkpoint = Checkpoint::open(dir)?;
    let format = weight_format(
        config.dtype,
        device,
        checkpoint.f32_bytes(),
        memory_limit(),
        false,
    )?;
    let dtype = checkpoint.weight_dtype(format)?;
    let model = checkpoint
        .load(device, format)
        .with_context(|| format!("cannot load {}", dir.display()))?;
    let (tokenizer, special) = tokenizer::from_folder(dir)?;
    Ok(Loaded {
        model,
        weights: device::dtype_name(dtype).to_owned(),
        tokenizer,
        template: ChatTemplate::from_folder(dir, &special)?,
        special,
        source: dir.clone(),
    })
}

/// The `.gguf` file to serve: `--model-file`, else the folder's only one.
fn gguf_path(dir: &Path, file: Option<&str>) -> anyhow::Result<PathBuf> {
    if let Some(file) = file {
        let path = dir.join(file);
        anyhow::ensure!(
            path.is_file(),
            "--model-file {} does not exist",
            path.display()
        );
        return Ok(path);
    }
    let found = gguf_files(dir)?;
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => anyhow::bail!("no .gguf file in {}", dir.display()),
        many => anyhow::bail!(
            "{} holds {} .gguf files; choose one with --model-file ({})",
            dir.display(),
            many.len(),
            many.iter()
                .filter_map(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The `.gguf` files of a folder, sorted.
pub fn gguf_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    found.sort();
    Ok(found)
}

/// How to hold the weights. On a CPU, `auto` keeps them quantized when every matmul weight is
/// of a type the row kernels take (`row_kernels`): they multiply the quants with activations
/// rounded to 16 bits, faster than f32 weights. Otherwise it dequantizes them to f32 when
/// that takes at most a quarter of the memory: candle's quantized CPU matmuls round the
/// activations to 8 bits and are slower than its f32 ones.
fn weight_format(
    dtype: DTypeChoice,
    device: &Device,
    f32_bytes: u64,
    memory: Option<u64>,
    row_kernels: bool,
) -> anyhow::Result<WeightFormat> {
    Ok(match dtype {
        DTypeChoice::Auto if device.is_cpu() && row_kernels => WeightFormat::Quantized,
        DTypeChoice::Auto if device.is_cpu() => match memory {
            Some(memory) if f32_bytes <= memory / 4 => WeightFormat::Dequantized(DType::F32),
            _ => WeightFormat::Quantized,
        },
        DTypeChoice::Auto | DTypeChoice::F16 => WeightFormat::Dequantized(DType::F16),
        DTypeChoice::F32 => WeightFormat::Dequantized(DType::F32),
        DTypeChoice::Bf16 => anyhow::bail!(
            "--dtype bf16 is not supported for generation: the decoder multiplies f32 \
             activations by f32 or f16 weights; use f16 or f32"
        ),
    })
}

/// Whether every matmul weight of a GGUF file (the layers' and the output projection) has a
/// CPU row kernel.
fn all_have_row_kernels(content: &gguf_file::Content) -> bool {
    let output = if content.tensor_infos.contains_key("output.weight") {
        "output.weight"
    } else {
        "token_embd.weight"
    };
    content
        .tensor_infos
        .iter()
        .filter(|(name, info)| {
            (name.starts_with("blk.") && info.shape.rank() == 2) || name.as_str() == output
        })
        .all(|(_, info)| BlockMatrix::supports(info.ggml_dtype))
}

fn weights_name(format: WeightFormat) -> String {
    match format {
        WeightFormat::Quantized => "quantized".to_owned(),
        WeightFormat::Dequantized(dtype) => device::dtype_name(dtype).to_owned(),
    }
}

/// Runs a prompt chunk of `tokens` tokens and one decode step, so that the first request does
/// not pay for first-touch allocations and a model that cannot run fails before `/readyz`.
fn warm_up(model: &Llama, tokens: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let prompt: Vec<u32> = (0..tokens as u32)
        .map(|i| i % model.config.vocab_size as u32)
        .collect();
    let mut cache = model.new_cache();
    let logits = model.forward(&mut [Chunk {
        tokens: &prompt,
        cache: &mut cache,
        all_logits: false,
    }])?;
    let next = super::llama::argmax(&logits[0].flatten_all()?)?;
    model.forward(&mut [Chunk {
        tokens: &[next],
        cache: &mut cache,
        all_logits: false,
    }])?;
    Ok(started.elapsed())
}

/// The KV-cache memory when `--kv-cache-memory` is not set: 40% of the container's memory on a
/// CPU, 80% of the GPU memory left after the weights.
fn default_kv_memory(device: &Device) -> Option<u64> {
    match device {
        Device::Cpu => memory_limit().map(|bytes| bytes / 10 * 4),
        #[cfg(feature = "cuda")]
        Device::Cuda(cuda) => cuda
            .cuda_stream()
            .context()
            .mem_get_info()
            .ok()
            .map(|(free, _)| free as u64 / 10 * 8),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// The container's memory limit (cgroup v2 or v1), else the machine's memory.
fn memory_limit() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|&bytes| bytes < 1 << 60);
    cgroup.or_else(|| {
        let meminfo = read("/proc/meminfo")?;
        let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folder_must_name_one_gguf_file() {
        let dir = std::env::temp_dir().join(format!("kandle-gguf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(gguf_path(&dir, None)
            .unwrap_err()
            .to_string()
            .contains("no .gguf file"));
        std::fs::write(dir.join("a.gguf"), b"").unwrap();
        assert_eq!(gguf_path(&dir, None).unwrap(), dir.join("a.gguf"));
        std::fs::write(dir.join("b.gguf"), b"").unwrap();
        let err = gguf_path(&dir, None).unwrap_err().to_string();
        assert!(err.contains("--model-file (a.gguf, b.gguf)"), "{err}");
        assert_eq!(gguf_path(&dir, Some("b.gguf")).unwrap(), dir.join("b.gguf"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn auto_keeps_row_kernel_types_quantized_and_else_dequantizes_what_fits_a_quarter() {
        let gib = 1 << 30;
        let format = |dtype, f32_bytes, memory| {
            weight_format(dtype, &Device::Cpu, f32_bytes, memory, false).map_err(|e| e.to_string())
        };
        assert_eq!(
            weight_format(DTypeChoice::Auto, &Device::Cpu, gib, Some(8 * gib), true).unwrap(),
            WeightFormat::Quantized
        );
        assert_eq!(
            weight_format(DTypeChoice::F32, &Device::Cpu, gib, Some(8 * gib), true).unwrap(),
            WeightFormat::Dequantized(DType::F32)
        );
        let f32 = WeightFormat::Dequantized(DType::F32);
        assert_eq!(format(DTypeChoice::Auto, gib, Some(8 * gib)), Ok(f32));
        let quantized = Ok(WeightFormat::Quantized);
        assert_eq!(
            format(DTypeChoice::Auto, 28 * gib, Some(32 * gib)),
            quantized
        );
        assert_eq!(format(DTypeChoice::Auto, gib, None), quantized);
        let f16 = WeightFormat::Dequantized(DType::F16);
        assert_eq!(format(DTypeChoice::F16, gib, Some(8 * gib)), Ok(f16));
        let err = format(DTypeChoice::Bf16, gib, Some(8 * gib)).unwrap_err();
        assert!(err.contains("bf16 is not supported"), "{err}");
    }
}
