//! The `models` claim of a test namespace, which the examples read their model from, bound to a
//! PersistentVolume of the local model folder: the scheduler places no pod whose claim is
//! unbound, and the stand-in kubelet maps the claim to that folder.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::Client;
use serde_json::{json, Value};

use super::install::FIELD_MANAGER;
use super::namespace::{E2E_LABEL, PID_LABEL};
use crate::wait;

/// The claim the examples mount their model from.
pub const MODELS_CLAIM: &str = "models";
const BIND_DEADLINE: Duration = Duration::from_secs(30);

/// The PersistentVolume behind the test namespace's claim.
pub fn volume_name(namespace: &str) -> String {
    format!("{namespace}-{MODELS_CLAIM}")
}

/// The PersistentVolume, reserved for the claim of `namespace` (`claimRef`), read-only.
pub fn volume(namespace: &str, folder: &Path) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": { "name": volume_name(namespace), "labels": {
            E2E_LABEL: "true", PID_LABEL: std::process::id().to_string(),
        } },
        "spec": {
            "capacity": { "storage": "1Gi" },
            "accessModes": ["ReadOnlyMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": { "path": folder.display().to_string(), "type": "Directory" },
            "claimRef": { "namespace": namespace, "name": MODELS_CLAIM },
        },
    })
}

/// The claim, asking for that volume by name.
pub fn claim(namespace: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": { "name": MODELS_CLAIM, "namespace": namespace },
        "spec": {
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "",
            "volumeName": volume_name(namespace),
            "resources": { "requests": { "storage": "1Gi" } },
        },
    })
}

/// Creates the volume and the claim, and waits until the claim is Bound.
pub async fn create(client: &Client, namespace: &str, folder: &Path) -> anyhow::Result<()> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let name = volume_name(namespace);
    Api::<PersistentVolume>::all(client.clone())
        .patch(&name, &params, &Patch::Apply(volume(namespace, folder)))
        .await
        .with_context(|| format!("creating PersistentVolume {name}"))?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    claims
        .patch(MODELS_CLAIM, &params, &Patch::Apply(claim(namespace)))
        .await
        .with_context(|| format!("creating the {MODELS_CLAIM} claim in {namespace}"))?;
    wait::until(
        &format!("the {MODELS_CLAIM} claim to be Bound"),
        BIND_DEADLINE,
        || async {
            let claim = claims.get(MODELS_CLAIM).await?;
            let phase = claim.status.and_then(|s| s.phase);
            Ok((phase.as_deref() == Some("Bound")).then_some(()))
        },
    )
    .await
}

/// Deletes the volume of the test namespace's claim.
pub async fn delete(client: &Client, namespace: &str) -> anyhow::Result<()> {
    delete_volume(client, &volume_name(namespace)).await
}

/// Deletes a PersistentVolume; one already gone is fine.
pub async fn delete_volume(client: &Client, name: &str) -> anyhow::Result<()> {
    match Api::<PersistentVolume>::all(client.clone())
        .delete(name, &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("deleting PersistentVolume {name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claim_and_its_volume_name_each_other() {
        let volume = volume("e2e-x-1", Path::new("/models"));
        let claim = claim("e2e-x-1");
        assert_eq!(
            volume["spec"]["claimRef"]["name"],
            claim["metadata"]["name"]
        );
        assert_eq!(volume["spec"]["claimRef"]["namespace"], "e2e-x-1");
        assert_eq!(claim["spec"]["volumeName"], volume["metadata"]["name"]);
        assert_eq!(volume["spec"]["hostPath"]["path"], "/models");
    }
}
