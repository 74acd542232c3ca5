//! Startup, readiness, metrics and shutdown as an operator and its probes see them.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{model_dir, wait_until, TestServer, SERVED_NAME};
use kandle_runtime::Config;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_models_and_metrics_describe_the_served_model() {
    let server = TestServer::start(|_| {}).await;
    assert_eq!(server.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(server.get("/v2/health/live").await.0, StatusCode::OK);
    assert_eq!(server.get("/v2/health/ready").await.0, StatusCode::OK);
    assert_eq!(
        server
            .get(&format!("/v2/models/{SERVED_NAME}/ready"))
            .await
            .0,
        StatusCode::OK
    );

    let (status, models) = server.get("/v1/models").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(models["data"][0]["id"], SERVED_NAME);

    let (status, meta) = server.get(&format!("/v2/models/{SERVED_NAME}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(meta["versions"], json!(["test"]));
    assert_eq!(meta["outputs"][0]["shape"], json!([-1, 384]));
    assert_eq!(server.get("/v2").await.1["name"], "kandle-runtime");
    assert_eq!(server.get("/no/such/route").await.0, StatusCode::NOT_FOUND);

    server.embed(json!(["one", "two"])).await;
    let metrics = server.get_text("/metrics").await;
    for expected in [
        r#"kandle_requests_total{route="/v1/embeddings",code="200"} 1"#,
        r#"kandle_request_duration_seconds_count{route="/v1/embeddings"} 1"#,
        r#"kandle_model_info{model="all-minilm-l6-v2",version="test",device="cpu",dtype="f32"} 1"#,
        "kandle_batch_size_count",
        "kandle_batch_tokens_sum",
        "kandle_inference_duration_seconds_count",
        "kandle_tokens_total",
        "kandle_model_load_seconds",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected:?} in\n{metrics}"
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_model_folder_fails_fast_naming_the_problem() {
    let dir = std::env::temp_dir().join(format!("kandle-broken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["config.json", "model.safetensors", "modules.json"] {
        std::fs::copy(model_dir().join(file), dir.join(file)).unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        kandle_runtime::serve(Config::for_model(&dir), listener, std::future::pending()),
    )
    .await
    .expect("serve gives up instead of hanging");
    let message = format!("{:#}", result.unwrap_err());
    assert!(message.contains("tokenizer.json"), "{message}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// The real binary: SIGTERM lets in-flight requests finish, then the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kandle-runtime"))
        .args(["--host", "127.0.0.1", "--port", "0", "--log-format", "json"])
        .arg("--model-dir")
        .arg(model_dir())
        .args(["--served-name", SERVED_NAME, "--drain-timeout", "60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the binary starts");

    // The server logs its address as JSON; port 0 lets the OS pick a free one.
    let stdout = child.stdout.take().unwrap();
    let (address_tx, address_rx) = std::sync::mpsc::channel();
    let logs = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(event) = serde_json::from_str::<Value>(&line) {
                if let Some(address) = event["address"].as_str() {
                    let _ = address_tx.send(address.to_owned());
                }
            }
            lines.push(line);
        }
        lines
    });
    let address = address_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server logs its address");
    let url = format!("http://{address}");
    let client = reqwest::Client::new();
    let status = |path: &'static str| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            match client.get(format!("{url}{path}")).send().await {
                Ok(response) => Some(response.status()),
                Err(_) => None,
            }
        }
    };
    wait_until(Duration::from_secs(60), "readiness", || async {
        status("/readyz").await == Some(StatusCode::OK)
    })
    .await;

    let heavy: Vec<String> = (0..48)
        .map(|i| format!("in flight {i} ").repeat(25))
        .collect();
    let requests: Vec<_> = (0..3)
        .map(|_| {
            let request = client
                .post(format!("{url}/v1/embeddings"))
                .json(&json!({"input": heavy}))
                .send();
            tokio::spawn(request)
        })
        .collect();
    wait_until(
        Duration::from_secs(30),
        "all three requests in flight",
        || async {
            let metrics = client.get(format!("{url}/metrics")).send().await;
            let text = match metrics {
                Ok(response) => response.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            let in_flight = text
                .lines()
                .find_map(|l| l.strip_prefix("kandle_requests_in_flight "))
                .and_then(|v| v.trim().parse::<f64>().ok());
            in_flight >= Some(3.0)
        },
    )
    .await;

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());

    for request in requests {
        let response = request
            .await
            .unwrap()
            .expect("an in-flight request is answered");
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["data"].as_array().unwrap().len(), heavy.len());
    }
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "exit status {exit}");
    let lines = logs.join().unwrap();
    assert!(lines.iter().any(|l| l.contains("draining")), "{lines:?}");
    assert!(
        status("/healthz").await.is_none(),
        "the port is closed after exit"
    );
}
