//! A token bucket: the client's requests per second (QPS) on average, with bursts up to a
//! limit, as client-go's default rate limiter. Pure: time comes in as a value.

use std::time::{Duration, Instant};

/// How fast the client may send requests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Requests per second on average; `0` or less turns the limit off.
    pub qps: f64,
    /// Requests that may go at once after a quiet spell (at least 1).
    pub burst: u32,
}

/// Tokens refill at `qps` up to `burst`; each request takes one.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    limits: Limits,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`; `None` when `limits` sets no limit.
    pub fn new(limits: Limits, now: Instant) -> Option<Self> {
        (limits.qps > 0.0).then(|| Self {
            limits,
            tokens: f64::from(limits.burst.max(1)),
            last: now,
        })
    }

    /// Takes a token at `now`, or says how long to wait until one is there.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        let capacity = f64::from(self.limits.burst.max(1));
        self.tokens = (self.tokens + elapsed * self.limits.qps).min(capacity);
        self.last = now.max(self.last);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.limits.qps,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(qps: f64, burst: u32) -> (TokenBucket, Instant) {
        let start = Instant::now();
        (
            TokenBucket::new(Limits { qps, burst }, start).unwrap(),
            start,
        )
    }

    #[test]
    fn a_burst_goes_at_once_then_requests_are_spaced_by_the_rate() {
        let (mut bucket, t0) = bucket(10.0, 3);
        for _ in 0..3 {
            assert_eq!(bucket.take(t0), Ok(()));
        }
        let wait = bucket.take(t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        assert_eq!(bucket.take(t0 + Duration::from_millis(100)), Ok(()));
        assert!(bucket.take(t0 + Duration::from_millis(100)).is_err());
    }

    #[test]
    fn a_quiet_spell_refills_only_up_to_the_burst() {
        let (mut bucket, t0) = bucket(100.0, 2);
        let later = t0 + Duration::from_secs(60);
        assert_eq!(bucket.take(later), Ok(()));
        assert_eq!(bucket.take(later), Ok(()));
        assert!(bucket.take(later).is_err());
    }

    #[test]
    fn over_a_second_the_rate_holds() {
        let (mut bucket, t0) = bucket(50.0, 5);
        let mut sent = 0;
        let mut now = t0;
        while now < t0 + Duration::from_secs(1) {
            match bucket.take(now) {
                Ok(()) => sent += 1,
                Err(wait) => now += wait,
            }
        }
        // The burst plus one second at 50 per second.
        assert!((54..=56).contains(&sent), "{sent}");
    }

    #[test]
    fn no_rate_means_no_bucket() {
        let limits = Limits {
            qps: 0.0,
            burst: 10,
        };
        assert!(TokenBucket::new(limits, Instant::now()).is_none());
    }
}
