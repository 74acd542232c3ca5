//! Leader election decisions over a coordination.k8s.io/v1 Lease, pure: given the lease as last
//! observed, the time on this replica's monotonic clock and who we are, decide whether to
//! acquire it, renew it or wait, what the lease should say afterwards, and until when a holder
//! may lead. [`crate::election`] does the reading, writing and stopping.
//!
//! # Timing
//!
//! Every interval is measured on the replica's own monotonic clock; the times written in the
//! Lease are never compared with a local clock, so a skewed wall clock cannot make two leaders
//! overlap. This is the scheme of client-go's leader election ([`LeaseTiming`], defaults in
//! brackets):
//!
//! - A standby keeps an [`Observation`]: the lease record (holder, times, resourceVersion) and
//!   when it last saw that record change. It takes the lease only once the record's
//!   `leaseDurationSeconds` (`duration`, 15 s) has passed on its clock since that observation
//!   without another change. Any renewal it sees starts the wait again.
//! - The holder renews every `retry_period` (2 s). When no renewal succeeds within
//!   `renew_deadline` (10 s), counted from the start of its last successful renewal, it stops
//!   leading. A standby saw that renewal only after it was sent, so it takes over at least
//!   `duration` after the holder's last success began, by which time the holder stopped
//!   `duration - renew_deadline` (5 s) ago: that margin absorbs clock rate differences and the
//!   time to stop the work. Hence `renew_deadline < duration`, checked by
//!   [`LeaseTiming::validate`].
//! - Every write carries the resourceVersion read, so of two replicas racing exactly one wins.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;

/// How long terms last and how often replicas act on the lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How long a standby waits, on its own clock, after the last change it saw before it takes
    /// the lease. Whole seconds: the Lease records it as `leaseDurationSeconds`.
    pub duration: Duration,
    /// How long the holder keeps leading without a successful renewal; below `duration`.
    pub renew_deadline: Duration,
    /// How often the holder renews and a standby looks at the lease again.
    pub retry_period: Duration,
}

impl Default for LeaseTiming {
    /// 15 s terms, a 10 s renew deadline and a 2 s retry period, as client-go's defaults.
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Why a [`LeaseTiming`] cannot keep leaders from overlapping.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid leader election timing: {0}")]
pub struct InvalidTiming(String);

impl LeaseTiming {
    /// Checks `0 < retry_period < renew_deadline < duration`, `duration` in whole seconds.
    pub fn validate(&self) -> Result<(), InvalidTiming> {
        let Self {
            duration,
            renew_deadline,
            retry_period,
        } = *self;
        if retry_period.is_zero() {
            return Err(InvalidTiming("the retry period must be above zero".into()));
        }
        if retry_period >= renew_deadline {
            return Err(InvalidTiming(format!(
                "the retry period ({retry_period:?}) must be shorter than the renew deadline ({renew_deadline:?})"
            )));
        }
        if renew_deadline >= duration {
            return Err(InvalidTiming(format!(
                "the renew deadline ({renew_deadline:?}) must be shorter than the lease duration ({duration:?})"
            )));
        }
        if duration.subsec_nanos() != 0 || i32::try_from(duration.as_secs()).is_err() {
            return Err(InvalidTiming(format!(
                "the lease duration ({duration:?}) must be a whole number of seconds"
            )));
        }
        Ok(())
    }
}

/// The lease as read: what a standby watches for change. `None`s for a missing lease.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LeaseRecord {
    /// The lease's resourceVersion.
    pub resource_version: Option<String>,
    /// The lease's spec (holder, acquire and renew times, duration, transitions).
    pub spec: Option<LeaseSpec>,
}

impl LeaseRecord {
    /// The record of `lease` (`None`: no lease exists).
    pub fn of(lease: Option<&Lease>) -> Self {
        Self {
            resource_version: lease.and_then(|l| l.metadata.resource_version.clone()),
            spec: lease.and_then(|l| l.spec.clone()),
        }
    }
}

/// A lease record and when, on this replica's monotonic clock, it was first seen as it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// The record.
    pub record: LeaseRecord,
    /// When this replica first saw the record as it is.
    pub observed_at: Instant,
}

/// Folds a fresh read taken at `now` into the previous observation: the observation time moves
/// only when the record changed.
pub fn observe(previous: Option<Observation>, record: LeaseRecord, now: Instant) -> Observation {
    match previous {
        Some(previous) if previous.record == record => previous,
        _ => Observation {
            record,
            observed_at: now,
        },
    }
}

/// What to do about the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it, or it went unchanged for a whole term on our clock: take it.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds it; unless it changes, it may be taken at `until` (our clock).
    Wait {
        /// The current holder.
        holder: String,
        /// When its term runs out on our clock unless the record changes.
        until: Instant,
    },
}

/// Decides what `identity` should do at `now` about the lease as `observation` saw it. A record
/// that states no duration is given `default_duration`.
pub fn decide(
    observation: &Observation,
    now: Instant,
    identity: &str,
    default_duration: Duration,
) -> Decision {
    let Some(spec) = observation.record.spec.as_ref() else {
        return Decision::Acquire;
    };
    let holder = match spec.holder_identity.as_deref() {
        Some(holder) if !holder.is_empty() => holder,
        _ => return Decision::Acquire,
    };
    if holder == identity {
        return Decision::Renew;
    }
    let duration = spec
        .lease_duration_seconds
        .and_then(|seconds| u64::try_from(seconds).ok())
        .filter(|seconds| *seconds > 0)
        .map_or(default_duration, Duration::from_secs);
    let until = observation.observed_at + duration;
    if now < until {
        Decision::Wait {
            holder: holder.to_string(),
            until,
        }
    } else {
        // Unchanged for a whole term on our clock: the holder is gone.
        Decision::Acquire
    }
}

/// Until when a holder may lead: `renew_deadline` after the start of its last successful
/// renewal (or acquisition), on its own clock.
pub fn leading_until(last_renewed: Instant, timing: &LeaseTiming) -> Instant {
    last_renewed + timing.renew_deadline
}

/// The lease spec after `decision` (`None` for [`Decision::Wait`]: nothing to write). `now` is
/// the wall clock, written for people reading the Lease; no replica decides from it.
pub fn next_spec(
    lease: Option<&LeaseSpec>,
    decision: &Decision,
    now: DateTime<Utc>,
    identity: &str,
    duration: Duration,
) -> Option<LeaseSpec> {
    let previous = lease.cloned().unwrap_or_default();
    let now = to_micro(now);
    let seconds = i32::try_from(duration.as_secs()).unwrap_or(i32::MAX);
    match decision {
        Decision::Wait { .. } => None,
        Decision::Renew => Some(LeaseSpec {
            renew_time: Some(now),
            lease_duration_seconds: Some(seconds),
            ..previous
        }),
        Decision::Acquire => {
            // Every change of hands counts, a handed-back lease included; a new lease starts at 0.
            let transitions = previous.lease_transitions.unwrap_or(0) + i32::from(lease.is_some());
            Some(LeaseSpec {
                holder_identity: Some(identity.to_string()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_duration_seconds: Some(seconds),
                lease_transitions: Some(transitions),
                ..previous
            })
        }
    }
}

/// The lease spec that hands the lease back on shutdown, so a standby takes over at once.
pub fn released_spec(lease: &LeaseSpec, now: DateTime<Utc>) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        renew_time: Some(to_micro(now)),
        lease_duration_seconds: Some(1),
        ..lease.clone()
    }
}

fn to_micro(time: DateTime<Utc>) -> MicroTime {
    let micros = time.timestamp_micros();
    MicroTime(Timestamp::from_microsecond(micros).unwrap_or(Timestamp::UNIX_EPOCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    fn wall(second: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + second, 0).unwrap()
    }

    /// A lease held by `holder`, who wrote `renewed_at` by its own wall clock.
    fn held_by(holder: &str, renewed_at: i64, version: &str) -> LeaseRecord {
        LeaseRecord {
            resource_version: Some(version.to_string()),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.to_string()),
                renew_time: Some(to_micro(wall(renewed_at))),
                acquire_time: Some(to_micro(wall(renewed_at))),
                lease_duration_seconds: Some(15),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        }
    }

    fn first_seen(record: LeaseRecord, at: Instant) -> Observation {
        observe(None, record, at)
    }

    fn decide_at(observation: &Observation, now: Instant) -> Decision {
        decide(observation, now, "a", secs(15))
    }

    #[test]
    fn a_missing_lease_is_acquired() {
        let t0 = Instant::now();
        let seen = first_seen(LeaseRecord::of(None), t0);
        assert_eq!(decide_at(&seen, t0), Decision::Acquire);
    }

    #[test]
    fn a_released_lease_is_acquired() {
        let t0 = Instant::now();
        let mut record = held_by("b", 0, "1");
        record.spec = record.spec.map(|spec| released_spec(&spec, wall(1)));
        assert_eq!(decide_at(&first_seen(record, t0), t0), Decision::Acquire);
    }

    #[test]
    fn the_holder_renews() {
        let t0 = Instant::now();
        let seen = first_seen(held_by("a", 0, "1"), t0);
        assert_eq!(decide_at(&seen, t0 + secs(5)), Decision::Renew);
    }

    #[test]
    fn a_standby_takes_over_after_a_whole_term_without_change_on_its_clock() {
        let t0 = Instant::now();
        let mut seen = first_seen(held_by("b", 0, "1"), t0);
        let waiting = Decision::Wait {
            holder: "b".into(),
            until: t0 + secs(15),
        };
        assert_eq!(decide_at(&seen, t0 + secs(14)), waiting);
        // Reading the same record again does not restart the wait.
        seen = observe(Some(seen), held_by("b", 0, "1"), t0 + secs(14));
        assert_eq!(seen.observed_at, t0);
        assert_eq!(decide_at(&seen, t0 + secs(15)), Decision::Acquire);
    }

    #[test]
    fn a_skewed_holder_clock_cannot_make_the_standby_take_over_early() {
        // The holder's clock runs an hour behind: its renew time looks long expired to anyone
        // comparing it with their own wall clock. The standby still waits a whole term.
        let t0 = Instant::now();
        let behind = held_by("b", -3_600, "1");
        let seen = first_seen(behind, t0);
        assert!(matches!(
            decide_at(&seen, t0 + secs(14)),
            Decision::Wait { .. }
        ));
        // A renewal stamped still further in the past is a change all the same.
        let renewed = observe(Some(seen), held_by("b", -3_598, "2"), t0 + secs(10));
        assert_eq!(renewed.observed_at, t0 + secs(10));
        assert!(matches!(
            decide_at(&renewed, t0 + secs(24)),
            Decision::Wait { .. }
        ));
        assert_eq!(decide_at(&renewed, t0 + secs(25)), Decision::Acquire);
    }

    #[test]
    fn a_renewal_seen_restarts_the_standby_wait() {
        let t0 = Instant::now();
        let seen = first_seen(held_by("b", 0, "1"), t0);
        let renewed = observe(Some(seen), held_by("b", 2, "2"), t0 + secs(10));
        assert_eq!(renewed.observed_at, t0 + secs(10));
        assert_eq!(
            decide_at(&renewed, t0 + secs(15)),
            Decision::Wait {
                holder: "b".into(),
                until: t0 + secs(25)
            }
        );
        // A new resourceVersion alone is a change too.
        let touched = observe(Some(renewed), held_by("b", 2, "3"), t0 + secs(12));
        assert_eq!(touched.observed_at, t0 + secs(12));
    }

    #[test]
    fn a_record_without_a_duration_is_given_the_default() {
        let t0 = Instant::now();
        let mut record = held_by("b", 0, "1");
        if let Some(spec) = record.spec.as_mut() {
            spec.lease_duration_seconds = None;
        }
        let seen = first_seen(record, t0);
        assert!(matches!(
            decide(&seen, t0 + secs(14), "a", secs(15)),
            Decision::Wait { .. }
        ));
        assert_eq!(
            decide(&seen, t0 + secs(15), "a", secs(15)),
            Decision::Acquire
        );
    }

    #[test]
    fn the_holder_stops_at_the_renew_deadline_before_the_term_ends() {
        let timing = LeaseTiming::default();
        let renewal_sent = Instant::now();
        let stop = leading_until(renewal_sent, &timing);
        assert_eq!(stop, renewal_sent + secs(10));
        assert!(stop < renewal_sent + timing.duration);
        // However late after the renewal a standby saw it, it takes over only once the holder
        // has stopped.
        for seen_after in 0..3 {
            let seen = first_seen(held_by("b", 0, "1"), renewal_sent + secs(seen_after));
            for second in 0..30 {
                let now = renewal_sent + secs(second);
                if decide_at(&seen, now) == Decision::Acquire {
                    assert!(
                        now >= stop,
                        "taken over at {second}s, holder leads until 10s"
                    );
                }
            }
        }
    }

    #[test]
    fn timing_keeps_the_renew_deadline_inside_the_term() {
        assert_eq!(LeaseTiming::default().validate(), Ok(()));
        let timing = |duration, renew_deadline, retry_period| LeaseTiming {
            duration: secs(duration),
            renew_deadline: secs(renew_deadline),
            retry_period: secs(retry_period),
        };
        assert!(timing(15, 15, 2).validate().is_err());
        assert!(timing(15, 20, 2).validate().is_err());
        assert!(timing(15, 10, 10).validate().is_err());
        assert!(timing(15, 10, 0).validate().is_err());
        let fractional = LeaseTiming {
            duration: Duration::from_millis(15_500),
            ..LeaseTiming::default()
        };
        assert!(fractional.validate().is_err());
    }

    #[test]
    fn taking_a_handed_back_lease_counts_a_transition_and_a_new_one_starts_at_zero() {
        let released = released_spec(&held_by("b", 0, "1").spec.unwrap(), wall(1));
        let next = next_spec(Some(&released), &Decision::Acquire, wall(2), "a", secs(15));
        assert_eq!(next.and_then(|s| s.lease_transitions), Some(1));
        let created = next_spec(None, &Decision::Acquire, wall(2), "a", secs(15));
        assert_eq!(created.and_then(|s| s.lease_transitions), Some(0));
    }

    #[test]
    fn taking_over_counts_a_transition() {
        let lease = held_by("b", 0, "1").spec.unwrap();
        let next = next_spec(Some(&lease), &Decision::Acquire, wall(15), "a", secs(15)).unwrap();
        assert_eq!(next.holder_identity.as_deref(), Some("a"));
        assert_eq!(next.lease_transitions, Some(1));
        assert_eq!(next.renew_time, Some(to_micro(wall(15))));
    }

    #[test]
    fn renewing_moves_only_the_renew_time() {
        let lease = held_by("a", 0, "1").spec.unwrap();
        let next = next_spec(Some(&lease), &Decision::Renew, wall(5), "a", secs(15)).unwrap();
        assert_eq!(next.acquire_time, lease.acquire_time);
        assert_eq!(next.lease_transitions, Some(0));
        assert_eq!(next.renew_time, Some(to_micro(wall(5))));
    }

    #[test]
    fn waiting_writes_nothing() {
        let t0 = Instant::now();
        let record = held_by("b", 0, "1");
        let decision = decide_at(&first_seen(record.clone(), t0), t0 + secs(1));
        let lease = record.spec.as_ref();
        assert_eq!(next_spec(lease, &decision, wall(1), "a", secs(15)), None);
    }
}
