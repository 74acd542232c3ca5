//! The model thread of a generation server: takes new requests between steps, asks the
//! [`Scheduler`] what to run, runs one model step over all of it, samples, and streams each
//! request's text back as it comes.
//!
//! A request whose client has gone (its event receiver dropped) is removed before the next step,
//! which frees its KV-cache blocks at once. A request still waiting for its first token at its
//! deadline is answered with a timeout.

use std::collections::HashMap;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokenizers::Tokenizer;
use tokio::sync::mpsc::UnboundedSender;

use super::detokenize::IncrementalDecoder;
use super::kv_cache::SeqCache;
use super::llama::{Chunk, Llama};
use super::sampling::{Sampler, SamplingParams, TokenLogprobs};
use super::scheduler::{Scheduled, Scheduler, SeqId};
use super::stop::{Release, StopText};
use crate::admission::TokenPermit;
use crate::engine::Health;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// What a client asked to generate, tokenized and checked.
pub struct GenerationRequest {
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    /// Keep going past end-of-sequence tokens (benchmarks).
    pub ignore_eos: bool,
    /// When its first token must have come.
    pub deadline: Instant,
    pub events: UnboundedSender<Event>,
    /// The request's share of the queued-token budget, given back when it ends.
    pub _tokens: TokenPermit,
}

/// One generated token, as the API reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedToken {
    pub id: u32,
    pub logprobs: Option<TokenLogprobs>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence token or a stop string.
    Stop,
    /// `max_tokens` or the context limit.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
        }
    }
}

/// What the model thread sends a request, in order: deltas, then one `Done` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// New text (possibly empty, while a stop string or a character is incomplete) and the
    /// tokens sampled since the last delta.
    Delta {
        text: String,
        tokens: Vec<GeneratedToken>,
    },
    Done {
        finish_reason: FinishReason,
        prompt_tokens: usize,
        completion_tokens: usize,
    },
    Failed(ApiError),
}

pub struct Settings {
    pub eos: Vec<u32>,
    pub context_length: usize,
    pub timeout: Duration,
}

struct Sequence {
    request: GenerationRequest,
    tokens: Vec<u32>,
    cache: SeqCache,
    sampler: Sampler,
    decoder: IncrementalDecoder,
    stop: StopText,
    generated: usize,
    started: Instant,
    last_token: Option<Instant>,
}

/// The model thread's state.
pub struct Worker<'a> {
    model: &'a Llama,
    tokenizer: Arc<Tokenizer>,
    settings: Settings,
    scheduler: Scheduler,
    sequences: HashMap<SeqId, Sequence>,
    next_id: SeqId,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

impl<'a> Worker<'a> {
    pub fn new(
        model: &'a Llama,
        tokenizer: Arc<Tokenizer>,
        settings: Settings,
        scheduler: Scheduler,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            model,
            tokenizer,
            settings,
            scheduler,
            sequences: HashMap::new(),
            next_id: 0,
            health,
            metrics,
        }
    }

    /// Serves requests from `queue` until every sender is gone.
    pub fn run(mut self, queue: Receiver<GenerationRequest>) {
        let _alive = self.health.thread_guard();
        loop {
            if self.scheduler.is_idle() {
                match queue.recv() {
                    Ok(request) => self.add(request),
                    Err(_) => return,
                }
            }
            while let Ok(request) = queue.try_recv() {
                self.add(request);
            }
            self.step();
        }
    }

    pub fn add(&mut self, request: GenerationRequest) {
        let id = self.next_id;
        self.next_id += 1;
        self.scheduler.add(id, request.prompt.len());
        self.metrics
            .generation
            .prompt_tokens
            .inc_by(request.prompt.len() as u64);
        let sequence = Sequence {
            tokens: request.prompt.clone(),
            cache: self.model.new_cache(),
            sampler: Sampler::new(request.sampling.clone()),
            decoder: IncrementalDecoder::new(self.tokenizer.clone()),
            stop: StopText::new(request.stop.clone()),
            generated: 0,
            started: Instant::now(),
            last_token: None,
            request,
        };
        self.sequences.insert(id, sequence);
        self.publish_gauges();
    }

    /// Drops requests whose client left or whose first token is late, then runs one step.
    pub fn step(&mut self) {
        self.drop_abandoned();
        let step = self.scheduler.step();
        for id in &step.preempted {
            if let Some(seq) = self.sequences.get_mut(id) {
                seq.cache = self.model.new_cache();
            }
            self.metrics.generation.preemptions.inc();
        }
        if !step.scheduled.is_empty() {
            self.run_model(&step.scheduled);
        }
        self.publish_gauges();
    }

    fn drop_abandoned(&mut self) {
        let now = Instant::now();
        let mut gone = Vec::new();
        for (&id, seq) in &self.sequences {
            if seq.request.events.is_closed() {
                gone.push((id, None));
            } else if seq.generated == 0 && now >= seq.request.deadline {
                gone.push((id, Some(ApiError::Timeout(self.settings.timeout))));
            }
        }
        for (id, error) in gone {
            let reason = if error.is_some() {
                "deadline"
            } else {
                "cancelled"
            };
            self.metrics.abandoned(reason);
            self.end(id, error.map(Event::Failed));
        }
    }

    fn run_model(&mut self, scheduled: &[Scheduled]) {
        let mut parts: Vec<(Vec<u32>, SeqCache)> = scheduled
            .iter()
            .map(|s| {
                let seq = self.sequences.get_mut(&s.id).expect("scheduled is tracked");
                let tokens = seq.tokens[s.start..s.start + s.len].to_vec();
                (tokens, std::mem::take(&mut seq.cache))
            })
            .collect();
        let started = Instant::now();
        let mut chunks: Vec<Chunk<'_>> = parts
            .iter_mut()
            .map(|(tokens, cache)| Chunk {
                tokens,
                cache,
                all_logits: false,
            })
            .collect();
        let result = self.model.forward(&mut chunks);
        drop(chunks);
        let tokens: usize = scheduled.iter().map(|s| s.len).sum();
        self.metrics
            .generation
            .step_duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics.generation.step_tokens.observe(tokens as f64);
        for (s, (_, cache)) in scheduled.iter().zip(parts) {
            if let Some(seq) = self.sequences.get_mut(&s.id) {
                seq.cache = cache;
            }
        }
        match result.and_then(|logits| rows(&logits)) {
            Ok(rows) => {
                self.health.batch_succeeded();
                for (s, row) in scheduled.iter().zip(rows) {
                    if s.samples {
                        self.sample(s.id, &row);
                    }
                }
            }
            Err(err) => {
                let message = format!("{err:#}");
                tracing::error!(error = %message, "generation step failed");
                self.health.batch_failed(&message);
                self.metrics.batch_failure("error");
                for s in scheduled {
                    self.end(
                        s.id,
                        Some(Event::Failed(ApiError::Internal(message.clone()))),
                    );
                }
            }
        }
    }

    fn sample(&mut self, id: SeqId, logits: &[f32]) {
        let eos = &self.settings.eos;
        let context_length = self.settings.context_length;
        let Some(seq) = self.sequences.get_mut(&id) else {
            return;
        };
        let (token, logprobs) = seq.sampler.sample(logits);
        let now = Instant::now();
        match seq.last_token {
            None => self
                .metrics
                .generation
                .time_to_first_token
                .observe((now - seq.started).as_secs_f64()),
            Some(last) => self
                .metrics
                .generation
                .inter_token_latency
                .observe((now - last).as_secs_f64()),
        }
        seq.last_token = Some(now);
        seq.generated += 1;
        self.metrics.generation.generated_tokens.inc();
        let generated = GeneratedToken {
            id: token,
            logprobs,
        };
        if !seq.request.ignore_eos && eos.contains(&token) {
            let text = flush(seq, &self.tokenizer, String::new());
            if !text.is_empty() {
                send_delta(seq, text, Vec::new());
            }
            return self.finish(id, FinishReason::Stop);
        }
        seq.tokens.push(token);
        self.scheduler.append_token(id);
        let piece = match seq.decoder.step(token) {
            Ok(piece) => piece,
            Err(err) => {
                let error = ApiError::Internal(format!("cannot decode token {token}: {err:#}"));
                return self.end(id, Some(Event::Failed(error)));
            }
        };
        match seq.stop.push(&piece) {
            Release::Stopped(text) => {
                send_delta(seq, text, vec![generated]);
                self.finish(id, FinishReason::Stop)
            }
            Release::Text(text) => {
                let full =
                    seq.generated >= seq.request.max_tokens || seq.tokens.len() >= context_length;
                if !full {
                    return send_delta(seq, text, vec![generated]);
                }
                let text = flush(seq, &self.tokenizer, text);
                send_delta(seq, text, vec![generated]);
                self.finish(id, FinishReason::Length)
            }
        }
    }

    fn finish(&mut self, id: SeqId, reason: FinishReason) {
        let Some(seq) = self.sequences.get(&id) else {
            return;
        };
        self.metrics
            .generation
            .request_duration
            .observe(seq.started.elapsed().as_secs_f64());
        let done = Event::Done {
            finish_reason: reason,
            prompt_tokens: seq.request.prompt.len(),
            completion_tokens: seq.generated,
        };
        self.end(id, Some(done));
    }

    /// Forgets a sequence (freeing its blocks), then sends its last event: a client that has its
    /// answer already sees the freed cache in the metrics.
    fn end(&mut self, id: SeqId, last: Option<Event>) {
        self.scheduler.remove(id);
        self.publish_gauges();
        if let Some(seq) = self.sequences.remove(&id) {
            if let Some(event) = last {
                let _ = seq.request.events.send(event);
            }
        }
    }

    fn publish_gauges(&self) {
        self.metrics
            .generation
            .running_requests
            .set(self.scheduler.running() as i64);
        self.metrics
            .generation
            .waiting_requests
            .set(self.scheduler.waiting() as i64);
        self.metrics
            .generation
            .kv_cache_usage
            .set(self.scheduler.pool().usage());
    }
}

/// `text` followed by everything still held: an incomplete character, a possible stop string.
fn flush(seq: &mut Sequence, tokenizer: &Arc<Tokenizer>, text: String) -> String {
    let decoder = std::mem::replace(&mut seq.decoder, IncrementalDecoder::new(tokenizer.clone()));
    let rest = decoder.finish().unwrap_or_default();
    match seq.stop.push(&rest) {
        Release::Stopped(tail) => text + &tail,
        Release::Text(tail) => text + &tail + &seq.stop.finish(),
    }
}

fn send_delta(seq: &Sequence, text: String, tokens: Vec<GeneratedToken>) {
    let _ = seq.request.events.send(Event::Delta { text, tokens });
}

/// The logits of each chunk's last token, as plain rows.
fn rows(logits: &[candle_core::Tensor]) -> anyhow::Result<Vec<Vec<f32>>> {
    logits
        .iter()
        .map(|t| Ok(t.flatten_all()?.to_vec1::<f32>()?))
        .collect()
}
