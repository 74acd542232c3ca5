//! Restart back-off for crashing containers and failed pulls: doubles from an initial delay up
//! to a cap, and starts over once a container has run for a while without failing.

use std::time::Duration;

/// An exponential back-off policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The delay before the retry following the `failures`-th consecutive failure (1-based).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.initial.saturating_mul(1u32 << doublings).min(self.cap)
    }

    /// Whether a run of `ran_for` was long enough to forget earlier failures (twice the cap,
    /// as the real kubelet does).
    pub fn resets_after(&self, ran_for: Duration) -> bool {
        ran_for >= self.cap.saturating_mul(2)
    }
}

impl Default for Backoff {
    /// Test-sized: 1 s doubling up to 10 s (a real kubelet uses 10 s up to 5 min).
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            cap: Duration::from_secs(10),
        }
    }
}

/// A delay as Go prints durations in kubelet messages: `2s`, `1m20s`, `500ms`.
pub fn go_duration(delay: Duration) -> String {
    let millis = delay.as_millis();
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let secs = delay.as_secs();
    let fraction = millis % 1000;
    let seconds = if fraction == 0 {
        format!("{}s", secs % 60)
    } else {
        let fraction = format!("{fraction:03}");
        format!("{}.{}s", secs % 60, fraction.trim_end_matches('0'))
    };
    if secs >= 60 {
        format!("{}m{seconds}", secs / 60)
    } else {
        seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let backoff = Backoff::default();
        let delays: Vec<u64> = (1..=6).map(|n| backoff.delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff.delay(0), Duration::from_secs(1));
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn resets_after_twice_the_cap() {
        let backoff = Backoff::default();
        assert!(!backoff.resets_after(Duration::from_secs(19)));
        assert!(backoff.resets_after(Duration::from_secs(20)));
    }

    #[test]
    fn prints_like_go() {
        assert_eq!(go_duration(Duration::from_secs(2)), "2s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_millis(300)), "300ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    }
}
