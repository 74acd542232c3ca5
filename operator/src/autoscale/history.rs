//! The load one `ModelDeployment`'s ready replicas carried, sample by sample (about one a
//! second), with the averages over the stable and panic windows taken at each sample. The
//! collector appends; [`super::decide`] reads. Pure data, no I/O.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// The windows load is averaged over.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Windows {
    /// Ordinary changes follow the average over this window (Knative's KPA uses 60 s).
    pub stable: Duration,
    /// Sudden jumps follow the average over this shorter window (KPA: 6 s).
    pub panic: Duration,
    /// The panic window takes over when it asks for this many times the ready replicas.
    pub panic_threshold: f64,
}

impl Default for Windows {
    fn default() -> Self {
        Self {
            stable: Duration::from_secs(60),
            panic: Duration::from_secs(6),
            panic_threshold: 2.0,
        }
    }
}

/// Headroom a scale-down must leave: fewer replicas only when they would carry the load plus
/// this share (a HorizontalPodAutoscaler's default tolerance is the same 10%).
pub const DOWN_TOLERANCE: f64 = 0.1;

/// One reading of every ready replica's metrics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// When it was taken.
    pub at: DateTime<Utc>,
    /// The metric summed over the replicas read.
    pub total: f64,
    /// Replicas whose metrics were read.
    pub ready: i32,
}

/// A sample with the window averages at its time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// The sample.
    pub sample: Sample,
    /// Average of `total` over the stable window ending here.
    pub stable_avg: f64,
    /// Average of `total` over the panic window ending here.
    pub panic_avg: f64,
}

impl Point {
    /// Replicas this point asks for at `target` per replica: the stable window's count, or the
    /// panic window's when that is at least the panic threshold times the ready replicas.
    pub fn want(&self, target: f64, windows: &Windows) -> i32 {
        let stable = replicas_for(self.stable_avg, target);
        let panic = replicas_for(self.panic_avg, target);
        if self.panics(target, windows) {
            stable.max(panic)
        } else {
            stable
        }
    }

    /// Replicas this point allows scaling down to: [`Point::want`] for the load with
    /// [`DOWN_TOLERANCE`] to spare, so a load sitting on a boundary does not move the count
    /// back and forth.
    pub fn want_down(&self, target: f64, windows: &Windows) -> i32 {
        let spared = Point {
            stable_avg: self.stable_avg * (1.0 + DOWN_TOLERANCE),
            panic_avg: self.panic_avg * (1.0 + DOWN_TOLERANCE),
            ..*self
        };
        spared.want(target, windows)
    }

    /// Whether the panic window takes over at this point.
    pub fn panics(&self, target: f64, windows: &Windows) -> bool {
        let panic = f64::from(replicas_for(self.panic_avg, target));
        panic >= windows.panic_threshold * f64::from(self.sample.ready.max(1))
    }
}

/// Replicas that carry `load` at `target` each, rounded up; load within a hair of a whole
/// count does not ask for one more.
pub fn replicas_for(load: f64, target: f64) -> i32 {
    let exact = (load / target - 1e-9).ceil();
    if exact.is_finite() {
        exact.clamp(0.0, f64::from(i32::MAX)) as i32
    } else {
        0
    }
}

/// The recent points of one `ModelDeployment`, oldest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    points: VecDeque<Point>,
    /// When the first sample was recorded: a scale-down window reaching before it is not yet
    /// covered.
    since: Option<DateTime<Utc>>,
}

impl History {
    /// Appends `sample`, computing its window averages, and forgets points older than `keep`.
    /// A sample older than the newest is ignored.
    pub fn record(&mut self, sample: Sample, windows: &Windows, keep: Duration) {
        if self.latest().is_some_and(|p| p.sample.at > sample.at) {
            return;
        }
        self.since.get_or_insert(sample.at);
        let stable_avg = self.average_with(&sample, windows.stable);
        let panic_avg = self.average_with(&sample, windows.panic);
        self.points.push_back(Point {
            sample,
            stable_avg,
            panic_avg,
        });
        let horizon = sample.at - delta(keep.max(windows.stable));
        while self.points.front().is_some_and(|p| p.sample.at < horizon) {
            self.points.pop_front();
        }
    }

    /// The newest point.
    pub fn latest(&self) -> Option<&Point> {
        self.points.back()
    }

    /// Points taken at or after `from`, oldest first.
    pub fn since(&self, from: DateTime<Utc>) -> impl Iterator<Item = &Point> {
        self.points.iter().filter(move |p| p.sample.at >= from)
    }

    /// Whether samples were recorded from `from` on (or earlier).
    pub fn covers(&self, from: DateTime<Utc>) -> bool {
        self.since.is_some_and(|since| since <= from)
    }

    fn average_with(&self, sample: &Sample, window: Duration) -> f64 {
        let from = sample.at - delta(window);
        let (sum, count) = self
            .since(from)
            .map(|p| p.sample.total)
            .chain(std::iter::once(sample.total))
            .fold((0.0, 0u32), |(sum, n), total| (sum + total, n + 1));
        sum / f64::from(count)
    }
}

/// A std duration as a chrono one (saturating).
pub fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}
