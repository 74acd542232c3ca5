//! When to look at a `ModelDeployment` again. A failing one backs off exponentially, per object,
//! from half a second to five minutes, with jitter so that objects failing together (an API
//! server restart) do not retry together; periodic looks are spread by ±10%. The delays are
//! pure functions of a random draw in [0, 1) that comes in as a value.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The wait after the first failure, before jitter.
pub const FIRST_RETRY: Duration = Duration::from_millis(500);
/// The longest wait between retries.
pub const MAX_RETRY: Duration = Duration::from_secs(300);

/// The wait after `failures` consecutive failures (at least 1): `FIRST_RETRY` doubled per
/// failure up to `MAX_RETRY`, of which a random half ("equal jitter").
pub fn retry_delay(failures: u32, draw: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    let ceiling = FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY);
    ceiling.mul_f64(0.5 + 0.5 * draw.clamp(0.0, 1.0))
}

/// `period` spread by ±10% with the draw.
pub fn spread(period: Duration, draw: f64) -> Duration {
    period.mul_f64(0.9 + 0.2 * draw.clamp(0.0, 1.0))
}

/// Consecutive failures per object.
#[derive(Debug, Default)]
pub struct Failures(Mutex<HashMap<String, u32>>);

impl Failures {
    /// Counts a failure of `key`; returns how many in a row.
    pub fn failed(&self, key: &str) -> u32 {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(key.to_string()).or_default();
        *count = count.saturating_add(1);
        *count
    }

    /// Forgets the failures of `key` after a pass that went through.
    pub fn succeeded(&self, key: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_up_to_the_cap() {
        let top = |n| retry_delay(n, 1.0);
        assert_eq!(top(1), FIRST_RETRY);
        assert_eq!(top(2), FIRST_RETRY * 2);
        assert_eq!(top(5), FIRST_RETRY * 16);
        assert_eq!(top(30), MAX_RETRY);
        assert_eq!(top(u32::MAX), MAX_RETRY);
    }

    #[test]
    fn jitter_keeps_at_least_half_the_wait() {
        for failures in 1..12 {
            let low = retry_delay(failures, 0.0);
            let high = retry_delay(failures, 1.0);
            assert_eq!(low * 2, high, "after {failures} failures");
            let mid = retry_delay(failures, 0.5);
            assert!(low < mid && mid < high);
        }
    }

    #[test]
    fn draws_outside_the_unit_interval_are_clamped() {
        assert_eq!(retry_delay(3, -1.0), retry_delay(3, 0.0));
        assert_eq!(retry_delay(3, 7.0), retry_delay(3, 1.0));
    }

    #[test]
    fn periodic_looks_are_spread_by_a_tenth() {
        let period = Duration::from_secs(30);
        assert_eq!(spread(period, 0.0), Duration::from_secs(27));
        assert_eq!(spread(period, 1.0), Duration::from_secs(33));
    }

    #[test]
    fn a_success_resets_the_count() {
        let failures = Failures::default();
        assert_eq!(failures.failed("ml/a"), 1);
        assert_eq!(failures.failed("ml/a"), 2);
        assert_eq!(failures.failed("ml/b"), 1);
        failures.succeeded("ml/a");
        assert_eq!(failures.failed("ml/a"), 1);
    }
}
