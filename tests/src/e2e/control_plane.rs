//! Which Kubernetes control plane the end-to-end tests run against, and starting it.
//!
//! `KANDLE_E2E_KUBECONFIG` names a cluster to use as it is (admin rights needed; the operator
//! runs with `KANDLE_E2E_OPERATOR_KUBECONFIG` when set, else with the same kubeconfig).
//! Otherwise the tests start, or reuse, the local control plane of
//! `../shared/k8s/control-plane.sh` in `target/e2e-k8s`: the harness acts as its admin and the
//! operator runs as its ServiceAccount (`operator.kubeconfig`), so `manifests/rbac/` decides what
//! the operator may do. Nothing here stops that control plane: it is reused by the next run
//! (`up` on a live one returns at once), and `.ci/run` stops it at exit with
//! `control-plane.sh down target/e2e-k8s`. Stop it by hand the same way.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Names a cluster to run against instead of the local control plane.
pub const KUBECONFIG_VAR: &str = "KANDLE_E2E_KUBECONFIG";
/// With [`KUBECONFIG_VAR`]: the identity the operator runs as (default: the same kubeconfig).
pub const OPERATOR_KUBECONFIG_VAR: &str = "KANDLE_E2E_OPERATOR_KUBECONFIG";

/// The identities the harness and the operator use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kubeconfigs {
    /// Admin: installs, creates nodes, plays the user and the kubelet.
    pub admin: PathBuf,
    /// The operator's identity.
    pub operator: PathBuf,
    /// Whether this is the local, disposable control plane (and not a cluster named by
    /// [`KUBECONFIG_VAR`]).
    pub local: bool,
}

/// What to do about the cluster, decided from the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterChoice {
    /// Use the cluster these kubeconfigs name.
    Given(Kubeconfigs),
    /// Run `script up state_dir`.
    StartLocal {
        /// `control-plane.sh`.
        script: PathBuf,
        /// Where its state and kubeconfigs live.
        state_dir: PathBuf,
    },
    /// No cluster: skip, saying why.
    Skip(String),
    /// No cluster where one is required (CI): fail, saying why.
    Fail(String),
}

/// What the choice depends on.
#[derive(Clone, Debug)]
pub struct Environment {
    /// [`KUBECONFIG_VAR`].
    pub kubeconfig: Option<PathBuf>,
    /// [`OPERATOR_KUBECONFIG_VAR`].
    pub operator_kubeconfig: Option<PathBuf>,
    /// `control-plane.sh`, and whether it exists.
    pub script: PathBuf,
    /// Whether the script exists.
    pub script_exists: bool,
    /// `CI=true`: a missing control plane is a failure.
    pub ci: bool,
    /// Where the local control plane keeps its state.
    pub state_dir: PathBuf,
}

impl Environment {
    /// Reads the process environment; `workspace` is the repository root.
    pub fn current(workspace: &Path) -> Self {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let script = workspace.join("../shared/k8s/control-plane.sh");
        Self {
            kubeconfig: var(KUBECONFIG_VAR).map(PathBuf::from),
            operator_kubeconfig: var(OPERATOR_KUBECONFIG_VAR).map(PathBuf::from),
            script_exists: script.is_file(),
            script,
            ci: is_ci(),
            state_dir: workspace.join("target/e2e-k8s"),
        }
    }
}

/// Whether `CI=true`: then missing prerequisites fail the tests instead of skipping them.
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Decides which cluster to use.
pub fn choose(env: &Environment) -> ClusterChoice {
    if let Some(admin) = &env.kubeconfig {
        let operator = env.operator_kubeconfig.clone().unwrap_or(admin.clone());
        return ClusterChoice::Given(Kubeconfigs {
            admin: admin.clone(),
            operator,
            local: false,
        });
    }
    if env.script_exists {
        return ClusterChoice::StartLocal {
            script: env.script.clone(),
            state_dir: env.state_dir.clone(),
        };
    }
    let why = format!(
        "no control plane: {} does not exist and {KUBECONFIG_VAR} is not set",
        env.script.display()
    );
    if env.ci {
        ClusterChoice::Fail(why)
    } else {
        ClusterChoice::Skip(why)
    }
}

/// Runs `script up state_dir` (which reuses a control plane already answering there) and
/// returns its admin and operator kubeconfigs.
pub fn start_local(script: &Path, state_dir: &Path) -> anyhow::Result<Kubeconfigs> {
    let output = Command::new(script)
        .arg("up")
        .arg(state_dir)
        .output()
        .map_err(|e| anyhow::anyhow!("running {}: {e}", script.display()))?;
    if !output.status.success() {
        anyhow::bail!(
            "`{} up {}` failed ({}): {}",
            script.display(),
            state_dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let kubeconfigs = Kubeconfigs {
        admin: state_dir.join("admin.kubeconfig"),
        operator: state_dir.join("operator.kubeconfig"),
        local: true,
    };
    for path in [&kubeconfigs.admin, &kubeconfigs.operator] {
        anyhow::ensure!(path.is_file(), "{} was not written", path.display());
    }
    Ok(kubeconfigs)
}

/// A client acting as the identity of the kubeconfig at `path`.
pub async fn client_from(path: &Path) -> anyhow::Result<kube::Client> {
    use anyhow::Context as _;
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let options = kube::config::KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .with_context(|| format!("loading kubeconfig {}", path.display()))?;
    kube::Client::try_from(config).context("building the client")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(kubeconfig: Option<&str>, script_exists: bool, ci: bool) -> Environment {
        Environment {
            kubeconfig: kubeconfig.map(PathBuf::from),
            operator_kubeconfig: None,
            script: PathBuf::from("/ws/../shared/k8s/control-plane.sh"),
            script_exists,
            ci,
            state_dir: PathBuf::from("/ws/target/e2e-k8s"),
        }
    }

    #[test]
    fn a_named_cluster_wins_and_the_operator_shares_it_by_default() {
        let choice = choose(&env(Some("/k/admin"), true, true));
        assert_eq!(
            choice,
            ClusterChoice::Given(Kubeconfigs {
                admin: "/k/admin".into(),
                operator: "/k/admin".into(),
                local: false,
            })
        );
    }

    #[test]
    fn the_operator_may_have_its_own_identity_on_a_named_cluster() {
        let mut env = env(Some("/k/admin"), false, false);
        env.operator_kubeconfig = Some("/k/operator".into());
        let ClusterChoice::Given(kubeconfigs) = choose(&env) else {
            panic!("a named cluster is used");
        };
        assert_eq!(kubeconfigs.operator, PathBuf::from("/k/operator"));
    }

    #[test]
    fn the_local_control_plane_is_started_when_the_script_exists() {
        assert!(matches!(
            choose(&env(None, true, false)),
            ClusterChoice::StartLocal { .. }
        ));
    }

    #[test]
    fn no_control_plane_skips_locally_and_fails_in_ci() {
        assert!(
            matches!(choose(&env(None, false, false)), ClusterChoice::Skip(why) if why.contains(KUBECONFIG_VAR))
        );
        assert!(matches!(
            choose(&env(None, false, true)),
            ClusterChoice::Fail(_)
        ));
    }
}
