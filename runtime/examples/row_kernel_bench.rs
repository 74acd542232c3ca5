//! Single-thread speed of the CPU row kernels on one weight of the shape of SmolLM2's MLP
//! (1536 × 576), Q4_1 blocks and f32 rows, for a range of token counts.
//!
//! ```text
//! cargo run --release -p kandle-runtime --example row_kernel_bench
//! ```

use std::time::Instant;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use kandle_runtime::generate::row_kernels::{BlockMatrix, RowsTimes, Tokens, WeightRows};

fn main() -> anyhow::Result<()> {
    let (rows, cols) = (1536usize, 576usize);
    let values: Vec<f32> = (0..rows * cols)
        .map(|i| (i * 7919 % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let weight = Tensor::from_vec(values, (rows, cols), &Device::Cpu)?;
    let quantized = QTensor::quantize(&weight, GgmlDType::Q4_1)?;
    let dense: Vec<f32> = quantized
        .dequantize(&Device::Cpu)?
        .flatten_all()?
        .to_vec1()?;
    let blocks = BlockMatrix::from_gguf(GgmlDType::Q4_1, rows, cols, &quantized.data()?)?;
    println!("| tokens | Q4_1 ms | Q4_1 GMAC/s | f32 ms | f32 GMAC/s |");
    println!("|---:|---:|---:|---:|---:|");
    for m in [1usize, 2, 4, 6, 8, 12, 16, 24, 32] {
        let x: Vec<f32> = (0..m * cols).map(|i| (i % 17) as f32 / 8.0 - 1.0).collect();
        let mut figures = Vec::new();
        for weights in [
            WeightRows::Blocks(&blocks),
            WeightRows::F32 { data: &dense, cols },
        ] {
            let tokens = Tokens::new(&x, m, std::slice::from_ref(&weights));
            let mut out = vec![vec![0f32; rows]; m];
            let iterations = 4000 / m;
            let started = Instant::now();
            for _ in 0..iterations {
                RowsTimes {
                    x: &tokens,
                    weights: &weights,
                    rows: 0..rows,
                    out: out.iter_mut().map(Vec::as_mut_slice).collect(),
                }
                .run();
            }
            let seconds = started.elapsed().as_secs_f64() / iterations as f64;
            figures.push(format!(
                "{:.3} | {:.1}",
                seconds * 1e3,
                (m * rows * cols) as f64 / seconds / 1e9
            ));
        }
        println!("| {m} | {} |", figures.join(" | "));
    }
    Ok(())
}
