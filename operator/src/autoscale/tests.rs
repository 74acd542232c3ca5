//! The decision's rules, example by example and as properties over random load.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use kandle_crds::{AutoscalingMetric, AutoscalingSpec};
use proptest::prelude::*;

use super::*;

fn spec(min: i32, max: i32, target: f64, up: &str, down: &str) -> AutoscalingSpec {
    AutoscalingSpec {
        min_replicas: min,
        max_replicas: max,
        metric: AutoscalingMetric::Concurrency,
        target,
        scale_up_stabilization: up.to_string(),
        scale_down_stabilization: down.to_string(),
    }
}

fn t(second: i64) -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(1_000_000 + second)
}

/// Records `total` over `ready` replicas at second `at`, with the default windows.
fn record(history: &mut History, at: i64, total: f64, ready: i32) {
    let sample = Sample {
        at: t(at),
        total,
        ready,
    };
    history.record(sample, &Windows::default(), Duration::from_secs(600));
}

/// A simulated `ModelDeployment`: one sample a second, pods ready `start_delay` seconds after
/// they are asked for, and a decision every second.
struct Sim {
    spec: AutoscalingSpec,
    history: History,
    windows: Windows,
    desired: i32,
    /// When each wanted replica becomes ready.
    ready_at: Vec<i64>,
    start_delay: i64,
    changes: Vec<(i64, i32)>,
}

impl Sim {
    fn new(spec: AutoscalingSpec, start_delay: i64) -> Self {
        let desired = spec.min_replicas;
        Self {
            spec,
            history: History::default(),
            windows: Windows::default(),
            desired,
            ready_at: vec![0; usize::try_from(desired).unwrap()],
            start_delay,
            changes: Vec::new(),
        }
    }

    fn ready(&self, now: i64) -> i32 {
        self.ready_at.iter().filter(|at| **at <= now).count() as i32
    }

    fn step(&mut self, now: i64, load: f64) -> Decision {
        let ready = self.ready(now);
        self.history.record(
            Sample {
                at: t(now),
                total: load,
                ready: ready.max(1),
            },
            &self.windows,
            Duration::from_secs(600),
        );
        let decision = decide(&Inputs {
            spec: &self.spec,
            history: Some(&self.history),
            current: self.desired,
            ready,
            waiting_for_room: false,
            windows: &self.windows,
            interval: Duration::from_secs(1),
            now: t(now),
        });
        if decision.desired != self.desired {
            self.changes.push((now, decision.desired));
            let wanted = usize::try_from(decision.desired).unwrap();
            self.ready_at.truncate(wanted);
            while self.ready_at.len() < wanted {
                self.ready_at.push(now + self.start_delay);
            }
            self.desired = decision.desired;
        }
        decision
    }
}

#[test]
fn a_jump_to_four_times_the_load_scales_up_within_the_panic_window() {
    let mut sim = Sim::new(spec(2, 20, 8.0, "0s", "5m"), 20);
    for s in 0..120 {
        sim.step(s, 16.0);
    }
    assert!(
        sim.changes.is_empty(),
        "steady load moved: {:?}",
        sim.changes
    );
    let mut full_at = None;
    let mut panicked = false;
    for s in 120..240 {
        let d = sim.step(s, 64.0);
        panicked |= d.reason == reasons::PANIC;
        if d.desired >= 8 && full_at.is_none() {
            full_at = Some(s - 120);
        }
    }
    // The stable window starts the climb at once; the panic window asks for all 8 in seconds.
    let after = full_at.expect("never reached 8 replicas");
    assert!(after <= 6, "8 replicas asked for {after} s after the jump");
    assert!(
        panicked,
        "the panic window never took over: {:?}",
        sim.changes
    );
    assert_eq!(sim.desired, 8);
}

#[test]
fn load_going_away_scales_down_only_after_the_window() {
    let mut sim = Sim::new(spec(1, 20, 8.0, "0s", "30s"), 0);
    for s in 0..90 {
        sim.step(s, 40.0);
    }
    assert_eq!(sim.desired, 5);
    let mut down_at = None;
    for s in 90..300 {
        sim.step(s, 0.0);
        if sim.desired < 5 && down_at.is_none() {
            down_at = Some(s - 90);
        }
    }
    // The stable window (60 s) must drain and then the 30 s window pass.
    let after = down_at.expect("never scaled down");
    assert!(after >= 30, "scaled down {after} s after the load went");
    assert_eq!(sim.desired, 1);
}

#[test]
fn no_scale_down_until_the_window_is_covered_or_while_pods_start() {
    let s = spec(1, 10, 8.0, "0s", "1m");
    let windows = Windows::default();
    let mut history = History::default();
    for i in 0..10 {
        record(&mut history, i, 0.0, 4);
    }
    let inputs = Inputs {
        spec: &s,
        history: Some(&history),
        current: 4,
        ready: 4,
        waiting_for_room: false,
        windows: &windows,
        interval: Duration::from_secs(1),
        now: t(9),
    };
    assert_eq!(decide(&inputs).desired, 4, "the operator just started");
    let mut history = history.clone();
    for i in 10..80 {
        record(&mut history, i, 0.0, 4);
    }
    let later = Inputs {
        history: Some(&history),
        now: t(79),
        spec: &s,
        windows: &windows,
        ..inputs
    };
    let down = decide(&later);
    assert_eq!(down.desired, 1);
    assert!(down.message.contains("scaling 4 -> 1"), "{}", down.message);
    let starting = decide(&Inputs { ready: 2, ..later });
    assert_eq!(
        (starting.desired, starting.reason),
        (4, reasons::WAITING_FOR_PODS)
    );
}

#[test]
fn pending_pods_hold_the_count_and_stale_metrics_hold_it_too() {
    let s = spec(1, 10, 8.0, "0s", "5m");
    let windows = Windows::default();
    let mut history = History::default();
    record(&mut history, 0, 120.0, 2);
    let inputs = Inputs {
        spec: &s,
        history: Some(&history),
        current: 4,
        ready: 2,
        waiting_for_room: true,
        windows: &windows,
        interval: Duration::from_secs(1),
        now: t(0),
    };
    let held = decide(&inputs);
    assert_eq!(
        (held.desired, held.reason),
        (4, reasons::WAITING_FOR_CAPACITY)
    );
    assert!(held.message.contains("pending pods"), "{}", held.message);
    let free = decide(&Inputs {
        waiting_for_room: false,
        ..inputs
    });
    assert_eq!(free.desired, 10);
    assert_eq!(free.reason, reasons::AT_MAX);
    let stale = decide(&Inputs {
        now: t(60),
        waiting_for_room: false,
        ..inputs
    });
    assert_eq!((stale.desired, stale.reason), (4, reasons::NO_METRICS));
    let none = decide(&Inputs {
        history: None,
        current: 0,
        ..inputs
    });
    assert_eq!(none.desired, 1, "bounds hold without metrics");
}

#[test]
fn a_scale_up_window_waits_for_the_higher_load_to_last() {
    let mut sim = Sim::new(spec(2, 20, 8.0, "15s", "5m"), 0);
    for s in 0..120 {
        sim.step(s, 16.0);
    }
    let mut reasons_seen = Vec::new();
    let mut up_at = None;
    for s in 120..160 {
        let d = sim.step(s, 64.0);
        reasons_seen.push(d.reason);
        if d.desired > 2 && up_at.is_none() {
            up_at = Some(s - 120);
        }
    }
    let after = up_at.expect("scaled up once the window passed");
    assert!(
        (15..=16).contains(&after),
        "scaled up {after} s after the step"
    );
    assert!(reasons_seen.contains(&reasons::STABILIZING_UP));
}

#[test]
fn a_scale_down_leaves_ten_percent_to_spare() {
    let mut sim = Sim::new(spec(1, 20, 10.0, "0s", "0s"), 0);
    for s in 0..120 {
        sim.step(s, 95.0);
    }
    assert_eq!(sim.desired, 10);
    for s in 120..300 {
        sim.step(s, 85.0);
    }
    assert_eq!(
        sim.desired, 10,
        "9 replicas would carry 85 with less than 10% to spare"
    );
    for s in 300..500 {
        sim.step(s, 80.0);
    }
    assert_eq!(sim.desired, 9, "9 replicas carry 80 with 10% to spare");
}

#[test]
fn replicas_for_rounds_up_but_not_for_float_noise() {
    assert_eq!(replicas_for(16.0, 8.0), 2);
    assert_eq!(replicas_for(16.000000001, 8.0), 2);
    assert_eq!(replicas_for(16.1, 8.0), 3);
    assert_eq!(replicas_for(0.0, 8.0), 0);
    assert_eq!(replicas_for(f64::NAN, 8.0), 0);
}

prop_compose! {
    fn any_spec()(min in 1i32..5, extra in 0i32..20, target in 1.0f64..20.0,
                  up in prop::sample::select(vec!["0s", "3s", "15s"]),
                  down in prop::sample::select(vec!["0s", "30s", "5m"])) -> AutoscalingSpec {
        spec(min, min + extra, target, up, down)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn never_outside_the_bounds(s in any_spec(),
                                loads in prop::collection::vec(0.0f64..500.0, 1..200),
                                current in 0i32..60, ready in 0i32..60, room in any::<bool>()) {
        let windows = Windows::default();
        let mut history = History::default();
        for (i, load) in loads.iter().enumerate() {
            let sample = Sample { at: t(i as i64), total: *load, ready: ready.max(1) };
            history.record(sample, &windows, Duration::from_secs(600));
            let d = decide(&Inputs { spec: &s, history: Some(&history), current, ready,
                waiting_for_room: room, windows: &windows, interval: Duration::from_secs(1),
                now: t(i as i64) });
            prop_assert!(d.desired >= s.min_replicas && d.desired <= s.max_replicas, "{d:?}");
        }
    }

    #[test]
    fn never_down_inside_the_scale_down_window(s in any_spec(),
                                               loads in prop::collection::vec(0.0f64..200.0, 1..400)) {
        let mut sim = Sim::new(s.clone(), 5);
        let down = kandle_crds::duration_seconds(&s.scale_down_stabilization).unwrap() as i64;
        for (i, load) in loads.iter().enumerate() {
            let now = i as i64;
            let before = sim.desired;
            let d = sim.step(now, *load);
            if d.desired < before {
                let since = sim.history.since(t(now - down));
                for p in since {
                    prop_assert!(p.want(s.target, &sim.windows) <= d.desired.max(s.min_replicas),
                        "scaled down to {} while a point at {} wanted {}", d.desired, p.sample.at,
                        p.want(s.target, &sim.windows));
                }
                prop_assert!(sim.history.covers(t(now - down)));
            }
        }
    }

    #[test]
    fn a_constant_load_settles_without_flapping(s in any_spec(), load in 0.0f64..300.0,
                                                jitter in 0.0f64..0.1) {
        let down = kandle_crds::duration_seconds(&s.scale_down_stabilization).unwrap() as i64;
        let mut sim = Sim::new(s, 20);
        for i in 0..900 {
            let wobble = if i % 2 == 0 { 1.0 + jitter } else { 1.0 - jitter };
            sim.step(i, load * wobble);
        }
        // The first readings average over a few samples and may overshoot; the correction of
        // that only moves one way, and once the windows hold nothing of the start, the count
        // changes at most once.
        let steps: Vec<i32> = sim.changes.windows(2).map(|w| (w[1].1 - w[0].1).signum()).collect();
        prop_assert!(steps.windows(2).all(|w| w[0] == w[1]), "back and forth: {:?}", sim.changes);
        let settle = 60 + down + 5;
        let late: Vec<_> = sim.changes.iter().filter(|(at, _)| *at > settle).collect();
        prop_assert!(late.len() <= 1, "changes after settling: {:?}", sim.changes);
    }

    #[test]
    fn a_step_up_is_followed_within_the_panic_window(per_replica in 1.0f64..20.0,
                                                     replicas in 1i32..8) {
        let s = spec(replicas, 100, per_replica, "0s", "5m");
        let mut sim = Sim::new(s, 20);
        let steady = per_replica * f64::from(replicas);
        for i in 0..120 {
            sim.step(i, steady);
        }
        prop_assert_eq!(sim.desired, replicas);
        let up = (120..140).find(|i| sim.step(*i, steady * 4.0).desired > replicas);
        prop_assert!(up.is_some_and(|i| i - 120 <= 6), "first scale-up at {:?}", up);
    }
}
