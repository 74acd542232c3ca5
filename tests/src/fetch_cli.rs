//! Running `kandle-runtime fetch` as a pod's init container does, for the fetch tests: the
//! built binary, the example model folders to serve from (the embedding model and the GGUF
//! chat model), and comparisons of what landed.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use crate::e2e::binaries::{fetch_llm, fetch_model, profile_dir};
use crate::e2e::cluster::workspace;

/// How long one fetch of the example model may take.
pub const FETCH_DEADLINE: Duration = Duration::from_secs(180);

/// `target/<profile>/kandle-runtime`; panics saying how to build it.
pub fn runtime_binary() -> PathBuf {
    let binary = profile_dir()
        .unwrap_or_else(|why| panic!("{why}"))
        .join("kandle-runtime");
    assert!(
        binary.is_file(),
        "{} does not exist: build it first with `cargo build -p kandle-runtime`",
        binary.display()
    );
    binary
}

/// The example model folder `scripts/fetch-model.sh` provides.
pub fn model_dir() -> PathBuf {
    fetch_model(&workspace()).unwrap_or_else(|why| panic!("the example model: {why}"))
}

/// The folder holding the GGUF chat model `scripts/fetch-llm.sh` provides
/// ([`crate::e2e::binaries::LLM_FILE`]).
pub fn llm_dir() -> PathBuf {
    fetch_llm(&workspace()).unwrap_or_else(|why| panic!("the chat model: {why}"))
}

/// How a fetch ended.
#[derive(Debug)]
pub struct Fetched {
    pub status: ExitStatus,
    /// stdout then stderr.
    pub log: String,
}

impl Fetched {
    /// Panics with the log unless the fetch succeeded.
    pub fn expect_success(&self) {
        assert!(
            self.status.success(),
            "the fetch failed ({}):\n{}",
            self.status,
            self.log
        );
    }

    /// Panics with the log unless the fetch failed with exit code 1.
    pub fn expect_failure(&self) {
        assert_eq!(
            self.status.code(),
            Some(1),
            "the fetch did not fail with 1:\n{}",
            self.log
        );
    }
}

/// Runs `kandle-runtime fetch ARGS` with `env` added to an environment free of Hub and AWS
/// settings, within [`FETCH_DEADLINE`].
pub async fn run_fetch(args: &[&str], env: &[(&str, &str)]) -> Fetched {
    let mut command = tokio::process::Command::new(runtime_binary());
    command.arg("fetch").args(args).env("RUST_LOG", "info");
    for (key, _) in std::env::vars() {
        if key.starts_with("AWS_") || key.starts_with("HF_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    command.stdin(Stdio::null()).kill_on_drop(true);
    let output = tokio::time::timeout(FETCH_DEADLINE, command.output())
        .await
        .unwrap_or_else(|_| panic!("kandle-runtime fetch {args:?} ran past {FETCH_DEADLINE:?}"))
        .expect("running kandle-runtime");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Fetched {
        status: output.status,
        log,
    }
}

/// The files under `dir`, as sorted `/`-separated relative paths.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path.strip_prefix(root).expect("walked from the root");
                out.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files);
    files.sort();
    files
}

/// Panics unless each of `files` is byte-equal in `fetched` and `source`.
pub fn assert_same_files(fetched: &Path, source: &Path, files: &[String]) {
    for file in files {
        let got = std::fs::read(fetched.join(file))
            .unwrap_or_else(|e| panic!("{file} was not fetched: {e}"));
        let want = std::fs::read(source.join(file)).expect("the source file");
        assert!(
            got == want,
            "{file} differs from the source ({} vs {} bytes)",
            got.len(),
            want.len()
        );
    }
}

/// `.kandle-source.json` of a fetched folder.
pub fn source_record(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join(".kandle-source.json"))
        .expect("the fetch wrote .kandle-source.json");
    serde_json::from_str(&text).expect(".kandle-source.json is JSON")
}
