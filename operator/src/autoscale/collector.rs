//! The collector, the one component that reads the pods' metrics: about once a second it reads
//! every ready pod of each autoscaled `ModelDeployment` and the canary and stable pods of each
//! analysed canary (from the controller's pod cache, through a [`MetricsSource`]). It records
//! the load in that `ModelDeployment`'s [`History`] and wakes its pass when the decision differs
//! from the status; it cuts a canary's readings into analysis [`Intervals`] and wakes its pass
//! when one ends. Deciding stays in the planner; passes read what was collected through
//! [`Collector::history`] and [`Collector::analysis`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use futures::channel::mpsc::Sender;
use futures::{stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kandle_crds::{labels, AutoscalingMetric, AutoscalingStatus, ModelDeployment};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

use super::decide::{reasons, Decision};
use super::history::{History, Sample};
use crate::analysis::intervals::{Intervals, PodReading};
use crate::config::AutoscaleConfig;
use crate::metrics::Metrics;
use crate::plan::{analysed, autoscaling_decision, history_span, scraped, Analysed, RUNTIME_PORT};
use crate::pod_problems::scheduling_failure;
use crate::scrape::{MetricsSource, PodMetrics, PodTarget};

/// Pods read at once, across all `ModelDeployment`s.
const CONCURRENT_READS: usize = 64;

/// The load histories of the autoscaled `ModelDeployment`s, and how to read more.
pub struct Collector {
    source: Arc<dyn MetricsSource>,
    metrics: Arc<Metrics>,
    config: AutoscaleConfig,
    state: Mutex<HashMap<String, Load>>,
}

/// What the collector keeps per `ModelDeployment`.
#[derive(Default)]
struct Load {
    history: History,
    /// Each pod's request count at its last reading, for the request rate.
    counts: HashMap<String, (DateTime<Utc>, f64)>,
    /// The analysis intervals of its canary, while one is analysed.
    intervals: Option<Intervals>,
}

/// One `ModelDeployment`'s share of a round.
struct Round {
    md: Arc<ModelDeployment>,
    key: String,
    /// Ready pods to read, with their revision hash.
    targets: Vec<(PodTarget, String)>,
    /// Autoscaled on this runtime metric.
    metric: Option<AutoscalingMetric>,
    /// A canary to analyse.
    analysed: Option<Analysed>,
    ready: i32,
    waiting_for_room: bool,
}

/// A reading of a pod in a round: its name, revision hash and metrics.
type Read = (String, String, PodMetrics);

impl Collector {
    /// A collector reading pods through `source`, counting its readings in `metrics`.
    pub fn new(
        source: Arc<dyn MetricsSource>,
        config: AutoscaleConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            source,
            metrics,
            config,
            state: Mutex::new(HashMap::new()),
        }
    }

    /// The load history of the `ModelDeployment` `namespace/name`, if one is kept.
    pub fn history(&self, key: &str) -> Option<History> {
        self.lock().get(key).map(|load| load.history.clone())
    }

    /// The analysis intervals of the `ModelDeployment` `namespace/name`'s canary, if analysed.
    pub fn analysis(&self, key: &str) -> Option<Intervals> {
        self.lock().get(key).and_then(|load| load.intervals.clone())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Load>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs rounds every interval until the task is dropped; a `ModelDeployment` whose decision
    /// differs from its status is sent to `wake`.
    pub async fn run(
        self: Arc<Self>,
        mds: Store<ModelDeployment>,
        pods: Store<Pod>,
        wake: Sender<ObjectRef<ModelDeployment>>,
    ) {
        let mut ticks = tokio::time::interval(self.config.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let mds = mds.state();
            let read = |md: &Arc<ModelDeployment>| scraped(md).is_some() || analysed(md).is_some();
            if mds.iter().any(read) || !self.lock().is_empty() {
                self.round(&mds, &pods.state(), &wake).await;
            }
        }
    }

    /// One round: read, record, and wake what needs a pass.
    pub async fn round(
        &self,
        mds: &[Arc<ModelDeployment>],
        pods: &[Arc<Pod>],
        wake: &Sender<ObjectRef<ModelDeployment>>,
    ) {
        let rounds = rounds(mds, pods);
        let keys: HashSet<&str> = rounds.iter().map(|round| round.key.as_str()).collect();
        self.lock().retain(|key, _| keys.contains(key.as_str()));
        let wanted: Vec<(String, PodTarget, String)> = rounds
            .iter()
            .flat_map(|round| {
                round
                    .targets
                    .iter()
                    .map(|(t, hash)| (round.key.clone(), t.clone(), hash.clone()))
            })
            .collect();
        let readings: Vec<(String, String, String, Option<PodMetrics>)> = stream::iter(wanted)
            .map(|(key, target, hash)| {
                let source = self.source.clone();
                let metrics = self.metrics.clone();
                async move {
                    let reading = source.read(&target).await;
                    metrics.record_pod_read(reading.is_ok());
                    if let Err(err) = &reading {
                        tracing::debug!(md = %key, pod = %target.pod, error = %err, "metrics not read");
                    }
                    (key, target.pod, hash, reading.ok())
                }
            })
            .buffer_unordered(CONCURRENT_READS)
            .collect()
            .await;
        let mut by_md: HashMap<String, Vec<Read>> = HashMap::new();
        for (key, pod, hash, reading) in readings {
            if let Some(reading) = reading {
                by_md.entry(key).or_default().push((pod, hash, reading));
            }
        }
        let now = Utc::now();
        for round in &rounds {
            let mine = by_md.remove(&round.key).unwrap_or_default();
            let interval_ended = {
                let mut state = self.lock();
                let load = state.entry(round.key.clone()).or_default();
                load.analyse(round.analysed.as_ref(), &mine, now)
            };
            if interval_ended {
                let _ = wake.clone().try_send(ObjectRef::from_obj(&*round.md));
            }
            let Some(metric) = round.metric else {
                continue;
            };
            let decision = {
                let mut state = self.lock();
                let load = state.entry(round.key.clone()).or_default();
                load.record(&round.md, metric, &mine, now, &self.config);
                autoscaling_decision(
                    &round.md,
                    Some(&load.history),
                    round.ready,
                    round.waiting_for_room,
                    now,
                    &self.config,
                )
            };
            let previous = round
                .md
                .status
                .as_ref()
                .and_then(|s| s.autoscaling.as_ref());
            if decision.is_some_and(|d| worth_a_pass(previous, &d)) {
                let _ = wake.clone().try_send(ObjectRef::from_obj(&*round.md));
            }
        }
    }
}

impl Load {
    /// Records the canary's and the stable's readings taken `now` in the intervals of
    /// `analysed` (starting them for a new canary); true when an interval ended.
    fn analyse(
        &mut self,
        analysed: Option<&Analysed>,
        readings: &[Read],
        now: DateTime<Utc>,
    ) -> bool {
        let Some(analysed) = analysed else {
            self.intervals = None;
            return false;
        };
        let intervals = match &mut self.intervals {
            Some(kept) if kept.revision == analysed.revision => kept,
            slot => slot.insert(Intervals::new(&analysed.revision, now)),
        };
        let readings: Vec<PodReading> = readings
            .iter()
            .filter(|(_, hash, _)| *hash == analysed.canary_hash || *hash == analysed.stable_hash)
            .map(|(pod, hash, metrics)| PodReading {
                pod: pod.clone(),
                canary: *hash == analysed.canary_hash,
                metrics: metrics.clone(),
            })
            .collect();
        intervals.record(&readings, now, analysed.interval)
    }

    /// Records the readings of the `ModelDeployment` `md` taken `now`.
    fn record(
        &mut self,
        md: &ModelDeployment,
        metric: AutoscalingMetric,
        readings: &[Read],
        now: DateTime<Utc>,
        config: &AutoscaleConfig,
    ) {
        let mut total = 0.0;
        let mut ready = 0;
        let mut counts = HashMap::new();
        for (pod, _, reading) in readings {
            let requests = reading.requests();
            let value = match metric {
                AutoscalingMetric::Concurrency => Some(reading.in_flight),
                AutoscalingMetric::QueueDepth => Some(reading.queue_depth),
                AutoscalingMetric::Rps => self
                    .counts
                    .get(pod)
                    .and_then(|(at, before)| rate(*at, *before, now, requests)),
                AutoscalingMetric::Cpu => None,
            };
            counts.insert(pod.clone(), (now, requests));
            if let Some(value) = value {
                total += value;
                ready += 1;
            }
        }
        self.counts = counts;
        if ready > 0 {
            let sample = Sample {
                at: now,
                total,
                ready,
            };
            let keep = history_span(md, &config.windows);
            self.history.record(sample, &config.windows, keep);
        }
    }
}

/// Whether the decision changes what the status says: the count, or a reason that holds the
/// count back (the figures of a steady count are refreshed by passes that run anyway).
fn worth_a_pass(previous: Option<&AutoscalingStatus>, decision: &Decision) -> bool {
    let holding = |reason: &str| {
        [
            reasons::WAITING_FOR_CAPACITY,
            reasons::WAITING_FOR_PODS,
            reasons::NO_METRICS,
            reasons::AT_MAX,
        ]
        .contains(&reason)
    };
    previous.is_none_or(|p| {
        p.desired_replicas != decision.desired
            || (p.reason != decision.reason && (holding(&p.reason) || holding(decision.reason)))
    })
}

/// Requests per second between two readings of one pod; none across a restart (the counter
/// went down) or without time between them.
fn rate(then: DateTime<Utc>, before: f64, now: DateTime<Utc>, requests: f64) -> Option<f64> {
    let seconds = (now - then).num_milliseconds() as f64 / 1000.0;
    (seconds > 0.0 && requests >= before).then(|| (requests - before) / seconds)
}

/// The autoscaled `ModelDeployment`s and the analysed canaries that are not paused, with their
/// ready pods' addresses.
fn rounds(mds: &[Arc<ModelDeployment>], pods: &[Arc<Pod>]) -> Vec<Round> {
    let mut by_md: HashMap<(String, String), Vec<&Pod>> = HashMap::new();
    for pod in pods {
        let (Some(ns), Some(md)) = (pod.namespace(), pod.labels().get(labels::MODEL_DEPLOYMENT))
        else {
            continue;
        };
        if pod.metadata.deletion_timestamp.is_none() {
            by_md.entry((ns, md.clone())).or_default().push(pod);
        }
    }
    mds.iter()
        // A paused ModelDeployment is not scaled, so its pods are not read either.
        .filter(|md| !md.spec.paused && md.metadata.deletion_timestamp.is_none())
        .filter_map(|md| {
            let metric = scraped(md).map(|a| a.metric);
            let analysed = analysed(md);
            if metric.is_none() && analysed.is_none() {
                return None;
            }
            let ns = md.namespace().unwrap_or_default();
            let mine = by_md
                .remove(&(ns.clone(), md.name_any()))
                .unwrap_or_default();
            let targets = mine
                .iter()
                .filter_map(|pod| {
                    let hash = pod.labels().get(labels::REVISION)?.clone();
                    Some((target(pod)?, hash))
                })
                .collect();
            Some(Round {
                metric,
                analysed,
                key: format!("{ns}/{}", md.name_any()),
                // What the planner counts: the revisions' ready replicas, as its last pass saw.
                ready: md.status.as_ref().map_or(0, |s| s.ready_replicas),
                waiting_for_room: mine.iter().any(|pod| scheduling_failure(pod).is_some()),
                targets,
                md: md.clone(),
            })
        })
        .collect()
}

/// The address of a ready pod.
fn target(pod: &Pod) -> Option<PodTarget> {
    let status = pod.status.as_ref()?;
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let ip = status.pod_ip.clone().filter(|ip| !ip.is_empty())?;
    ready.then(|| PodTarget {
        pod: pod.name_any(),
        ip,
        port: u16::try_from(RUNTIME_PORT).unwrap_or(8080),
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use serde_json::json;

    use super::*;

    #[test]
    fn the_request_rate_is_per_second_and_none_across_a_restart() {
        let t0 = DateTime::<Utc>::UNIX_EPOCH;
        let t1 = t0 + TimeDelta::milliseconds(500);
        assert_eq!(rate(t0, 100.0, t1, 150.0), Some(100.0));
        assert_eq!(
            rate(t0, 100.0, t1, 3.0),
            None,
            "the counter went down: a restart"
        );
        assert_eq!(rate(t0, 100.0, t0, 150.0), None);
    }

    #[test]
    fn only_ready_pods_with_an_address_are_read() {
        let pod = |ready: &str, ip: Option<&str>| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "p"},
                "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": ready}]}
            }))
            .unwrap()
        };
        assert_eq!(
            target(&pod("True", Some("10.0.0.1"))).map(|t| (t.ip, t.port)),
            Some(("10.0.0.1".to_string(), 8080))
        );
        assert_eq!(target(&pod("False", Some("10.0.0.1"))), None);
        assert_eq!(target(&pod("True", None)), None);
    }

    #[test]
    fn only_autoscaled_running_model_deployments_are_read() {
        let md = |name: &str, autoscaled: bool, paused: bool| {
            let mut builder = crate::testing::md(name);
            if autoscaled {
                builder = builder.with_autoscaling(1, 4);
            }
            if paused {
                builder = builder.paused();
            }
            Arc::new(builder.build())
        };
        let mds = [
            md("scaled", true, false),
            md("fixed", false, false),
            md("held", true, true),
        ];
        let names: Vec<String> = rounds(&mds, &[]).into_iter().map(|r| r.key).collect();
        assert_eq!(
            names,
            vec![format!("{}/scaled", crate::testing::TEST_NAMESPACE)]
        );
    }

    #[test]
    fn a_pass_is_worth_it_for_a_new_count_or_a_holding_reason() {
        let status = |desired, reason: &str| AutoscalingStatus {
            desired_replicas: desired,
            reason: reason.to_string(),
            ..AutoscalingStatus::default()
        };
        let decision = |desired, reason| Decision {
            desired,
            reason,
            message: String::new(),
            seen: None,
        };
        assert!(worth_a_pass(None, &decision(2, reasons::STEADY)));
        assert!(worth_a_pass(
            Some(&status(2, reasons::STEADY)),
            &decision(3, reasons::SCALED_UP)
        ));
        assert!(worth_a_pass(
            Some(&status(2, reasons::STEADY)),
            &decision(2, reasons::WAITING_FOR_CAPACITY)
        ));
        assert!(worth_a_pass(
            Some(&status(2, reasons::NO_METRICS)),
            &decision(2, reasons::STEADY)
        ));
        assert!(!worth_a_pass(
            Some(&status(2, reasons::STEADY)),
            &decision(2, reasons::STABILIZING_DOWN)
        ));
    }
}
