//! Overload benchmark for kandle-runtime: what clients get at several times the load it sustains.
//!
//! First measures the sustainable rate with a closed loop (`--clients` clients back to back), then
//! sends requests open-loop at `--multiplier` times that rate for `--seconds`, each on its own
//! schedule whatever the server does, while polling `/readyz`. Prints, per status, the count and
//! latency percentiles, the share of 200s within the deadline and of 429s within 10 ms, how often
//! `/readyz` was not 200, and the server's peak memory (`VmHWM` of `--pid`).
//!
//! ```text
//! cargo run --release -p kandle-runtime --example overload -- --url http://127.0.0.1:8080 \
//!     --sentences target/bench/sentences.txt --batch 8 --deadline 2s --pid <server pid>
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use serde_json::json;
use tokio::sync::Mutex;

mod common;
use common::percentile;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Text file with one sentence per line.
    #[arg(long)]
    sentences: PathBuf,
    /// Sentences per request.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Clients of the closed loop that measures the sustainable rate.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Offered load as a multiple of the sustainable rate.
    #[arg(long, default_value_t = 4.0)]
    multiplier: f64,
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// The server's --request-timeout, to count 200s that came in time.
    #[arg(long, default_value = "2s", value_parser = kandle_runtime::config::parse_duration)]
    deadline: Duration,
    /// The server's process id, for its peak memory.
    #[arg(long)]
    pid: Option<u32>,
    /// Then this many 2 MiB bodies of small numbers at once (0: skip).
    #[arg(long, default_value_t = 100)]
    uploads: usize,
}

fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.sentences).context("reading --sentences")?;
    let sentences: Vec<String> = text.lines().map(str::to_owned).collect();
    let bodies: Arc<Vec<String>> = Arc::new(
        sentences
            .chunks(args.batch)
            .map(|chunk| json!({"input": chunk}).to_string())
            .collect(),
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()?;
    let url = format!("{}/v1/embeddings", args.url);

    if let Some(pid) = args.pid {
        if let Some(mib) = peak_rss_mib(pid) {
            println!("server peak memory before the load (model + warm-up at the largest batch): {mib:.1} MiB");
        }
    }

    // Closed loop: the rate the server sustains.
    let measure = Duration::from_secs(10);
    let started = Instant::now();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut loops = Vec::new();
    for client_index in 0..args.clients {
        let (client, url, bodies, done) =
            (client.clone(), url.clone(), bodies.clone(), done.clone());
        loops.push(tokio::spawn(async move {
            let mut i = client_index;
            while started.elapsed() < measure {
                let body = bodies[i % bodies.len()].clone();
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                if response.is_ok_and(|r| r.status().is_success()) {
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                i += args.clients;
            }
        }));
    }
    for task in loops {
        task.await?;
    }
    let sustainable =
        done.load(std::sync::atomic::Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let offered = sustainable * args.multiplier;
    println!(
        "sustainable: {sustainable:.1} requests/s ({:.0} sentences/s, {} clients, {} sentences/request)",
        sustainable * args.batch as f64,
        args.clients,
        args.batch
    );
    println!(
        "offered: {offered:.1} requests/s ({}x) for {} s, open loop, deadline {:?}",
        args.multiplier, args.seconds, args.deadline
    );

    // Open loop at the offered rate, and /readyz polled alongside.
    let results: Arc<Mutex<BTreeMap<u16, Vec<Duration>>>> = Arc::default();
    let not_ready = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let run = Duration::from_secs(args.seconds);
    let start = Instant::now();
    let poller = {
        let (client, base, not_ready, polls) = (
            client.clone(),
            args.url.clone(),
            not_ready.clone(),
            polls.clone(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            while start.elapsed() < run {
                tick.tick().await;
                polls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let ok = client
                    .get(format!("{base}/readyz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if !ok {
                    not_ready.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        })
    };
    let interval = Duration::from_secs_f64(1.0 / offered.max(0.1));
    let mut requests = Vec::new();
    let mut n = 0usize;
    while start.elapsed() < run {
        let due = start + interval.mul_f64(n as f64);
        tokio::time::sleep_until(due.into()).await;
        let (client, url, body, results) = (
            client.clone(),
            url.clone(),
            bodies[n % bodies.len()].clone(),
            results.clone(),
        );
        requests.push(tokio::spawn(async move {
            let sent = Instant::now();
            let status = match client
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
            {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let _ = response.bytes().await;
                    status
                }
                Err(_) => 0,
            };
            results
                .lock()
                .await
                .entry(status)
                .or_default()
                .push(sent.elapsed());
        }));
        n += 1;
    }
    for request in requests {
        request.await?;
    }
    poller.await?;

    let results = results.lock().await;
    let total: usize = results.values().map(Vec::len).sum();
    println!("\n| status | count | share | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (status, latencies) in results.iter() {
        let mut sorted = latencies.clone();
        sorted.sort();
        println!(
            "| {} | {} | {:.1}% | {:.1} | {:.1} | {:.1} |",
            if *status == 0 {
                "connection error".to_owned()
            } else {
                status.to_string()
            },
            sorted.len(),
            100.0 * sorted.len() as f64 / total as f64,
            ms(percentile(&sorted, 50.0)),
            ms(percentile(&sorted, 99.0)),
            ms(*sorted.last().unwrap()),
        );
    }
    let ok_in_time = results
        .get(&200)
        .map_or(0, |l| l.iter().filter(|d| **d <= args.deadline).count());
    let fast_429 = results.get(&429).map_or(0, |l| {
        l.iter()
            .filter(|d| **d <= Duration::from_millis(10))
            .count()
    });
    let answered_well = ok_in_time + fast_429;
    println!(
        "\n200 within the deadline or 429 within 10 ms: {answered_well} of {total} ({:.2}%)",
        100.0 * answered_well as f64 / total as f64
    );
    println!(
        "/readyz not 200: {} of {} polls",
        not_ready.load(std::sync::atomic::Ordering::Relaxed),
        polls.load(std::sync::atomic::Ordering::Relaxed)
    );
    if let Some(pid) = args.pid {
        match peak_rss_mib(pid) {
            Some(mib) => println!("server peak memory after the overload (VmHWM): {mib:.1} MiB"),
            None => println!("server peak memory: /proc/{pid}/status unreadable"),
        }
    }
    if args.uploads > 0 {
        upload_storm(&client, &url, args.uploads, args.pid).await?;
    }
    Ok(())
}

/// Many 2 MiB bodies of small numbers at once: what a parse-then-admit server turns into
/// millions of JSON values each.
async fn upload_storm(
    client: &reqwest::Client,
    url: &str,
    uploads: usize,
    pid: Option<u32>,
) -> anyhow::Result<()> {
    let numbers = vec!["1"; 1024 * 1024 - 8].join(",");
    let body = format!(r#"{{"input":[[{numbers}]]}}"#);
    println!(
        "\n{uploads} uploads of {:.1} MiB at once:",
        body.len() as f64 / (1024.0 * 1024.0)
    );
    let started = Instant::now();
    let sends = (0..uploads).map(|_| {
        let (client, url, body) = (client.clone(), url.to_owned(), body.clone());
        tokio::spawn(async move {
            match client
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
            {
                Ok(response) => response.status().as_u16(),
                Err(_) => 0,
            }
        })
    });
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for send in sends.collect::<Vec<_>>() {
        *statuses.entry(send.await?).or_default() += 1;
    }
    println!(
        "statuses {statuses:?} in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    if let Some(mib) = pid.and_then(peak_rss_mib) {
        println!("server peak memory after the uploads (VmHWM): {mib:.1} MiB");
    }
    Ok(())
}
