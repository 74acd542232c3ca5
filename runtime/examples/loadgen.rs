//! HTTP load generator for kandle-runtime's OpenAI embeddings API.
//!
//! Drives a running server over loopback at several concurrency levels and prints throughput
//! (sentences/s, tokens/s) and latency percentiles per level; `--json` adds one JSON line per
//! level for scripts.
//!
//! ```text
//! cargo run --release -p kandle-runtime --example loadgen -- \
//!     --url http://127.0.0.1:8080 --sentences bench/sentences.txt --concurrency 1,8,32 --batch 1
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};

mod common;
use common::percentile;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Text file with one sentence per line.
    #[arg(long)]
    sentences: PathBuf,
    /// Comma-separated numbers of concurrent clients.
    #[arg(long, default_value = "1,8,32", value_delimiter = ',')]
    concurrency: Vec<usize>,
    /// Sentences per request.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Passes over the sentence file per level.
    #[arg(long, default_value_t = 1)]
    passes: usize,
    /// Print one JSON line per level too.
    #[arg(long)]
    json: bool,
}

struct Sample {
    latency: Duration,
    sentences: usize,
    tokens: usize,
}

async fn run_level(
    client: &reqwest::Client,
    url: &str,
    requests: Arc<Vec<Vec<String>>>,
    concurrency: usize,
) -> anyhow::Result<(Vec<Sample>, Duration)> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers = (0..concurrency).map(|_| {
        let (client, url, requests, next) = (
            client.clone(),
            url.to_owned(),
            requests.clone(),
            next.clone(),
        );
        tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(input) = requests.get(i) else { break };
                let sent = Instant::now();
                let response = client
                    .post(format!("{url}/v1/embeddings"))
                    .json(&json!({"input": input}))
                    .send()
                    .await?;
                let status = response.status();
                let body: Value = response.json().await?;
                if !status.is_success() {
                    bail!("request failed with {status}: {body}");
                }
                samples.push(Sample {
                    latency: sent.elapsed(),
                    sentences: input.len(),
                    tokens: body["usage"]["prompt_tokens"].as_u64().unwrap_or(0) as usize,
                });
            }
            anyhow::Ok(samples)
        })
    });
    let mut samples = Vec::new();
    for worker in futures::future::join_all(workers).await {
        samples.extend(worker.context("worker crashed")??);
    }
    Ok((samples, started.elapsed()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.sentences)
        .with_context(|| format!("cannot read {}", args.sentences.display()))?;
    let sentences: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    if sentences.is_empty() || args.batch == 0 {
        bail!("need at least one sentence and --batch >= 1");
    }
    let requests: Vec<Vec<String>> = (0..args.passes)
        .flat_map(|_| sentences.chunks(args.batch).map(<[String]>::to_vec))
        .collect();
    let requests = Arc::new(requests);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()?;

    // Warm-up: connections, allocator, caches.
    let warmup: Vec<Vec<String>> = requests.iter().take(8).cloned().collect();
    run_level(&client, &args.url, Arc::new(warmup), 4).await?;

    println!(
        "{:>11} {:>6} {:>9} {:>12} {:>10} {:>10} {:>10}",
        "concurrency", "batch", "requests", "sentences/s", "tokens/s", "p50 ms", "p99 ms"
    );
    for &concurrency in &args.concurrency {
        let (samples, elapsed) =
            run_level(&client, &args.url, requests.clone(), concurrency.max(1)).await?;
        let mut latencies: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
        latencies.sort();
        let secs = elapsed.as_secs_f64();
        let sentences_per_s = samples.iter().map(|s| s.sentences).sum::<usize>() as f64 / secs;
        let tokens_per_s = samples.iter().map(|s| s.tokens).sum::<usize>() as f64 / secs;
        let p50 = percentile(&latencies, 50.0).as_secs_f64() * 1e3;
        let p99 = percentile(&latencies, 99.0).as_secs_f64() * 1e3;
        println!(
            "{concurrency:>11} {:>6} {:>9} {sentences_per_s:>12.1} {tokens_per_s:>10.0} {p50:>10.1} {p99:>10.1}",
            args.batch,
            samples.len()
        );
        if args.json {
            println!(
                "{}",
                json!({"concurrency": concurrency, "batch": args.batch, "requests": samples.len(),
                       "sentences_per_s": sentences_per_s, "tokens_per_s": tokens_per_s,
                       "p50_ms": p50, "p99_ms": p99})
            );
        }
    }
    Ok(())
}
