//! Reading kandle-runtime's own metrics from its pods, with no Prometheus in between: one
//! [`MetricsSource`] trait, the HTTP scraper of each pod's `/metrics` ([`HttpScraper`]) and a
//! fake for tests ([`FakeMetrics`]). Autoscaling reads load from it; canary analysis can read
//! request outcomes and latency from the same readings.
//!
//! The operator must reach pods on the runtime port: a NetworkPolicy that isolates the pods
//! must admit the operator's pods on port 8080.

mod fake;
mod http;
mod text;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

pub use fake::FakeMetrics;
pub use http::HttpScraper;
pub use text::{parse, ParseError};

/// A pod to read, by name and address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodTarget {
    /// The pod's name.
    pub pod: String,
    /// Its IP (`status.podIP`).
    pub ip: String,
    /// The runtime's port.
    pub port: u16,
}

/// What one reading of a runtime's metrics holds, in the units the runtime exports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodMetrics {
    /// Inference requests being served (`kandle_requests_in_flight`).
    pub in_flight: f64,
    /// Inputs waiting for the model (`kandle_queue_depth`).
    pub queue_depth: f64,
    /// Requests answered since the runtime started, by HTTP status code (`kandle_requests_total`
    /// summed over routes).
    pub requests_by_code: BTreeMap<String, f64>,
    /// Cumulative request latency buckets `(upper bound in seconds, count)`, summed over
    /// routes, ascending (`kandle_request_duration_seconds_bucket`).
    pub latency_buckets: Vec<(f64, f64)>,
}

impl PodMetrics {
    /// Requests answered since the runtime started, whatever their status.
    pub fn requests(&self) -> f64 {
        self.requests_by_code.values().sum()
    }
}

/// Why a pod could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// The request failed or timed out.
    #[error("reading {url}: {message}")]
    Request {
        /// What was asked.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The answer was not the runtime's metrics.
    #[error("reading {url}: {source}")]
    Parse {
        /// What was asked.
        url: String,
        /// What was wrong with it.
        source: ParseError,
    },
}

/// A boxed future of one reading.
pub type Reading<'a> = Pin<Box<dyn Future<Output = Result<PodMetrics, ScrapeError>> + Send + 'a>>;

/// Reads the metrics of one runtime pod.
pub trait MetricsSource: Send + Sync {
    /// One reading of `target`.
    fn read<'a>(&'a self, target: &'a PodTarget) -> Reading<'a>;
}
