//! End to end on a real cluster, run only when `KANDLE_E2E_KUBECONFIG` names a kubeconfig:
//! installs the committed CRD, runs the operator in this process scoped to a fresh namespace,
//! applies `manifests/examples/embedding-cpu.yaml` there, waits for its Deployment and for the
//! status to describe the current generation, then deletes the namespace.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kandle_crds::{labels, ModelDeployment};
use kandle_operator::controller;
use kandle_operator::OperatorConfig;
use kandle_tests::wait;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use serde_json::json;

const KUBECONFIG_VAR: &str = "KANDLE_E2E_KUBECONFIG";
const FIELD_MANAGER: &str = "kandle-e2e";
const CLUSTER_DEADLINE: Duration = Duration::from_secs(180);

fn repo_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

async fn client_from(path: &str) -> anyhow::Result<Client> {
    let kubeconfig =
        Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {path}"))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context("loading the kubeconfig")?;
    Client::try_from(config).context("building the client")
}

async fn install_crd(client: &Client) -> anyhow::Result<()> {
    let path = repo_file("manifests/crds/kandle.dev_modeldeployments.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let crd: CustomResourceDefinition = serde_yaml::from_str(&text).context("parsing the CRD")?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        &crd.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .context("applying the CRD")?;
    wait::until("the CRD to be established", CLUSTER_DEADLINE, || async {
        let crd = crds.get(&crd.name_any()).await?;
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        Ok(established.then_some(()))
    })
    .await
}

async fn run_example(client: &Client, ns: &str) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
    namespaces
        .patch(
            ns,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&namespace),
        )
        .await
        .context("creating the namespace")?;
    // The example reads its model from the PVC `models`; it only has to exist for the operator.
    let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "models"},
                     "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .patch(
            "models",
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&pvc),
        )
        .await
        .context("creating the models PVC")?;

    let path = repo_file("manifests/examples/embedding-cpu.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let md: ModelDeployment = serde_yaml::from_str(&text).context("parsing the example")?;
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), ns);
    let name = md.name_any();
    mds.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Apply(&md),
    )
    .await
    .context("applying the example")?;

    let config = OperatorConfig {
        namespace: Some(ns.to_string()),
        ..OperatorConfig::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(controller::run(client.clone(), config, async move {
        let _ = stopped.await;
    }));

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let selector = format!("{}={name}", labels::MODEL_DEPLOYMENT);
    let outcome = async {
        wait::until("the example's Deployment", CLUSTER_DEADLINE, || async {
            Ok(deployments
                .list(&ListParams::default().labels(&selector))
                .await?
                .items
                .into_iter()
                .next())
        })
        .await?;
        wait::until(
            "status.observedGeneration to reach the generation",
            CLUSTER_DEADLINE,
            || async {
                let md = mds.get(&name).await?;
                let observed = md.status.as_ref().and_then(|s| s.observed_generation);
                Ok((observed.is_some() && observed == md.metadata.generation).then_some(()))
            },
        )
        .await
    }
    .await;
    let _ = stop.send(());
    operator
        .await
        .context("operator task")?
        .context("operator run")?;
    outcome
}

#[tokio::test]
async fn the_cpu_example_reaches_a_real_cluster() {
    let Ok(path) = std::env::var(KUBECONFIG_VAR) else {
        eprintln!("skipping the end-to-end test: set {KUBECONFIG_VAR} to a kubeconfig of a disposable cluster to run it");
        return;
    };
    let client = client_from(&path)
        .await
        .expect("a client for the e2e cluster");
    install_crd(&client).await.expect("the CRD installs");
    let ns = format!("kandle-e2e-{}", std::process::id());
    let result = run_example(&client, &ns).await;
    let cleanup = Api::<Namespace>::all(client.clone())
        .delete(&ns, &DeleteParams::background())
        .await;
    result.expect("the example converges");
    cleanup.expect("the test namespace is deleted");
}
