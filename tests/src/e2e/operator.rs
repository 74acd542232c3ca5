//! The real `kandle-operator` binary as a child process of the test: scoped to the test's
//! namespace, running as the operator's identity, logging to a file the test reads back.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The runtime image the operator puts in pods; the stand-in kubelet maps it to the local
/// `kandle-runtime` binary.
pub const RUNTIME_IMAGE: &str = "ghcr.io/kandle-dev/kandle-runtime:0.1.0";
const TERMINATE_DEADLINE: Duration = Duration::from_secs(30);
// Variables the operator reads that must come from the test, not from the caller's shell.
const INHERITED_SETTINGS: &[&str] = &[
    "KUBECONFIG",
    "KANDLE_NAMESPACE",
    "KANDLE_RUNTIME_IMAGE",
    "KANDLE_METRICS_PORT",
    "KANDLE_LEADER_ELECTION",
    "KANDLE_LOG_FORMAT",
    "POD_NAMESPACE",
    "POD_NAME",
];

/// How to start one operator.
#[derive(Clone, Debug)]
pub struct OperatorLaunch {
    /// The `kandle-operator` binary.
    pub binary: PathBuf,
    /// The identity it runs as.
    pub kubeconfig: PathBuf,
    /// The namespace it watches.
    pub namespace: String,
    /// Where its output goes.
    pub log_path: PathBuf,
    /// Flags after the harness's own (`--leader-election --identity a`, ...).
    pub extra_args: Vec<String>,
}

/// A running `kandle-operator`; killed when dropped.
#[derive(Debug)]
pub struct OperatorProcess {
    // Behind a lock so that `&self` can ask whether it still runs.
    child: Mutex<Child>,
    log_path: PathBuf,
    metrics_port: u16,
    stopped_by_test: bool,
}

impl OperatorProcess {
    /// Starts the operator with `--namespace`, a free `--metrics-port` and the runtime image
    /// the stand-in kubelet knows, then `extra_args`.
    pub fn spawn(launch: &OperatorLaunch) -> anyhow::Result<Self> {
        let metrics_port = free_port()?;
        if let Some(dir) = launch.log_path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let log = File::create(&launch.log_path)
            .with_context(|| format!("creating {}", launch.log_path.display()))?;
        let mut command = Command::new(&launch.binary);
        for name in INHERITED_SETTINGS {
            command.env_remove(name);
        }
        let child = command
            .env("KUBECONFIG", &launch.kubeconfig)
            .env("RUST_LOG", "info,kandle_operator=debug")
            .env("NO_COLOR", "1")
            .arg("--namespace")
            .arg(&launch.namespace)
            .arg("--metrics-port")
            .arg(metrics_port.to_string())
            .arg("--runtime-image")
            .arg(RUNTIME_IMAGE)
            .args(&launch.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", launch.binary.display()))?;
        Ok(Self {
            child: Mutex::new(child),
            log_path: launch.log_path.clone(),
            metrics_port,
            stopped_by_test: false,
        })
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child().id()
    }

    fn child(&self) -> std::sync::MutexGuard<'_, Child> {
        self.child
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The port of its `/metrics`, `/healthz` and `/readyz`.
    pub fn metrics_port(&self) -> u16 {
        self.metrics_port
    }

    /// Where its output goes.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Everything it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }

    /// Whether it still runs (`false` once it exited, whatever the cause).
    pub fn is_running(&self) -> bool {
        matches!(self.child().try_wait(), Ok(None))
    }

    /// How it ended, if it exited without the test stopping it (a crash, a failed start).
    pub fn unexpected_exit(&self) -> Option<ExitStatus> {
        if self.stopped_by_test {
            return None;
        }
        self.child().try_wait().ok().flatten()
    }

    /// Kills it at once (SIGKILL), as a node failure would, and reaps it.
    pub fn kill(&mut self) {
        self.stopped_by_test = true;
        let mut child = self.child();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Asks it to stop (SIGTERM) and waits for it to exit.
    pub async fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        self.stopped_by_test = true;
        if let Some(status) = self.child().try_wait()? {
            return Ok(status);
        }
        let pid = Pid::from_raw(i32::try_from(self.pid())?);
        kill(pid, Signal::SIGTERM).context("sending SIGTERM to the operator")?;
        crate::wait::until(
            "the operator to exit after SIGTERM",
            TERMINATE_DEADLINE,
            || {
                let exited = self.child().try_wait();
                async move { Ok(exited?) }
            },
        )
        .await
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP port free right now on all interfaces.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("0.0.0.0:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The last `lines` lines of `text`, each cut to a readable length.
pub fn tail(text: &str, lines: usize) -> String {
    const LINE_CHARS: usize = 600;
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|line| match line.char_indices().nth(LINE_CHARS) {
            Some((cut, _)) => format!("{} [...]", &line[..cut]),
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}
