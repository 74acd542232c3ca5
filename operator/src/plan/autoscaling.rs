//! How `spec.autoscaling` sizes a `ModelDeployment`: with a runtime metric, the autoscaler's
//! decision stands in for `spec.replicas` and is reported in `status.autoscaling`; with
//! `metric: cpu` a HorizontalPodAutoscaler scales `spec.replicas` through `/scale`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kandle_crds::{
    duration_seconds, AutoscalingMetric, AutoscalingSpec, AutoscalingStatus, ModelDeployment,
};

use crate::autoscale::{decide, Decision, History, Inputs, Windows};
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
    let spec_window = |text: Option<&String>| {
        text.and_then(|t| duration_seconds(t))
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or_default()
    };
    let autoscaling = md.spec.autoscaling.as_ref();
    [
        windows.stable,
        spec_window(autoscaling.map(|a| &a.scale_up_stabilization)),
        spec_window(autoscaling.map(|a| &a.scale_down_stabilization)),
    ]
    .into_iter()
    .max()
    .unwrap_or_default()
        + Duration::from_secs(1)
}

/// `status.autoscaling` after `decision`, keeping the time of the last change.
pub fn status(
    decision: &Decision,
    previous: Option<&AutoscalingStatus>,
    now: &Time,
) -> AutoscalingStatus {
    let changed = previous.is_none_or(|p| p.desired_replicas != decision.desired);
    let round = |v: f64| (v * 100.0).round() / 100.0;
    AutoscalingStatus {
        desired_replicas: decision.desired,
        ready_replicas: decision.seen.map_or(0, |p| p.sample.ready),
        value: decision.seen.map(|p| round(p.stable_avg)),
        panic_value: decision.seen.map(|p| round(p.panic_avg)),
        last_scale_time: if changed {
            Some(now.clone())
        } else {
            previous.and_then(|p| p.last_scale_time.clone())
        },
        last_scale_reason: if changed {
            Some(format!("{}: {}", decision.reason, decision.message))
        } else {
            previous.and_then(|p| p.last_scale_reason.clone())
        },
        reason: decision.reason.to_string(),
        message: decision.message.clone(),
    }
}

/// `status.autoscaling` for `metric: cpu`: the HorizontalPodAutoscaler decides.
pub fn hpa_status(
    md: &ModelDeployment,
    previous: Option<&AutoscalingStatus>,
    now: &Time,
) -> AutoscalingStatus {
    let desired = md.spec.replicas;
    let changed = previous.is_none_or(|p| p.desired_replicas != desired);
    AutoscalingStatus {
        desired_replicas: desired,
        ready_replicas: 0,
        value: None,
        panic_value: None,
        last_scale_time: if changed {
            Some(now.clone())
        } else {
            previous.and_then(|p| p.last_scale_time.clone())
        },
        last_scale_reason: None,
        reason: HPA_REASON.to_string(),
        message: format!(
            "HorizontalPodAutoscaler {} scales spec.replicas on CPU utilisation",
            kube::ResourceExt::name_any(md)
        ),
    }
}
