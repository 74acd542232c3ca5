//! Each test's own namespace: named after the test and the test process, labelled so that a
//! later run can clean up after a process that died, and holding the `models` claim the
//! examples read their model from (see [`super::models_volume`]).

use anyhow::Context as _;
use std::path::Path;

use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::install::FIELD_MANAGER;
use super::models_volume;

/// Label of every test namespace.
pub const E2E_LABEL: &str = "kandle.dev/e2e";
/// Label holding the id of the test process that owns the namespace.
pub const PID_LABEL: &str = "kandle.dev/e2e-pid";

/// `e2e-<test>-<pid>`, lower-cased and cut to a valid namespace name.
pub fn namespace_name(test: &str, pid: u32) -> String {
    let suffix = format!("-{pid}");
    let test: String = test
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let room = 63 - "e2e-".len() - suffix.len();
    let test = test[..test.len().min(room)].trim_matches('-');
    format!("e2e-{test}{suffix}")
}

/// Creates the namespace and its `models` claim, bound to the folder `models`.
pub async fn create(client: &Client, namespace: &str, models: &Path) -> anyhow::Result<()> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let object = json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": { "name": namespace, "labels": {
            E2E_LABEL: "true", PID_LABEL: std::process::id().to_string(),
        } },
    });
    Api::<Namespace>::all(client.clone())
        .patch(namespace, &params, &Patch::Apply(object))
        .await
        .with_context(|| format!("creating namespace {namespace}"))?;
    models_volume::create(client, namespace, models).await
}

/// Deletes the namespace, then force-deletes its pods so that their processes stop now rather
/// than after their preStop sleep and grace period (the namespace, being terminating, gets no
/// new pods).
pub async fn delete(client: &Client, namespace: &str) -> anyhow::Result<()> {
    let deleted = Api::<Namespace>::all(client.clone())
        .delete(namespace, &DeleteParams::background())
        .await;
    match deleted {
        // 409: already terminating; its pods may still wait for a kubelet.
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
        Err(e) => return Err(e).with_context(|| format!("deleting namespace {namespace}")),
    }
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .with_context(|| format!("listing the pods of {namespace}"))?;
    for pod in pods {
        force_delete(client, &pod).await?;
    }
    models_volume::delete(client, namespace).await
}

/// Deletes a pod at once (grace period 0), as `kubectl delete --force` does.
pub async fn force_delete(client: &Client, pod: &Pod) -> anyhow::Result<()> {
    let namespace = pod.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::background()
    };
    match pods.delete(&pod.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("deleting pod {namespace}/{}", pod.name_any())),
    }
}

/// Deletes the test namespaces and volumes of test processes that no longer run (killed before
/// their cleanup), so their pods do not compete with this run. Only for the local control
/// plane, where process ids are this machine's.
pub async fn remove_stale(client: &Client) -> anyhow::Result<()> {
    let ours = ListParams::default().labels(&format!("{E2E_LABEL}=true"));
    let namespaces = Api::<Namespace>::all(client.clone())
        .list(&ours)
        .await
        .context("listing test namespaces")?;
    for namespace in namespaces.items.iter().filter(|n| owner_is_gone(*n)) {
        delete(client, &namespace.name_any()).await?;
    }
    let volumes = Api::<PersistentVolume>::all(client.clone())
        .list(&ours)
        .await
        .context("listing test volumes")?;
    for volume in volumes.items.iter().filter(|v| owner_is_gone(*v)) {
        models_volume::delete_volume(client, &volume.name_any()).await?;
    }
    Ok(())
}

fn owner_is_gone(object: &impl ResourceExt) -> bool {
    let owner = object
        .labels()
        .get(PID_LABEL)
        .and_then(|pid| pid.parse::<u32>().ok());
    !owner.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_namespace_names() {
        assert_eq!(namespace_name("scale", 42), "e2e-scale-42");
        assert_eq!(namespace_name("GPU_example", 7), "e2e-gpu-example-7");
        let long = namespace_name(&"x".repeat(100), 4_194_304);
        assert!(long.len() <= 63, "{long}");
        assert!(long.ends_with("-4194304"));
    }
}
