//! `fetch http`: a tar archive from a URL, checked against its sha256 and unpacked into the
//! folder. The tar crate refuses entries that would land outside it.

use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use reqwest::header::HeaderMap;
use reqwest::{Client, StatusCode, Url};
use serde_json::json;

use super::download::{http_download, HttpGet, Target};
use super::retry::{remove_if_present, RetryPolicy};
use super::verify::Expected;
use super::{finish, HttpArgs};

/// Where the archive is downloaded (and resumed from) inside the destination.
const ARCHIVE: &str = ".kandle-archive";

/// Whether the archive is gzipped: its URL path ends in .gz or .tgz, whatever the query says.
pub fn is_gzip(url: &Url) -> bool {
    let path = url.path();
    path.ends_with(".gz") || path.ends_with(".tgz")
}

/// Fetches, checks and unpacks the archive into `args.dest`.
pub async fn fetch(client: &Client, args: &HttpArgs, policy: RetryPolicy) -> anyhow::Result<()> {
    let started = Instant::now();
    let url = Url::parse(&args.url).with_context(|| format!("bad --url {:?}", args.url))?;
    let sha256 = args.sha256.trim();
    anyhow::ensure!(
        sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()),
        "--sha256 must be 64 hex digits, got {sha256:?}"
    );
    let dest = &args.common.dest;
    tokio::fs::create_dir_all(dest)
        .await
        .with_context(|| format!("creating {}", dest.display()))?;
    let archive = dest.join(ARCHIVE);
    let expected = Expected::checksum(sha256);
    let shown = without_query(&url);
    let refused = |status: StatusCode, _: &HeaderMap| format!("HTTP {status} from {shown}");
    let get = HttpGet {
        url: url.clone(),
        token: None,
        commit: None,
        refused: &refused,
    };
    let target = Target {
        name: "archive",
        partial: &archive,
        expected: &expected,
    };
    tracing::info!("archive: downloading {shown}");
    http_download(client, &get, &target, policy).await?;

    let gzip = is_gzip(&url);
    let (from, into) = (archive.clone(), dest.clone());
    let entries = tokio::task::spawn_blocking(move || unpack(&from, &into, gzip)).await??;
    remove_if_present(&archive)?;
    let record = json!({"source": "http", "url": shown, "sha256": sha256});
    finish(dest, &record).await?;
    tracing::info!(
        "unpacked {entries} entries from {shown} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn unpack(archive: &Path, dest: &Path, gzip: bool) -> anyhow::Result<usize> {
    let file = std::fs::File::open(archive)?;
    let reader: Box<dyn std::io::Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut tar = tar::Archive::new(reader);
    tar.set_preserve_permissions(false);
    let mut count = 0;
    for entry in tar.entries().context("reading the archive")? {
        let mut entry = entry.context("reading the archive")?;
        let name = entry.path()?.display().to_string();
        let unpacked = entry
            .unpack_in(dest)
            .with_context(|| format!("unpacking {name}"))?;
        anyhow::ensure!(
            unpacked,
            "the archive entry {name} would land outside the folder"
        );
        count += 1;
    }
    Ok(count)
}

/// The URL without its query, which may hold a signature.
fn without_query(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_told_by_the_path_not_the_query() {
        let gz = |url: &str| is_gzip(&Url::parse(url).unwrap());
        assert!(gz("https://x/model.tar.gz"));
        assert!(gz("https://x/model.tgz?X-Amz-Signature=abc"));
        assert!(!gz("https://x/model.tar?name=a.gz"));
    }

    #[test]
    fn a_shown_url_has_no_signature() {
        let url = Url::parse("https://x/m.tgz?X-Amz-Signature=abc").unwrap();
        assert_eq!(without_query(&url), "https://x/m.tgz");
    }
}
