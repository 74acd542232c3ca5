//! How `spec.autoscaling` sizes a `ModelDeployment`: with a runtime metric, the autoscaler's
//! decision stands in for `spec.replicas` and is reported in `status.autoscaling`; with
//! `metric: cpu` a HorizontalPodAutoscaler scales `spec.replicas` through `/scale`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kandle_crds::{AutoscalingMetric, AutoscalingSpec, AutoscalingStatus, ModelDeployment};

use crate::autoscale::{decide, stabilization, Decision, History, Inputs, Windows};
use crate::config::AutoscaleConfig;

/// Reason of `status.autoscaling` while an HPA does the scaling.
pub const HPA_REASON: &str = "HorizontalPodAutoscaler";

/// The autoscaling spec of `md`, when kandle reads its pods' metrics for it (any metric but
/// `cpu`).
pub fn scraped(md: &ModelDeployment) -> Option<&AutoscalingSpec> {
    md.spec
        .autoscaling
        .as_ref()
        .filter(|a| a.metric != AutoscalingMetric::Cpu)
}

/// The autoscaler's decision for `md`, or `None` when it is not autoscaled on a runtime metric.
pub fn decision(
    md: &ModelDeployment,
    history: Option<&History>,
    ready: i32,
    waiting_for_room: bool,
    now: DateTime<Utc>,
    config: &AutoscaleConfig,
) -> Option<Decision> {
    let spec = scraped(md)?;
    let current = md
        .status
        .as_ref()
        .and_then(|s| s.autoscaling.as_ref())
        .filter(|a| a.reason != HPA_REASON)
        .map_or(md.spec.replicas, |a| a.desired_replicas);
    Some(decide(&Inputs {
        spec,
        history,
        current,
        ready,
        waiting_for_room,
        windows: &config.windows,
        interval: config.interval,
        now,
    }))
}

/// How far back the history of `md` must reach: its longest window.
pub fn history_span(md: &ModelDeployment, windows: &Windows) -> Duration {
    let (up, down) = md
        .spec
        .autoscaling
        .as_ref()
        .map_or_else(Default::default, |a| {
            (
                stabilization(&a.scale_up_stabilization),
                stabilization(&a.scale_down_stabilization),
            )
        });
    windows.stable.max(up).max(down) + Duration::from_secs(1)
}

/// `status.autoscaling` after `decision`, keeping the time and reason of the last change.
pub fn status(
    decision: &Decision,
    previous: Option<&AutoscalingStatus>,
    now: &Time,
) -> AutoscalingStatus {
    let round = |v: f64| (v * 100.0).round() / 100.0;
    with_last_change(
        AutoscalingStatus {
            desired_replicas: decision.desired,
            ready_replicas: decision.seen.map_or(0, |p| p.sample.ready),
            value: decision.seen.map(|p| round(p.stable_avg)),
            panic_value: decision.seen.map(|p| round(p.panic_avg)),
            last_scale_time: None,
            last_scale_reason: Some(format!("{}: {}", decision.reason, decision.message)),
            reason: decision.reason.to_string(),
            message: decision.message.clone(),
        },
        previous,
        now,
    )
}

/// `status.autoscaling` for `metric: cpu`: the HorizontalPodAutoscaler decides.
pub fn hpa_status(
    md: &ModelDeployment,
    previous: Option<&AutoscalingStatus>,
    now: &Time,
) -> AutoscalingStatus {
    with_last_change(
        AutoscalingStatus {
            desired_replicas: md.spec.replicas,
            reason: HPA_REASON.to_string(),
            message: format!(
                "HorizontalPodAutoscaler {} scales spec.replicas on CPU utilisation",
                kube::ResourceExt::name_any(md)
            ),
            ..AutoscalingStatus::default()
        },
        previous,
        now,
    )
}

/// `status` stamped with `now` as its last change when the count differs from `previous`;
/// otherwise with the time and reason `previous` recorded.
fn with_last_change(
    mut status: AutoscalingStatus,
    previous: Option<&AutoscalingStatus>,
    now: &Time,
) -> AutoscalingStatus {
    match previous.filter(|p| p.desired_replicas == status.desired_replicas) {
        Some(p) => {
            status.last_scale_time = p.last_scale_time.clone();
            status.last_scale_reason = p.last_scale_reason.clone();
        }
        None => status.last_scale_time = Some(now.clone()),
    }
    status
}
