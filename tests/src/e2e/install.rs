//! Installs kandle as `kubectl apply -k manifests/` would: every document of the files that
//! `manifests/kustomization.yaml` lists, in order, by server-side apply with the admin identity,
//! resolving each kind through discovery; then waits for the CRD to be Established.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use kube::Client;
use serde::Deserialize;
use serde_json::Value;

use crate::wait;

/// Field manager of everything the harness writes.
pub const FIELD_MANAGER: &str = "kandle-e2e";
const OPERATOR_NAMESPACE: &str = "kandle-system";
const OPERATOR_DEPLOYMENT: &str = "kandle-operator";
const ESTABLISHED_DEADLINE: Duration = Duration::from_secs(30);

/// The documents `kustomization.yaml` in `manifests_dir` installs, in its order.
pub fn manifest_documents(manifests_dir: &Path) -> anyhow::Result<Vec<Value>> {
    let kustomization: Value = read_yaml(&manifests_dir.join("kustomization.yaml"))?
        .into_iter()
        .next()
        .context("kustomization.yaml is empty")?;
    let resources = kustomization["resources"]
        .as_array()
        .context("kustomization.yaml lists no resources")?;
    let mut documents = Vec::new();
    for resource in resources {
        let file = resource.as_str().context("a resource is not a path")?;
        documents.extend(read_yaml(&manifests_dir.join(file))?);
    }
    Ok(documents)
}

fn read_yaml(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| {
            Value::deserialize(document).with_context(|| format!("parsing {}", path.display()))
        })
        .filter(|parsed| !matches!(parsed, Ok(Value::Null)))
        .collect()
}

/// The document as the tests install it: the operator's own Deployment runs no replicas,
/// because each test runs the `kandle-operator` binary itself (scoped to its namespace, with
/// its log in the test's folder). Its image does not exist here; pods of it would only fail to
/// pull and compete for the Lease the leader-election tests hold.
pub fn for_the_tests(mut document: Value) -> Value {
    let is_operator = document["kind"] == "Deployment"
        && document["metadata"]["name"] == OPERATOR_DEPLOYMENT
        && document["metadata"]["namespace"] == OPERATOR_NAMESPACE;
    if is_operator {
        document["spec"]["replicas"] = Value::from(0);
    }
    document
}

/// Applies every document of `manifests_dir` and waits for the CRDs among them to be
/// Established. Idempotent.
pub async fn install(client: &Client, manifests_dir: &Path) -> anyhow::Result<()> {
    let documents = manifest_documents(manifests_dir)?;
    for document in documents.into_iter().map(for_the_tests) {
        apply(client, &document).await?;
        if document["kind"] == "CustomResourceDefinition" {
            let name = document["metadata"]["name"].as_str().unwrap_or_default();
            wait_established(client, name).await?;
        }
    }
    Ok(())
}

/// Server-side applies one object of any kind, with force (the harness owns what it installs).
pub async fn apply(client: &Client, document: &Value) -> anyhow::Result<()> {
    let object: DynamicObject =
        serde_json::from_value(document.clone()).context("a manifest is not an object")?;
    let types = object
        .types
        .as_ref()
        .context("a manifest has no apiVersion/kind")?;
    let what = format!(
        "{} {}",
        types.kind,
        object.metadata.name.as_deref().unwrap_or("?")
    );
    let gvk = GroupVersionKind::try_from(types).with_context(|| format!("{what}: apiVersion"))?;
    let (resource, capabilities) = discovery::pinned_kind(client, &gvk)
        .await
        .with_context(|| format!("{what}: discovering {}", types.api_version))?;
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Namespaced => {
            let namespace = object.metadata.namespace.as_deref().unwrap_or("default");
            Api::namespaced_with(client.clone(), namespace, &resource)
        }
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    let name = object
        .metadata
        .name
        .as_deref()
        .context("a manifest has no name")?;
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(document),
    )
    .await
    .with_context(|| format!("applying {what}"))?;
    Ok(())
}

/// Waits until the CustomResourceDefinition `name` is established (its API is served).
pub async fn wait_established(client: &Client, name: &str) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    wait::until(
        &format!("CRD {name} to be Established"),
        ESTABLISHED_DEADLINE,
        || async {
            let crd = crds.get(name).await?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            Ok(established.then_some(()))
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn manifests() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../manifests")
    }

    #[test]
    fn the_kustomization_installs_the_crd_rbac_and_the_operator() {
        let documents = manifest_documents(&manifests()).unwrap();
        let kinds: Vec<&str> = documents
            .iter()
            .filter_map(|d| d["kind"].as_str())
            .collect();
        for kind in [
            "Namespace",
            "CustomResourceDefinition",
            "ClusterRole",
            "Deployment",
        ] {
            assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
        }
    }

    #[test]
    fn only_the_operator_deployment_is_scaled_to_zero() {
        let documents: Vec<Value> = manifest_documents(&manifests())
            .unwrap()
            .into_iter()
            .map(for_the_tests)
            .collect();
        let operator = documents
            .iter()
            .find(|d| d["kind"] == "Deployment")
            .expect("the operator Deployment is installed");
        assert_eq!(operator["spec"]["replicas"], 0);
        let untouched = documents.iter().filter(|d| d["kind"] != "Deployment");
        assert!(untouched
            .into_iter()
            .all(|d| d["spec"]["replicas"].is_null()));
    }
}
