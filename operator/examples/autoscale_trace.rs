//! Replays one simulated day of serving load through two autoscaling policies and prints what
//! each cost and how often it fell short.
//!
//! The trace is 24 hours compressed into 10,800 one-second samples of concurrent requests: a
//! smooth diurnal curve (quiet at 04:00, busiest in the afternoon), three sudden x4 bursts lasting
//! minutes, slow drift (about ±10%) and per-second Poisson-like noise, all from a fixed seed.
//! Only the day's shape is compressed (one trace second is 8 s of the day's clock): start delays,
//! windows and sync periods are in trace seconds, as they would be in a cluster.
//!
//! - **kandle** feeds every sample into the operator's own [`History`] and asks the real pure
//!   [`decide`] for the replica count each second (stable and panic windows, no scale-up
//!   stabilization, 5 min scale-down stabilization).
//! - **HPA-like** is a model of a HorizontalPodAutoscaler on the same metric (see [`HpaLike`]).
//! - **reference** sizes to the load less its per-second noise at once, with no start delay: the
//!   shortfall any policy holding the average at the target would have from noise alone.
//!
//! New pods serve 20 s after they are asked for (model load); removed pods go at once. The table
//! gives replica-seconds (starting pods included), the seconds the load exceeded the target times
//! the ready replicas, scale events and the longest such stretch.
//!
//! ```sh
//! cargo run --release -p kandle-operator --example autoscale_trace -- [--svg docs/autoscaling-trace.svg]
//! ```

use std::collections::VecDeque;
use std::f64::consts::TAU;
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kandle_crds::{AutoscalingMetric, AutoscalingSpec};
use kandle_operator::autoscale::{decide, History, Inputs, Sample, Windows};

const SECONDS: usize = 3 * 3600;
const TARGET: f64 = 8.0;
const MIN: i32 = 1;
const MAX: i32 = 40;
const START_DELAY: usize = 20;
const REFERENCE: &str = "reference";
const SEED: u64 = 0x6b61_6e64_6c65;

/// Load at night and at the afternoon peak, in concurrent requests.
const LOW: f64 = 4.0;
const HIGH: f64 = 110.0;
/// Bursts: (start hour of the simulated day, trace seconds, factor).
const BURSTS: [(f64, usize, f64); 3] = [(2.0, 240, 4.0), (9.0, 360, 4.0), (21.5, 180, 4.0)];

/// The HPA's sync period, metrics window, tolerance and scale-down stabilization.
const HPA_SYNC: usize = 15;
const HPA_METRIC_WINDOW: usize = 30;
const HPA_TOLERANCE: f64 = 0.1;
const HPA_DOWN_WINDOW: usize = 300;

struct Trace {
    /// The load without per-second noise.
    mean: Vec<f64>,
    /// Concurrent requests, each second.
    load: Vec<f64>,
}

fn hour_of(t: usize) -> f64 {
    t as f64 * 24.0 / SECONDS as f64
}

fn diurnal(hour: f64) -> f64 {
    let day = 0.5 - 0.5 * (TAU * (hour - 4.0) / 24.0).cos();
    let lunch = 0.15 * (-(hour - 12.5).powi(2)).exp();
    LOW + (HIGH - LOW) * (day + lunch).min(1.0)
}

fn burst(t: usize) -> f64 {
    BURSTS
        .iter()
        .filter(|(hour, len, _)| {
            let start = (hour * SECONDS as f64 / 24.0) as usize;
            (start..start + len).contains(&t)
        })
        .map(|(_, _, factor)| factor)
        .product()
}

/// Roughly standard normal: the sum of four uniforms, centred and scaled.
fn normal(rng: &mut fastrand::Rng) -> f64 {
    ((0..4).map(|_| rng.f64()).sum::<f64>() - 2.0) * 3f64.sqrt()
}

fn trace() -> Trace {
    let mut rng = fastrand::Rng::with_seed(SEED);
    let mut drift = 0.0;
    let (mut mean, mut load) = (Vec::with_capacity(SECONDS), Vec::with_capacity(SECONDS));
    for t in 0..SECONDS {
        drift = 0.995 * drift + 0.1 * (1.0 - 0.995f64.powi(2)).sqrt() * normal(&mut rng);
        let m = diurnal(hour_of(t)) * burst(t) * (1.0 + drift);
        mean.push(m);
        load.push((m + m.sqrt() * normal(&mut rng)).round().max(0.0));
    }
    Trace { mean, load }
}

/// Pods of one policy: when each serves from, oldest first.
#[derive(Default)]
struct Pods(Vec<usize>);

impl Pods {
    fn ready(&self, now: usize) -> i32 {
        self.0.iter().filter(|&&at| at <= now).count() as i32
    }

    fn count(&self) -> i32 {
        self.0.len() as i32
    }

    /// Adds pods that serve after the start delay, or removes the newest (starting ones first).
    fn resize(&mut self, desired: i32, now: usize, delay: usize) {
        let desired = desired.max(0) as usize;
        self.0.truncate(desired);
        while self.0.len() < desired {
            self.0.push(now + delay);
        }
    }
}

trait Policy {
    /// The replicas wanted after seeing `load` over `ready` replicas at second `t`.
    fn step(&mut self, t: usize, load: f64, ready: i32) -> i32;
}

struct Kandle {
    spec: AutoscalingSpec,
    windows: Windows,
    history: History,
    start: DateTime<Utc>,
    current: i32,
}

impl Kandle {
    fn new() -> Self {
        Self {
            spec: AutoscalingSpec {
                min_replicas: MIN,
                max_replicas: MAX,
                metric: AutoscalingMetric::Concurrency,
                target: TARGET,
                scale_up_stabilization: "0s".into(),
                scale_down_stabilization: "5m".into(),
            },
            windows: Windows::default(),
            history: History::default(),
            start: DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time"),
            current: MIN,
        }
    }
}

impl Policy for Kandle {
    fn step(&mut self, t: usize, load: f64, ready: i32) -> i32 {
        let now = self.start + Duration::from_secs(t as u64);
        let keep = Duration::from_secs(301);
        let sample = Sample {
            at: now,
            total: load,
            ready,
        };
        self.history.record(sample, &self.windows, keep);
        self.current = decide(&Inputs {
            spec: &self.spec,
            history: Some(&self.history),
            current: self.current,
            ready,
            waiting_for_room: false,
            windows: &self.windows,
            interval: Duration::from_secs(1),
            now,
        })
        .desired;
        self.current
    }
}

/// A model of a HorizontalPodAutoscaler (autoscaling/v2, default behaviour) on a pods metric.
///
/// Every 15 s it reads the metric as the load averaged over the last 30 s (the lag of a metrics
/// pipeline: scrape, rate window, adapter). Starting pods report no load, so the sum over pods
/// is that average and the ratio is against the ready pods: within 10% of the target it keeps
/// the current count, else it asks for `ceil(average / target)`. Scale-up has no stabilization
/// but the default rate limit (at most double, or +4, per 15 s period); scale-down takes the
/// highest recommendation of the last 5 min. Bounds 1..40.
#[derive(Default)]
struct HpaLike {
    loads: VecDeque<f64>,
    recommendations: VecDeque<(usize, i32)>,
    current: i32,
}

impl HpaLike {
    fn recommend(&self, ready: i32) -> i32 {
        let average = self.loads.iter().sum::<f64>() / self.loads.len() as f64;
        let ratio = average / (TARGET * f64::from(ready.max(1)));
        if (ratio - 1.0).abs() <= HPA_TOLERANCE {
            self.current
        } else {
            (average / TARGET).ceil() as i32
        }
    }

    fn stabilize(&mut self, t: usize, recommendation: i32) -> i32 {
        self.recommendations.push_back((t, recommendation));
        while self
            .recommendations
            .front()
            .is_some_and(|(at, _)| at + HPA_DOWN_WINDOW < t)
        {
            self.recommendations.pop_front();
        }
        let down = self.recommendations.iter().map(|(_, r)| *r).max();
        let up_limit = (self.current * 2).max(self.current + 4);
        if recommendation > self.current {
            recommendation.min(up_limit)
        } else {
            down.unwrap_or(recommendation).min(self.current)
        }
    }
}

impl Policy for HpaLike {
    fn step(&mut self, t: usize, load: f64, ready: i32) -> i32 {
        if self.current == 0 {
            self.current = MIN;
        }
        self.loads.push_back(load);
        if self.loads.len() > HPA_METRIC_WINDOW {
            self.loads.pop_front();
        }
        if t % HPA_SYNC == HPA_SYNC - 1 {
            let recommendation = self.recommend(ready);
            self.current = self.stabilize(t, recommendation).clamp(MIN, MAX);
        }
        self.current
    }
}

/// What one policy did, second by second.
struct Run {
    name: &'static str,
    desired: Vec<i32>,
    ready: Vec<i32>,
    pods: Vec<i32>,
}

fn simulate(name: &'static str, policy: &mut dyn Policy, load: &[f64]) -> Run {
    let mut pods = Pods::default();
    pods.resize(MIN, 0, 0);
    let mut run = Run {
        name,
        desired: Vec::with_capacity(load.len()),
        ready: Vec::with_capacity(load.len()),
        pods: Vec::with_capacity(load.len()),
    };
    for (t, &l) in load.iter().enumerate() {
        let ready = pods.ready(t);
        run.ready.push(ready);
        run.pods.push(pods.count());
        let desired = policy.step(t, l, ready);
        run.desired.push(desired);
        pods.resize(desired, t, START_DELAY);
    }
    run
}

fn reference(mean: &[f64]) -> Run {
    let sized: Vec<i32> = mean
        .iter()
        .map(|m| ((m / TARGET).ceil() as i32).clamp(MIN, MAX))
        .collect();
    Run {
        name: REFERENCE,
        desired: sized.clone(),
        ready: sized.clone(),
        pods: sized,
    }
}

struct Stats {
    replica_seconds: i64,
    under: usize,
    ups: usize,
    downs: usize,
    /// Longest run of under-provisioned seconds: (length, first second).
    worst: (usize, usize),
}

fn stats(run: &Run, load: &[f64]) -> Stats {
    let under: Vec<bool> = load
        .iter()
        .zip(&run.ready)
        .map(|(l, r)| *l > TARGET * f64::from(*r))
        .collect();
    let changes = run.desired.windows(2).map(|w| w[1].cmp(&w[0]));
    let (mut worst, mut stretch) = ((0, 0), 0);
    for (t, &u) in under.iter().enumerate() {
        stretch = if u { stretch + 1 } else { 0 };
        if stretch > worst.0 {
            worst = (stretch, t + 1 - stretch);
        }
    }
    Stats {
        replica_seconds: run.pods.iter().map(|&p| i64::from(p)).sum(),
        under: under.iter().filter(|&&u| u).count(),
        ups: changes.clone().filter(|c| c.is_gt()).count(),
        downs: changes.filter(|c| c.is_lt()).count(),
        worst,
    }
}

fn clock(t: usize) -> String {
    let minutes = (hour_of(t) * 60.0).round() as usize;
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

fn print_table(trace: &Trace, runs: &[Run]) {
    let peak = trace.load.iter().copied().fold(0.0, f64::max);
    let average = trace.load.iter().sum::<f64>() / trace.load.len() as f64;
    println!(
        "simulated day: 24 h in {SECONDS} s (1 sample/s), metric concurrency, target {TARGET}/replica, \
         replicas {MIN}..{MAX}, pod start {START_DELAY} s; load mean {average:.1}, peak {peak:.0}"
    );
    println!(
        "{:<10} {:>10} {:>17} {:>13} {:>24}",
        "policy", "replica-s", "under-prov. s (%)", "scale events", "worst stretch (day time)"
    );
    for run in runs {
        let s = stats(run, &trace.load);
        let share = 100.0 * s.under as f64 / SECONDS as f64;
        println!(
            "{:<10} {:>10} {:>17} {:>13} {:>24}",
            run.name,
            s.replica_seconds,
            format!("{} ({share:.1}%)", s.under),
            if run.name == REFERENCE {
                "-".to_string()
            } else {
                format!("{} ({}/{})", s.ups + s.downs, s.ups, s.downs)
            },
            format!("{} s ({})", s.worst.0, clock(s.worst.1)),
        );
    }
    println!(
        "{REFERENCE}: ceil(load less per-second noise / target) at once, no start delay; \
         its shortfall is what the noise alone causes"
    );
}

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 400.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

struct Frame {
    y_max: f64,
}

impl Frame {
    fn x(&self, t: usize) -> f64 {
        LEFT + (WIDTH - LEFT - RIGHT) * t as f64 / SECONDS as f64
    }

    fn y(&self, v: f64) -> f64 {
        HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) * v.min(self.y_max) / self.y_max
    }
}

/// The needed replicas (load / target), averaged over 10 s.
fn needed_line(frame: &Frame, load: &[f64]) -> String {
    let mut points = String::new();
    for (i, chunk) in load.chunks(10).enumerate() {
        let v = chunk.iter().sum::<f64>() / chunk.len() as f64 / TARGET;
        let _ = write!(points, "{:.1},{:.1} ", frame.x(i * 10), frame.y(v));
    }
    points
}

fn step_line(frame: &Frame, values: &[i32]) -> String {
    let mut points = format!("{:.1},{:.1} ", frame.x(0), frame.y(f64::from(values[0])));
    for (t, w) in values.windows(2).enumerate() {
        if w[0] != w[1] {
            let x = frame.x(t + 1);
            let _ = write!(
                points,
                "{x:.1},{:.1} {x:.1},{:.1} ",
                frame.y(f64::from(w[0])),
                frame.y(f64::from(w[1]))
            );
        }
    }
    let last = f64::from(values[values.len() - 1]);
    let _ = write!(points, "{:.1},{:.1}", frame.x(SECONDS), frame.y(last));
    points
}

fn axes(frame: &Frame, svg: &mut String) {
    let (x0, x1, y0) = (LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM);
    let _ = writeln!(
        svg,
        r##"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#333"/>"##
    );
    let _ = writeln!(
        svg,
        r##"<line x1="{x0}" y1="{TOP}" x2="{x0}" y2="{y0}" stroke="#333"/>"##
    );
    for hour in (0..=24).step_by(3) {
        let x = frame.x(hour * SECONDS / 24);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{}" stroke="#333"/><text x="{x:.1}" y="{}" text-anchor="middle">{hour:02}:00</text>"##,
            y0 + 5.0,
            y0 + 20.0
        );
    }
    for v in (0..=frame.y_max as i32).step_by(10) {
        let y = frame.y(f64::from(v));
        let _ = writeln!(
            svg,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{v}</text>"##,
            x0 - 8.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.0}" y="{}" text-anchor="middle">time of the simulated day (24 h replayed in {} s of trace)</text>"#,
        (x0 + x1) / 2.0,
        HEIGHT - 10.0,
        SECONDS
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(18,{:.0}) rotate(-90)" text-anchor="middle">replicas</text>"#,
        (TOP + y0) / 2.0
    );
}

fn legend(svg: &mut String, entries: &[(&str, &str)]) {
    let mut x = LEFT + 10.0;
    for (color, label) in entries {
        let _ = writeln!(
            svg,
            r#"<line x1="{x}" y1="20" x2="{}" y2="20" stroke="{color}" stroke-width="3"/><text x="{}" y="25">{label}</text>"#,
            x + 24.0,
            x + 30.0
        );
        x += 40.0 + 7.5 * label.len() as f64;
    }
}

fn svg(trace: &Trace, kandle: &Run, hpa: &Run) -> String {
    let needed_max = trace.load.iter().copied().fold(0.0, f64::max) / TARGET;
    let frame = Frame {
        y_max: (needed_max.max(f64::from(MAX)) / 10.0).ceil() * 10.0,
    };
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="13">
<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>
"#
    );
    axes(&frame, &mut svg);
    let series = [
        ("#9a9a9a", "1", needed_line(&frame, &trace.load)),
        ("#e07b00", "1.6", step_line(&frame, &hpa.ready)),
        ("#1f5fbf", "1.6", step_line(&frame, &kandle.ready)),
    ];
    for (color, width, points) in &series {
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="{width}" stroke-linejoin="round" points="{points}"/>"#
        );
    }
    legend(
        &mut svg,
        &[
            ("#9a9a9a", "needed: load / target (10 s mean)"),
            ("#1f5fbf", "kandle: ready replicas"),
            ("#e07b00", "HPA-like: ready replicas"),
        ],
    );
    svg.push_str("</svg>\n");
    svg
}

fn svg_path() -> Option<String> {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--svg" {
            return args.next();
        }
    }
    None
}

fn main() -> std::io::Result<()> {
    let trace = trace();
    let kandle = simulate("kandle", &mut Kandle::new(), &trace.load);
    let hpa = simulate("HPA-like", &mut HpaLike::default(), &trace.load);
    let runs = [kandle, hpa, reference(&trace.mean)];
    print_table(&trace, &runs);
    if let Some(path) = svg_path() {
        std::fs::write(&path, svg(&trace, &runs[0], &runs[1]))?;
        println!("wrote {path}");
    }
    Ok(())
}
