//! The Prometheus metrics the server exports on `/metrics`.
//!
//! One [`Metrics`] value owns the registry and every `kandle_*` series; the HTTP layer records
//! request outcomes, the engine records queue, batch and inference figures. Meanings are
//! documented in runtime/README.md, since the operator's canary analysis and autoscaling read them.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
    pub version: String,
    pub device: String,
    pub dtype: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~65 s
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub queue_depth: Gauge,
    pub in_flight: Gauge,
    pub batch_size: Histogram,
    pub batch_tokens: Histogram,
    pub inference_duration: Histogram,
    pub tokens: Counter,
    pub queued_tokens: Gauge,
    pub max_queued_tokens: Gauge,
    pub batch_failures: Family<ReasonLabels, Counter>,
    pub abandoned_requests: Family<ReasonLabels, Counter>,
    pub model_load_seconds: Gauge<f64, AtomicU64>,
    pub model_info: Family<ModelLabels, Gauge>,
    pub generation: GenerationMetrics,
}

/// The series of text generation (zero on an embedding server).
pub struct GenerationMetrics {
    pub time_to_first_token: Histogram,
    pub inter_token_latency: Histogram,
    pub request_duration: Histogram,
    pub prompt_tokens: Counter,
    pub generated_tokens: Counter,
    pub running_requests: Gauge,
    pub waiting_requests: Gauge,
    pub kv_cache_usage: Gauge<f64, AtomicU64>,
    pub kv_cache_blocks: Gauge,
    pub preemptions: Counter,
    pub step_duration: Histogram,
    pub step_tokens: Histogram,
}

impl GenerationMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            time_to_first_token: latency_histogram(),
            inter_token_latency: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            request_duration: Histogram::new(exponential_buckets(0.01, 2.0, 16)),
            prompt_tokens: Counter::default(),
            generated_tokens: Counter::default(),
            running_requests: Gauge::default(),
            waiting_requests: Gauge::default(),
            kv_cache_usage: Gauge::default(),
            kv_cache_blocks: Gauge::default(),
            preemptions: Counter::default(),
            step_duration: latency_histogram(),
            step_tokens: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
        };
        let m = &metrics;
        registry.register(
            "kandle_time_to_first_token_seconds",
            "Time from a generation request reaching the model thread to its first token",
            m.time_to_first_token.clone(),
        );
        registry.register(
            "kandle_inter_token_latency_seconds",
            "Time between two tokens of one generation request",
            m.inter_token_latency.clone(),
        );
        registry.register(
            "kandle_generation_duration_seconds",
            "Time from a generation request reaching the model thread to its last token",
            m.request_duration.clone(),
        );
        registry.register(
            "kandle_prompt_tokens",
            "Prompt tokens of generation requests",
            m.prompt_tokens.clone(),
        );
        registry.register(
            "kandle_generated_tokens",
            "Tokens generated",
            m.generated_tokens.clone(),
        );
        registry.register(
            "kandle_running_requests",
            "Generation requests in the running batch",
            m.running_requests.clone(),
        );
        registry.register(
            "kandle_waiting_requests",
            "Generation requests waiting to join the running batch",
            m.waiting_requests.clone(),
        );
        registry.register(
            "kandle_kv_cache_usage_ratio",
            "Fraction of the KV-cache blocks in use, 0 to 1",
            m.kv_cache_usage.clone(),
        );
        registry.register(
            "kandle_kv_cache_blocks",
            "KV-cache blocks in all (the --kv-cache-memory budget)",
            m.kv_cache_blocks.clone(),
        );
        registry.register(
            "kandle_preemptions",
            "Running requests whose KV cache was freed to make room; they resume later",
            m.preemptions.clone(),
        );
        registry.register(
            "kandle_generation_step_duration_seconds",
            "Time of one model step of the generation batch",
            m.step_duration.clone(),
        );
        registry.register(
            "kandle_generation_step_tokens",
            "Tokens in one model step (one per decoding request plus prefill chunks)",
            m.step_tokens.clone(),
        );
        metrics
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "kandle_requests",
            "API requests answered, by route and HTTP status code",
            requests.clone(),
        );
        let request_duration = Family::new_with_constructor(latency_histogram as fn() -> _);
        registry.register(
            "kandle_request_duration_seconds",
            "Time from receiving an API request to its response, by route",
            request_duration.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "kandle_queue_depth",
            "Inputs waiting for the model",
            queue_depth.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "kandle_requests_in_flight",
            "Inference requests being served right now",
            in_flight.clone(),
        );
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register(
            "kandle_batch_size",
            "Inputs per model batch",
            batch_size.clone(),
        );
        let batch_tokens = Histogram::new(exponential_buckets(8.0, 2.0, 14));
        registry.register(
            "kandle_batch_tokens",
            "Tokens per model batch",
            batch_tokens.clone(),
        );
        let inference_duration = latency_histogram();
        registry.register(
            "kandle_inference_duration_seconds",
            "Time the model spends on one batch",
            inference_duration.clone(),
        );
        let tokens = Counter::default();
        registry.register(
            "kandle_tokens",
            "Input tokens accepted for inference",
            tokens.clone(),
        );
        let queued_tokens = Gauge::default();
        registry.register(
            "kandle_queued_tokens",
            "Tokens of admitted requests not yet answered",
            queued_tokens.clone(),
        );
        let max_queued_tokens = Gauge::default();
        registry.register(
            "kandle_max_queued_tokens",
            "The token budget: tokens admitted at once before requests get 429",
            max_queued_tokens.clone(),
        );
        let batch_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "kandle_batch_failures",
            "Model batches that failed, by reason (error, panic, non_finite)",
            batch_failures.clone(),
        );
        let abandoned_requests = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "kandle_abandoned_requests",
            "Admitted requests dropped before inference: the client left (cancelled) or the \
             deadline could no longer be met (deadline)",
            abandoned_requests.clone(),
        );
        let model_load_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "kandle_model_load_seconds",
            "Time it took to load and warm up the model",
            model_load_seconds.clone(),
        );
        let model_info = Family::<ModelLabels, Gauge>::default();
        registry.register(
            "kandle_model_info",
            "The served model; always 1",
            model_info.clone(),
        );
        let generation = GenerationMetrics::register(&mut registry);
        Self {
            registry,
            generation,
            requests,
            request_duration,
            queue_depth,
            in_flight,
            batch_size,
            batch_tokens,
            inference_duration,
            tokens,
            queued_tokens,
            max_queued_tokens,
            batch_failures,
            abandoned_requests,
            model_load_seconds,
            model_info,
        }
    }

    pub fn record_request(&self, route: &str, code: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                code,
            })
            .inc();
        self.request_duration
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    pub fn batch_failure(&self, reason: &'static str) {
        self.batch_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// What every engine records once its model is loaded and warmed up.
    pub fn record_load(&self, seconds: f64, max_queued_tokens: usize, model: ModelLabels) {
        self.model_load_seconds.set(seconds);
        self.max_queued_tokens.set(max_queued_tokens as i64);
        self.model_info.get_or_create(&model).set(1);
    }

    pub fn abandoned(&self, reason: &'static str) {
        self.abandoned_requests
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(%err, "cannot encode metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_documented_names() {
        let metrics = Metrics::new();
        metrics.record_request("/v1/embeddings", 200, 0.01);
        metrics.tokens.inc_by(7);
        metrics.batch_failure("non_finite");
        metrics.abandoned("deadline");
        let text = metrics.encode();
        for name in [
            "kandle_requests_total{route=\"/v1/embeddings\",code=\"200\"} 1",
            "kandle_request_duration_seconds_bucket",
            "kandle_queue_depth",
            "kandle_requests_in_flight",
            "kandle_batch_size_bucket",
            "kandle_batch_tokens_bucket",
            "kandle_inference_duration_seconds_bucket",
            "kandle_tokens_total 7",
            "kandle_model_load_seconds",
            "kandle_queued_tokens",
            "kandle_max_queued_tokens",
            "kandle_batch_failures_total{reason=\"non_finite\"} 1",
            "kandle_abandoned_requests_total{reason=\"deadline\"} 1",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
