//! Admission: what a request must hold before the server spends memory or compute on it.
//!
//! Two stages, each answered at once with 429 when full, never by queueing:
//! - before the body is read, a request slot (`--max-concurrent-requests`) and its body's bytes
//!   from the body budget (`--max-pending-body-bytes`; the `Content-Length`, or `--max-body-bytes`
//!   when the length is not announced), so bodies in memory stay bounded;
//! - after tokenization, its tokens from the token budget (`--max-queued-tokens`, sized from the
//!   model's measured throughput), so the work admitted can finish within the deadline.
//!
//! Permits are RAII: dropping them (request done, failed, cancelled or timed out) gives the
//! capacity back.

use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// Body bytes are counted in KiB so that any budget fits a semaphore.
const BODY_UNIT: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    pub max_requests: usize,
    pub max_body_bytes: usize,
    pub max_pending_body_bytes: usize,
    pub max_queued_tokens: usize,
}

pub struct Admission {
    limits: AdmissionLimits,
    requests: Arc<Semaphore>,
    body_units: Arc<Semaphore>,
    tokens: Arc<Semaphore>,
    queued_tokens: Gauge,
}

/// A request slot and the memory its body may use; held until the response is ready.
#[derive(Debug)]
pub struct RequestPermit {
    _slot: OwnedSemaphorePermit,
    _body: OwnedSemaphorePermit,
}

/// The tokens of one admitted request; held until the model has answered it.
#[derive(Debug)]
pub struct TokenPermit {
    permit: OwnedSemaphorePermit,
    gauge: Gauge,
}

impl Drop for TokenPermit {
    fn drop(&mut self) {
        self.gauge.dec_by(self.permit.num_permits() as i64);
    }
}

impl AdmissionLimits {
    /// The limits `config` sets, with the token budget decided by the engine.
    pub fn from_config(config: &crate::config::Config, max_queued_tokens: usize) -> Self {
        Self {
            max_requests: config.max_concurrent_requests,
            max_body_bytes: config.max_body_bytes,
            max_pending_body_bytes: config.max_pending_body_bytes,
            max_queued_tokens,
        }
    }
}

impl Admission {
    /// `queued_tokens` follows the tokens admitted and not yet answered.
    pub fn new(limits: AdmissionLimits, queued_tokens: Gauge) -> Self {
        Self {
            limits,
            requests: Arc::new(Semaphore::new(limits.max_requests)),
            body_units: Arc::new(Semaphore::new(units(limits.max_pending_body_bytes))),
            tokens: Arc::new(Semaphore::new(limits.max_queued_tokens)),
            queued_tokens,
        }
    }

    pub fn limits(&self) -> AdmissionLimits {
        self.limits
    }

    /// Admits a request whose body announces `content_length` bytes (None: not announced).
    /// A body announced larger than `--max-body-bytes` is refused here, before it is read.
    pub fn admit_request(&self, content_length: Option<u64>) -> Result<RequestPermit, ApiError> {
        let announced = match content_length {
            Some(n) if n > self.limits.max_body_bytes as u64 => return Err(ApiError::BodyTooLarge),
            Some(n) => n as usize,
            None => self.limits.max_body_bytes,
        };
        let slot = take(&self.requests, 1).ok_or_else(|| {
            ApiError::Overloaded(format!(
                "the server is at its limit of {} concurrent requests",
                self.limits.max_requests
            ))
        })?;
        let body = take(&self.body_units, units(announced).max(1)).ok_or_else(|| {
            ApiError::Overloaded(format!(
                "request bodies being processed already use the server's budget of {} bytes",
                self.limits.max_pending_body_bytes
            ))
        })?;
        Ok(RequestPermit {
            _slot: slot,
            _body: body,
        })
    }

    /// Refuses at once when an estimate of the request's tokens does not fit: the cheap check
    /// before tokenizing, so that under overload most refusals cost no tokenization.
    pub fn check_tokens_left(&self, estimate: usize) -> Result<(), ApiError> {
        let wanted = estimate.clamp(1, self.limits.max_queued_tokens);
        if self.tokens.available_permits() < wanted {
            return Err(self.tokens_refusal(None));
        }
        Ok(())
    }

    /// Admits `tokens` of work. A request larger than the whole budget is admitted only when
    /// the budget is entirely free, so it can still run (alone).
    pub fn admit_tokens(&self, tokens: usize) -> Result<TokenPermit, ApiError> {
        let wanted = tokens.clamp(1, self.limits.max_queued_tokens);
        let permit = take(&self.tokens, wanted).ok_or_else(|| self.tokens_refusal(Some(tokens)))?;
        self.queued_tokens.inc_by(wanted as i64);
        Ok(TokenPermit {
            permit,
            gauge: self.queued_tokens.clone(),
        })
    }

    fn tokens_refusal(&self, adding: Option<usize>) -> ApiError {
        let adds = adding.map_or(String::new(), |n| format!("; this request adds {n}"));
        ApiError::Overloaded(format!(
            "the server has {} tokens of work queued, its limit is {}{adds}",
            self.queued_tokens(),
            self.limits.max_queued_tokens
        ))
    }

    /// Tokens admitted and not yet answered.
    pub fn queued_tokens(&self) -> usize {
        self.limits.max_queued_tokens - self.tokens.available_permits()
    }
}

fn units(bytes: usize) -> usize {
    bytes.div_ceil(BODY_UNIT).min(Semaphore::MAX_PERMITS)
}

fn take(semaphore: &Arc<Semaphore>, n: usize) -> Option<OwnedSemaphorePermit> {
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    semaphore.clone().try_acquire_many_owned(n).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> AdmissionLimits {
        AdmissionLimits {
            max_requests: 3,
            max_body_bytes: 4096,
            max_pending_body_bytes: 8192,
            max_queued_tokens: 100,
        }
    }

    #[test]
    fn bodies_are_budgeted_by_their_announced_size() {
        let admission = Admission::new(limits(), Gauge::default());
        let a = admission.admit_request(Some(4096)).unwrap();
        let _b = admission.admit_request(Some(4096)).unwrap();
        // The byte budget is spent although a request slot is free.
        let err = admission.admit_request(Some(10)).unwrap_err();
        assert!(
            matches!(err, ApiError::Overloaded(ref m) if m.contains("8192 bytes")),
            "{err}"
        );
        drop(a);
        assert!(admission.admit_request(Some(10)).is_ok());
    }

    #[test]
    fn unannounced_bodies_reserve_the_maximum_and_oversized_ones_are_refused_unread() {
        let admission = Admission::new(limits(), Gauge::default());
        let _a = admission.admit_request(None).unwrap();
        let _b = admission.admit_request(None).unwrap();
        assert!(admission.admit_request(None).is_err());
        let fresh = Admission::new(limits(), Gauge::default());
        assert_eq!(
            fresh.admit_request(Some(4097)).unwrap_err(),
            ApiError::BodyTooLarge
        );
    }

    #[test]
    fn request_slots_are_counted() {
        let admission = Admission::new(limits(), Gauge::default());
        let held: Vec<_> = (0..3)
            .map(|_| admission.admit_request(Some(1)).unwrap())
            .collect();
        let err = admission.admit_request(Some(1)).unwrap_err();
        assert!(err.to_string().contains("3 concurrent requests"), "{err}");
        drop(held);
        assert!(admission.admit_request(Some(1)).is_ok());
    }

    #[test]
    fn tokens_are_admitted_up_to_the_budget_and_given_back() {
        let admission = Admission::new(limits(), Gauge::default());
        let a = admission.admit_tokens(60).unwrap();
        assert_eq!(admission.queued_tokens(), 60);
        assert!(admission.check_tokens_left(40).is_ok());
        assert!(admission.check_tokens_left(41).is_err());
        assert!(admission.admit_tokens(41).is_err());
        let b = admission.admit_tokens(40).unwrap();
        assert!(admission.check_tokens_left(1).is_err());
        assert_eq!(admission.queued_tokens.get(), 100);
        drop((a, b));
        assert_eq!(admission.queued_tokens(), 0);
    }

    #[test]
    fn a_request_larger_than_the_budget_runs_when_the_budget_is_free() {
        let admission = Admission::new(limits(), Gauge::default());
        let small = admission.admit_tokens(1).unwrap();
        assert!(admission.admit_tokens(500).is_err());
        drop(small);
        let big = admission.admit_tokens(500).unwrap();
        assert_eq!(admission.queued_tokens(), 100);
        drop(big);
    }
}
