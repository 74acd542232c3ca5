//! `kandle-runtime fetch`: fills a model folder before the server starts, as the init container
//! of a kandle pod.
//!
//! ```text
//! fetch hf | s3 | http -> DIR/.kandle-partial/<file> (resumed, retried) -> size and hash checked
//!   -> DIR/<file> -> DIR/.kandle-source.json; on failure: the message in the termination log
//! ```
//!
//! Every source downloads into a partial file that a later attempt, or a restarted container
//! (an emptyDir outlives it), resumes with a ranged request, and renames only checked files
//! into place. [`run`] does the work; [`report_failure`] tells Kubernetes why it failed.

mod archive;
mod disk;
mod download;
mod hub;
mod progress;
mod retry;
mod s3;
mod verify;

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

/// Where partial downloads wait, inside the destination folder.
const PARTIAL_DIR: &str = ".kandle-partial";
/// What was fetched, written last.
const SOURCE_RECORD: &str = ".kandle-source.json";
/// Kubernetes keeps at most this much of a termination message.
const TERMINATION_MESSAGE_MAX: usize = 4096;

/// Fills a model folder from the Hugging Face Hub, S3, or the URL of an archive or a GGUF file,
/// resuming partial downloads and checking every file before it is moved into place.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kandle-runtime fetch",
    bin_name = "kandle-runtime fetch",
    version
)]
pub struct FetchCommand {
    #[command(subcommand)]
    pub source: Source,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Source {
    /// A model repository from the Hugging Face Hub, at a revision. Token: env HF_TOKEN.
    Hf(HubArgs),
    /// Every object under a prefix of an S3 bucket. Credentials: the standard AWS environment.
    S3(S3Args),
    /// A tar archive (gzipped when the URL ends in .gz or .tgz), or a single .gguf file, checked
    /// by its sha256.
    Http(HttpArgs),
}

/// Flags every source takes.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Folder to fill (created if missing).
    #[arg(long, value_name = "DIR")]
    pub dest: PathBuf,

    /// Attempts after the first, per file, on connection errors, cut downloads, 5xx and 429.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub retries: u32,

    /// Where the error message goes on failure; Kubernetes shows it in the pod's status.
    #[arg(long, default_value = "/dev/termination-log", value_name = "PATH")]
    pub termination_log: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct HubArgs {
    /// Repository id, e.g. sentence-transformers/all-MiniLM-L6-v2.
    #[arg(long, value_name = "ORG/NAME")]
    pub repo: String,

    /// Branch, tag or commit; resolved to a commit once, and every file is fetched at it.
    #[arg(long, value_name = "REV")]
    pub revision: String,

    /// Glob of the files to fetch (repeatable; `*` stays within a folder). Default: *.json,
    /// *.safetensors, *.txt, *.model, *.gguf and 1_Pooling/*.
    #[arg(long = "file", value_name = "PATTERN")]
    pub files: Vec<String>,

    /// The Hub, or a mirror speaking its API.
    #[arg(
        long,
        env = "HF_ENDPOINT",
        default_value = "https://huggingface.co",
        value_name = "URL"
    )]
    pub endpoint: String,

    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Clone, Args)]
pub struct S3Args {
    #[arg(long, value_name = "BUCKET")]
    pub bucket: String,

    /// Folder in the bucket; each object below it lands at its path below this folder.
    #[arg(long, default_value = "", value_name = "PREFIX")]
    pub prefix: String,

    /// S3-compatible endpoint; an http:// one is allowed and addressed path-style.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,

    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,

    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// The archive's URL, or a single file's when its path ends in .gguf.
    #[arg(long, value_name = "URL")]
    pub url: String,

    /// Expected sha256 of the download, hex.
    #[arg(long, value_name = "HEX")]
    pub sha256: String,

    #[command(flatten)]
    pub common: CommonArgs,
}

impl FetchCommand {
    pub fn common(&self) -> &CommonArgs {
        match &self.source {
            Source::Hf(args) => &args.common,
            Source::S3(args) => &args.common,
            Source::Http(args) => &args.common,
        }
    }
}

/// Runs the fetch. The Hub token comes from `HF_TOKEN`, S3 credentials from the AWS
/// environment.
pub async fn run(command: &FetchCommand) -> anyhow::Result<()> {
    let policy = retry::RetryPolicy::new(command.common().retries);
    match &command.source {
        Source::Hf(args) => {
            let token = std::env::var("HF_TOKEN")
                .ok()
                .filter(|t| !t.trim().is_empty());
            hub::fetch(
                &http_client()?,
                args,
                token.as_deref().map(str::trim),
                policy,
            )
            .await
        }
        Source::S3(args) => s3::fetch(args, policy).await,
        Source::Http(args) => archive::fetch(&http_client()?, args, policy).await,
    }
}

/// Logs the failure and writes it, as one paragraph, to the termination log when it exists (the
/// kubelet creates it; outside a pod nothing is created at that path).
pub fn report_failure(err: &anyhow::Error, termination_log: &Path) {
    let message = one_paragraph(&format!("{err:#}"));
    tracing::error!("error: {message}");
    let mut end = message.len().min(TERMINATION_MESSAGE_MAX);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let written = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(termination_log)
        .and_then(|mut file| std::io::Write::write_all(&mut file, &message.as_bytes()[..end]));
    if let Err(write_err) = written {
        tracing::debug!(
            "cannot write the termination log {}: {write_err}",
            termination_log.display()
        );
    }
}

fn one_paragraph(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("kandle-runtime/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(download::READ_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(10))
        .build()
        .context("building the HTTP client")
}

/// A file name from a listing as a path inside the destination; names that would leave it,
/// or land in the partial folder, are refused.
fn relative_path(name: &str) -> anyhow::Result<PathBuf> {
    let path = Path::new(name);
    let inside = !name.is_empty()
        && path.components().all(|c| matches!(c, Component::Normal(_)))
        && !path.starts_with(PARTIAL_DIR);
    anyhow::ensure!(
        inside,
        "refusing the file name {name:?}: it is not a plain relative path"
    );
    Ok(path.to_path_buf())
}

/// Renames a checked partial file to its place (same filesystem: atomic).
async fn move_into_place(partial: &Path, path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    tokio::fs::rename(partial, path)
        .await
        .with_context(|| format!("moving {} to {}", partial.display(), path.display()))
}

/// Removes the partial folder and records what the folder now holds.
async fn finish(dest: &Path, record: &serde_json::Value) -> anyhow::Result<()> {
    match tokio::fs::remove_dir_all(dest.join(PARTIAL_DIR)).await {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            return Err(err).context("removing the partial downloads folder")
        }
        _ => {}
    }
    let path = dest.join(SOURCE_RECORD);
    let staged = dest.join(format!("{SOURCE_RECORD}.new"));
    tokio::fs::write(&staged, format!("{record:#}\n")).await?;
    tokio::fs::rename(&staged, &path)
        .await
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_stay_inside_the_folder() {
        assert!(relative_path("1_Pooling/config.json").is_ok());
        for name in [
            "",
            "../etc/passwd",
            "/etc/passwd",
            "a/../../b",
            ".kandle-partial/x",
        ] {
            assert!(relative_path(name).is_err(), "{name:?} accepted");
        }
    }

    #[test]
    fn a_message_becomes_one_paragraph() {
        assert_eq!(one_paragraph("a: b\n  c\td "), "a: b c d");
    }

    #[test]
    fn the_flags_parse_with_their_defaults() {
        let command = FetchCommand::try_parse_from([
            "fetch",
            "hf",
            "--repo",
            "org/name",
            "--revision",
            "main",
            "--dest",
            "/models",
        ])
        .unwrap();
        assert_eq!(command.common().retries, 5);
        assert_eq!(
            command.common().termination_log,
            Path::new("/dev/termination-log")
        );
        let Source::Hf(args) = &command.source else {
            panic!("not hf: {command:?}");
        };
        assert!(args.files.is_empty());
    }
}
