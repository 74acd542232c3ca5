//! `fetch s3`: every object under a prefix of a bucket, through object_store (credentials
//! from the standard AWS environment: keys, session token, web identity, instance metadata).
//!
//! A resumed object is read with a ranged GET conditional on the ETag it was listed with, so
//! a changed object is never spliced onto old bytes; the ETag a partial file was started
//! with is kept beside it for the same reason across container restarts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::{
    BackoffConfig, ClientConfigKey, GetOptions, GetRange, ObjectMeta, ObjectStore, RetryConfig,
};
use serde_json::json;

use super::download::Target;
use super::progress::human_bytes;
use super::retry::{backoff, remove_if_present, with_retries, Failure, RetryPolicy};
use super::verify::Expected;
use super::{disk, finish, move_into_place, relative_path, S3Args, PARTIAL_DIR, SOURCE_RECORD};

/// How long one request may wait for its response headers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

fn store(args: &S3Args, policy: RetryPolicy) -> anyhow::Result<AmazonS3> {
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&args.bucket)
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: backoff(0),
                max_backoff: backoff(u32::MAX),
                base: 2.0,
            },
            max_retries: policy.retries as usize,
            retry_timeout: Duration::from_secs(600),
        })
        // object_store's 30 s timeout covers whole bodies; stalled bodies are caught per read.
        .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), "24h")
        .with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
            "30s",
        );
    if let Some(region) = &args.region {
        builder = builder.with_region(region);
    }
    if let Some(endpoint) = &args.endpoint {
        builder = builder.with_endpoint(endpoint);
        if endpoint.starts_with("http://") {
            builder = builder
                .with_allow_http(true)
                .with_virtual_hosted_style_request(false);
        }
    }
    builder.build().context("configuring the S3 client")
}

/// The message for a failed listing, from object_store's error text (its status and S3 code).
pub fn list_problem(error: &str, bucket: &str, prefix: &str, endpoint: Option<&str>) -> String {
    let at = endpoint.map_or(String::new(), |endpoint| format!(" at {endpoint}"));
    let has = |needles: &[&str]| needles.iter().any(|needle| error.contains(needle));
    if has(&["NoSuchBucket"]) {
        format!("bucket {bucket} not found{at}")
    } else if has(&[
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "403 Forbidden",
        "401 Unauthorized",
    ]) {
        format!(
            "access denied listing s3://{bucket}/{prefix}{at}: check the credentials \
             (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the pod's role): {error}"
        )
    } else {
        format!("listing s3://{bucket}/{prefix}{at} failed: {error}")
    }
}

struct Planned {
    meta: ObjectMeta,
    name: String,
    expected: Expected,
    path: PathBuf,
    partial: PathBuf,
}

/// Fetches every object under `args.prefix` into `args.dest`.
pub async fn fetch(args: &S3Args, policy: RetryPolicy) -> anyhow::Result<()> {
    let started = Instant::now();
    let store = store(args, policy)?;
    let folder = args.prefix.trim_matches('/');
    let listing = store
        .list(Some(&object_store::path::Path::from(folder)))
        .try_collect::<Vec<_>>()
        .await
        .map_err(|err| {
            let message = list_problem(
                &err.to_string(),
                &args.bucket,
                folder,
                args.endpoint.as_deref(),
            );
            anyhow::Error::msg(message)
        })?;
    anyhow::ensure!(
        !listing.is_empty(),
        "nothing under s3://{}/{folder}",
        args.bucket
    );

    let dest = &args.common.dest;
    tokio::fs::create_dir_all(dest)
        .await
        .with_context(|| format!("creating {}", dest.display()))?;
    let fetched_before = previous_etags(dest, args).await;
    let (mut todo, mut names, mut needed) = (Vec::new(), Vec::new(), 0);
    for meta in listing {
        let key = meta.location.as_ref();
        let name = key
            .strip_prefix(folder)
            .unwrap_or(key)
            .trim_start_matches('/')
            .to_string();
        let file = relative_path(&name)?;
        let planned = Planned {
            expected: Expected::size(meta.size),
            path: dest.join(&file),
            partial: dest.join(PARTIAL_DIR).join(&file),
            name,
            meta,
        };
        names.push(
            json!({"path": planned.name, "size": planned.meta.size, "etag": planned.meta.e_tag}),
        );
        let same = fetched_before.get(&planned.name) == Some(&planned.meta.e_tag);
        let size = std::fs::metadata(&planned.path).map_or(None, |m| Some(m.len()));
        if same && size == Some(planned.meta.size) {
            tracing::info!("{}: already here with the same ETag, skipped", planned.name);
            continue;
        }
        keep_partial_only_if_same_etag(&planned).await?;
        needed += planned.meta.size - target(&planned).resumable_bytes();
        todo.push(planned);
    }
    disk::ensure_space(dest, needed)?;

    let mut downloaded = 0;
    for planned in &todo {
        tracing::info!(
            "{}: downloading {}",
            planned.name,
            human_bytes(planned.meta.size)
        );
        let target = target(planned);
        with_retries(&planned.name, policy, Some(&planned.partial), || {
            attempt(&store, planned, &target)
        })
        .await?;
        move_into_place(&planned.partial, &planned.path).await?;
        downloaded += planned.meta.size;
    }
    let record = json!({
        "source": "s3",
        "bucket": args.bucket,
        "prefix": folder,
        "files": names,
    });
    finish(dest, &record).await?;
    tracing::info!(
        "fetched {} objects ({} downloaded, {} already here) in {:.1}s from s3://{}/{folder}",
        names.len(),
        human_bytes(downloaded),
        names.len() - todo.len(),
        started.elapsed().as_secs_f64(),
        args.bucket
    );
    Ok(())
}

fn target(planned: &Planned) -> Target<'_> {
    Target {
        name: &planned.name,
        partial: &planned.partial,
        expected: &planned.expected,
    }
}

async fn attempt(store: &AmazonS3, planned: &Planned, target: &Target<'_>) -> Result<(), Failure> {
    let have = target.resumable_bytes();
    if have > 0 && have == planned.meta.size {
        return target.verify_partial().await;
    }
    let options = GetOptions {
        if_match: planned.meta.e_tag.clone(),
        range: (have > 0).then_some(GetRange::Offset(have)),
        ..GetOptions::default()
    };
    let got = tokio::time::timeout(
        REQUEST_TIMEOUT,
        store.get_opts(&planned.meta.location, options),
    )
    .await
    .map_err(|_| Failure::Transient(format!("no answer in {}s", REQUEST_TIMEOUT.as_secs())))?;
    let result = got.map_err(|err| {
        Failure::Fatal(match err {
            object_store::Error::Precondition { .. } => anyhow::anyhow!(
                "{} changed in the bucket during the download; run again",
                planned.name
            ),
            err => anyhow::anyhow!("{}: {err}", planned.name),
        })
    })?;
    if result.range.start != have {
        remove_if_present(target.partial)?;
        return Err(Failure::Transient(format!(
            "asked for bytes {have}- and got {:?}; starting over",
            result.range
        )));
    }
    target.write(have, result.into_stream()).await
}

fn etag_path(partial: &Path) -> PathBuf {
    let mut name = partial.as_os_str().to_owned();
    name.push(".kandle-etag");
    PathBuf::from(name)
}

/// A partial file from an earlier run of another version of the object is dropped.
async fn keep_partial_only_if_same_etag(planned: &Planned) -> anyhow::Result<()> {
    let sidecar = etag_path(&planned.partial);
    let etag = planned.meta.e_tag.clone().unwrap_or_default();
    let recorded = tokio::fs::read_to_string(&sidecar).await.ok();
    if recorded.as_deref() != Some(etag.as_str()) {
        remove_if_present(&planned.partial)?;
        if let Some(parent) = sidecar.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::write(&sidecar, etag).await?;
    }
    Ok(())
}

/// The ETags a previous complete fetch of the same bucket and prefix recorded, by path.
async fn previous_etags(dest: &Path, args: &S3Args) -> HashMap<String, Option<String>> {
    let Ok(text) = tokio::fs::read_to_string(dest.join(SOURCE_RECORD)).await else {
        return HashMap::new();
    };
    let record: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let same_source = record["source"] == "s3"
        && record["bucket"] == args.bucket.as_str()
        && record["prefix"] == args.prefix.trim_matches('/');
    if !same_source {
        return HashMap::new();
    }
    let files = record["files"].as_array().cloned().unwrap_or_default();
    files
        .iter()
        .filter_map(|file| {
            let path = file["path"].as_str()?.to_string();
            Some((path, file["etag"].as_str().map(str::to_string)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUCKET: &str = "models";

    #[test]
    fn a_missing_bucket_is_named() {
        let error = "Generic S3 error: Error performing list request: Error performing GET \
                     http://127.0.0.1:9000/models?list-type=2 in 2ms - Server returned non-2xx \
                     status code: 404 Not Found: <Error><Code>NoSuchBucket</Code></Error>";
        assert_eq!(
            list_problem(error, BUCKET, "minilm", Some("http://127.0.0.1:9000")),
            "bucket models not found at http://127.0.0.1:9000"
        );
    }

    #[test]
    fn a_refusal_points_at_the_credentials() {
        let error = "status code: 403 Forbidden: <Error><Code>AccessDenied</Code></Error>";
        let message = list_problem(error, BUCKET, "minilm", None);
        assert!(
            message.starts_with("access denied listing s3://models/minilm: check the credentials"),
            "{message}"
        );
    }

    #[test]
    fn other_failures_keep_the_underlying_error() {
        let message = list_problem("connection refused", BUCKET, "minilm", None);
        assert_eq!(
            message,
            "listing s3://models/minilm failed: connection refused"
        );
    }

    #[test]
    fn the_etag_of_a_partial_sits_beside_it() {
        assert_eq!(
            etag_path(Path::new("/m/.kandle-partial/1_Pooling/config.json")),
            Path::new("/m/.kandle-partial/1_Pooling/config.json.kandle-etag")
        );
    }
}
