//! Canary analysis, pure: from two readings of the canary's pods (the runtime's own request
//! counters and latency histogram, summed over pods) the verdict on the interval between them:
//! inconclusive below `minRequests`, failed above `maxErrorRate` (5xx and timeouts) or
//! `maxLatencyP99` (from the histogram buckets), passed otherwise. [`intervals`] cuts the
//! collector's readings into those intervals.

pub mod intervals;

use kandle_crds::{duration_seconds, AnalysisSpec};

use crate::scrape::PodMetrics;

/// Verdicts of an interval.
pub mod verdicts {
    /// The canary met every threshold.
    pub const PASSED: &str = "Passed";
    /// The canary broke a threshold.
    pub const FAILED: &str = "Failed";
    /// Too few requests to judge.
    pub const INCONCLUSIVE: &str = "Inconclusive";
}

/// Request counts and latency buckets summed over a revision's pods at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    /// Requests answered, all codes.
    pub requests: f64,
    /// Requests answered with a 5xx or a timeout (408).
    pub failed: f64,
    /// Cumulative latency buckets `(upper bound in seconds, count)`, ascending.
    pub buckets: Vec<(f64, f64)>,
}

impl Totals {
    /// The sum of `readings`.
    pub fn of<'a>(readings: impl IntoIterator<Item = &'a PodMetrics>) -> Self {
        let mut totals = Totals::default();
        for reading in readings {
            totals.add(&Totals {
                requests: reading.requests(),
                failed: reading
                    .requests_by_code
                    .iter()
                    .filter(|(code, _)| failed_code(code))
                    .map(|(_, n)| n)
                    .sum::<f64>(),
                buckets: reading.latency_buckets.clone(),
            });
        }
        totals
    }

    /// Adds `other` (another pod, or another pod's interval) to these totals.
    pub fn add(&mut self, other: &Totals) {
        self.requests += other.requests;
        self.failed += other.failed;
        for (bound, count) in &other.buckets {
            match self.buckets.iter_mut().find(|(b, _)| b == bound) {
                Some((_, sum)) => *sum += count,
                None => self.buckets.push((*bound, *count)),
            }
        }
        self.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }

    /// What happened between `self` (earlier) and `later`. A pod that restarted between the two
    /// counts from zero, so a counter that went down is read as all new.
    pub fn until(&self, later: &Totals) -> Totals {
        let delta = |before: f64, after: f64| {
            if after >= before {
                after - before
            } else {
                after
            }
        };
        Totals {
            requests: delta(self.requests, later.requests),
            failed: delta(self.failed, later.failed),
            buckets: later
                .buckets
                .iter()
                .map(|(bound, after)| {
                    let before = self
                        .buckets
                        .iter()
                        .find(|(b, _)| b == bound)
                        .map_or(0.0, |(_, n)| *n);
                    (*bound, delta(before, *after))
                })
                .collect(),
        }
    }
}

fn failed_code(code: &str) -> bool {
    code.starts_with('5') || code == "408"
}

/// The judgement of one interval.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    /// Requests in the interval.
    pub requests: i64,
    /// Share of failed requests (0 without requests).
    pub error_rate: f64,
    /// 99th-percentile latency in seconds, when there were requests.
    pub latency_p99_seconds: Option<f64>,
    /// A constant of [`verdicts`].
    pub verdict: &'static str,
    /// Why, with the figures.
    pub message: String,
}

/// Judges the interval `delta` against `spec`.
pub fn judge(spec: &AnalysisSpec, delta: &Totals) -> Judgement {
    let requests = delta.requests.round().max(0.0) as i64;
    let error_rate = if delta.requests > 0.0 {
        (delta.failed / delta.requests).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let p99 = quantile(0.99, &delta.buckets);
    let limit_p99 = spec.max_latency_p99.as_deref().and_then(duration_seconds);
    let figures = format!(
        "{requests} requests, error rate {:.2}% (max {:.2}%), p99 {}",
        error_rate * 100.0,
        spec.max_error_rate * 100.0,
        p99.map_or("n/a".to_string(), |s| format!("{:.0} ms", s * 1000.0)),
    );
    let (verdict, message) = if requests < spec.min_requests {
        (
            verdicts::INCONCLUSIVE,
            format!("{figures}: fewer than minRequests {}", spec.min_requests),
        )
    } else if error_rate > spec.max_error_rate {
        (
            verdicts::FAILED,
            format!("{figures}: error rate above the maximum"),
        )
    } else if let Some((p99, limit)) = p99.zip(limit_p99).filter(|(p, l)| p > l) {
        (
            verdicts::FAILED,
            format!(
                "{figures}: p99 {:.0} ms above maxLatencyP99 {:.0} ms",
                p99 * 1000.0,
                limit * 1000.0
            ),
        )
    } else {
        (verdicts::PASSED, figures)
    };
    Judgement {
        requests,
        error_rate,
        latency_p99_seconds: p99,
        verdict,
        message,
    }
}

/// The `q` quantile of cumulative buckets, interpolated linearly within the bucket it falls in
/// (as Prometheus' `histogram_quantile` does); the largest finite bound when it falls in
/// `+Inf`. `None` without observations.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let width = count - lower.1;
            let within = if width > 0.0 {
                (rank - lower.1) / width
            } else {
                1.0
            };
            return Some(lower.0 + (bound - lower.0) * within);
        }
        lower = (bound, count);
    }
    Some(lower.0)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn spec() -> AnalysisSpec {
        AnalysisSpec {
            interval: "10s".to_string(),
            min_requests: 20,
            max_error_rate: 0.05,
            max_latency_p99: Some("250ms".to_string()),
            failure_limit: 0,
        }
    }

    fn reading(ok: f64, failed: f64, buckets: &[(f64, f64)]) -> PodMetrics {
        PodMetrics {
            requests_by_code: BTreeMap::from([
                ("200".to_string(), ok),
                ("504".to_string(), failed),
            ]),
            latency_buckets: buckets.to_vec(),
            ..PodMetrics::default()
        }
    }

    #[test]
    fn the_quantile_interpolates_within_its_bucket() {
        let buckets = [
            (0.1, 50.0),
            (0.2, 90.0),
            (0.4, 100.0),
            (f64::INFINITY, 100.0),
        ];
        assert_eq!(quantile(0.5, &buckets), Some(0.1));
        let p99 = quantile(0.99, &buckets).unwrap();
        assert!((p99 - 0.38).abs() < 1e-9, "{p99}");
        assert_eq!(quantile(0.99, &[(0.1, 0.0), (f64::INFINITY, 0.0)]), None);
        assert_eq!(
            quantile(0.99, &[(0.1, 1.0), (f64::INFINITY, 100.0)]),
            Some(0.1)
        );
    }

    #[test]
    fn intervals_are_judged_on_their_own_requests() {
        let fast = [(0.1, 100.0), (f64::INFINITY, 100.0)];
        let before = Totals::of([&reading(1000.0, 0.0, &fast)]);
        let quiet = before.until(&Totals::of([&reading(1010.0, 0.0, &fast)]));
        assert_eq!(judge(&spec(), &quiet).verdict, verdicts::INCONCLUSIVE);

        let later = [(0.1, 200.0), (f64::INFINITY, 200.0)];
        let good = before.until(&Totals::of([&reading(1099.0, 1.0, &later)]));
        let j = judge(&spec(), &good);
        assert_eq!((j.verdict, j.requests), (verdicts::PASSED, 100));
        assert!((j.error_rate - 0.01).abs() < 1e-9);

        let failing = before.until(&Totals::of([&reading(1090.0, 10.0, &later)]));
        let j = judge(&spec(), &failing);
        assert_eq!(j.verdict, verdicts::FAILED);
        assert!(j.message.contains("error rate 10.00%"), "{}", j.message);

        let slow = [(0.1, 100.0), (0.5, 200.0), (f64::INFINITY, 200.0)];
        let slow = before.until(&Totals::of([&reading(1100.0, 0.0, &slow)]));
        let j = judge(&spec(), &slow);
        assert_eq!(j.verdict, verdicts::FAILED);
        assert!(
            j.message.contains("above maxLatencyP99 250 ms"),
            "{}",
            j.message
        );
    }

    #[test]
    fn pods_add_up_and_a_restart_counts_from_zero() {
        let a = reading(10.0, 0.0, &[(0.1, 10.0), (f64::INFINITY, 10.0)]);
        let b = reading(5.0, 5.0, &[(0.1, 8.0), (f64::INFINITY, 10.0)]);
        let both = Totals::of([&a, &b]);
        assert_eq!((both.requests, both.failed), (20.0, 5.0));
        assert_eq!(both.buckets, vec![(0.1, 18.0), (f64::INFINITY, 20.0)]);
        let restarted = Totals::of([&reading(3.0, 0.0, &[(0.1, 3.0), (f64::INFINITY, 3.0)])]);
        assert_eq!(both.until(&restarted).requests, 3.0);
    }
}
