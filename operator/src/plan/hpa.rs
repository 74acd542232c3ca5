//! The HorizontalPodAutoscaler of `metric: cpu`: CPU utilisation is what an HPA does well, so
//! for it kandle writes an `autoscaling/v2` HPA against the `ModelDeployment`'s `/scale`
//! subresource (which counts pods through `status.selector`) and lets it set `spec.replicas`.
//! It needs the cluster's resource metrics API (metrics-server).

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget,
    ResourceMetricSource,
};
use kandle_crds::{AutoscalingMetric, ModelDeployment, GROUP, VERSION};
use kube::{Resource, ResourceExt};

use super::meta;
use crate::autoscale::stabilization;

/// The HPA for `md`, when it autoscales on CPU.
pub fn hpa(md: &ModelDeployment) -> Option<HorizontalPodAutoscaler> {
    let autoscaling = md
        .spec
        .autoscaling
        .as_ref()
        .filter(|a| a.metric == AutoscalingMetric::Cpu)?;
    let md_name = md.name_any();
    // The HPA takes whole seconds, at most an hour.
    let window = |text: &str| {
        let seconds = stabilization(text).as_secs_f64().min(3600.0);
        Some(HPAScalingRules {
            stabilization_window_seconds: Some(seconds.round() as i32),
            ..Default::default()
        })
    };
    Some(HorizontalPodAutoscaler {
        metadata: meta::child_meta(md, &md_name, meta::common_labels(&md_name)),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some(format!("{GROUP}/{VERSION}")),
                kind: ModelDeployment::kind(&()).into_owned(),
                name: md_name,
            },
            min_replicas: Some(autoscaling.min_replicas),
            max_replicas: autoscaling.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".to_string(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".to_string(),
                    target: MetricTarget {
                        type_: "Utilization".to_string(),
                        average_utilization: Some(
                            autoscaling.target.round().clamp(1.0, 1000.0) as i32
                        ),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            }]),
            behavior: Some(HorizontalPodAutoscalerBehavior {
                scale_up: window(&autoscaling.scale_up_stabilization),
                scale_down: window(&autoscaling.scale_down_stabilization),
            }),
        }),
        status: None,
    })
}
