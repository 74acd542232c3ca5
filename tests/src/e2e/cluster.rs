//! The cluster the e2e tests of one binary share, set up once by the first test that asks:
//! the control plane (see [`super::control_plane`]), kandle installed from `manifests/`, the
//! default nodes, and the stand-in kubelet. Every `#[tokio::test]` has its own runtime, so this
//! global holds no client or other runtime-bound object: only paths and the kubelet process.
//! Set-up runs on a thread of its own with a runtime of its own.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::binaries::{self, Binaries};
use super::control_plane::{self, client_from, ClusterChoice, Environment, Kubeconfigs};
use super::kubelet_process::{KubeletLaunch, KubeletProcess};
use super::{install, namespace, nodes};

/// What every test of the binary shares.
#[derive(Debug)]
pub struct Cluster {
    /// The harness's and the operator's identities.
    pub kubeconfigs: Kubeconfigs,
    /// The binaries under test.
    pub binaries: Binaries,
    /// The folder behind each test namespace's `models` claim (holding `all-MiniLM-L6-v2/`).
    pub models: PathBuf,
    /// `target/e2e-work`: the kubelet's folder, and each test namespace's logs.
    pub work_dir: PathBuf,
    /// The stand-in kubelet.
    pub kubelet: Mutex<KubeletProcess>,
}

/// Why there is no cluster.
#[derive(Clone, Debug)]
pub enum Unavailable {
    /// A prerequisite is missing on a developer's machine: the tests skip.
    Skip(String),
    /// Something is broken, or a prerequisite is missing in CI: the tests fail.
    Fail(String),
}

static CLUSTER: OnceLock<Result<Cluster, Unavailable>> = OnceLock::new();

/// The shared cluster, set up on first use.
pub fn shared() -> &'static Result<Cluster, Unavailable> {
    CLUSTER.get_or_init(|| {
        std::thread::spawn(set_up)
            .join()
            .unwrap_or_else(|_| Err(Unavailable::Fail("setting up the cluster panicked".into())))
    })
}

/// The repository root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_path_buf()
}

fn set_up() -> Result<Cluster, Unavailable> {
    let workspace = workspace();
    let kubeconfigs = match control_plane::choose(&Environment::current(&workspace)) {
        ClusterChoice::Given(kubeconfigs) => kubeconfigs,
        ClusterChoice::StartLocal { script, state_dir } => {
            control_plane::start_local(&script, &state_dir)
                .map_err(|e| Unavailable::Fail(format!("{e:#}")))?
        }
        ClusterChoice::Skip(why) => return Err(Unavailable::Skip(why)),
        ClusterChoice::Fail(why) => return Err(Unavailable::Fail(why)),
    };
    let binaries = binaries::profile_dir()
        .and_then(|dir| Binaries::locate(&dir))
        .map_err(Unavailable::Fail)?;
    let model = binaries::fetch_model(&workspace).map_err(|why| {
        let why = format!("no example model: {why}");
        if control_plane::is_ci() {
            Unavailable::Fail(why)
        } else {
            Unavailable::Skip(why)
        }
    })?;
    let work_dir = workspace.join("target/e2e-work");
    let models = model
        .parent()
        .map_or_else(|| model.clone(), Path::to_path_buf);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Unavailable::Fail(format!("building a runtime: {e}")))?;
    runtime
        .block_on(prepare(&workspace, &kubeconfigs))
        .map_err(|e| Unavailable::Fail(format!("{e:#}")))?;

    let kubelet = KubeletProcess::spawn(&KubeletLaunch {
        binary: binaries.kubelet.clone(),
        kubeconfig: kubeconfigs.admin.clone(),
        runtime: binaries.runtime.clone(),
        models: models.clone(),
        work_dir: work_dir.clone(),
        log_path: work_dir.join(format!("kubelet-{}.log", std::process::id())),
    })
    .map_err(|e| Unavailable::Fail(format!("{e:#}")))?;
    Ok(Cluster {
        kubeconfigs,
        binaries,
        models,
        work_dir,
        kubelet: Mutex::new(kubelet),
    })
}

/// Installs kandle, clears what killed runs left behind, and creates the default nodes.
async fn prepare(workspace: &Path, kubeconfigs: &Kubeconfigs) -> anyhow::Result<()> {
    let client = client_from(&kubeconfigs.admin).await?;
    install::install(&client, &workspace.join("manifests")).await?;
    if kubeconfigs.local {
        namespace::remove_stale(&client).await?;
    }
    for node in nodes::default_nodes() {
        nodes::add(&client, &node).await?;
    }
    Ok(())
}
