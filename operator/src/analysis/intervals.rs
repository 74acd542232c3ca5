//! Analysis intervals as the collector cuts them from its readings of a canary's and the
//! stable revision's pods: at the end of each `analysis.interval` the requests and latency
//! buckets each pod served since the interval began, summed per revision. Per pod, so a pod
//! that joins (counted from zero) or restarts (its counters went down) does not distort the
//! sum. Only the last few intervals are kept; the planner judges those it has not judged yet.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Totals;
use crate::scrape::PodMetrics;

/// Intervals kept for the planner.
pub const KEPT: usize = 8;

/// One finished interval.
#[derive(Clone, Debug, PartialEq)]
pub struct Interval {
    /// When it ended.
    pub ended: DateTime<Utc>,
    /// What the canary's pods served in it.
    pub canary: Totals,
    /// What the stable revision's pods served in it.
    pub stable: Totals,
}

/// A reading of one pod in a round.
#[derive(Clone, Debug)]
pub struct PodReading {
    /// The pod's name.
    pub pod: String,
    /// It belongs to the canary (else to the stable revision).
    pub canary: bool,
    /// What it reported.
    pub metrics: PodMetrics,
}

/// The intervals of one canary revision.
#[derive(Clone, Debug, PartialEq)]
pub struct Intervals {
    /// The canary revision (`<md>-<hash>`) they belong to.
    pub revision: String,
    /// Finished intervals, oldest first (at most [`KEPT`]).
    pub done: Vec<Interval>,
    started: DateTime<Utc>,
    /// Each pod's totals when the interval began; a pod first read later counts from zero.
    baseline: HashMap<String, Totals>,
    /// No round was recorded yet: the first one is the baseline, not new requests.
    fresh: bool,
}

impl Intervals {
    /// Intervals of `revision`, the first beginning `now`.
    pub fn new(revision: &str, now: DateTime<Utc>) -> Self {
        Self {
            revision: revision.to_string(),
            done: Vec::new(),
            started: now,
            baseline: HashMap::new(),
            fresh: true,
        }
    }

    /// Records one round of readings taken `now`; true when an interval of `length` ended.
    pub fn record(
        &mut self,
        readings: &[PodReading],
        now: DateTime<Utc>,
        length: Duration,
    ) -> bool {
        let totals = |r: &PodReading| Totals::of([&r.metrics]);
        if std::mem::take(&mut self.fresh) {
            // Whatever the pods served before the operator first read them is not this
            // interval's: an operator that restarts mid-canary starts a new interval.
            self.baseline = readings
                .iter()
                .map(|r| (r.pod.clone(), totals(r)))
                .collect();
            self.started = now;
            return false;
        }
        let elapsed = (now - self.started).to_std().unwrap_or_default();
        if elapsed < length {
            return false;
        }
        let mut interval = Interval {
            ended: now,
            canary: Totals::default(),
            stable: Totals::default(),
        };
        for reading in readings {
            let later = totals(reading);
            let served = match self.baseline.get(&reading.pod) {
                Some(before) => before.until(&later),
                None => later,
            };
            let side = if reading.canary {
                &mut interval.canary
            } else {
                &mut interval.stable
            };
            side.add(&served);
        }
        self.baseline = readings
            .iter()
            .map(|r| (r.pod.clone(), totals(r)))
            .collect();
        self.started = now;
        self.done.push(interval);
        if self.done.len() > KEPT {
            self.done.remove(0);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::TimeDelta;

    use super::*;

    fn reading(pod: &str, canary: bool, ok: f64, failed: f64) -> PodReading {
        PodReading {
            pod: pod.to_string(),
            canary,
            metrics: PodMetrics {
                requests_by_code: BTreeMap::from([
                    ("200".to_string(), ok),
                    ("500".to_string(), failed),
                ]),
                latency_buckets: vec![(0.1, ok + failed), (f64::INFINITY, ok + failed)],
                ..PodMetrics::default()
            },
        }
    }

    fn t(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::milliseconds(1_000_000 + ms)
    }

    #[test]
    fn an_interval_counts_what_each_pod_served_since_it_began() {
        let length = Duration::from_secs(2);
        let mut intervals = Intervals::new("m-abc", t(0));
        // Counters from before the first reading are not the interval's.
        let first = [
            reading("c1", true, 500.0, 0.0),
            reading("s1", false, 900.0, 0.0),
        ];
        assert!(!intervals.record(&first, t(0), length));
        let mid = [
            reading("c1", true, 520.0, 5.0),
            reading("s1", false, 950.0, 0.0),
        ];
        assert!(!intervals.record(&mid, t(1000), length), "not over yet");
        // c2 joined (counted from zero); s1 restarted (its counter went down: all new).
        let end = [
            reading("c1", true, 540.0, 10.0),
            reading("c2", true, 30.0, 0.0),
            reading("s1", false, 40.0, 0.0),
        ];
        assert!(intervals.record(&end, t(2000), length));
        let done = &intervals.done[0];
        assert_eq!((done.canary.requests, done.canary.failed), (80.0, 10.0));
        assert_eq!(done.stable.requests, 40.0);
        assert_eq!(done.ended, t(2000));

        let next = [
            reading("c1", true, 550.0, 10.0),
            reading("c2", true, 40.0, 0.0),
            reading("s1", false, 50.0, 0.0),
        ];
        assert!(intervals.record(&next, t(4100), length));
        assert_eq!(intervals.done[1].canary.requests, 20.0);
        assert_eq!(intervals.done[1].canary.failed, 0.0);
    }

    #[test]
    fn only_the_last_intervals_are_kept() {
        let mut intervals = Intervals::new("m-abc", t(0));
        for i in 0..20 {
            intervals.record(
                &[reading("c", true, f64::from(i), 0.0)],
                t(i64::from(i) * 1000),
                Duration::from_secs(1),
            );
        }
        assert_eq!(intervals.done.len(), KEPT);
        assert_eq!(intervals.done.last().unwrap().ended, t(19_000));
    }
}
