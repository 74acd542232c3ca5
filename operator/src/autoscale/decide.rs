//! The autoscaling decision, pure: from the load history, the replicas the autoscaler wanted
//! last time and what the cluster shows, the replica count to size the `ModelDeployment` to,
//! and why.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kandle_crds::{duration_seconds, AutoscalingSpec};

use super::history::{delta, History, Point, Windows};

/// Why the count is what it is (`status.autoscaling.reason`).
pub mod reasons {
    /// Load rose over the stable window, or the bounds rose.
    pub const SCALED_UP: &str = "ScaledUp";
    /// Load jumped: the panic window scaled up at once.
    pub const PANIC: &str = "Panic";
    /// Load stayed lower for the scale-down window.
    pub const SCALED_DOWN: &str = "ScaledDown";
    /// Load matches the replicas.
    pub const STEADY: &str = "Steady";
    /// Load is lower, but not yet for the whole scale-down window.
    pub const STABILIZING_DOWN: &str = "StabilizingDown";
    /// Load is higher, but not yet for the whole scale-up window.
    pub const STABILIZING_UP: &str = "StabilizingUp";
    /// Fewer replicas are ready than were asked for: no scale-down until they are.
    pub const WAITING_FOR_PODS: &str = "WaitingForPods";
    /// Pods asked for earlier wait for room on the nodes: no more are asked for until they run.
    pub const WAITING_FOR_CAPACITY: &str = "WaitingForCapacity";
    /// No recent metrics: the count is held.
    pub const NO_METRICS: &str = "NoMetrics";
    /// Load asks for more than `maxReplicas`.
    pub const AT_MAX: &str = "AtMaxReplicas";
}

/// Samples older than this many scrape intervals do not count as current.
const STALE_AFTER_INTERVALS: u32 = 5;

/// What the decision reads besides the history.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// `spec.autoscaling`.
    pub spec: &'a AutoscalingSpec,
    /// The load history, if the collector has one.
    pub history: Option<&'a History>,
    /// The count decided last (`status.autoscaling.desiredReplicas`, else `spec.replicas`).
    pub current: i32,
    /// Ready replicas of the live revisions.
    pub ready: i32,
    /// Some pods wait for room on the nodes.
    pub waiting_for_room: bool,
    /// The averaging windows.
    pub windows: &'a Windows,
    /// How often the collector samples.
    pub interval: Duration,
    /// The pass's time.
    pub now: DateTime<Utc>,
}

/// The count to size the `ModelDeployment` to, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Desired replicas, within `minReplicas..=maxReplicas`.
    pub desired: i32,
    /// A constant of [`reasons`].
    pub reason: &'static str,
    /// The same in words, with the figures.
    pub message: String,
    /// The newest point the decision read, if current.
    pub seen: Option<Point>,
}

/// Decides the replica count. Never outside the bounds; never below `current` inside the
/// scale-down window; never above `current` while pods wait for room.
pub fn decide(inputs: &Inputs<'_>) -> Decision {
    let spec = inputs.spec;
    let (min, max) = (
        spec.min_replicas.max(1),
        spec.max_replicas.max(spec.min_replicas.max(1)),
    );
    let current = inputs.current;
    let stale_before = inputs.now - delta(inputs.interval * STALE_AFTER_INTERVALS);
    let latest = inputs
        .history
        .and_then(History::latest)
        .filter(|p| p.sample.at >= stale_before);
    let (Some(history), Some(latest)) = (inputs.history, latest) else {
        let held = current.clamp(min, max);
        return Decision {
            desired: held,
            reason: reasons::NO_METRICS,
            message: format!("no recent metrics from ready replicas; holding {held}"),
            seen: None,
        };
    };
    let target = spec.target;
    let want_of = |p: &Point| p.want(target, inputs.windows);
    let want_down_of = |p: &Point| p.want_down(target, inputs.windows);
    let want = want_of(latest);
    let want_down = want_down_of(latest);
    let up_window = stabilization(&spec.scale_up_stabilization);
    let down_window = stabilization(&spec.scale_down_stabilization);
    // Scale up to the least any point of the up window asked for, down to the most any point
    // of the down window allows with the tolerance to spare (as a HorizontalPodAutoscaler's
    // stabilization and tolerance do).
    let up = history
        .since(inputs.now - delta(up_window))
        .map(want_of)
        .min()
        .unwrap_or(want)
        .min(want);
    let down_from = inputs.now - delta(down_window);
    let mut down = history
        .since(down_from)
        .map(want_down_of)
        .max()
        .unwrap_or(want_down)
        .max(want_down);
    if !history.covers(down_from) {
        // Fewer samples than the window holds (the operator just started): no scale-down yet.
        down = down.max(current);
    }
    // Never below the bounds, so the message names the count actually asked for.
    let down = down.max(min);
    let figures = figures(latest, target);
    let (raw, reason, message) = if up > current {
        if inputs.waiting_for_room {
            (
                current,
                reasons::WAITING_FOR_CAPACITY,
                format!(
                    "{figures} asks for {up}; holding {current} until the pending pods find room"
                ),
            )
        } else if latest.panics(target, inputs.windows) {
            (
                up,
                reasons::PANIC,
                format!("{figures}: load jumped, scaling {current} -> {up}"),
            )
        } else {
            (
                up,
                reasons::SCALED_UP,
                format!("{figures}: scaling {current} -> {up}"),
            )
        }
    } else if want > current {
        (
            current,
            reasons::STABILIZING_UP,
            format!(
                "{figures} asks for {want}; waiting out the scale-up window ({}s)",
                up_window.as_secs()
            ),
        )
    } else if down < current {
        if inputs.ready < current {
            (
                current,
                reasons::WAITING_FOR_PODS,
                format!(
                    "{figures} allows {down}, but {} of {current} replicas are ready",
                    inputs.ready
                ),
            )
        } else {
            (
                down,
                reasons::SCALED_DOWN,
                format!("{figures}: scaling {current} -> {down}"),
            )
        }
    } else if want_down < current {
        (
            current,
            reasons::STABILIZING_DOWN,
            format!(
                "{figures} allows {want_down}; waiting out the scale-down window ({}s)",
                down_window.as_secs()
            ),
        )
    } else {
        (
            current,
            reasons::STEADY,
            format!("{figures}: {current} replicas"),
        )
    };
    let desired = raw.clamp(min, max);
    let (reason, message) = if raw > max {
        (
            reasons::AT_MAX,
            format!("{message}; capped at maxReplicas {max}"),
        )
    } else if desired != raw && desired > current {
        (
            reasons::SCALED_UP,
            format!("{message}; raised to minReplicas {min}"),
        )
    } else {
        (reason, message)
    };
    Decision {
        desired,
        reason,
        message,
        seen: Some(*latest),
    }
}

/// A stabilization window of the spec; the API server checked its form, so anything unreadable
/// reads as none.
pub fn stabilization(text: &str) -> Duration {
    duration_seconds(text)
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or_default()
}

fn figures(point: &Point, target: f64) -> String {
    format!(
        "load {:.2} over {} ready replicas (stable window {:.2}, panic window {:.2}; target {target} each)",
        point.sample.total, point.sample.ready, point.stable_avg, point.panic_avg
    )
}
