//! The programs the end-to-end tests run: `kandle-operator`, `kandle-runtime`,
//! `kandle-kubelet` and `kubectl-kandle`, found beside the test executable
//! (`target/<profile>/`), the example model that `scripts/fetch-model.sh` provides and the
//! GGUF chat model that `scripts/fetch-llm.sh` provides.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Paths of the binaries under test.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// `kandle-operator`.
    pub operator: PathBuf,
    /// `kandle-runtime`.
    pub runtime: PathBuf,
    /// `kandle-kubelet`, the stand-in kubelet of this crate.
    pub kubelet: PathBuf,
    /// `kubectl-kandle`, the kubectl plugin.
    pub plugin: PathBuf,
}

impl Binaries {
    /// Finds the binaries in `profile_dir`, or says which cargo command builds them.
    pub fn locate(profile_dir: &Path) -> Result<Self, String> {
        let find = |name: &str| {
            let path = profile_dir.join(name);
            if path.is_file() {
                return Ok(path);
            }
            let release = if profile_dir.ends_with("release") {
                " --release"
            } else {
                ""
            };
            Err(format!(
                "{} does not exist: build the workspace's binaries first with \
                 `cargo build --workspace --bins{release}` (`cargo test --workspace` builds them too)",
                path.display()
            ))
        };
        Ok(Self {
            operator: find("kandle-operator")?,
            runtime: find("kandle-runtime")?,
            kubelet: find("kandle-kubelet")?,
            plugin: find("kubectl-kandle")?,
        })
    }
}

/// `target/<profile>/`: where cargo puts the binaries, the parent of the folder holding this
/// test executable (`target/<profile>/deps/<test>-<hash>`).
pub fn profile_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding the test executable: {e}"))?;
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("{} has no target/<profile>/ above it", exe.display()))
}

/// The GGUF file `scripts/fetch-llm.sh` provides: SmolLM2-135M-Instruct quantized to Q4_1.
pub const LLM_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Runs `scripts/fetch-model.sh` (idempotent: an existing download is kept) and returns the
/// model folder it prints.
pub fn fetch_model(workspace: &Path) -> Result<PathBuf, String> {
    fetched_folder(workspace, "scripts/fetch-model.sh", "config.json")
}

/// Runs `scripts/fetch-llm.sh` (idempotent too) and returns the folder it prints, which holds
/// [`LLM_FILE`].
pub fn fetch_llm(workspace: &Path) -> Result<PathBuf, String> {
    fetched_folder(workspace, "scripts/fetch-llm.sh", LLM_FILE)
}

/// Runs the fetch script `script` of `workspace` and returns the folder it prints last, which
/// must hold `expected`.
fn fetched_folder(workspace: &Path, script: &str, expected: &str) -> Result<PathBuf, String> {
    let script = workspace.join(script);
    let output = Command::new(&script)
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let folder = stdout
        .lines()
        .last()
        .map(|line| PathBuf::from(line.trim()))
        .ok_or_else(|| format!("{} printed no model folder", script.display()))?;
    if !folder.join(expected).is_file() {
        return Err(format!(
            "{} printed {}, which holds no {expected}",
            script.display(),
            folder.display()
        ));
    }
    Ok(folder)
}
