//! Leader election decisions over a coordination.k8s.io/v1 Lease, pure: given the lease as
//! read, the time and who we are, decide whether to acquire it, renew it or wait, and what the
//! lease should say afterwards. [`crate::election`] does the reading and writing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;

/// What to do about the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it (or the holder's term ran out): take it.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds it until `until`.
    Wait {
        /// The current holder.
        holder: String,
        /// When its term runs out unless renewed.
        until: DateTime<Utc>,
    },
}

/// Decides what `identity` should do about `lease` at `now`.
pub fn decide(lease: Option<&LeaseSpec>, now: DateTime<Utc>, identity: &str) -> Decision {
    let Some(spec) = lease else {
        return Decision::Acquire;
    };
    let holder = match spec.holder_identity.as_deref() {
        Some(holder) if !holder.is_empty() => holder,
        _ => return Decision::Acquire,
    };
    if holder == identity {
        return Decision::Renew;
    }
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(from_micro);
    let duration = chrono::Duration::seconds(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    match renewed {
        Some(renewed) if renewed + duration > now => Decision::Wait {
            holder: holder.to_string(),
            until: renewed + duration,
        },
        // Expired, or never renewed: the holder is gone.
        _ => Decision::Acquire,
    }
}

/// The lease spec after `decision` (`None` for [`Decision::Wait`]: nothing to write).
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

fn from_micro(time: &MicroTime) -> DateTime<Utc> {
    DateTime::from_timestamp(time.0.as_second(), time.0.subsec_nanosecond().max(0) as u32)
        .unwrap_or(DateTime::UNIX_EPOCH)
}

fn to_micro(time: DateTime<Utc>) -> MicroTime {
    let micros = time.timestamp_micros();
    MicroTime(Timestamp::from_microsecond(micros).unwrap_or(Timestamp::UNIX_EPOCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + second, 0).unwrap()
    }

    fn held_by(holder: &str, renewed_at: i64, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_string()),
            renew_time: Some(to_micro(at(renewed_at))),
            acquire_time: Some(to_micro(at(renewed_at))),
            lease_duration_seconds: Some(duration),
            lease_transitions: Some(0),
            ..Default::default()
        }
    }

    #[test]
    fn a_missing_lease_is_acquired() {
        assert_eq!(decide(None, at(0), "a"), Decision::Acquire);
    }

    #[test]
    fn a_released_lease_is_acquired() {
        let lease = released_spec(&held_by("b", 0, 15), at(1));
        assert_eq!(decide(Some(&lease), at(1), "a"), Decision::Acquire);
    }

    #[test]
    fn taking_a_handed_back_lease_counts_a_transition_and_a_new_one_starts_at_zero() {
        let released = released_spec(&held_by("b", 0, 15), at(1));
        let next = next_spec(
            Some(&released),
            &Decision::Acquire,
            at(2),
            "a",
            Duration::from_secs(15),
        );
        assert_eq!(next.and_then(|s| s.lease_transitions), Some(1));
        let created = next_spec(
            None,
            &Decision::Acquire,
            at(2),
            "a",
            Duration::from_secs(15),
        );
        assert_eq!(created.and_then(|s| s.lease_transitions), Some(0));
    }

    #[test]
    fn the_holder_renews() {
        assert_eq!(
            decide(Some(&held_by("a", 0, 15)), at(5), "a"),
            Decision::Renew
        );
    }

    #[test]
    fn a_fresh_lease_of_another_holder_is_waited_for() {
        let decision = decide(Some(&held_by("b", 0, 15)), at(14), "a");
        assert_eq!(
            decision,
            Decision::Wait {
                holder: "b".into(),
                until: at(15)
            }
        );
    }

    #[test]
    fn an_expired_lease_is_taken_over_and_counts_a_transition() {
        let lease = held_by("b", 0, 15);
        let decision = decide(Some(&lease), at(15), "a");
        assert_eq!(decision, Decision::Acquire);
        let next = next_spec(
            Some(&lease),
            &decision,
            at(15),
            "a",
            Duration::from_secs(15),
        )
        .unwrap();
        assert_eq!(next.holder_identity.as_deref(), Some("a"));
        assert_eq!(next.lease_transitions, Some(1));
        assert_eq!(next.renew_time, Some(to_micro(at(15))));
    }

    #[test]
    fn renewing_moves_only_the_renew_time() {
        let lease = held_by("a", 0, 15);
        let next = next_spec(
            Some(&lease),
            &Decision::Renew,
            at(5),
            "a",
            Duration::from_secs(15),
        )
        .unwrap();
        assert_eq!(next.acquire_time, lease.acquire_time);
        assert_eq!(next.lease_transitions, Some(0));
        assert_eq!(next.renew_time, Some(to_micro(at(5))));
    }

    #[test]
    fn waiting_writes_nothing() {
        let lease = held_by("b", 0, 15);
        let decision = decide(Some(&lease), at(1), "a");
        assert_eq!(
            next_spec(Some(&lease), &decision, at(1), "a", Duration::from_secs(15)),
            None
        );
    }
}
