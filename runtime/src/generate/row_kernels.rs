//! CPU kernels for a few activation rows against a large weight matrix: each weight row is read
//! once per call and multiplied with every activation row while it is in L1. Also the vector
//! steps of decode attention ([`Kernels::dot`], [`Kernels::weighted_rows`]).
//!
//! This is the shape of a decode step (one row per sequence), where candle's CPU matmul spends
//! most of its time packing the whole weight matrix, and its quantized matmul rounds the
//! activations to 8 bits. Here GGUF blocks of 32 (Q4_0, Q4_1, Q8_0) meet f32 activations: for one
//! or two tokens straight from the quants (`d · Σ q·x + m · Σ x` per block), for more tokens
//! dequantized a row at a time exactly as candle dequantizes them, two rows against four tokens
//! at once. The quantized model computes what the f32-dequantized one computes, up to rounding,
//! reading a quarter to an eighth of the memory.
//!
//! Each kernel exists twice behind [`Kernels`]: [`Portable`] plain loops, and on x86-64 with
//! AVX2 and FMA (`x86::Avx2`, chosen at run time by [`with_best_kernels`]) the same steps in
//! vector instructions through pulp's safe intrinsics, so one binary serves old and new CPUs and
//! the crate stays free of `unsafe`.

use std::ops::Range;

use candle_core::quantized::GgmlDType;

use crate::model::math;

#[cfg(target_arch = "x86_64")]
mod x86;

/// Weights per GGUF block.
pub const BLOCK: usize = 32;

/// A weight matrix `[rows, cols]` held as GGUF blocks of 32 along each row, split into scales,
/// minimums (Q4_1 only) and quants.
pub struct BlockMatrix {
    kind: BlockKind,
    rows: usize,
    cols: usize,
    scales: Vec<f32>,
    mins: Vec<f32>,
    quants: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Q4_0,
    Q4_1,
    Q8_0,
}

impl BlockMatrix {
    /// The block types these kernels take.
    pub fn supports(dtype: GgmlDType) -> bool {
        matches!(dtype, GgmlDType::Q4_0 | GgmlDType::Q4_1 | GgmlDType::Q8_0)
    }

    /// From the raw bytes of a GGUF tensor `[rows, cols]` of `dtype`.
    pub fn from_gguf(
        dtype: GgmlDType,
        rows: usize,
        cols: usize,
        raw: &[u8],
    ) -> anyhow::Result<Self> {
        let (kind, block_bytes, quant_bytes) = match dtype {
            GgmlDType::Q4_0 => (BlockKind::Q4_0, 18, 16),
            GgmlDType::Q4_1 => (BlockKind::Q4_1, 20, 16),
            GgmlDType::Q8_0 => (BlockKind::Q8_0, 34, 32),
            other => anyhow::bail!("no CPU row kernel for {other:?} weights"),
        };
        anyhow::ensure!(
            cols.is_multiple_of(BLOCK),
            "a row of {cols} weights is not whole blocks"
        );
        let blocks = rows * cols / BLOCK;
        anyhow::ensure!(
            raw.len() == blocks * block_bytes,
            "{dtype:?} tensor [{rows}, {cols}] has {} bytes, expected {}",
            raw.len(),
            blocks * block_bytes
        );
        let half = |bytes: &[u8]| half::f16::from_le_bytes([bytes[0], bytes[1]]).to_f32();
        let mut scales = Vec::with_capacity(blocks);
        let mut mins = Vec::new();
        let mut quants = Vec::with_capacity(blocks * quant_bytes);
        for block in raw.chunks_exact(block_bytes) {
            scales.push(half(&block[0..2]));
            let quants_at = if kind == BlockKind::Q4_1 {
                mins.push(half(&block[2..4]));
                4
            } else {
                2
            };
            quants.extend_from_slice(&block[quants_at..]);
        }
        Ok(Self {
            kind,
            rows,
            cols,
            scales,
            mins,
            quants,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        4 * (self.scales.len() + self.mins.len()) + self.quants.len()
    }

    /// Row `row`'s quants, scales and minimums (empty unless Q4_1).
    #[inline(always)]
    fn row(&self, row: usize) -> (&[u8], &[f32], &[f32]) {
        let per_row = self.cols / BLOCK;
        let first = row * per_row;
        let quant_bytes = if self.kind == BlockKind::Q8_0 {
            BLOCK
        } else {
            BLOCK / 2
        };
        let mins = if self.kind == BlockKind::Q4_1 {
            &self.mins[first..][..per_row]
        } else {
            &[]
        };
        (
            &self.quants[first * quant_bytes..][..per_row * quant_bytes],
            &self.scales[first..][..per_row],
            mins,
        )
    }

    /// Row `row` as f32, into `out` (`cols` long), as candle's `dequantize` computes it.
    #[inline(always)]
    pub fn dequantize_row<K: Kernels>(&self, kernels: K, row: usize, out: &mut [f32]) {
        let (quants, scales, mins) = self.row(row);
        let out = &mut out[..self.cols];
        match self.kind {
            BlockKind::Q4_0 => kernels.dequantize_q4_0(quants, scales, out),
            BlockKind::Q4_1 => kernels.dequantize_q4_1(quants, scales, mins, out),
            BlockKind::Q8_0 => kernels.dequantize_q8_0(quants, scales, out),
        }
    }
}

/// The weight rows a kernel reads: f32 rows of a tensor, or blocks.
pub enum WeightRows<'a> {
    F32 { data: &'a [f32], cols: usize },
    Blocks(&'a BlockMatrix),
}

impl WeightRows<'_> {
    pub fn rows(&self) -> usize {
        match self {
            Self::F32 { data, cols } => data.len() / cols,
            Self::Blocks(blocks) => blocks.rows(),
        }
    }

    pub fn cols(&self) -> usize {
        match self {
            Self::F32 { cols, .. } => *cols,
            Self::Blocks(blocks) => blocks.cols(),
        }
    }
}

/// Work that runs on whichever [`Kernels`] this CPU has best.
pub trait WithKernels {
    type Output;
    /// Must be `#[inline(always)]`, so that it compiles with the kernels' instruction set.
    fn with<K: Kernels>(self, kernels: K) -> Self::Output;
}

/// Runs `work` with AVX2 and FMA where the CPU has them, else with [`Portable`].
#[inline]
pub fn with_best_kernels<W: WithKernels>(work: W) -> W::Output {
    #[cfg(target_arch = "x86_64")]
    if let Some(kernels) = x86::Avx2::new() {
        return kernels.run(
            #[inline(always)]
            || work.with(kernels),
        );
    }
    work.with(Portable)
}

/// One call of the row kernels: `out[i * m + r] = x[r] · w[rows.start + i]` for the `m` rows
/// of `x` (`[m, cols]`), the products of weight rows `rows` transposed. `block_sums` are
/// [`block_sums`] of `x` (needed for block weights only); `scratch` holds dequantized rows.
pub struct RowsTimes<'a, 'w> {
    pub x: &'a [f32],
    pub block_sums: &'a [f32],
    pub m: usize,
    pub weights: &'a WeightRows<'w>,
    pub rows: Range<usize>,
    pub out: &'a mut [f32],
    pub scratch: &'a mut Vec<f32>,
}

impl RowsTimes<'_, '_> {
    /// Runs on the best kernels of this CPU.
    pub fn run(self) {
        with_best_kernels(self)
    }
}

/// Row `row` of `blocks` as f32, into `out`.
pub fn dequantize_row(blocks: &BlockMatrix, row: usize, out: &mut [f32]) {
    struct Work<'a> {
        blocks: &'a BlockMatrix,
        row: usize,
        out: &'a mut [f32],
    }
    impl WithKernels for Work<'_> {
        type Output = ();
        #[inline(always)]
        fn with<K: Kernels>(self, kernels: K) {
            self.blocks.dequantize_row(kernels, self.row, self.out)
        }
    }
    with_best_kernels(Work { blocks, row, out })
}

/// The sums of each block of [`BLOCK`] values of each row of `x` (`[m, cols]`), when `cols` is
/// whole blocks; empty otherwise.
pub fn block_sums(x: &[f32], m: usize) -> Vec<f32> {
    let cols = x.len() / m.max(1);
    if !cols.is_multiple_of(BLOCK) {
        return Vec::new();
    }
    x.chunks_exact(BLOCK)
        .map(|block| block.iter().sum())
        .collect()
}

/// Up to this many tokens, block rows are multiplied straight from their quants; above it,
/// each row is dequantized once and shared by the tokens.
const FUSED_MAX_TOKENS: usize = 2;

impl WithKernels for RowsTimes<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with<K: Kernels>(self, kernels: K) {
        let Self {
            x,
            block_sums,
            m,
            weights,
            rows,
            out,
            scratch,
        } = self;
        if let WeightRows::Blocks(blocks) = weights {
            if m <= FUSED_MAX_TOKENS {
                let cols = blocks.cols();
                let per_row = cols / BLOCK;
                for (i, row) in rows.enumerate() {
                    let (quants, scales, mins) = blocks.row(row);
                    for r in 0..m {
                        let x = &x[r * cols..][..cols];
                        let sums = &block_sums[r * per_row..][..per_row];
                        out[i * m + r] = match blocks.kind {
                            BlockKind::Q4_0 => {
                                kernels.nibble_dot(quants, scales, x)
                                    - 8.0 * kernels.dot(scales, sums)
                            }
                            BlockKind::Q4_1 => {
                                kernels.nibble_dot(quants, scales, x) + kernels.dot(mins, sums)
                            }
                            BlockKind::Q8_0 => kernels.byte_dot(quants, scales, x),
                        };
                    }
                }
                return;
            }
        }
        // Two weight rows at a time against four tokens at a time: each value loaded feeds more
        // than one multiply-add.
        let cols = weights.cols();
        let x_row = |r: usize| &x[r * cols..][..cols];
        let count = rows.len();
        for i in (0..count).step_by(2) {
            let pair = (count - i).min(2);
            let (row0, row1) = (rows.start + i, rows.start + i + pair - 1);
            let (w0, w1): (&[f32], &[f32]) = match weights {
                WeightRows::F32 { data, .. } => {
                    (&data[row0 * cols..][..cols], &data[row1 * cols..][..cols])
                }
                WeightRows::Blocks(blocks) => {
                    scratch.resize(2 * cols, 0.0);
                    let (a, b) = scratch.split_at_mut(cols);
                    blocks.dequantize_row(kernels, row0, a);
                    blocks.dequantize_row(kernels, row1, b);
                    (a, b)
                }
            };
            let mut r = 0;
            while r + 4 <= m {
                let dots = kernels.dots_2x4(
                    [w0, w1],
                    [x_row(r), x_row(r + 1), x_row(r + 2), x_row(r + 3)],
                );
                for (p, dots) in dots.iter().take(pair).enumerate() {
                    out[(i + p) * m + r..][..4].copy_from_slice(dots);
                }
                r += 4;
            }
            for r in r..m {
                out[i * m + r] = kernels.dot(x_row(r), w0);
                if pair == 2 {
                    out[(i + 1) * m + r] = kernels.dot(x_row(r), w1);
                }
            }
        }
    }
}

/// The steps the CPU kernels are made of. `#[inline(always)]` throughout, so that they compile
/// with the instruction set [`with_best_kernels`] enables.
pub trait Kernels: Copy {
    /// `a · b` of two equally long slices.
    fn dot(self, a: &[f32], b: &[f32]) -> f32;
    /// `[w[i] · x[r]]` for two weight rows and four activation rows, all of one length.
    #[inline(always)]
    fn dots_2x4(self, w: [&[f32]; 2], x: [&[f32]; 4]) -> [[f32; 4]; 2] {
        w.map(|w| x.map(|x| self.dot(w, x)))
    }
    /// `out = Σ_t weights[t] · values[t * stride..][..out.len()]`.
    #[inline(always)]
    fn weighted_rows(self, weights: &[f32], values: &[f32], stride: usize, out: &mut [f32]) {
        out.fill(0.0);
        let len = out.len();
        for (t, &p) in weights.iter().enumerate() {
            math::axpy(p, &values[t * stride..][..len], out);
        }
    }
    /// `Σ_b scales[b] · (q_b · x_b)` over blocks of 32 unsigned 4-bit `q` (16 bytes, low
    /// nibbles first).
    fn nibble_dot(self, quants: &[u8], scales: &[f32], x: &[f32]) -> f32;
    /// `Σ_b scales[b] · (q_b · x_b)` over blocks of 32 signed 8-bit `q`.
    fn byte_dot(self, quants: &[u8], scales: &[f32], x: &[f32]) -> f32;
    /// Blocks of `d * (q - 8)`, 4-bit `q`, low nibbles first.
    fn dequantize_q4_0(self, quants: &[u8], scales: &[f32], out: &mut [f32]);
    /// Blocks of `d * q + m`, 4-bit `q`, low nibbles first.
    fn dequantize_q4_1(self, quants: &[u8], scales: &[f32], mins: &[f32], out: &mut [f32]);
    /// Blocks of `d * q`, 8-bit signed `q`.
    fn dequantize_q8_0(self, quants: &[u8], scales: &[f32], out: &mut [f32]);
}

/// Plain loops, for any CPU.
#[derive(Clone, Copy)]
pub struct Portable;

impl Kernels for Portable {
    #[inline(always)]
    fn dot(self, a: &[f32], b: &[f32]) -> f32 {
        math::dot(a, b)
    }

    #[inline(always)]
    fn nibble_dot(self, quants: &[u8], scales: &[f32], x: &[f32]) -> f32 {
        let mut total = 0f32;
        for ((q, x), &d) in quants
            .chunks_exact(16)
            .zip(x.chunks_exact(BLOCK))
            .zip(scales)
        {
            let mut sum = [0f32; 16];
            for j in 0..16 {
                sum[j] = (q[j] & 0x0F) as f32 * x[j] + (q[j] >> 4) as f32 * x[j + 16];
            }
            total += d * sum.iter().sum::<f32>();
        }
        total
    }

    #[inline(always)]
    fn byte_dot(self, quants: &[u8], scales: &[f32], x: &[f32]) -> f32 {
        let mut total = 0f32;
        for ((q, x), &d) in quants
            .chunks_exact(BLOCK)
            .zip(x.chunks_exact(BLOCK))
            .zip(scales)
        {
            let mut sum = [0f32; BLOCK];
            for j in 0..BLOCK {
                sum[j] = q[j] as i8 as f32 * x[j];
            }
            total += d * sum.iter().sum::<f32>();
        }
        total
    }

    #[inline(always)]
    fn dequantize_q4_0(self, quants: &[u8], scales: &[f32], out: &mut [f32]) {
        for ((out, q), &d) in out
            .chunks_exact_mut(BLOCK)
            .zip(quants.chunks_exact(16))
            .zip(scales)
        {
            for j in 0..16 {
                out[j] = ((q[j] & 0x0F) as i16 - 8) as f32 * d;
                out[j + 16] = ((q[j] >> 4) as i16 - 8) as f32 * d;
            }
        }
    }

    #[inline(always)]
    fn dequantize_q4_1(self, quants: &[u8], scales: &[f32], mins: &[f32], out: &mut [f32]) {
        let blocks = out.chunks_exact_mut(BLOCK).zip(quants.chunks_exact(16));
        for ((out, q), (&d, &m)) in blocks.zip(scales.iter().zip(mins)) {
            for j in 0..16 {
                out[j] = (q[j] & 0x0F) as f32 * d + m;
                out[j + 16] = (q[j] >> 4) as f32 * d + m;
            }
        }
    }

    #[inline(always)]
    fn dequantize_q8_0(self, quants: &[u8], scales: &[f32], out: &mut [f32]) {
        for ((out, q), &d) in out
            .chunks_exact_mut(BLOCK)
            .zip(quants.chunks_exact(BLOCK))
            .zip(scales)
        {
            for j in 0..BLOCK {
                out[j] = q[j] as i8 as f32 * d;
            }
        }
    }
}

#[cfg(test)]
mod tests;
