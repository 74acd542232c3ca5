//! Resumable downloads into a partial file: a ranged request picks up where an earlier attempt
//! (or an earlier run of the container) stopped, the bytes already there are hashed first, and
//! the file is checked against its expected size and hash before anyone renames it.

use std::path::Path;
use std::time::Duration;

use futures::{Stream, StreamExt};
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_RANGE, RANGE};
use reqwest::{Client, StatusCode, Url};
use tokio::io::AsyncWriteExt;

use super::progress::{human_bytes, Progress};
use super::retry::{remove_if_present, with_retries, Failure, RetryPolicy};
use super::verify::{hash_file, Expected};

/// The longest wait for the next bytes of a body before the attempt counts as cut.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A file being downloaded: what to call it, where its bytes go, what it must be.
pub struct Target<'a> {
    pub name: &'a str,
    pub partial: &'a Path,
    pub expected: &'a Expected,
}

impl Target<'_> {
    /// Bytes already in the partial file.
    pub fn resumable_bytes(&self) -> u64 {
        let have = std::fs::metadata(self.partial).map_or(0, |m| m.len());
        match self.expected.size {
            Some(size) if have > size => 0,
            _ => have,
        }
    }

    /// Checks a partial that already holds the whole file.
    pub async fn verify_partial(&self) -> Result<(), Failure> {
        let path = self.partial.to_path_buf();
        let mut hasher = self.expected.hasher();
        let (size, hasher) = tokio::task::spawn_blocking(move || {
            hash_file(&path, &mut hasher).map(|size| (size, hasher))
        })
        .await
        .map_err(|err| Failure::Fatal(err.into()))??;
        self.expected.check(size, hasher).map_err(Failure::Mismatch)
    }

    /// Appends `body` to the partial file after its first `resume_from` bytes (0: starts
    /// over), then checks the whole file.
    pub async fn write<S, B, E>(&self, resume_from: u64, body: S) -> Result<(), Failure>
    where
        S: Stream<Item = Result<B, E>> + Unpin,
        B: AsRef<[u8]>,
        E: std::error::Error + 'static,
    {
        if let Some(parent) = self.partial.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let mut hasher = self.expected.hasher();
        let file = if resume_from > 0 {
            let path = self.partial.to_path_buf();
            hasher =
                tokio::task::spawn_blocking(move || hash_file(&path, &mut hasher).map(|_| hasher))
                    .await
                    .map_err(|err| Failure::Fatal(err.into()))??;
            tokio::fs::OpenOptions::new()
                .append(true)
                .open(self.partial)
                .await?
        } else {
            tokio::fs::File::create(self.partial).await?
        };
        let total = self.expected.size;
        if resume_from > 0 {
            tracing::info!(
                "{}: resuming at {} of {}",
                self.name,
                human_bytes(resume_from),
                total.map_or("an unknown size".into(), human_bytes)
            );
        }
        let mut progress = Progress::new(self.name, total, resume_from);
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let mut body = body;
        let cut = loop {
            let chunk = match tokio::time::timeout(READ_TIMEOUT, body.next()).await {
                Ok(Some(Ok(chunk))) => chunk,
                Ok(None) => break None,
                Ok(Some(Err(err))) => break Some(error_chain(&err)),
                Err(_) => break Some(format!("no data for {}s", READ_TIMEOUT.as_secs())),
            };
            let chunk = chunk.as_ref();
            hasher.update(chunk);
            out.write_all(chunk).await?;
            progress.advance(chunk.len() as u64);
        };
        // Flushed even when cut: the next attempt resumes after every byte that arrived.
        out.flush().await?;
        out.into_inner().sync_all().await?;
        if let Some(why) = cut {
            return Err(Failure::Transient(format!(
                "the download was cut after {}: {why}",
                human_bytes(progress.done())
            )));
        }
        if let Some(size) = total.filter(|&size| progress.done() < size) {
            return Err(Failure::Transient(format!(
                "the body ended after {} of {}",
                human_bytes(progress.done()),
                human_bytes(size)
            )));
        }
        self.expected
            .check(progress.done(), hasher)
            .map_err(Failure::Mismatch)?;
        tracing::info!("{}", progress.line());
        Ok(())
    }
}

/// One HTTP GET of a file, repeated by each attempt.
pub struct HttpGet<'a> {
    pub url: Url,
    /// Sent as a bearer token (reqwest drops it when a redirect leaves the host).
    pub token: Option<&'a str>,
    /// The commit an `X-Repo-Commit` header must name when the server sends one.
    pub commit: Option<&'a str>,
    /// The message for a refusal that no retry can fix (a 4xx other than 408 and 429).
    pub refused: &'a (dyn Fn(StatusCode, &HeaderMap) -> String + Sync),
}

/// Whether a status is worth another try.
pub fn is_transient(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

/// Downloads `get` into `target.partial`, resuming and retrying as `policy` says.
pub async fn http_download(
    client: &Client,
    get: &HttpGet<'_>,
    target: &Target<'_>,
    policy: RetryPolicy,
) -> anyhow::Result<()> {
    with_retries(target.name, policy, Some(target.partial), || {
        attempt(client, get, target)
    })
    .await
}

async fn attempt(client: &Client, get: &HttpGet<'_>, target: &Target<'_>) -> Result<(), Failure> {
    let have = target.resumable_bytes();
    if have > 0 && target.expected.size == Some(have) {
        return target.verify_partial().await;
    }
    let mut request = client.get(get.url.clone());
    if let Some(token) = get.token {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    if have > 0 {
        request = request.header(RANGE, format!("bytes={have}-"));
    }
    let response = request
        .send()
        .await
        .map_err(|err| Failure::Transient(error_chain(&err)))?;
    let status = response.status();
    let resume_from = match status {
        StatusCode::PARTIAL_CONTENT => {
            let start = response
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|value| value.to_str().ok())
                .and_then(range_start);
            if start != Some(have) {
                remove_if_present(target.partial)?;
                return Err(Failure::Transient(format!(
                    "asked for bytes {have}- and got the range {start:?}; starting over"
                )));
            }
            have
        }
        StatusCode::OK => 0,
        StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => return target.verify_partial().await,
        status if is_transient(status) => {
            return Err(Failure::Transient(format!("HTTP {status} from the server")))
        }
        status => {
            return Err(Failure::Fatal(anyhow::anyhow!(
                "{}",
                (get.refused)(status, response.headers())
            )))
        }
    };
    if let Some(commit) = get.commit {
        let sent = response
            .headers()
            .get("x-repo-commit")
            .and_then(|value| value.to_str().ok());
        if let Some(sent) = sent.filter(|sent| sent != &commit) {
            return Err(Failure::Fatal(anyhow::anyhow!(
                "{}: the server sent it from commit {sent}, expected {commit}",
                target.name
            )));
        }
    }
    target.write(resume_from, response.bytes_stream()).await
}

/// The first byte of `bytes N-M/T`.
fn range_start(content_range: &str) -> Option<u64> {
    let range = content_range.trim().strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

/// An error and its causes on one line: reqwest's own message rarely says what went wrong.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_content_range_gives_where_the_body_starts() {
        assert_eq!(range_start("bytes 1000-1999/2000"), Some(1000));
        assert_eq!(range_start("bytes */2000"), None);
    }

    #[test]
    fn server_errors_and_throttling_are_transient_refusals_are_not() {
        for status in [500, 502, 503, 429, 408] {
            assert!(is_transient(StatusCode::from_u16(status).unwrap()));
        }
        for status in [400, 401, 403, 404, 416] {
            assert!(!is_transient(StatusCode::from_u16(status).unwrap()));
        }
    }
}
