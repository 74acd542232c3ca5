//! Model-only generation step times, without HTTP or sampling: prefill of one prompt, then
//! decode steps of `--streams` sequences at once (greedy feed of a fixed token). Used to find
//! where decode time goes and to compare weight formats.
//!
//! ```text
//! cargo run --release -p kandle-runtime --example decode_bench -- \
//!     --model-file "$(scripts/fetch-llm.sh)/SmolLM2-135M-Instruct.Q4_1.gguf" --streams 16
//! ```

use std::path::PathBuf;
use std::time::Instant;

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device};
use clap::Parser;
use kandle_runtime::generate::llama::{Chunk, Llama, WeightFormat};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    model_file: PathBuf,
    /// Sequences decoding together.
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Prompt tokens of each sequence before decoding starts.
    #[arg(long, default_value_t = 64)]
    prompt: usize,
    /// Timed decode steps.
    #[arg(long, default_value_t = 32)]
    steps: usize,
    /// `quantized`, `f32` or `f16`.
    #[arg(long, default_value = "quantized")]
    weights: String,
    /// CPU threads (default: as the server picks them).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    kandle_runtime::device::configure_cpu_threads(kandle_runtime::device::cpu_threads(
        args.threads,
    ));
    let format = match args.weights.as_str() {
        "quantized" => WeightFormat::Quantized,
        "f32" => WeightFormat::Dequantized(DType::F32),
        "f16" => WeightFormat::Dequantized(DType::F16),
        other => anyhow::bail!("unknown --weights `{other}`"),
    };
    let mut file = std::fs::File::open(&args.model_file)?;
    let content = gguf_file::Content::read(&mut file)?;
    let model = Llama::from_gguf(&content, &mut file, &Device::Cpu, format)?;
    let prompt: Vec<u32> = (0..args.prompt as u32).map(|i| 100 + i * 7).collect();
    let mut caches: Vec<_> = (0..args.streams).map(|_| model.new_cache()).collect();

    let started = Instant::now();
    for cache in &mut caches {
        model.forward(&mut [Chunk {
            tokens: &prompt,
            cache,
            all_logits: false,
        }])?;
    }
    let prefill = started.elapsed().as_secs_f64() / args.streams as f64;

    let token = [200u32];
    let mut times = Vec::with_capacity(args.steps);
    for _ in 0..args.steps + 2 {
        let started = Instant::now();
        let mut chunks: Vec<Chunk> = caches
            .iter_mut()
            .map(|cache| Chunk {
                tokens: &token,
                cache,
                all_logits: false,
            })
            .collect();
        model.forward(&mut chunks)?;
        times.push(started.elapsed().as_secs_f64());
    }
    times.drain(..2); // warm-up
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "weights {} streams {} prompt {}: prefill {:.3} s ({:.0} tok/s), decode step p50 {:.1} ms \
         (min {:.1}), {:.1} tok/s",
        args.weights,
        args.streams,
        args.prompt,
        prefill,
        args.prompt as f64 / prefill,
        median * 1e3,
        times[0] * 1e3,
        args.streams as f64 / median,
    );
    Ok(())
}
