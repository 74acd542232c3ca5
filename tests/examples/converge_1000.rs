//! Benchmark: how long the operator takes to converge 1,000 ModelDeployments (half CPU, half
//! GPU) against the fake API server, and how much memory the operator and the fake need.
//!
//! Three processes, so each one's peak memory is its own: this orchestrator; a runner per mode
//! (`--run controller`: the full kube-runtime controller reacting to watches; `--run reconcile`:
//! the same reconcile driven directly, 16 at a time, as the reference); and, under each runner,
//! the fake API server (`--serve-fake`), which also plays the Deployment controller by marking
//! every Deployment available for its current generation.
//!
//! `cargo run --release -p kandle-tests --example converge_1000 [-- --count N]`

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use kandle_crds::{conditions, ModelDeployment};
use kandle_operator::controller::{self, Context};
use kandle_operator::testing::md;
use kandle_operator::OperatorConfig;
use kandle_tests::harness::{condition, observed_generation};
use kandle_tests::FakeApiServer;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{json, Value};

const NAMESPACE: &str = "bench";
const DEFAULT_COUNT: usize = 1000;
const CREATE_CONCURRENCY: usize = 32;
const RECONCILE_CONCURRENCY: usize = 16;
const POLL: Duration = Duration::from_millis(200);
const DEADLINE: Duration = Duration::from_secs(600);
const GPU_PRODUCTS: [&str; 3] = [
    "NVIDIA-H100-80GB-HBM3",
    "NVIDIA-A100-SXM4-80GB",
    "NVIDIA-L4",
];
/// Linux reports process CPU time in ticks of 1/100 s (USER_HZ) on every common platform.
const TICKS_PER_SECOND: f64 = 100.0;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count = match args.iter().position(|a| a == "--count") {
        Some(i) => args
            .get(i + 1)
            .context("--count needs a number")?
            .parse()
            .context("--count needs a number")?,
        None => DEFAULT_COUNT,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    match args.first().map(String::as_str) {
        Some("--serve-fake") => runtime.block_on(serve_fake()),
        Some("--run") => {
            let mode = args
                .get(1)
                .context("--run needs a mode: controller or reconcile")?;
            let report = runtime.block_on(run(mode, count))?;
            println!("{report}");
            Ok(())
        }
        _ => orchestrate(count),
    }
}

/// Runs each mode in its own process and prints their figures side by side.
fn orchestrate(count: usize) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating this benchmark")?;
    println!(
        "converging {count} ModelDeployments ({} CPU, {} GPU) against the fake API server",
        count - count / 2,
        count / 2
    );
    println!(
        "{:<11} {:>7} {:>6} {:>13} {:>9} {:>13} {:>9} {:>9} {:>13}",
        "mode",
        "wall s",
        "MDs/s",
        "operator MiB",
        "fake MiB",
        "operator cpu",
        "fake cpu",
        "requests",
        "MD writes/MD"
    );
    for mode in ["controller", "reconcile"] {
        let output = Command::new(&exe)
            .args(["--run", mode, "--count", &count.to_string()])
            .output()
            .context("running a mode")?;
        if !output.status.success() {
            bail!(
                "mode {mode} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
            .context("reading the mode's report")?;
        let wall = report["wall_s"].as_f64().unwrap_or(f64::NAN);
        println!(
            "{mode:<11} {wall:>7.2} {:>6.0} {:>13.1} {:>9.1} {:>12.1}s {:>8.1}s {:>9} {:>13.1}",
            count as f64 / wall,
            report["operator_peak_mib"].as_f64().unwrap_or(f64::NAN),
            report["fake_peak_mib"].as_f64().unwrap_or(f64::NAN),
            report["operator_cpu_s"].as_f64().unwrap_or(f64::NAN),
            report["fake_cpu_s"].as_f64().unwrap_or(f64::NAN),
            report["fake_requests"],
            report["md_changes"].as_f64().unwrap_or(f64::NAN) / count as f64,
        );
    }
    Ok(())
}

/// `VmHWM` (peak resident memory) of a process, in MiB.
fn peak_mib(pid: &str) -> anyhow::Result<f64> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading /proc status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM line")?;
    let kib: f64 = line
        .split_whitespace()
        .nth(1)
        .context("no VmHWM value")?
        .parse()
        .context("parsing VmHWM")?;
    Ok(kib / 1024.0)
}

/// User plus system CPU time of a process (all threads), in seconds.
fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading /proc stat")?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').context("malformed /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .context("short /proc stat")?
        .iter()
        .filter_map(|f| f.parse::<f64>().ok())
        .sum();
    Ok(ticks / TICKS_PER_SECOND)
}

/// The fake API server process: prints its URL, plays the Deployment controller, and on end of
/// standard input prints its request count and exits.
async fn serve_fake() -> anyhow::Result<()> {
    let server = Arc::new(FakeApiServer::start().await?);
    println!("{}", server.url());
    std::io::stdout().flush().context("flushing the URL")?;
    let simulated = Arc::clone(&server);
    tokio::spawn(async move {
        if let Err(e) = play_deployment_controller(&simulated).await {
            eprintln!("deployment controller stopped: {e:#}");
        }
    });
    tokio::task::spawn_blocking(|| std::io::stdin().lines().count())
        .await
        .context("waiting for the end of input")?;
    let log = server.request_log();
    let mut by_kind: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for r in &log {
        let plural = r
            .path
            .split('/')
            .rev()
            .find(|s| s.ends_with('s') && *s != "status")
            .unwrap_or("?");
        let sub = if r.path.ends_with("/status") {
            "/status"
        } else {
            ""
        };
        let watch = if r.query.contains("watch=") {
            " (watch)"
        } else {
            ""
        };
        *by_kind
            .entry(format!("{} {plural}{sub}{watch}", r.method))
            .or_default() += 1;
    }
    for (what, n) in &by_kind {
        eprintln!("{n:>8} {what}");
    }
    for (api_version, plural, n) in server.changes_per_kind().into_iter().filter(|c| c.2 > 0) {
        eprintln!("{n:>8} changes of {api_version} {plural}");
    }
    let md_changes = server
        .changes_per_kind()
        .into_iter()
        .find(|c| c.1 == "modeldeployments")
        .map_or(0, |c| c.2);
    println!(
        "{}",
        json!({ "requests": log.len(), "md_changes": md_changes })
    );
    Ok(())
}

/// Marks every Deployment available for its generation, as the Deployment controller and a
/// kubelet with instantly ready pods would. It learns of Deployments through a watch, like the
/// real one, but writes their status in-process so it never queues behind the operator's
/// requests.
async fn play_deployment_controller(server: &FakeApiServer) -> anyhow::Result<()> {
    let api: Api<Deployment> = Api::all(server.client()?);
    let mut changes = watcher::watcher(api, watcher::Config::default()).boxed();
    while let Some(event) = changes.try_next().await? {
        let (watcher::Event::Apply(d) | watcher::Event::InitApply(d)) = event else {
            continue;
        };
        let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = d.status.clone().unwrap_or_default();
        if status.observed_generation == d.metadata.generation
            && status.available_replicas.unwrap_or(0) == replicas
            && status.ready_replicas.unwrap_or(0) == replicas
        {
            continue;
        }
        let status = json!({"observedGeneration": d.metadata.generation, "replicas": replicas,
            "readyReplicas": replicas, "availableReplicas": replicas, "updatedReplicas": replicas});
        let ns = d.namespace().unwrap_or_default();
        server
            .set_status::<Deployment>(&ns, &d.name_any(), status)
            .with_context(|| format!("marking {} available", d.name_any()))?;
    }
    Ok(())
}

fn spawn_fake() -> anyhow::Result<(Child, String)> {
    let exe = std::env::current_exe().context("locating this benchmark")?;
    let mut child = Command::new(exe)
        .arg("--serve-fake")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the fake")?;
    let stdout = child.stdout.as_mut().context("the fake's stdout")?;
    let mut url = String::new();
    BufReader::new(stdout)
        .read_line(&mut url)
        .context("reading the fake's URL")?;
    Ok((child, url.trim().to_string()))
}

fn test_md(i: usize) -> ModelDeployment {
    let name = format!("model-{i:04}");
    let builder = md(&name).in_namespace(NAMESPACE);
    let builder = if i % 2 == 1 {
        builder.with_gpu(1, Some(GPU_PRODUCTS[i % GPU_PRODUCTS.len()]))
    } else {
        builder
    };
    builder.build()
}

fn converged(md: &ModelDeployment) -> bool {
    let is = |t: &str, s: &str| condition(md, t).is_some_and(|c| c.status == s);
    is(conditions::READY, "True")
        && is(conditions::PROGRESSING, "False")
        && observed_generation(md) == md.metadata.generation
}

async fn pending(api: &Api<ModelDeployment>) -> anyhow::Result<Vec<ModelDeployment>> {
    Ok(api
        .list(&ListParams::default())
        .await
        .context("listing ModelDeployments")?
        .items
        .into_iter()
        .filter(|m| !converged(m))
        .collect())
}

/// One mode: start a fake, create `count` ModelDeployments, converge them, report as JSON.
async fn run(mode: &str, count: usize) -> anyhow::Result<Value> {
    let (mut fake, url) = spawn_fake()?;
    let fake_pid = fake.id().to_string();
    let client = Client::try_from(kube::Config::new(url.parse().context("the fake's URL")?))
        .context("client")?;
    let api: Api<ModelDeployment> = Api::namespaced(client.clone(), NAMESPACE);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();

    let operator = match mode {
        "controller" => Some(tokio::spawn(controller::run(
            client.clone(),
            OperatorConfig::default(),
            async move {
                let _ = stopped.await;
            },
        ))),
        "reconcile" => None,
        other => bail!("unknown mode {other:?}: controller or reconcile"),
    };
    futures::stream::iter((0..count).map(test_md))
        .map(|m| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &m).await.map(|_| ()) }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .try_collect::<()>()
        .await
        .context("creating ModelDeployments")?;

    let ctx = Context::new(client.clone(), OperatorConfig::default());
    loop {
        let left = pending(&api).await?;
        if left.is_empty() {
            break;
        }
        if started.elapsed() > DEADLINE {
            bail!(
                "{} of {count} ModelDeployments not converged after {DEADLINE:?}",
                left.len()
            );
        }
        if operator.is_none() {
            futures::stream::iter(left)
                .map(|m| controller::reconcile(Arc::new(m), Arc::clone(&ctx)))
                .buffer_unordered(RECONCILE_CONCURRENCY)
                .try_collect::<Vec<_>>()
                .await
                .context("reconcile")?;
        } else {
            eprintln!(
                "{:>6.1}s {} pending",
                started.elapsed().as_secs_f64(),
                left.len()
            );
            tokio::time::sleep(POLL).await;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let (operator_peak, operator_cpu) = (peak_mib("self")?, cpu_seconds("self")?);
    let (fake_peak, fake_cpu) = (peak_mib(&fake_pid)?, cpu_seconds(&fake_pid)?);

    let _ = stop.send(());
    if let Some(task) = operator {
        task.await
            .context("controller task")?
            .context("controller")?;
    }
    drop(fake.stdin.take());
    let mut counts = String::new();
    if let Some(out) = fake.stdout.as_mut() {
        BufReader::new(out)
            .read_line(&mut counts)
            .context("reading the fake's request count")?;
    }
    let counts: Value = serde_json::from_str(&counts).context("parsing the fake's counts")?;
    fake.wait().context("waiting for the fake")?;
    Ok(json!({
        "mode": mode, "count": count, "wall_s": wall,
        "operator_peak_mib": operator_peak, "operator_cpu_s": operator_cpu,
        "fake_peak_mib": fake_peak, "fake_cpu_s": fake_cpu,
        "fake_requests": counts["requests"], "md_changes": counts["md_changes"],
    }))
}
