//! The operator's own Prometheus metrics: reconciles by result, reconcile duration, errors by
//! the failing operation (the [`Error`] variant), and the operator's own API requests by verb,
//! resource and response code, and the autoscaler's readings of pods, rendered in the text exposition format.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::client::RequestKind;
use crate::error::Error;

/// Labels of the reconcile counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Labels of the error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    error: &'static str,
}

/// Labels of the API request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: &'static str,
    resource: String,
    /// The HTTP status, `error` when no response came.
    code: String,
}

/// The operator's metrics and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Histogram,
    requests: Family<RequestLabels, Counter>,
    pod_reads: Family<ResultLabels, Counter>,
    verdicts: Family<VerdictLabels, Counter>,
    rollback: Histogram,
    canaries: Gauge,
    stepping: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Labels of canary analysis verdicts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    verdict: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `kandle_operator` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kandle_operator");
        let reconciles = Family::<ResultLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        // 5 ms to about 20 s.
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 13));
        registry.register(
            "reconciles",
            "Reconcile passes by result (ok or error)",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconcile passes by the operation that failed",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconcile passes",
            duration.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "api_requests",
            "Requests the operator sent to the Kubernetes API, by verb, resource and code",
            requests.clone(),
        );
        let pod_reads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "pod_metrics_reads",
            "Readings of runtime pods' /metrics for autoscaling, by result (ok or failed)",
            pod_reads.clone(),
        );
        let verdicts = Family::<VerdictLabels, Counter>::default();
        registry.register(
            "analysis_verdicts",
            "Canary analysis intervals judged, by verdict (Passed, Failed, Inconclusive)",
            verdicts.clone(),
        );
        // 50 ms to about 100 s.
        let rollback = Histogram::new(exponential_buckets(0.05, 2.0, 12));
        registry.register(
            "rollback_duration_seconds",
            "From the end of a canary's failing analysis interval to its rollback applied \
             (canary scaled to zero, stable at full size)",
            rollback.clone(),
        );
        let canaries = Gauge::default();
        registry.register(
            "canary_rollouts_in_progress",
            "ModelDeployments whose canary walks its steps or is being promoted",
            canaries.clone(),
        );
        Self {
            verdicts,
            rollback,
            canaries,
            stepping: Default::default(),
            registry,
            reconciles,
            errors,
            duration,
            requests,
            pod_reads,
        }
    }

    /// Counts a successful pass that took `elapsed`.
    pub fn record_success(&self, elapsed: Duration) {
        self.reconciles
            .get_or_create(&ResultLabels { result: "ok" })
            .inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Counts a failed pass that took `elapsed`.
    pub fn record_failure(&self, error: &Error, elapsed: Duration) {
        self.reconciles
            .get_or_create(&ResultLabels { result: "error" })
            .inc();
        self.errors
            .get_or_create(&ErrorLabels {
                error: error.metric_label(),
            })
            .inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Counts a request to the API server that got HTTP `code` (`0`: no response).
    pub fn record_request(&self, kind: &RequestKind, code: u16) {
        let code = match code {
            0 => "error".to_string(),
            code => code.to_string(),
        };
        self.requests
            .get_or_create(&RequestLabels {
                verb: kind.verb,
                resource: kind.resource.clone(),
                code,
            })
            .inc();
    }

    /// Counts a reading of a runtime pod's metrics.
    pub fn record_pod_read(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.pod_reads.get_or_create(&ResultLabels { result }).inc();
    }

    /// Counts a judged analysis interval.
    pub fn record_verdict(&self, verdict: &'static str) {
        self.verdicts
            .get_or_create(&VerdictLabels { verdict })
            .inc();
    }

    /// Records how long a rollback took from the failing interval's end.
    pub fn record_rollback(&self, seconds: f64) {
        self.rollback.observe(seconds.max(0.0));
    }

    /// Notes whether the ModelDeployment `key` has a canary in progress.
    pub fn record_canary(&self, key: &str, in_progress: bool) {
        let mut stepping = self.stepping.lock().unwrap_or_else(|p| p.into_inner());
        if in_progress {
            stepping.insert(key.to_string());
        } else {
            stepping.remove(key);
        }
        self.canaries
            .set(i64::try_from(stepping.len()).unwrap_or(i64::MAX));
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_by_the_operation_that_failed() {
        let metrics = Metrics::new();
        let error = Error::MissingNamespace {
            name: "bert".into(),
        };
        metrics.record_failure(&error, Duration::from_millis(3));
        metrics.record_success(Duration::from_millis(3));
        let text = metrics.render();
        assert!(
            text.contains("kandle_operator_reconcile_errors_total{error=\"MissingNamespace\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("kandle_operator_reconciles_total{result=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("kandle_operator_reconcile_duration_seconds_count 2"),
            "{text}"
        );
    }

    #[test]
    fn canaries_count_verdicts_rollbacks_and_rollouts_in_progress() {
        let metrics = Metrics::new();
        metrics.record_verdict("Passed");
        metrics.record_verdict("Failed");
        metrics.record_verdict("Failed");
        metrics.record_rollback(0.3);
        metrics.record_canary("ml/a", true);
        metrics.record_canary("ml/b", true);
        metrics.record_canary("ml/a", false);
        let text = metrics.render();
        for line in [
            "kandle_operator_analysis_verdicts_total{verdict=\"Failed\"} 2",
            "kandle_operator_analysis_verdicts_total{verdict=\"Passed\"} 1",
            "kandle_operator_rollback_duration_seconds_count 1",
            "kandle_operator_canary_rollouts_in_progress 1",
        ] {
            assert!(text.contains(line), "{line} not in {text}");
        }
    }

    #[test]
    fn requests_are_counted_by_verb_resource_and_code() {
        let metrics = Metrics::new();
        let patch =
            crate::client::classify("PATCH", "/apis/apps/v1/namespaces/ml/deployments/a", None);
        metrics.record_request(&patch, 200);
        metrics.record_request(&patch, 200);
        metrics.record_request(&patch, 0);
        let text = metrics.render();
        assert!(
            text.contains(
                "kandle_operator_api_requests_total{verb=\"patch\",resource=\"deployments\",code=\"200\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains("code=\"error\"} 1"), "{text}");
    }
}
