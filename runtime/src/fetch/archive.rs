//! `fetch http`: a tar archive from a URL, checked against its sha256 and unpacked into the
//! folder, or a single GGUF file (the URL path ends in `.gguf`), checked the same way and moved
//! into the folder under the path's last segment. The tar crate refuses entries that would land
//! outside the folder.

use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use reqwest::header::HeaderMap;
use reqwest::{Client, StatusCode, Url};
use serde_json::json;

use super::download::{http_download, HttpGet, Target};
use super::retry::{remove_if_present, RetryPolicy};
use super::verify::Expected;
use super::{finish, move_into_place, relative_path, HttpArgs};

/// Where the archive is downloaded (and resumed from) inside the destination.
const ARCHIVE: &str = ".kandle-archive";

/// Whether the archive is gzipped: its URL path ends in .gz or .tgz, whatever the query says.
pub fn is_gzip(url: &Url) -> bool {
    let path = url.path();
    path.ends_with(".gz") || path.ends_with(".tgz")
}

/// The file a URL names when it is a single GGUF file rather than an archive: the last segment
/// of its path, percent-decoded, whatever the query says.
pub fn single_file(url: &Url) -> anyhow::Result<Option<String>> {
    let segment = url.path().rsplit('/').next().unwrap_or_default();
    if !segment.to_ascii_lowercase().ends_with(".gguf") {
        return Ok(None);
    }
    let name = percent_decoded(segment)
        .with_context(|| format!("the file name {segment:?} in the URL is not UTF-8"))?;
    anyhow::ensure!(
        !name.contains('/') && relative_path(&name).is_ok(),
        "refusing the file name {name:?} from the URL: it is not a plain file name"
    );
    Ok(Some(name))
}

fn percent_decoded(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Fetches and checks the archive or single file, and unpacks or moves it into `args.dest`.
pub async fn fetch(client: &Client, args: &HttpArgs, policy: RetryPolicy) -> anyhow::Result<()> {
    let started = Instant::now();
    let url = Url::parse(&args.url).with_context(|| format!("bad --url {:?}", args.url))?;
    let single = single_file(&url)?;
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
        name: single.as_deref().unwrap_or("archive"),
        partial: &archive,
        expected: &expected,
    };
    tracing::info!("{}: downloading {shown}", target.name);
    http_download(client, &get, &target, policy).await?;

    if let Some(name) = single {
        move_into_place(&archive, &dest.join(&name)).await?;
        let record = json!({"source": "http", "url": shown, "sha256": sha256, "file": name});
        finish(dest, &record).await?;
        tracing::info!(
            "fetched {name} from {shown} in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
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
    fn a_gguf_url_is_a_single_file_named_by_its_last_segment() {
        let single = |url: &str| single_file(&Url::parse(url).unwrap()).unwrap();
        assert_eq!(
            single("https://huggingface.co/o/r/resolve/main/SmolLM2.Q4_1.gguf"),
            Some("SmolLM2.Q4_1.gguf".to_string())
        );
        assert_eq!(
            single("https://x/models/My%20Model.GGUF?X-Amz-Signature=abc"),
            Some("My Model.GGUF".to_string())
        );
        assert_eq!(
            single("https://x/a%2Bb%+F.gguf"),
            Some("a+b%+F.gguf".to_string())
        );
        assert_eq!(single("https://x/model.tar.gz"), None);
        assert_eq!(single("https://x/model.tar?name=a.gguf"), None);
        assert_eq!(single("https://x/download"), None);
    }

    #[test]
    fn a_gguf_name_that_would_leave_the_folder_is_refused() {
        for url in [
            "https://x/a%2F..%2Fb.gguf",
            "https://x/..%2Fm.gguf",
            "https://x/%FF.gguf",
        ] {
            assert!(single_file(&Url::parse(url).unwrap()).is_err(), "{url}");
        }
    }

    #[test]
    fn a_shown_url_has_no_signature() {
        let url = Url::parse("https://x/m.tgz?X-Amz-Signature=abc").unwrap();
        assert_eq!(without_query(&url), "https://x/m.tgz");
    }
}
