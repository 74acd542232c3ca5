//! `kandle-runtime fetch http` against a local server holding a tar.gz of the example model and
//! a single GGUF file: a checked archive is unpacked in place, a checked GGUF file lands in the
//! folder under its name, a wrong checksum stops the fetch.

use std::sync::OnceLock;

use axum::routing::get;
use axum::Router;
use kandle_tests::fetch_cli::{assert_same_files, files_under, model_dir, run_fetch};
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

/// The example model folder as a tar.gz, built once per test binary.
fn archive() -> &'static [u8] {
    static ARCHIVE: OnceLock<Vec<u8>> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        let gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gzip);
        tar.append_dir_all(".", model_dir())
            .expect("archiving the model");
        tar.into_inner()
            .and_then(|gzip| gzip.finish())
            .expect("finishing the archive")
    })
}

/// Serves the archive at `/models/minilm.tgz`; returns the URL, with a query as signed URLs
/// have.
async fn serve_archive() -> String {
    let app = Router::new().route("/models/minilm.tgz", get(|| async { archive() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/models/minilm.tgz?X-Amz-Signature=abc")
}

/// Stands in for a GGUF file: the fetcher checks its hash, never its content.
fn gguf() -> &'static [u8] {
    static GGUF: OnceLock<Vec<u8>> = OnceLock::new();
    GGUF.get_or_init(|| {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend((0..300_000u32).map(|i| (i % 251) as u8));
        bytes
    })
}

/// Serves the GGUF file where the Hub's `resolve` would; returns the URL, with a query.
async fn serve_gguf() -> String {
    let path = "/org/model-GGUF/resolve/main/SmolLM2-135M-Instruct.Q4_1.gguf";
    let app = Router::new().route(path, get(|| async { gguf() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}{path}?download=true")
}

async fn fetch(url: &str, sha256: &str, tmp: &TempDir) -> kandle_tests::fetch_cli::Fetched {
    let dest = tmp.path().join("model");
    // The kubelet creates the file; the fetcher only writes into it.
    let termination_log = tmp.path().join("termination-log");
    std::fs::write(&termination_log, "").expect("an empty termination log");
    let args = [
        "http",
        "--url",
        url,
        "--sha256",
        sha256,
        "--dest",
        dest.to_str().unwrap(),
        "--termination-log",
        termination_log.to_str().unwrap(),
    ];
    run_fetch(&args, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checked_archive_is_unpacked_into_the_folder() {
    let url = serve_archive().await;
    let sha256 = hex::encode(Sha256::digest(archive()));
    let tmp = TempDir::new().unwrap();

    fetch(&url, &sha256, &tmp).await.expect_success();

    let dest = tmp.path().join("model");
    let source = model_dir();
    let files = files_under(&source);
    assert_same_files(&dest, &source, &files);
    assert!(
        !dest.join(".kandle-archive").exists(),
        "the archive is deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_checksum_stops_the_fetch_before_anything_is_unpacked() {
    let url = serve_archive().await;
    let wrong = "0".repeat(64);
    let tmp = TempDir::new().unwrap();

    let fetched = fetch(&url, &wrong, &tmp).await;

    fetched.expect_failure();
    let message = std::fs::read_to_string(tmp.path().join("termination-log")).unwrap();
    assert!(
        message.contains(&format!("checksum mismatch: expected {wrong}, got ")),
        "{message}"
    );
    assert!(
        !tmp.path().join("model/config.json").exists(),
        "unpacked anyway"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checked_gguf_file_lands_in_the_folder_under_its_name() {
    let url = serve_gguf().await;
    let sha256 = hex::encode(Sha256::digest(gguf()));
    let tmp = TempDir::new().unwrap();

    fetch(&url, &sha256, &tmp).await.expect_success();

    let dest = tmp.path().join("model");
    let fetched = std::fs::read(dest.join("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    assert!(fetched == gguf(), "the file's bytes differ");
    assert!(!dest.join(".kandle-archive").exists(), "no partial left");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dest.join(".kandle-source.json")).unwrap())
            .unwrap();
    assert_eq!(record["file"], "SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(record["sha256"], sha256.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gguf_file_with_a_wrong_checksum_never_lands() {
    let url = serve_gguf().await;
    let wrong = "0".repeat(64);
    let tmp = TempDir::new().unwrap();

    fetch(&url, &wrong, &tmp).await.expect_failure();

    let message = std::fs::read_to_string(tmp.path().join("termination-log")).unwrap();
    assert!(message.contains("checksum mismatch"), "{message}");
    assert!(
        !tmp.path()
            .join("model/SmolLM2-135M-Instruct.Q4_1.gguf")
            .exists(),
        "moved into place anyway"
    );
}
