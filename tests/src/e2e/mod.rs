//! End-to-end tests on a real control plane: real API server, scheduler, controllers and
//! garbage collector; the real `kandle-operator` binary running as its ServiceAccount; a
//! stand-in kubelet running the real `kandle-runtime` for each pod on its own loopback address.
//!
//! Each test binary sets the cluster up once ([`cluster`]): it starts or reuses the local
//! control plane in `target/e2e-k8s` (or uses the cluster `KANDLE_E2E_KUBECONFIG` names, see
//! [`control_plane`]), installs `manifests/`, creates the nodes `e2e-cpu`, `e2e-gpu-h100` and
//! `e2e-gpu-a100`, and starts `kandle-kubelet`. Each test then takes an [`E2e`]: its own
//! namespace with the `models` claim, an admin client, and its own operator process. The e2e
//! tests of a binary run one at a time (they share the nodes and a small machine).
//!
//! The local control plane is left running for the next run; `.ci/run` stops it at exit, and
//! `../shared/k8s/control-plane.sh down target/e2e-k8s` stops it by hand. Logs of a run:
//! `target/e2e-work/<namespace>/operator.log`, the pods' container logs in
//! `target/e2e-work/<namespace>/<pod>/<container>.log`, and `target/e2e-work/kubelet-<pid>.log`.
//!
//! ```no_run
//! # async fn scale() -> anyhow::Result<()> {
//! use kandle_tests::e2e::E2e;
//! let Some(e2e) = E2e::start("scale").await else { return Ok(()) }; // skipped, reason printed
//! let md = e2e.apply_example("embedding-cpu.yaml").await?;
//! let md = e2e.expect(e2e.wait_ready("minilm-cpu").await, "the example becomes Ready").await;
//! # Ok(()) }
//! ```

pub mod binaries;
pub mod cluster;
pub mod control_plane;
mod diagnostics;
pub mod install;
pub mod kubelet_process;
pub mod load;
pub mod models_volume;
pub mod namespace;
pub mod nodes;
pub mod operator;
pub mod serving;
pub mod waits;

use std::path::PathBuf;

use anyhow::Context as _;
use kandle_crds::ModelDeployment;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use cluster::{Cluster, Unavailable};
pub use load::Load;
pub use nodes::{NodeSpec, A100, H100};
pub use operator::OperatorProcess;
pub use serving::{embed, post_chat, streamed_content};
pub use waits::{
    condition_is, condition_message, has_condition, is_ready_for_generation, pod_ip, pod_is_ready,
    stable_revision, E2E_DEADLINE,
};

// Async-safe and bound to no runtime, so tests on different runtimes can share it.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One end-to-end test's view of the cluster; cleans up when dropped (stops its operators,
/// deletes its namespace).
pub struct E2e {
    /// The test's name.
    pub test: String,
    /// The test's namespace, `e2e-<test>-<pid>`.
    pub namespace: String,
    /// An admin client.
    pub client: Client,
    operator: Option<OperatorProcess>,
    cluster: &'static Cluster,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl E2e {
    /// Takes the cluster for the test `test` and starts the operator in a fresh namespace.
    /// `None` means the test is skipped (the reason is printed); a broken cluster panics.
    pub async fn start(test: &str) -> Option<Self> {
        let mut e2e = Self::start_without_operator(test).await?;
        let operator = e2e.spawn_operator("operator", &[]);
        e2e.operator = Some(e2e.expect(operator, "the operator starts").await);
        Some(e2e)
    }

    /// Like [`E2e::start`], but runs no operator: the test starts its own with
    /// [`E2e::spawn_operator`].
    pub async fn start_without_operator(test: &str) -> Option<Self> {
        let serial = SERIAL.lock().await;
        let cluster = match cluster::shared() {
            Ok(cluster) => cluster,
            Err(Unavailable::Skip(why)) => {
                eprintln!("skipping {test}: {why}");
                return None;
            }
            Err(Unavailable::Fail(why)) => panic!("{test}: no end-to-end cluster: {why}"),
        };
        let kubelet = cluster
            .kubelet
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .check_running();
        if let Err(why) = kubelet {
            panic!("{test}: {why}");
        }
        let client = control_plane::client_from(&cluster.kubeconfigs.admin)
            .await
            .unwrap_or_else(|e| panic!("{test}: an admin client: {e:#}"));
        let namespace = namespace::namespace_name(test, std::process::id());
        if let Err(e) = namespace::create(&client, &namespace, &cluster.models).await {
            panic!("{test}: {e:#}");
        }
        Some(Self {
            test: test.to_string(),
            namespace,
            client,
            operator: None,
            cluster,
            _serial: serial,
        })
    }

    /// Starts another operator on the test's namespace, after the harness's flags with
    /// `extra_args` (e.g. `--leader-election --lease-namespace kandle-system --identity a`).
    /// Its log is `<work>/<namespace>/<label>.log`.
    pub fn spawn_operator(
        &self,
        label: &str,
        extra_args: &[&str],
    ) -> anyhow::Result<OperatorProcess> {
        OperatorProcess::spawn(&operator::OperatorLaunch {
            binary: self.cluster.binaries.operator.clone(),
            kubeconfig: self.cluster.kubeconfigs.operator.clone(),
            namespace: self.namespace.clone(),
            log_path: self.log_dir().join(format!("{label}.log")),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        })
    }

    /// The operator [`E2e::start`] started.
    pub fn operator(&mut self) -> &mut OperatorProcess {
        self.operator
            .as_mut()
            .expect("this test was started without an operator")
    }

    /// That operator's log, empty without one.
    pub fn operator_log(&self) -> String {
        self.operator
            .as_ref()
            .map(OperatorProcess::log)
            .unwrap_or_default()
    }

    /// `target/e2e-work/<namespace>`: the operators' logs and the pods' container logs.
    pub fn log_dir(&self) -> PathBuf {
        self.cluster.work_dir.join(&self.namespace)
    }

    /// What a container of a pod of this namespace wrote.
    pub fn container_log(&self, pod: &str, container: &str) -> String {
        let path = self.log_dir().join(pod).join(format!("{container}.log"));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// The stand-in kubelet's own log.
    pub fn kubelet_log(&self) -> String {
        self.cluster
            .kubelet
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .log()
    }

    /// The kubeconfig the operator runs with.
    pub fn operator_kubeconfig(&self) -> PathBuf {
        self.cluster.kubeconfigs.operator.clone()
    }

    /// The admin kubeconfig.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.cluster.kubeconfigs.admin.clone()
    }

    /// Runs `kubectl kandle ARGS` (the plugin binary) as the cluster's admin in the test's
    /// namespace; its exit status, stdout and stderr.
    pub async fn kandle(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        Ok(tokio::process::Command::new(&self.cluster.binaries.plugin)
            .args(args)
            .args(["--namespace", &self.namespace])
            .env("KUBECONFIG", self.admin_kubeconfig())
            .output()
            .await?)
    }

    /// An API of namespaced kind `K` in the test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The names of the objects of namespaced kind `K` in the test's namespace.
    pub async fn names<K>(&self) -> anyhow::Result<Vec<String>>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        let list = self.api::<K>().list_metadata(&Default::default()).await?;
        Ok(list.items.iter().map(ResourceExt::name_any).collect())
    }

    /// The test namespace's ModelDeployments.
    pub fn mds(&self) -> Api<ModelDeployment> {
        self.api()
    }

    /// Parses `manifests/examples/<file>`.
    pub fn example(file: &str) -> anyhow::Result<ModelDeployment> {
        let path = cluster::workspace().join("manifests/examples").join(file);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// `manifests/examples/embedding-cpu.yaml` (`minilm-cpu`) with `replicas`.
    pub fn cpu_example(replicas: i32) -> ModelDeployment {
        let mut md = Self::example("embedding-cpu.yaml").expect("the CPU example parses");
        md.spec.replicas = replicas;
        md
    }

    /// Applies `manifests/examples/<file>` as it is (in the test namespace).
    pub async fn apply_example(&self, file: &str) -> anyhow::Result<ModelDeployment> {
        self.apply(&Self::example(file)?).await
    }

    /// Applies a ModelDeployment given as YAML.
    pub async fn apply_yaml(&self, yaml: &str) -> anyhow::Result<ModelDeployment> {
        let md: ModelDeployment =
            serde_yaml::from_str(yaml).context("parsing the ModelDeployment")?;
        self.apply(&md).await
    }

    /// Applies the name, labels, annotations and spec of `md` as `kubectl apply
    /// --server-side` would, in the test namespace unless it names one.
    pub async fn apply(&self, md: &ModelDeployment) -> anyhow::Result<ModelDeployment> {
        let namespace = md.namespace().unwrap_or_else(|| self.namespace.clone());
        let name = md.name_any();
        let object = json!({
            "apiVersion": "kandle.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": md.metadata.labels,
                "annotations": md.metadata.annotations,
            },
            "spec": md.spec,
        });
        Api::<ModelDeployment>::namespaced(self.client.clone(), &namespace)
            .patch(
                &name,
                &PatchParams::apply(install::FIELD_MANAGER).force(),
                &Patch::Apply(object),
            )
            .await
            .with_context(|| format!("applying ModelDeployment {namespace}/{name}"))
    }

    /// Creates (or updates) a node; remove it with [`E2e::remove_node`] before the test ends.
    pub async fn add_node(&self, spec: NodeSpec) -> anyhow::Result<()> {
        nodes::add(&self.client, &spec).await
    }

    /// Deletes a node and force-deletes the pods bound to it.
    pub async fn remove_node(&self, name: &str) -> anyhow::Result<()> {
        nodes::remove(&self.client, name).await
    }
}

impl Drop for E2e {
    fn drop(&mut self) {
        if let Some(mut operator) = self.operator.take() {
            operator.kill();
        }
        let kubeconfig = self.cluster.kubeconfigs.admin.clone();
        let namespace = self.namespace.clone();
        // The test's runtime may be shutting down: clean up on a thread with a runtime of its own.
        let cleanup = std::thread::spawn(move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let client = control_plane::client_from(&kubeconfig).await?;
                namespace::delete(&client, &namespace).await
            })
        });
        match cleanup.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("cleaning up {}: {e:#}", self.namespace),
            Err(_) => eprintln!("cleaning up {} panicked", self.namespace),
        }
    }
}
