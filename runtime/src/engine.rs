//! The inference engine: admission, the bounded queue and the model thread.
//!
//! [`Engine::load`] opens the model folder, loads the model on its device, warms it up and moves
//! it onto a dedicated thread. Requests are admitted by a semaphore (excess fails at once with
//! 429), tokenized, and sent through a bounded channel as one job per input, each with a
//! one-shot reply; the thread batches them (see `batcher`) and answers.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::batcher::{next_batch, BatchLimits, Queued};
use crate::config::Config;
use crate::device;
use crate::error::ApiError;
use crate::metrics::{Metrics, ModelLabels};
use crate::model::{EmbeddingModel, ModelFolder};
use crate::tokenize::{Input, TextEncoder};

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
}

/// The answer to one request: a vector per input, in input order.
#[derive(Debug)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: usize,
}

struct Job {
    ids: Vec<u32>,
    reply: oneshot::Sender<Result<Vec<f32>, String>>,
}

impl Queued for Job {
    fn tokens(&self) -> usize {
        self.ids.len()
    }
    fn is_cancelled(&self) -> bool {
        self.reply.is_closed()
    }
}

pub struct Engine {
    pub info: ModelInfo,
    encoder: Arc<TextEncoder>,
    queue: mpsc::Sender<Job>,
    permits: Arc<Semaphore>,
    max_concurrent: usize,
    max_client_batch: usize,
    timeout: Duration,
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
        let encoder = TextEncoder::load(
            &folder.tokenizer,
            max_input_tokens,
            config.truncate,
            model.vocab_size(),
        )?;

        let warmup = encoder
            .encode(vec![Input::Text("kandle warm-up".to_owned())])
            .map_err(|err| anyhow::anyhow!("warm-up tokenization failed: {err}"))?;
        model
            .embed(&[warmup[0].as_slice()])
            .context("warm-up inference failed")?;

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
        };
        let capacity = config
            .max_concurrent_requests
            .saturating_mul(config.max_client_batch_size)
            .min(1 << 20);
        let (queue, jobs) = mpsc::channel(capacity);
        let limits = BatchLimits {
            max_tokens: config.max_batch_tokens,
            max_requests: config.max_batch_requests,
        };
        let thread_metrics = metrics.clone();
        std::thread::Builder::new()
            .name("kandle-model".to_owned())
            .spawn(move || run_model(model, jobs, limits, &thread_metrics))
            .context("cannot start the model thread")?;

        metrics
            .model_load_seconds
            .set(started.elapsed().as_secs_f64());
        metrics
            .model_info
            .get_or_create(&ModelLabels {
                model: info.name.clone(),
                version: info.version.clone(),
                device: info.device.clone(),
                dtype: info.dtype.clone(),
            })
            .set(1);
        Ok(Self {
            info,
            encoder: Arc::new(encoder),
            queue,
            permits: Arc::new(Semaphore::new(config.max_concurrent_requests)),
            max_concurrent: config.max_concurrent_requests,
            max_client_batch: config.max_client_batch_size,
            timeout: config.request_timeout,
            metrics,
        })
    }

    /// Takes a concurrency slot, or fails at once when all are taken.
    pub fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.permits
            .clone()
            .try_acquire_owned()
            .map_err(|err| match err {
                TryAcquireError::NoPermits => ApiError::Overloaded(self.max_concurrent),
                TryAcquireError::Closed => ApiError::Draining,
            })
    }

    /// Embeds `inputs` within the request timeout. The caller holds a permit from [`admit`].
    ///
    /// [`admit`]: Engine::admit
    pub async fn embed(&self, inputs: Vec<Input>) -> Result<Embeddings, ApiError> {
        if inputs.len() > self.max_client_batch {
            return Err(ApiError::invalid(
                format!(
                    "{} inputs in one request, more than the limit of {}",
                    inputs.len(),
                    self.max_client_batch
                ),
                "input",
            ));
        }
        tokio::time::timeout(self.timeout, self.run(inputs))
            .await
            .map_err(|_| ApiError::Timeout(self.timeout))?
    }

    async fn run(&self, inputs: Vec<Input>) -> Result<Embeddings, ApiError> {
        let encoder = self.encoder.clone();
        let sequences = tokio::task::spawn_blocking(move || encoder.encode(inputs))
            .await
            .map_err(|err| ApiError::Internal(format!("tokenizer task failed: {err}")))??;
        let prompt_tokens = sequences.iter().map(Vec::len).sum();
        let mut replies = Vec::with_capacity(sequences.len());
        for ids in sequences {
            let (reply, answer) = oneshot::channel();
            self.queue
                .try_send(Job { ids, reply })
                .map_err(|err| match err {
                    mpsc::error::TrySendError::Full(_) => ApiError::Overloaded(self.max_concurrent),
                    mpsc::error::TrySendError::Closed(_) => {
                        ApiError::Internal("the model thread has stopped".to_owned())
                    }
                })?;
            self.metrics.queue_depth.inc();
            replies.push(answer);
        }
        self.metrics.tokens.inc_by(prompt_tokens as u64);
        let mut vectors = Vec::with_capacity(replies.len());
        for answer in replies {
            let vector = answer
                .await
                .map_err(|_| ApiError::Internal("the model thread dropped a request".to_owned()))?
                .map_err(ApiError::Internal)?;
            vectors.push(vector);
        }
        Ok(Embeddings {
            vectors,
            prompt_tokens,
        })
    }
}

/// The model thread: batches queued jobs and answers them until the queue closes.
fn run_model(
    model: EmbeddingModel,
    mut jobs: mpsc::Receiver<Job>,
    limits: BatchLimits,
    metrics: &Metrics,
) {
    let mut carry = None;
    while let Some(batch) = next_batch(&mut jobs, &mut carry, limits) {
        metrics.queue_depth.dec_by(batch.dequeued as i64);
        if batch.jobs.is_empty() {
            continue;
        }
        metrics.batch_size.observe(batch.jobs.len() as f64);
        metrics.batch_tokens.observe(batch.tokens as f64);
        let sequences: Vec<&[u32]> = batch.jobs.iter().map(|j| j.ids.as_slice()).collect();
        let started = Instant::now();
        // A bug in a kernel must fail the batch, not take the server down.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| model.embed(&sequences)))
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the model panicked on this batch")));
        metrics
            .inference_duration
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(vectors) => {
                for (job, vector) in batch.jobs.into_iter().zip(vectors) {
                    // The client may have gone meanwhile; nothing to do then.
                    let _ = job.reply.send(Ok(vector));
                }
            }
            Err(err) => {
                tracing::error!(error = %format!("{err:#}"), size = batch.jobs.len(), "inference failed");
                for job in batch.jobs {
                    let _ = job.reply.send(Err(format!("inference failed: {err}")));
                }
            }
        }
    }
    tracing::debug!("model thread stopped");
}
