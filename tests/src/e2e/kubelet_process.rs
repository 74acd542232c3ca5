//! The stand-in kubelet (`kandle-kubelet`), one per test binary: it runs the pods bound to the
//! e2e nodes as local processes. Its stdin is a pipe this process holds and never writes to;
//! with `--exit-on-stdin-eof` it exits, stopping its pods' processes, when the test binary does.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use anyhow::Context as _;

use super::operator::RUNTIME_IMAGE;

/// How the tests run the stand-in kubelet.
#[derive(Clone, Debug)]
pub struct KubeletLaunch {
    /// `kandle-kubelet`.
    pub binary: PathBuf,
    /// Its identity (admin: it writes pod status and deletes pods).
    pub kubeconfig: PathBuf,
    /// `kandle-runtime`, what the runtime image runs.
    pub runtime: PathBuf,
    /// The folder behind the `models` claim (the examples use its subPath
    /// `all-MiniLM-L6-v2`).
    pub models: PathBuf,
    /// Its work folder; container logs land in `<ns>/<pod>/<container>.log` there.
    pub work_dir: PathBuf,
    /// Its own output.
    pub log_path: PathBuf,
}

/// The runtime image without its tag: the kubelet maps image references by prefix.
fn runtime_image_prefix() -> &'static str {
    RUNTIME_IMAGE
        .rsplit_once(':')
        .map_or(RUNTIME_IMAGE, |(name, _)| name)
}

/// The kubelet's command line.
pub fn kubelet_args(launch: &KubeletLaunch) -> Vec<String> {
    let path = |p: &Path| p.display().to_string();
    vec![
        "--kubeconfig".into(),
        path(&launch.kubeconfig),
        "--image".into(),
        format!("{}={}", runtime_image_prefix(), path(&launch.runtime)),
        "--shell-image".into(),
        "busybox".into(),
        "--claim".into(),
        format!("models={}", path(&launch.models)),
        // One thread per runtime: several pods share a small machine.
        "--env".into(),
        "KANDLE_THREADS=1".into(),
        "--probe-period-ms".into(),
        "300".into(),
        "--work-dir".into(),
        path(&launch.work_dir),
        "--exit-on-stdin-eof".into(),
    ]
}

/// A running stand-in kubelet.
#[derive(Debug)]
pub struct KubeletProcess {
    child: Child,
    // Held open so that the kubelet lives exactly as long as this process.
    _stdin: ChildStdin,
    log_path: PathBuf,
}

impl KubeletProcess {
    /// Starts it.
    pub fn spawn(launch: &KubeletLaunch) -> anyhow::Result<Self> {
        for dir in [Some(launch.work_dir.as_path()), launch.log_path.parent()]
            .into_iter()
            .flatten()
        {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let log = File::create(&launch.log_path)
            .with_context(|| format!("creating {}", launch.log_path.display()))?;
        let mut child = Command::new(&launch.binary)
            .args(kubelet_args(launch))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", launch.binary.display()))?;
        let stdin = child.stdin.take().context("the kubelet's stdin")?;
        Ok(Self {
            child,
            _stdin: stdin,
            log_path: launch.log_path.clone(),
        })
    }

    /// Its output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `Err` with its exit status and last output if it is no longer running.
    pub fn check_running(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "kandle-kubelet exited ({status}); its last output ({}):\n{}",
                self.log_path.display(),
                super::operator::tail(&self.log(), 30)
            )),
            Err(e) => Err(format!("checking on kandle-kubelet: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_image_runs_the_local_runtime_binary() {
        let launch = KubeletLaunch {
            binary: "/t/kandle-kubelet".into(),
            kubeconfig: "/k/admin.kubeconfig".into(),
            runtime: "/t/kandle-runtime".into(),
            models: "/m".into(),
            work_dir: "/w".into(),
            log_path: "/w/kubelet.log".into(),
        };
        let args = kubelet_args(&launch);
        let after = |flag: &str| {
            let at = args.iter().position(|a| a == flag).unwrap();
            args[at + 1].clone()
        };
        assert_eq!(
            after("--image"),
            "ghcr.io/kandle-dev/kandle-runtime=/t/kandle-runtime"
        );
        assert_eq!(after("--claim"), "models=/m");
        assert!(args.contains(&"--exit-on-stdin-eof".to_string()));
    }
}
