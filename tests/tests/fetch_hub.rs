//! `kandle-runtime fetch hf` against a local Hub serving the example model: what lands in the
//! folder, how a cut connection and a restarted container resume, and what a user reads when
//! the revision, the token or the bytes are wrong.

use std::path::Path;

use kandle_tests::fetch_cli::{
    assert_same_files, files_under, model_dir, run_fetch, source_record, Fetched,
};
use kandle_tests::hub_server::{HubRepo, HubServer};
use tempfile::TempDir;

const REPO: &str = "sentence-transformers/all-MiniLM-L6-v2";
const COMMIT: &str = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf";
const WEIGHTS: &str = "model.safetensors";

fn minilm() -> HubRepo {
    HubRepo::from_dir(REPO, COMMIT, &model_dir()).with_branch("main")
}

/// `fetch hf` of the example repository into `<tmp>/model`, with `extra` flags.
async fn fetch(hub: &HubServer, tmp: &TempDir, revision: &str, extra: &[&str]) -> Fetched {
    fetch_with_env(hub, tmp, revision, extra, &[]).await
}

async fn fetch_with_env(
    hub: &HubServer,
    tmp: &TempDir,
    revision: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Fetched {
    let dest = tmp.path().join("model");
    // The kubelet creates the file; the fetcher only writes into it.
    let termination_log = tmp.path().join("termination-log");
    std::fs::write(&termination_log, "").expect("an empty termination log");
    let url = hub.url();
    let mut args = vec![
        "hf",
        "--repo",
        REPO,
        "--revision",
        revision,
        "--endpoint",
        &url,
        "--dest",
        dest.to_str().expect("a UTF-8 temp path"),
        "--termination-log",
        termination_log.to_str().expect("a UTF-8 temp path"),
    ];
    args.extend_from_slice(extra);
    run_fetch(&args, env).await
}

fn termination_message(tmp: &TempDir) -> String {
    std::fs::read_to_string(tmp.path().join("termination-log")).unwrap_or_default()
}

/// The first byte of every ranged request for the weights on the CDN.
fn resumed_offsets(hub: &HubServer) -> Vec<u64> {
    hub.requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/lfs-cdn/"))
        .filter_map(|r| {
            r.range
                .as_deref()?
                .strip_prefix("bytes=")?
                .strip_suffix('-')?
                .parse()
                .ok()
        })
        .collect()
}

fn partial(tmp: &TempDir) -> std::path::PathBuf {
    tmp.path().join("model/.kandle-partial").join(WEIGHTS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_fetch_brings_the_default_files_byte_for_byte_and_records_the_commit() {
    let hub = HubServer::start(vec![minilm()]).await;
    let tmp = TempDir::new().unwrap();

    fetch(&hub, &tmp, COMMIT, &[]).await.expect_success();

    let dest = tmp.path().join("model");
    let source = model_dir();
    let expected: Vec<String> = files_under(&source)
        .into_iter()
        .filter(|f| f != "README.md" && f != ".gitattributes")
        .collect();
    let mut landed = files_under(&dest);
    landed.retain(|f| f != ".kandle-source.json");
    assert_eq!(
        landed, expected,
        "the default patterns: configs, weights, tokenizer, pooling"
    );
    assert_same_files(&dest, &source, &expected);
    assert!(
        !dest.join(".kandle-partial").exists(),
        "the partial folder is removed"
    );
    let record = source_record(&dest);
    assert_eq!(record["source"], "huggingFace");
    assert_eq!(record["repo"], REPO);
    assert_eq!(record["commit"], COMMIT);
    assert!(
        hub.requests()
            .iter()
            .any(|r| r.path.starts_with("/lfs-cdn/")),
        "the weights came through the LFS redirect"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_resolves_to_its_commit_and_files_are_fetched_at_that_commit() {
    let main_commit = "0123456789abcdef0123456789abcdef01234567";
    let pinned = HubRepo::from_dir(REPO, COMMIT, &model_dir());
    let main = HubRepo::from_dir(REPO, main_commit, &model_dir()).with_branch("main");
    let hub = HubServer::start(vec![pinned, main]).await;
    let tmp = TempDir::new().unwrap();

    fetch(&hub, &tmp, "main", &["--file", "*.json"])
        .await
        .expect_success();

    let record = source_record(&tmp.path().join("model"));
    assert_eq!(record["revision"], "main");
    assert_eq!(record["commit"], main_commit);
    let resolves: Vec<String> = hub
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/resolve/"))
        .map(|r| r.path)
        .collect();
    assert!(!resolves.is_empty());
    for path in resolves {
        assert!(
            path.contains(&format!("/resolve/{main_commit}/")),
            "{path} is not at the branch's commit"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_mid_file_is_resumed_where_it_stopped() {
    let hub = HubServer::start(vec![minilm()]).await;
    hub.cut_after(WEIGHTS, 20 << 20, 1);
    let tmp = TempDir::new().unwrap();

    fetch(&hub, &tmp, COMMIT, &["--file", WEIGHTS])
        .await
        .expect_success();

    let offsets = resumed_offsets(&hub);
    assert!(
        offsets.iter().any(|&offset| offset > 0),
        "no ranged request resumed the weights: {:?}",
        hub.requests()
    );
    assert_same_files(
        &tmp.path().join("model"),
        &model_dir(),
        &[WEIGHTS.to_string()],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_that_gave_up_resumes_from_its_partial_file_on_the_next_run() {
    let hub = HubServer::start(vec![minilm()]).await;
    hub.cut_after(WEIGHTS, 20 << 20, 1);
    let tmp = TempDir::new().unwrap();

    let first = fetch(&hub, &tmp, COMMIT, &["--file", WEIGHTS, "--retries", "0"]).await;
    first.expect_failure();
    assert!(termination_message(&tmp).contains(WEIGHTS), "{}", first.log);
    let kept = std::fs::metadata(partial(&tmp)).map_or(0, |m| m.len());
    assert!(kept > 0, "the cut run left no partial file");
    assert!(!tmp.path().join("model").join(WEIGHTS).exists());

    fetch(&hub, &tmp, COMMIT, &["--file", WEIGHTS])
        .await
        .expect_success();

    assert_eq!(
        resumed_offsets(&hub),
        [kept],
        "the second run asks for the rest only"
    );
    assert_same_files(
        &tmp.path().join("model"),
        &model_dir(),
        &[WEIGHTS.to_string()],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_file_is_caught_by_its_hash_and_never_lands() {
    let hub = HubServer::start(vec![minilm()]).await;
    hub.corrupt(WEIGHTS);
    let tmp = TempDir::new().unwrap();

    let fetched = fetch(&hub, &tmp, COMMIT, &["--file", WEIGHTS]).await;

    fetched.expect_failure();
    let message = termination_message(&tmp);
    assert!(
        message.starts_with(&format!("{WEIGHTS}: sha256 mismatch: expected ")),
        "{message}"
    );
    assert!(
        fetched.log.contains(&message),
        "the log has the message too:\n{}",
        fetched.log
    );
    assert!(
        !tmp.path().join("model").join(WEIGHTS).exists(),
        "a corrupt file landed"
    );
    assert!(!partial(&tmp).exists(), "the corrupt partial is deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_revision_is_named_in_the_termination_log() {
    let hub = HubServer::start(vec![minilm()]).await;
    let tmp = TempDir::new().unwrap();

    fetch(&hub, &tmp, "v9", &[]).await.expect_failure();

    assert_eq!(
        termination_message(&tmp),
        format!("revision \"v9\" not found in {REPO}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_repository_may_be_a_private_one() {
    let hub = HubServer::start(Vec::new()).await;
    let tmp = TempDir::new().unwrap();

    fetch(&hub, &tmp, "main", &[]).await.expect_failure();

    assert_eq!(
        termination_message(&tmp),
        format!(
            "repository {REPO} not found, or private and no token was given (set tokenSecretRef)"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_repository_needs_the_right_token() {
    let hub = HubServer::start(vec![minilm().gated("hf_right")]).await;
    let only_config = ["--file", "config.json"];

    let tmp = TempDir::new().unwrap();
    fetch(&hub, &tmp, "main", &only_config)
        .await
        .expect_failure();
    assert_eq!(
        termination_message(&tmp),
        format!("401: {REPO} is gated or private and no token was given (set tokenSecretRef)")
    );

    let tmp = TempDir::new().unwrap();
    let wrong = [("HF_TOKEN", "hf_wrong")];
    fetch_with_env(&hub, &tmp, "main", &only_config, &wrong)
        .await
        .expect_failure();
    assert_eq!(
        termination_message(&tmp),
        format!(
            "401: the token cannot read the gated model {REPO} (request access at {}/{REPO})",
            hub.url()
        )
    );

    let tmp = TempDir::new().unwrap();
    let right = [("HF_TOKEN", "hf_right")];
    fetch_with_env(&hub, &tmp, "main", &only_config, &right)
        .await
        .expect_success();
    assert!(tmp.path().join("model/config.json").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_fetch_into_a_complete_folder_downloads_nothing() {
    let hub = HubServer::start(vec![minilm()]).await;
    let tmp = TempDir::new().unwrap();
    fetch(&hub, &tmp, COMMIT, &[]).await.expect_success();
    let before = hub.requests().len();

    let again = fetch(&hub, &tmp, COMMIT, &[]).await;

    again.expect_success();
    let downloads: Vec<_> = hub.requests()[before..]
        .iter()
        .filter(|r| !r.path.starts_with("/api/"))
        .cloned()
        .collect();
    assert!(downloads.is_empty(), "downloaded again: {downloads:?}");
    assert!(again.log.contains("skipped"), "{}", again.log);
    assert!(Path::new(&tmp.path().join("model").join(WEIGHTS)).is_file());
}
