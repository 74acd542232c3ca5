//! The inference engine: admission, tokenization, the model thread and its health.
//!
//! [`Engine::load`] opens the model folder, loads the model on its device, warms it up at the
//! largest batch the limits allow (so running out of memory shows at start, and the measured
//! throughput sizes the token budget) and moves it onto a dedicated thread. A request is admitted
//! before its body is read ([`Engine::admit`]), tokenized on a small fixed pool, admitted again by
//! its tokens, and handed to the model thread, which batches requests fairly (see `batcher`) and
//! answers each one once.

mod health;
mod warmup;
mod worker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};

use crate::admission::{Admission, AdmissionLimits, RequestPermit};
use crate::batcher::BatchLimits;
use crate::config::Config;
use crate::device;
use crate::error::ApiError;
use crate::metrics::{Metrics, ModelLabels};
use crate::model::{EmbeddingModel, ModelFolder};
use crate::tokenize::{Input, TextEncoder, TokenizerPool};

pub use health::Health;
pub use worker::{can_finish, BatchModel};

/// What the APIs report about the served model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    pub dim: usize,
    pub max_input_tokens: usize,
    pub device: String,
    pub dtype: String,
    pub pooling: &'static str,
    pub normalized: bool,
    /// Unix time the model finished loading (OpenAI's `created`).
    pub created: u64,
    /// Tokens of work admitted at once (`--max-queued-tokens` or its measured default).
    pub max_queued_tokens: usize,
    /// Tokens per second of the warm-up batch.
    pub warmup_tokens_per_second: f64,
}

/// The answer to one request: a vector per input, in input order.
#[derive(Debug)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: usize,
}

/// Limits the request parsers enforce while reading a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    pub max_inputs: usize,
    /// Longest token id input; `None` when long inputs are truncated instead.
    pub max_ids: Option<usize>,
}

/// A request admitted before its body was read: its permits and its deadline.
pub struct Admitted {
    _permit: RequestPermit,
    pub deadline: Instant,
}

impl Admitted {
    pub fn new(permit: RequestPermit, deadline: Instant) -> Self {
        Self {
            _permit: permit,
            deadline,
        }
    }
}

pub struct Engine {
    pub info: ModelInfo,
    admission: Admission,
    tokenizer: TokenizerPool,
    queue: mpsc::Sender<worker::Work>,
    health: Arc<Health>,
    input_limits: InputLimits,
    timeout: Duration,
    body_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl Engine {
    /// Loads, checks and warms up the model, then starts the model thread. Blocking.
    pub fn load(config: &Config, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let started = Instant::now();
        let folder = ModelFolder::open(&config.model_dir)?;
        if let Some(expected) = &config.model_sha256 {
            folder.verify_sha256(expected)?;
        }
        let device = device::select_device(config.device)?;
        let dtype = device::select_dtype(config.dtype, &device)?;
        let model = EmbeddingModel::load(&folder, &device, dtype)?;
        let max_input_tokens = config
            .max_input_tokens
            .or(folder.max_seq_length)
            .unwrap_or(model.max_positions());
        anyhow::ensure!(
            max_input_tokens <= model.max_positions(),
            "--max-input-tokens {max_input_tokens} exceeds the model's {} positions",
            model.max_positions()
        );
        anyhow::ensure!(
            config.max_batch_tokens >= max_input_tokens,
            "--max-batch-tokens {} is below the longest input ({max_input_tokens} tokens): the \
             longest inputs could never be batched with others; raise it or lower \
             --max-input-tokens",
            config.max_batch_tokens
        );
        let encoder = Arc::new(TextEncoder::load(
            &folder.tokenizer,
            max_input_tokens,
            config.truncate,
            model.vocab_size(),
        )?);

        let limits = BatchLimits {
            max_tokens: config.max_batch_tokens,
            max_requests: config.max_batch_requests,
        };
        let measured = warmup::run(&model, &encoder, limits, max_input_tokens)?;
        let max_queued_tokens = config.max_queued_tokens.unwrap_or_else(|| {
            token_budget(
                measured.tokens_per_second,
                config.request_timeout,
                max_input_tokens,
            )
        });
        tracing::info!(
            batch_inputs = measured.inputs,
            batch_tokens = measured.tokens,
            seconds = measured.seconds,
            tokens_per_second = measured.tokens_per_second as u64,
            max_queued_tokens,
            "warmed up at the largest batch"
        );

        let info = ModelInfo {
            name: config.served_name(),
            version: config.model_version.clone(),
            dim: model.dim(),
            max_input_tokens,
            device: device::device_name(&device),
            dtype: device::dtype_name(dtype).to_owned(),
            pooling: folder.pooling.as_str(),
            normalized: folder.normalize,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            max_queued_tokens,
            warmup_tokens_per_second: measured.tokens_per_second,
        };
        let tokenizer_threads = config.tokenizer_threads.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            if device.is_cpu() {
                // The inference pool, sized once at start-up (see device::configure_cpu_threads).
                (rayon::current_num_threads() / 4).max(1)
            } else {
                cores.saturating_sub(1).max(1)
            }
        });
        let tokenizer =
            TokenizerPool::start(encoder, tokenizer_threads, config.max_concurrent_requests)
                .context("cannot start the tokenizer threads")?;

        let (queue, jobs) = mpsc::channel(config.max_concurrent_requests);
        let health = Arc::new(Health::new(config.unhealthy_after_failures));
        let settings = worker::Settings {
            limits,
            tokens_per_second: measured.tokens_per_second,
            timeout: config.request_timeout,
        };
        let thread_metrics = metrics.clone();
        let thread_health = health.clone();
        std::thread::Builder::new()
            .name("kandle-model".to_owned())
            .spawn(move || worker::run(&model, jobs, settings, &thread_health, &thread_metrics))
            .context("cannot start the model thread")?;

        metrics.record_load(
            started.elapsed().as_secs_f64(),
            max_queued_tokens,
            ModelLabels {
                model: info.name.clone(),
                version: info.version.clone(),
                device: info.device.clone(),
                dtype: info.dtype.clone(),
            },
        );
        Ok(Self {
            info,
            admission: Admission::new(
                AdmissionLimits::from_config(config, max_queued_tokens),
                metrics.queued_tokens.clone(),
            ),
            tokenizer,
            queue,
            health,
            input_limits: InputLimits {
                max_inputs: config.max_client_batch_size,
                max_ids: (!config.truncate).then_some(max_input_tokens),
            },
            timeout: config.request_timeout,
            body_timeout: config.body_timeout,
            metrics,
        })
    }

    /// Admits a request before its body is read, or fails at once (429, or 413 for a body
    /// announced over the limit). The request's deadline starts now.
    pub fn admit(&self, content_length: Option<u64>) -> Result<Admitted, ApiError> {
        let permit = self.admission.admit_request(content_length)?;
        Ok(Admitted {
            _permit: permit,
            deadline: Instant::now() + self.timeout,
        })
    }

    pub fn max_body_bytes(&self) -> usize {
        self.admission.limits().max_body_bytes
    }

    pub fn body_timeout(&self) -> Duration {
        self.body_timeout
    }

    pub fn input_limits(&self) -> InputLimits {
        self.input_limits
    }

    /// Why the model cannot answer requests any more, or `None` while it can.
    pub fn health_problem(&self) -> Option<String> {
        self.health.problem()
    }

    /// Embeds `inputs` within the admitted request's deadline.
    pub async fn embed(
        &self,
        admitted: &Admitted,
        inputs: Vec<Input>,
    ) -> Result<Embeddings, ApiError> {
        let deadline = tokio::time::Instant::from_std(admitted.deadline);
        tokio::time::timeout_at(deadline, self.run(inputs, admitted.deadline))
            .await
            .map_err(|_| ApiError::Timeout(self.timeout))?
    }

    async fn run(&self, inputs: Vec<Input>, deadline: Instant) -> Result<Embeddings, ApiError> {
        let estimate = inputs.iter().map(Input::estimated_tokens).sum();
        self.admission.check_tokens_left(estimate)?;
        let sequences = self.tokenizer.encode(inputs).await?;
        let prompt_tokens: usize = sequences.iter().map(Vec::len).sum();
        let tokens = self.admission.admit_tokens(prompt_tokens)?;
        let count = sequences.len() as i64;
        let (reply, answer) = oneshot::channel();
        // Counted before sending: the model thread may take the inputs at once.
        self.metrics.queue_depth.inc_by(count);
        let work = worker::Work {
            inputs: sequences,
            deadline,
            reply,
            tokens,
        };
        if let Err(err) = self.queue.try_send(work) {
            self.metrics.queue_depth.dec_by(count);
            return Err(match err {
                mpsc::error::TrySendError::Full(_) => {
                    ApiError::Overloaded("the model queue is full".to_owned())
                }
                mpsc::error::TrySendError::Closed(_) => {
                    ApiError::Internal("the model thread has stopped".to_owned())
                }
            });
        }
        self.metrics.tokens.inc_by(prompt_tokens as u64);
        let vectors = answer.await.map_err(|_| {
            ApiError::Internal("the model thread stopped before answering".to_owned())
        })??;
        Ok(Embeddings {
            vectors,
            prompt_tokens,
        })
    }
}

/// The default token budget: what the model gets through in half the request timeout at the
/// measured rate, so that admitted work, shared fairly, finishes in time; never less than one
/// longest input.
pub fn token_budget(tokens_per_second: f64, timeout: Duration, max_input_tokens: usize) -> usize {
    let budget = tokens_per_second * timeout.as_secs_f64() / 2.0;
    (budget as usize).max(max_input_tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_budget_is_half_the_deadline_of_work() {
        assert_eq!(token_budget(5000.0, Duration::from_secs(30), 256), 75_000);
        assert_eq!(token_budget(5000.0, Duration::from_secs(2), 256), 5_000);
        assert_eq!(token_budget(10.0, Duration::from_secs(2), 256), 256);
    }
}
