//! `fetch hf`: a model repository from the Hugging Face Hub (or a mirror speaking its API).
//!
//! ```text
//! GET {endpoint}/api/models/{repo}/revision/{rev}?blobs=true -> commit, files, sizes, hashes
//! GET {endpoint}/{repo}/resolve/{commit}/{file} (redirects to the CDN for LFS files)
//!   -> DIR/.kandle-partial/{file}, resumed with Range -> size and hash checked -> DIR/{file}
//! ```
//!
//! The `hf-hub` crate is deliberately not used: it lays files out as its cache of symlinks
//! into a blob store, which is not the plain folder the server reads, and it checks no hashes.
//! Here every file is checked against the hash the Hub lists for the resolved commit: the
//! content's sha256 for LFS files, Git's blob sha1 for the others.

mod api;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use reqwest::header::{HeaderMap, AUTHORIZATION};
use reqwest::{Client, StatusCode};
use serde_json::json;

use super::download::{error_chain, http_download, is_transient, HttpGet, Target};
use super::progress::human_bytes;
use super::retry::{with_retries, Failure, RetryPolicy};
use super::verify::{is_complete, Expected};
use super::{disk, finish, move_into_place, relative_path, HubArgs, PARTIAL_DIR};
use api::{
    header, info_url, refusal, resolve_url, select, Repo, RepoInfo, Sibling, DEFAULT_PATTERNS,
};

async fn repo_info(
    client: &Client,
    repo: &Repo<'_>,
    token: Option<&str>,
    policy: RetryPolicy,
) -> anyhow::Result<RepoInfo> {
    let url = info_url(repo.endpoint, repo.id, repo.revision)?;
    with_retries(
        &format!("{} at {}", repo.id, repo.revision),
        policy,
        None,
        || async {
            let mut request = client.get(url.clone());
            if let Some(token) = token {
                request = request.header(AUTHORIZATION, format!("Bearer {token}"));
            }
            let response = request
                .send()
                .await
                .map_err(|err| Failure::Transient(error_chain(&err)))?;
            let status = response.status();
            if status.is_success() {
                return response.json::<RepoInfo>().await.map_err(|err| {
                    Failure::Fatal(anyhow::anyhow!(
                        "unexpected answer from {url}: {}",
                        error_chain(&err)
                    ))
                });
            }
            if is_transient(status) {
                return Err(Failure::Transient(format!("HTTP {status} from {url}")));
            }
            let headers = response.headers();
            let message = refusal(
                status,
                header(headers, "x-error-code"),
                header(headers, "x-error-message"),
                repo,
                None,
            );
            Err(Failure::Fatal(anyhow::Error::msg(message)))
        },
    )
    .await
}

struct Planned<'s> {
    sibling: &'s Sibling,
    expected: Expected,
    path: PathBuf,
    partial: PathBuf,
}

/// Fetches the repository's matching files into `args.dest`.
pub async fn fetch(
    client: &Client,
    args: &HubArgs,
    token: Option<&str>,
    policy: RetryPolicy,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let endpoint = args.endpoint.trim_end_matches('/');
    let repo = Repo {
        endpoint,
        id: &args.repo,
        revision: &args.revision,
        has_token: token.is_some(),
    };
    let info = repo_info(client, &repo, token, policy).await?;
    tracing::info!("{} at {} is commit {}", repo.id, repo.revision, info.sha);
    let patterns = if args.files.is_empty() {
        DEFAULT_PATTERNS.iter().map(|p| p.to_string()).collect()
    } else {
        args.files.clone()
    };
    let chosen = select(&info.siblings, &patterns).map_err(anyhow::Error::msg)?;

    let dest = &args.common.dest;
    tokio::fs::create_dir_all(dest)
        .await
        .with_context(|| format!("creating {}", dest.display()))?;
    let mut todo = Vec::new();
    let mut needed = 0;
    for sibling in &chosen {
        let file = relative_path(&sibling.rfilename)?;
        let planned = Planned {
            sibling,
            expected: sibling.expected()?,
            path: dest.join(&file),
            partial: dest.join(PARTIAL_DIR).join(&file),
        };
        let (path, expected) = (planned.path.clone(), planned.expected.clone());
        if tokio::task::spawn_blocking(move || is_complete(&path, &expected)).await? {
            tracing::info!(
                "{}: already here with the right hash, skipped",
                sibling.rfilename
            );
            continue;
        }
        let size = planned.expected.size.unwrap_or(0);
        let target = target(&planned);
        needed += size - target.resumable_bytes();
        todo.push(planned);
    }
    disk::ensure_space(dest, needed)?;

    let mut downloaded = 0;
    for planned in &todo {
        let name = planned.sibling.rfilename.as_str();
        tracing::info!(
            "{name}: downloading {}",
            human_bytes(planned.expected.size.unwrap_or(0))
        );
        let refused = |status: StatusCode, headers: &HeaderMap| {
            refusal(
                status,
                header(headers, "x-error-code"),
                header(headers, "x-error-message"),
                &repo,
                Some(name),
            )
        };
        let get = HttpGet {
            url: resolve_url(endpoint, repo.id, &info.sha, name)?,
            token,
            commit: Some(&info.sha),
            refused: &refused,
        };
        http_download(client, &get, &target(planned), policy).await?;
        move_into_place(&planned.partial, &planned.path).await?;
        downloaded += planned.expected.size.unwrap_or(0);
    }

    let files: Vec<&str> = chosen.iter().map(|s| s.rfilename.as_str()).collect();
    let record = json!({
        "source": "huggingFace",
        "repo": repo.id,
        "revision": repo.revision,
        "commit": info.sha,
        "files": files,
    });
    finish(dest, &record).await?;
    tracing::info!(
        "fetched {} files ({} downloaded, {} already here) in {:.1}s from {} at commit {}",
        chosen.len(),
        human_bytes(downloaded),
        chosen.len() - todo.len(),
        started.elapsed().as_secs_f64(),
        repo.id,
        info.sha
    );
    Ok(())
}

fn target<'p>(planned: &'p Planned<'_>) -> Target<'p> {
    Target {
        name: &planned.sibling.rfilename,
        partial: &planned.partial,
        expected: &planned.expected,
    }
}

#[cfg(test)]
mod tests;
