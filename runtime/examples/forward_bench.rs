//! Model-only CPU throughput, without HTTP: kandle's embedding (packed BERT forward, pooling,
//! normalization), and for comparison candle-transformers' stock `BertModel` on padded batches
//! (`--stock`). Threads are set up as the server sets them up (`--threads`, default: the cgroup
//! CPU limit).
//!
//! Used to find where inference time goes (run it under `perf record`) and to record the gains
//! in docs/benchmarks.md.
//!
//! ```text
//! cargo run --release -p kandle-runtime --example forward_bench -- \
//!     --model-dir .model-cache/all-MiniLM-L6-v2 --sentences target/bench/sentences.txt --batch 32
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use clap::Parser;
use kandle_runtime::model::{EmbeddingModel, ModelFolder};
use kandle_runtime::tokenize::{Input, TextEncoder};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    model_dir: PathBuf,
    /// One sentence per line.
    #[arg(long)]
    sentences: PathBuf,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Passes over the sentences.
    #[arg(long, default_value_t = 1)]
    passes: usize,
    /// Run candle-transformers' BertModel on padded batches instead.
    #[arg(long)]
    stock: bool,
    /// CPU threads (default: as the server picks them).
    #[arg(long)]
    threads: Option<usize>,
}

fn stock_embed(
    model: &candle_transformers::models::bert::BertModel,
    batch: &[Vec<u32>],
) -> anyhow::Result<()> {
    let longest = batch.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(batch.len() * longest);
    let mut mask = Vec::with_capacity(batch.len() * longest);
    for seq in batch {
        ids.extend(
            seq.iter()
                .copied()
                .chain(std::iter::repeat_n(0, longest - seq.len())),
        );
        mask.extend((0..longest).map(|i| u32::from(i < seq.len())));
    }
    let ids = Tensor::from_vec(ids, (batch.len(), longest), &Device::Cpu)?;
    let mask = Tensor::from_vec(mask, (batch.len(), longest), &Device::Cpu)?;
    let hidden = model.forward(&ids, &ids.zeros_like()?, Some(&mask))?;
    // Masked mean pooling, as sentence-transformers does.
    let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    let pooled = summed.broadcast_div(&mask.sum(1)?)?;
    pooled.to_vec2::<f32>()?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    kandle_runtime::device::configure_cpu_threads(kandle_runtime::device::cpu_threads(
        args.threads,
    ));
    let text = std::fs::read_to_string(&args.sentences).context("cannot read sentences")?;
    let folder = ModelFolder::open(&args.model_dir)?;
    let device = Device::Cpu;
    let model = EmbeddingModel::load(&folder, &device, DType::F32)?;
    let encoder = TextEncoder::load(&folder.tokenizer, 512, true, model.vocab_size())?;
    let inputs: Vec<Input> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Input::Text(l.to_owned()))
        .collect();
    let sequences = encoder.encode(inputs).map_err(|e| anyhow::anyhow!("{e}"))?;
    let tokens: usize = sequences.iter().map(Vec::len).sum();

    let stock = if args.stock {
        let config: candle_transformers::models::bert::Config =
            serde_json::from_value(folder.config.clone())?;
        let mut tensors = std::collections::HashMap::new();
        for path in &folder.weights {
            tensors.extend(candle_core::safetensors::load(path, &device)?);
        }
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        Some(candle_transformers::models::bert::BertModel::load(
            vb, &config,
        )?)
    } else {
        None
    };

    let run = |batch: &[Vec<u32>]| -> anyhow::Result<()> {
        match &stock {
            Some(stock) => stock_embed(stock, batch),
            None => {
                let refs: Vec<&[u32]> = batch.iter().map(Vec::as_slice).collect();
                model.embed(&refs).map(drop)
            }
        }
    };
    for batch in sequences.chunks(args.batch).take(2) {
        run(batch)?;
    }
    let started = Instant::now();
    for _ in 0..args.passes {
        for batch in sequences.chunks(args.batch) {
            run(batch)?;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let count = sequences.len() * args.passes;
    println!(
        "{} batch={} threads={}: {:.1} sentences/s, {:.0} tokens/s ({} sentences, {:.2}s)",
        if args.stock {
            "candle-transformers BertModel (padded)"
        } else {
            "kandle packed BERT"
        },
        args.batch,
        candle_core::utils::get_num_threads(),
        count as f64 / secs,
        (tokens * args.passes) as f64 / secs,
        count,
        secs
    );
    Ok(())
}
