//! Benchmark on the real control plane of `../shared/k8s`: 1,000 ModelDeployments (half CPU,
//! half GPU) exist before the `kandle-operator` binary starts, as its own ServiceAccount with
//! the RBAC of `manifests/`; the nodes hold far fewer pods than the fleet asks for, so most pods
//! wait unschedulable. One run prints, side by side:
//!
//! - the time from the operator's start until every ModelDeployment has its Deployment and a
//!   status for its generation, and the operator's requests by verb until then;
//! - how long a `spec.model.version` change takes to produce its new Deployment (p50, p99),
//!   changes made one after another right after convergence, while the controller-manager
//!   still creates the fleet's pods and the scheduler turns them down;
//! - the operator's requests per minute once the fleet is idle;
//! - the operator's peak RSS (`VmHWM`);
//! - the anchor: kube-controller-manager's time from creating the same 1,000 Deployments
//!   until each has its ReplicaSet, on the same control plane, with its default client limits.
//!
//! `cargo build --release -p kandle-operator && cargo run --release -p kandle-tests --example
//! fleet_1000 [-- --count N --samples N --idle-seconds N --keep --operator-arg=--flag=value]`
//!
//! It starts a fresh control plane in `target/bench-k8s` and stops it at the end (`--keep`
//! leaves it running).

mod anchor;
mod fleet;
mod probe;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kandle_crds::ModelDeployment;
use kandle_operator::testing::md;
use kandle_tests::e2e::{cluster, control_plane, install, nodes, NodeSpec, A100, H100};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;

use fleet::Fleet;
use probe::{delta, describe, non_watch, peak_mib, requests};

const FLEET: &str = "bench";
const ANCHOR: &str = "anchor";
const GPU_PRODUCTS: [&str; 3] = [H100, A100, "NVIDIA-L4"];
const CONVERGE_DEADLINE: Duration = Duration::from_secs(900);
const CHANGE_DEADLINE: Duration = Duration::from_secs(60);
const QUIET_DEADLINE: Duration = Duration::from_secs(900);

struct Args {
    count: usize,
    samples: usize,
    idle_seconds: u64,
    keep: bool,
    operator_args: Vec<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        count: 1000,
        samples: 100,
        idle_seconds: 60,
        keep: false,
        operator_args: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut number = |what: &str| -> anyhow::Result<u64> {
            it.next()
                .with_context(|| format!("{what} needs a number"))?
                .parse()
                .with_context(|| format!("{what} needs a number"))
        };
        match arg.as_str() {
            "--count" => args.count = usize::try_from(number("--count")?)?,
            "--samples" => args.samples = usize::try_from(number("--samples")?)?,
            "--idle-seconds" => args.idle_seconds = number("--idle-seconds")?,
            "--keep" => args.keep = true,
            other => match other.strip_prefix("--operator-arg=") {
                Some(flag) => args.operator_args.push(flag.to_string()),
                None => bail!("unknown argument {other}"),
            },
        }
    }
    Ok(args)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    let workspace = cluster::workspace();
    let script = workspace.join("../shared/k8s/control-plane.sh");
    let state = workspace.join("target/bench-k8s");
    // A fresh etcd each run, so no run inherits the last one's objects.
    let _ = Command::new(&script).arg("down").arg(&state).status();
    let result = runtime.block_on(run(&args, &workspace, &script, &state));
    if !args.keep {
        let _ = Command::new(&script).arg("down").arg(&state).status();
    }
    result
}

async fn run(
    args: &Args,
    workspace: &std::path::Path,
    script: &std::path::Path,
    state: &std::path::Path,
) -> anyhow::Result<()> {
    let binary = workspace.join("target/release/kandle-operator");
    if !binary.is_file() {
        bail!(
            "{} is missing: `cargo build --release -p kandle-operator`",
            binary.display()
        );
    }
    let kubeconfigs = control_plane::start_local(script, state)?;
    let admin = control_plane::client_from(&kubeconfigs.admin).await?;
    install::install(&admin, &workspace.join("manifests")).await?;
    for ns in [FLEET, ANCHOR] {
        let object: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
        Api::<Namespace>::all(admin.clone())
            .create(&PostParams::default(), &object)
            .await
            .with_context(|| format!("creating namespace {ns}"))?;
    }
    for node in [
        NodeSpec::cpu("bench-cpu"),
        NodeSpec::gpu("bench-gpu-h100", H100, 8),
        NodeSpec::gpu("bench-gpu-a100", A100, 8),
    ] {
        nodes::add(&admin, &node).await?;
    }

    let fleet = Fleet::watch(&admin, FLEET);
    create_fleet(&admin, args.count).await?;
    eprintln!(
        "{} ModelDeployments created; starting the operator",
        args.count
    );

    let port = kandle_tests::e2e::operator::free_port()?;
    let mut operator = spawn_operator(&binary, &kubeconfigs.operator, port, state, args)?;
    let pid = operator.id();
    let started = Instant::now();
    let converged_at = fleet.wait_converged(args.count, CONVERGE_DEADLINE).await;
    let converged_at = match converged_at {
        Ok(at) => at,
        Err(e) => {
            let _ = operator.kill();
            return Err(e);
        }
    };
    let converge = converged_at - started;
    let converge_rss = peak_mib(pid)?;
    let at_convergence = requests(port).await?;
    let pods_then = count_pods(&admin).await?;

    let latencies = spec_changes(&admin, &fleet, args).await?;
    let after_changes = requests(port).await?;
    let pods_after = count_pods(&admin).await?;

    let quiet = wait_quiet(port).await?;
    let idle_start = requests(port).await?;
    tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
    let idle = delta(&requests(port).await?, &idle_start);
    let operator_peak = peak_mib(pid)?;
    let _ = operator.kill();
    let _ = operator.wait();

    let anchor = anchor::deployment_to_replicaset(
        &admin,
        ANCHOR,
        fleet
            .deployment_objects()
            .into_iter()
            .take(args.count)
            .collect(),
        CONVERGE_DEADLINE,
    )
    .await?;
    let kcm_peak = std::fs::read_to_string(state.join("controller-manager.pid"))
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        .and_then(|pid| peak_mib(pid).ok());

    let per_minute = 60.0 / args.idle_seconds as f64;
    let idle_per_minute: probe::Requests = idle
        .iter()
        .map(|(v, n)| (v.clone(), n * per_minute))
        .collect();
    println!();
    println!(
        "fleet: {} ModelDeployments ({} CPU, {} GPU), nodes: 1 CPU, 8 H100, 8 A100",
        args.count,
        args.count - args.count / 2,
        args.count / 2
    );
    println!("{:<46} {:>12}", "", "");
    println!(
        "{:<46} {:>10.1} s",
        "kandle-operator: converged after start",
        converge.as_secs_f64()
    );
    println!(
        "{:<46} {:>10} ",
        "  requests until converged",
        describe(&at_convergence)
    );
    println!(
        "{:<46} {:>10.0} ms",
        format!(
            "  spec change -> new Deployment, p50 (n={})",
            latencies.len()
        ),
        percentile(&latencies, 50)
    );
    println!(
        "{:<46} {:>10.0} ms",
        "  spec change -> new Deployment, p99",
        percentile(&latencies, 99)
    );
    println!(
        "{:<46} {:>10.0} ms",
        "  spec change -> new Deployment, max",
        percentile(&latencies, 100)
    );
    println!(
        "{:<46} {:>10}",
        "  pods during the changes (start -> end)",
        format!("{pods_then} -> {pods_after}")
    );
    println!(
        "{:<46} {:>10}",
        "  requests during the changes",
        describe(&delta(&after_changes, &at_convergence))
    );
    println!(
        "{:<46} {:>10}",
        format!(
            "  idle fleet, requests per minute{}",
            if quiet { "" } else { " (not quiet)" }
        ),
        describe(&idle_per_minute)
    );
    println!(
        "{:<46} {:>10.1} MiB",
        "  peak RSS at convergence", converge_rss
    );
    println!(
        "{:<46} {:>10.1} MiB",
        "  peak RSS over the run", operator_peak
    );
    println!(
        "{:<46} {:>10.1} s",
        "kube-controller-manager: Deployment -> ReplicaSet",
        anchor.as_secs_f64()
    );
    if let Some(kcm) = kcm_peak {
        println!("{:<46} {:>10.1} MiB", "  peak RSS over the run", kcm);
    }
    Ok(())
}

fn bench_md(i: usize) -> ModelDeployment {
    let builder = md(&format!("model-{i:04}")).in_namespace(FLEET);
    let builder = if i % 2 == 1 {
        builder.with_gpu(1, Some(GPU_PRODUCTS[i % GPU_PRODUCTS.len()]))
    } else {
        builder.with_requests("1", "1Gi")
    };
    let mut md = builder.build();
    md.metadata.uid = None;
    md.metadata.generation = None;
    md
}

async fn create_fleet(client: &Client, count: usize) -> anyhow::Result<()> {
    let api: Api<ModelDeployment> = Api::namespaced(client.clone(), FLEET);
    futures::stream::iter((0..count).map(bench_md))
        .map(|m| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &m).await.map(|_| ()) }
        })
        .buffer_unordered(32)
        .try_collect::<()>()
        .await
        .context("creating ModelDeployments")
}

fn spawn_operator(
    binary: &std::path::Path,
    kubeconfig: &std::path::Path,
    port: u16,
    state: &std::path::Path,
    args: &Args,
) -> anyhow::Result<Child> {
    let log = std::fs::File::create(state.join("operator.log")).context("operator log")?;
    Command::new(binary)
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "warn")
        .args(["--namespace", FLEET, "--metrics-port", &port.to_string()])
        // Pods wait for room far longer than the run: the idle fleet stays idle.
        .args(["--unschedulable-grace-seconds", "3600"])
        .args(&args.operator_args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))
}

/// Changes `spec.model.version` of `args.samples` ModelDeployments one after another, a quarter
/// second apart, and returns how long each took to produce its new Deployment, in ms.
async fn spec_changes(client: &Client, fleet: &Fleet, args: &Args) -> anyhow::Result<Vec<f64>> {
    let api: Api<ModelDeployment> = Api::namespaced(client.clone(), FLEET);
    let mut latencies = Vec::new();
    for i in 0..args.samples {
        let name = format!("model-{:04}", (i * 37 + 11) % args.count);
        let known = fleet.deployments_of(&name);
        let change = json!({"spec": {"model": {"version": format!("v2-{i}")}}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(change))
            .await
            .with_context(|| format!("changing {name}"))?;
        let changed = Instant::now();
        let seen = fleet.new_deployment(&name, &known, CHANGE_DEADLINE).await?;
        latencies.push(seen.saturating_duration_since(changed).as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(latencies)
}

fn percentile(values: &[f64], p: usize) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = (sorted.len() * p / 100).min(sorted.len() - 1);
    sorted[index]
}

async fn count_pods(client: &Client) -> anyhow::Result<usize> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), FLEET);
    Ok(pods
        .list_metadata(&ListParams::default())
        .await?
        .items
        .len())
}

/// Waits until the operator sent no request (watches apart) for 15 s; `false` if it never
/// fell quiet before the deadline.
async fn wait_quiet(port: u16) -> anyhow::Result<bool> {
    let start = Instant::now();
    let mut last = non_watch(&requests(port).await?);
    let mut quiet_since = Instant::now();
    while start.elapsed() < QUIET_DEADLINE {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = non_watch(&requests(port).await?);
        if now != last {
            last = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= Duration::from_secs(15) {
            eprintln!("quiet after {:.0}s", start.elapsed().as_secs_f64());
            return Ok(true);
        }
    }
    Ok(false)
}
