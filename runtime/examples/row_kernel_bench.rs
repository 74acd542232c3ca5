//! Single-thread speed of the CPU row kernels on one weight of the shape of SmolLM2's MLP
//! (1536 × 576), Q4_1 blocks and f32 rows, for a range of token counts; then, as the reference
//! the Q4_1 figures compare with, this core's ceiling for the AVX2 kernel's instruction mix.
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
    #[cfg(target_arch = "x86_64")]
    ceiling::print();
    Ok(())
}

/// The most multiply-adds per second that one core can do with the AVX2 Q4_1 kernel's
/// instructions, measured on registers and a few L1-resident bytes, so that no memory traffic or
/// loop bookkeeping is counted. Each 16-bit `vpmaddwd` does 16 multiply-adds; AVX2 has no
/// instruction that also adds them to an accumulator, so each takes a `vpaddd` as well.
#[cfg(target_arch = "x86_64")]
mod ceiling {
    use std::arch::asm;
    use std::time::Instant;

    const ROUNDS: u64 = 5_000_000;

    /// 24 × (broadcast an activation pair of one of six tokens, madd it with a weight vector,
    /// add to that token's sum in `ymm0`–`ymm5`), over the vectors named in `.irp`.
    macro_rules! madd_add {
        ($vectors:literal) => {
            concat!(
                ".irp v, ",
                $vectors,
                "\n",
                ".irp t, 0, 1, 2, 3, 4, 5\n",
                "vpbroadcastd ymm12, [{x} + 4 * \\t]\n",
                "vpmaddwd ymm12, ymm\\v, ymm12\n",
                "vpaddd ymm\\t, ymm\\t, ymm12\n",
                ".endr\n",
                ".endr\n",
            )
        };
    }

    /// The constants [`nibble_chunk!`] takes: the low-nibble mask in `ymm14`, zero in `ymm15`.
    macro_rules! nibble_constants {
        () => {
            concat!(
                "mov {t:e}, 0x0f0f0f0f\n",
                "vmovd xmm14, {t:e}\n",
                "vpbroadcastd ymm14, xmm14\n",
                "vpxor ymm15, ymm15, ymm15\n",
            )
        };
    }

    /// 32 bytes of Q4_1 quants (`{w}`) split into nibbles and widened to four vectors of
    /// sixteen 16-bit quants (`ymm8`–`ymm11`), then multiplied with six tokens as above.
    macro_rules! nibble_chunk {
        () => {
            concat!(
                "vmovdqu ymm6, [{w}]\n",
                "vpsrlw ymm7, ymm6, 4\n",
                "vpand ymm6, ymm6, ymm14\n",
                "vpand ymm7, ymm7, ymm14\n",
                "vpunpcklbw ymm8, ymm6, ymm15\n",
                "vpunpckhbw ymm9, ymm6, ymm15\n",
                "vpunpcklbw ymm10, ymm7, ymm15\n",
                "vpunpckhbw ymm11, ymm7, ymm15\n",
                madd_add!("8, 9, 10, 11"),
            )
        };
    }

    pub fn print() {
        if !(std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma"))
        {
            println!("\n(no AVX2 and FMA on this CPU: no kernel ceiling to measure)");
            return;
        }
        let x = Activations {
            pairs: [0x0001_0002; 6],
            scales: [0.5; 6],
            sums: [3.0; 6],
        };
        let w = Weights {
            quants: [0x35; 32],
            scales: [0.25; 8],
            mins: [-1.0; 8],
        };
        let mut acc = [[0f32; 8]; 6];
        // SAFETY: AVX2 and FMA are present (checked above); the loops read `x` and `w` and
        // write `acc` only, within their bytes.
        let figures = unsafe {
            [
                best(384, || bare(&x)),
                best(384, || unpacked(&x, &w)),
                best(4 * 384, || scaled(&x, &w, &mut acc)),
            ]
        };
        println!();
        println!("This core's ceiling for the Q4_1 kernel's instructions, one thread, 6 tokens:");
        println!("- broadcast, madd, add: {:.1} GMAC/s", figures[0]);
        println!(
            "- and the 4-bit unpack of each 32 bytes of weights: {:.1} GMAC/s",
            figures[1]
        );
        println!(
            "- and each block's scaling (convert, multiply, two FMAs per token): {:.1} GMAC/s",
            figures[2]
        );
    }

    /// One token tile's share of a block: a pair per token, `dx` and the block's sum.
    #[repr(C)]
    struct Activations {
        pairs: [i32; 6],
        scales: [f32; 6],
        sums: [f32; 6],
    }

    /// A block of eight rows: quants (one chunk of the four, reused), `d` and `m` per row.
    #[repr(C)]
    struct Weights {
        quants: [u8; 32],
        scales: [f32; 8],
        mins: [f32; 8],
    }

    /// The best of five timings, as GMAC/s; `run` does `ROUNDS` × `macs` multiply-adds.
    fn best(macs: u64, mut run: impl FnMut()) -> f64 {
        (0..5)
            .map(|_| {
                let started = Instant::now();
                run();
                (ROUNDS * macs) as f64 / started.elapsed().as_secs_f64() / 1e9
            })
            .fold(0.0, f64::max)
    }

    /// Per round, [`madd_add!`] on four fixed weight vectors: 384 multiply-adds.
    #[target_feature(enable = "avx2")]
    unsafe fn bare(x: &Activations) {
        // SAFETY: the caller checked AVX2; the loop reads `x.pairs` only.
        unsafe {
            asm!(
                "vpcmpeqd ymm8, ymm8, ymm8",
                "vpcmpeqd ymm9, ymm9, ymm9",
                "vpcmpeqd ymm10, ymm10, ymm10",
                "vpcmpeqd ymm11, ymm11, ymm11",
                "2:",
                madd_add!("8, 9, 10, 11"),
                "dec {n}",
                "jnz 2b",
                x = in(reg) x.pairs.as_ptr(),
                n = inout(reg) ROUNDS => _,
                out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _, out("ymm4") _,
                out("ymm5") _, out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
                out("ymm12") _,
                options(nostack, readonly),
            );
        }
    }

    /// Per round, [`nibble_chunk!`]: 384 multiply-adds.
    #[target_feature(enable = "avx2")]
    unsafe fn unpacked(x: &Activations, w: &Weights) {
        // SAFETY: the caller checked AVX2; the loop reads `x.pairs` and `w.quants` only.
        unsafe {
            asm!(
                nibble_constants!(),
                "2:",
                nibble_chunk!(),
                "dec {n}",
                "jnz 2b",
                x = in(reg) x.pairs.as_ptr(),
                w = in(reg) w.quants.as_ptr(),
                n = inout(reg) ROUNDS => _,
                t = out(reg) _,
                out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _, out("ymm4") _,
                out("ymm5") _, out("ymm6") _, out("ymm7") _, out("ymm8") _, out("ymm9") _,
                out("ymm10") _, out("ymm11") _, out("ymm12") _, out("ymm14") _, out("ymm15") _,
                options(nostack, readonly),
            );
        }
    }

    /// Per round, a whole block as the kernel does it: the token sums cleared, four
    /// [`nibble_chunk!`]s, then for each token `acc += (d · dx) · sum` and `acc += m · Σx`, its
    /// accumulator in memory as the kernel's are (six sums, six accumulators and the
    /// vectors do not fit in sixteen registers): 1536 multiply-adds.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn scaled(x: &Activations, w: &Weights, acc: &mut [[f32; 8]; 6]) {
        // SAFETY: the caller checked AVX2 and FMA; the loop reads `x` and `w` and writes `acc`
        // only, within their bytes.
        unsafe {
            asm!(
                nibble_constants!(),
                "2:",
                ".irp t, 0, 1, 2, 3, 4, 5",
                "vpxor ymm\\t, ymm\\t, ymm\\t",
                ".endr",
                ".rept 4",
                nibble_chunk!(),
                ".endr",
                ".irp t, 0, 1, 2, 3, 4, 5",
                "vbroadcastss ymm12, [{x} + 24 + 4 * \\t]",
                "vmulps ymm12, ymm12, [{w} + 32]",
                "vcvtdq2ps ymm\\t, ymm\\t",
                "vfmadd213ps ymm\\t, ymm12, [{acc} + 32 * \\t]",
                "vbroadcastss ymm13, [{x} + 48 + 4 * \\t]",
                "vfmadd231ps ymm\\t, ymm13, [{w} + 64]",
                "vmovups [{acc} + 32 * \\t], ymm\\t",
                ".endr",
                "dec {n}",
                "jnz 2b",
                x = in(reg) x as *const Activations,
                w = in(reg) w as *const Weights,
                acc = in(reg) acc.as_mut_ptr(),
                n = inout(reg) ROUNDS => _,
                t = out(reg) _,
                out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _, out("ymm4") _,
                out("ymm5") _, out("ymm6") _, out("ymm7") _, out("ymm8") _, out("ymm9") _,
                out("ymm10") _, out("ymm11") _, out("ymm12") _, out("ymm13") _,
                out("ymm14") _, out("ymm15") _,
                options(nostack),
            );
        }
    }
}
