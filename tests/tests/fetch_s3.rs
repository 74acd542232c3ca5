//! `kandle-runtime fetch s3` against moto's S3 server: every object under the prefix lands in
//! the folder, a partial file of another version of an object is not spliced in, and a missing
//! bucket or an empty prefix is said plainly. Needs moto (`python3 -m pip install
//! 'moto[server]'`): without it the tests say why and pass, except under CI, where they fail.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use kandle_tests::fetch_cli::{
    assert_same_files, files_under, model_dir, run_fetch, source_record, Fetched,
};
use tempfile::TempDir;

const BUCKET: &str = "models";
const PREFIX: &str = "minilm/";
const WEIGHTS: &str = "model.safetensors";
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
const CREDENTIALS: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
];

/// A moto S3 server on a free port, killed when dropped.
struct Moto {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Moto {
    /// Starts moto and waits until it answers; `None` (the reason printed) when moto is not
    /// installed and this is not CI.
    async fn start(test: &str, work: &Path) -> Option<Moto> {
        match Self::try_start(work).await {
            Ok(moto) => Some(moto),
            Err(why) if std::env::var_os("CI").is_some() => {
                panic!("{test}: moto's S3 server is needed under CI: {why}")
            }
            Err(why) => {
                eprintln!(
                    "skipping {test}: {why} (install it with `python3 -m pip install 'moto[server]'`)"
                );
                None
            }
        }
    }

    async fn try_start(work: &Path) -> Result<Moto, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| format!("finding a free port: {e}"))?
            .port();
        let log = work.join("moto.log");
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("running python3: {e}"))?;
        let mut moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        moto.wait_until_it_answers().await?;
        Ok(moto)
    }

    /// Polls until moto answers HTTP; an exit or the deadline is an error at once.
    async fn wait_until_it_answers(&mut self) -> Result<(), String> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    return Err(format!("moto exited ({status}): {}", self.log_text()))
                }
                Ok(None) => {}
                Err(e) => return Err(format!("watching moto: {e}")),
            }
            if client.get(&self.url).send().await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "moto did not answer within {STARTUP_DEADLINE:?}: {}",
                    self.log_text()
                ));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Creates a bucket and puts `files` of `dir` under `prefix`; returns the ETags by file.
    async fn seed(&self, bucket: &str, prefix: &str, dir: &Path, files: &[String]) -> Vec<String> {
        let client = reqwest::Client::new();
        let created = client.put(format!("{}/{bucket}", self.url)).send().await;
        assert!(
            created.is_ok_and(|r| r.status().is_success()),
            "creating {bucket}"
        );
        let mut etags = Vec::new();
        for file in files {
            let body = std::fs::read(dir.join(file)).expect("a model file");
            let put = client
                .put(format!("{}/{bucket}/{prefix}{file}", self.url))
                .body(body)
                .send()
                .await
                .expect("putting an object");
            assert!(
                put.status().is_success(),
                "putting {file}: {}",
                put.status()
            );
            let etag = put.headers().get("etag").expect("an ETag");
            etags.push(etag.to_str().expect("an ASCII ETag").to_string());
        }
        etags
    }

    async fn fetch(&self, tmp: &TempDir, bucket: &str, prefix: &str) -> Fetched {
        let dest = tmp.path().join("model");
        // The kubelet creates the file; the fetcher only writes into it.
        let termination_log = tmp.path().join("termination-log");
        std::fs::write(&termination_log, "").expect("an empty termination log");
        let args = [
            "s3",
            "--endpoint",
            &self.url,
            "--bucket",
            bucket,
            "--prefix",
            prefix,
            "--region",
            "us-east-1",
            "--dest",
            dest.to_str().unwrap(),
            "--termination-log",
            termination_log.to_str().unwrap(),
        ];
        run_fetch(&args, &CREDENTIALS).await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn termination_message(tmp: &TempDir) -> String {
    std::fs::read_to_string(tmp.path().join("termination-log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_objects_under_the_prefix_land_in_the_folder() {
    let tmp = TempDir::new().unwrap();
    let Some(moto) = Moto::start("s3 fetch", tmp.path()).await else {
        return;
    };
    let source = model_dir();
    let files = files_under(&source);
    moto.seed(BUCKET, PREFIX, &source, &files).await;
    moto.seed("other", "", &source, &["config.json".to_string()])
        .await;
    moto.seed(BUCKET, "elsewhere/", &source, &["vocab.txt".to_string()])
        .await;

    moto.fetch(&tmp, BUCKET, PREFIX).await.expect_success();

    let dest = tmp.path().join("model");
    let mut landed = files_under(&dest);
    landed.retain(|f| f != ".kandle-source.json");
    assert_eq!(landed, files, "exactly the objects under {PREFIX}");
    assert_same_files(&dest, &source, &files);
    let record = source_record(&dest);
    assert_eq!(record["source"], "s3");
    assert_eq!(record["bucket"], BUCKET);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_file_is_resumed_and_one_of_another_version_is_started_over() {
    let tmp = TempDir::new().unwrap();
    let Some(moto) = Moto::start("s3 resume", tmp.path()).await else {
        return;
    };
    let source = model_dir();
    let files = vec![WEIGHTS.to_string(), "config.json".to_string()];
    let etags = moto.seed(BUCKET, PREFIX, &source, &files).await;
    let weights = std::fs::read(source.join(WEIGHTS)).unwrap();
    let partials = tmp.path().join("model/.kandle-partial");
    std::fs::create_dir_all(&partials).unwrap();
    // The first half of the weights, as a cut download left it.
    std::fs::write(partials.join(WEIGHTS), &weights[..weights.len() / 2]).unwrap();
    std::fs::write(partials.join(format!("{WEIGHTS}.kandle-etag")), &etags[0]).unwrap();
    // Bytes of an older version of config.json: spliced, they would corrupt it.
    std::fs::write(partials.join("config.json"), b"{\"old\": true").unwrap();
    std::fs::write(partials.join("config.json.kandle-etag"), "\"older\"").unwrap();

    let fetched = moto.fetch(&tmp, BUCKET, PREFIX).await;

    fetched.expect_success();
    assert!(
        fetched.log.contains(&format!("{WEIGHTS}: resuming at ")),
        "{}",
        fetched.log
    );
    assert_same_files(&tmp.path().join("model"), &source, &files);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_named() {
    let tmp = TempDir::new().unwrap();
    let Some(moto) = Moto::start("s3 missing bucket", tmp.path()).await else {
        return;
    };

    moto.fetch(&tmp, "no-such-bucket", PREFIX)
        .await
        .expect_failure();

    assert_eq!(
        termination_message(&tmp),
        format!("bucket no-such-bucket not found at {}", moto.url)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_prefix_says_nothing_is_there() {
    let tmp = TempDir::new().unwrap();
    let Some(moto) = Moto::start("s3 empty prefix", tmp.path()).await else {
        return;
    };
    let source = model_dir();
    moto.seed(BUCKET, PREFIX, &source, &["config.json".to_string()])
        .await;

    moto.fetch(&tmp, BUCKET, "absent/").await.expect_failure();

    assert_eq!(
        termination_message(&tmp),
        "nothing under s3://models/absent"
    );
}
