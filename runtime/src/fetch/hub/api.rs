//! The Hub's API as the fetcher reads it: the repository listing, the URLs of files, the
//! files a set of patterns selects, and what a refusal means in words.

use anyhow::Context as _;
use glob::{MatchOptions, Pattern};
use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use crate::fetch::verify::Expected;

/// What is fetched without `--file`: configs, weights, tokenizers, the pooling module.
pub const DEFAULT_PATTERNS: &[&str] = &[
    "*.json",
    "*.safetensors",
    "*.txt",
    "*.model",
    "*.gguf",
    "1_Pooling/*",
];

#[derive(Debug, Deserialize)]
pub struct RepoInfo {
    pub sha: String,
    #[serde(default)]
    pub siblings: Vec<Sibling>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Sibling {
    pub rfilename: String,
    pub size: Option<u64>,
    #[serde(rename = "blobId")]
    pub blob_id: Option<String>,
    pub lfs: Option<Lfs>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Lfs {
    pub sha256: String,
    pub size: u64,
}

impl Sibling {
    pub fn expected(&self) -> anyhow::Result<Expected> {
        match (&self.lfs, &self.blob_id, self.size) {
            (Some(lfs), _, _) => Ok(Expected::lfs(&lfs.sha256, lfs.size)),
            (None, Some(blob_id), Some(size)) => Ok(Expected::git_blob(blob_id, size)),
            _ => anyhow::bail!(
                "the Hub listed {} without its size and hash (does the endpoint support ?blobs=true?)",
                self.rfilename
            ),
        }
    }
}

/// The repository being fetched, as error messages name it.
pub struct Repo<'a> {
    pub endpoint: &'a str,
    pub id: &'a str,
    pub revision: &'a str,
    pub has_token: bool,
}

/// The message for a request the Hub refused, from its status and `X-Error-Code`.
pub fn refusal(
    status: StatusCode,
    code: Option<&str>,
    message: Option<&str>,
    repo: &Repo<'_>,
    file: Option<&str>,
) -> String {
    let Repo {
        endpoint,
        id,
        revision,
        has_token,
    } = *repo;
    let number = status.as_u16();
    let gated = code == Some("GatedRepo") && matches!(number, 401 | 403);
    match code {
        Some("RevisionNotFound") => format!("revision \"{revision}\" not found in {id}"),
        Some("RepoNotFound") if has_token => {
            format!("repository {id} not found, or private and the token cannot read it")
        }
        Some("RepoNotFound") => format!(
            "repository {id} not found, or private and no token was given (set tokenSecretRef)"
        ),
        Some("EntryNotFound") => format!(
            "{} not found in {id} at revision \"{revision}\"",
            file.unwrap_or("the file")
        ),
        _ if (gated || number == 401) && has_token => format!(
            "{number}: the token cannot read the gated model {id} (request access at {endpoint}/{id})"
        ),
        _ if gated || number == 401 => format!(
            "{number}: {id} is gated or private and no token was given (set tokenSecretRef)"
        ),
        _ => {
            let what = file.map_or(format!("{id} at revision \"{revision}\""), |file| {
                format!("{file} of {id}")
            });
            let detail = message.map_or(String::new(), |message| format!(": {message}"));
            format!("HTTP {status} from {endpoint} for {what}{detail}")
        }
    }
}

pub fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// The files matching any of `patterns` (`*` stays within a folder); an error naming the
/// patterns and some of the repository's files when none does.
pub fn select<'s>(
    siblings: &'s [Sibling],
    patterns: &[String],
) -> Result<Vec<&'s Sibling>, String> {
    let compiled = patterns
        .iter()
        .map(|pattern| {
            Pattern::new(pattern).map_err(|err| format!("bad --file pattern {pattern:?}: {err}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let options = MatchOptions {
        require_literal_separator: true,
        ..MatchOptions::new()
    };
    let chosen: Vec<&Sibling> = siblings
        .iter()
        .filter(|sibling| {
            compiled
                .iter()
                .any(|pattern| pattern.matches_with(&sibling.rfilename, options))
        })
        .collect();
    if chosen.is_empty() {
        let names: Vec<&str> = siblings
            .iter()
            .take(20)
            .map(|s| s.rfilename.as_str())
            .collect();
        let more = siblings.len().saturating_sub(names.len());
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        return Err(format!(
            "no file matches {} (the repository has: {}{more})",
            patterns.join(", "),
            if names.is_empty() {
                "no files".to_string()
            } else {
                names.join(", ")
            }
        ));
    }
    Ok(chosen)
}

/// `{endpoint}/api/models/{repo}/revision/{revision}?blobs=true`.
pub fn info_url(endpoint: &str, repo: &str, revision: &str) -> anyhow::Result<Url> {
    let mut url = Url::parse(endpoint).with_context(|| format!("bad endpoint {endpoint:?}"))?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("bad endpoint {endpoint:?}"))?
        .pop_if_empty()
        .extend(["api", "models"])
        .extend(repo.split('/'))
        .extend(["revision", revision]);
    url.set_query(Some("blobs=true"));
    Ok(url)
}

/// `{endpoint}/{repo}/resolve/{commit}/{file}`.
pub fn resolve_url(endpoint: &str, repo: &str, commit: &str, file: &str) -> anyhow::Result<Url> {
    let mut url = Url::parse(endpoint).with_context(|| format!("bad endpoint {endpoint:?}"))?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("bad endpoint {endpoint:?}"))?
        .pop_if_empty()
        .extend(repo.split('/'))
        .extend(["resolve", commit])
        .extend(file.split('/'));
    Ok(url)
}
