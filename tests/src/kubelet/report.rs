//! Reports a pod's status to the API server through the `pods/status` subresource: after each
//! burst of changes, and only when the status differs from what was last sent.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::Value;

use super::pod::PodContext;
use super::state::now;
use super::status::pod_status;

/// Changes closer together than this go out in one patch.
const COALESCE: Duration = Duration::from_millis(50);
/// How soon a failed patch is retried.
const RETRY: Duration = Duration::from_secs(1);

/// Patches the status of pod `name` whenever `ctx` changes, until the task is aborted or the
/// pod is gone.
pub async fn run(api: Api<Pod>, name: String, ctx: Arc<PodContext>) {
    let mut sent: Option<PodStatus> = None;
    let mut retrying = false;
    loop {
        if retrying {
            let _ = tokio::time::timeout(RETRY, ctx.changed.notified()).await;
        } else {
            ctx.changed.notified().await;
        }
        tokio::time::sleep(COALESCE).await;
        let state = ctx.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let status = pod_status(&state, sent.as_ref(), &now());
        if sent.as_ref() == Some(&status) {
            retrying = false;
            continue;
        }
        let patch = Patch::Strategic(status_patch(&status));
        match api
            .patch_status(&name, &PatchParams::default(), &patch)
            .await
        {
            Ok(_) => {
                sent = Some(status);
                retrying = false;
            }
            Err(kube::Error::Api(response)) if response.code == 404 => return,
            Err(error) => {
                tracing::warn!(pod = %ctx.key(), "reporting status: {error}");
                retrying = true;
            }
        }
    }
}

/// The strategic merge patch setting `status`. Conditions are merged by type, so a reason or
/// message that no longer applies is removed explicitly; the IP lists (merged by address) are
/// replaced whole.
fn status_patch(status: &PodStatus) -> Value {
    let mut status = serde_json::to_value(status).unwrap_or(Value::Null);
    for list in ["podIPs", "hostIPs"] {
        if let Some(ips) = status.get_mut(list).and_then(Value::as_array_mut) {
            ips.push(serde_json::json!({ "$patch": "replace" }));
        }
    }
    if let Some(conditions) = status.get_mut("conditions").and_then(Value::as_array_mut) {
        for condition in conditions.iter_mut().filter_map(Value::as_object_mut) {
            for field in ["reason", "message"] {
                condition.entry(field).or_insert(Value::Null);
            }
        }
    }
    serde_json::json!({ "status": status })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodCondition;

    use super::*;

    #[test]
    fn absent_condition_reasons_are_cleared() {
        let status = PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let patch = status_patch(&status);
        let ready = &patch["status"]["conditions"][0];
        assert_eq!(ready["reason"], Value::Null);
        assert!(ready.as_object().unwrap().contains_key("message"));
        assert_eq!(ready["status"], "True");
        assert_eq!(patch["status"].get("podIPs"), None);
    }
}
