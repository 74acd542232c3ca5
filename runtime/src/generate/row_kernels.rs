//! CPU kernels for a few activation rows against a large weight matrix: each weight row is read
//! once and multiplied with every activation row while it is in L1.
//!
//! This is the shape of a decode step (one row per sequence), where candle's CPU matmul spends
//! most of its time packing the whole weight matrix, and its quantized matmul rounds the
//! activations to 8 bits. Here GGUF blocks of 32 (Q4_0, Q4_1, Q8_0) are dequantized row by row
//! exactly as candle dequantizes them, and multiplied with f32 activations: the quantized model
//! computes what the f32-dequantized one computes, reading a quarter to an eighth of the memory.
//!
//! Each kernel exists twice behind [`Kernels`]: [`Portable`] plain loops, and on x86-64 with
//! AVX2 and FMA ([`x86::Avx2`], chosen at run time) the same steps in vector instructions
//! through pulp's safe intrinsics, so one binary serves old and new CPUs.

use std::ops::Range;

use candle_core::quantized::GgmlDType;

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
}

/// `out[i * m + r] = x[r] · w[rows.start + i]` for the `m` rows of `x` (`[m, cols]`): the
/// products of weight rows `rows`, transposed. `scratch` holds a dequantized row.
pub fn rows_times(
    x: &[f32],
    m: usize,
    weights: &WeightRows<'_>,
    rows: Range<usize>,
    out: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    #[cfg(target_arch = "x86_64")]
    if let Some(kernels) = x86::Avx2::new() {
        return kernels.run(
            #[inline(always)]
            || rows_times_with(kernels, x, m, weights, rows, out, scratch),
        );
    }
    rows_times_with(Portable, x, m, weights, rows, out, scratch)
}

/// Row `row` of `blocks` as f32, into `out`.
pub fn dequantize_row(blocks: &BlockMatrix, row: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(kernels) = x86::Avx2::new() {
        return kernels.run(
            #[inline(always)]
            || blocks.dequantize_row(kernels, row, out),
        );
    }
    blocks.dequantize_row(Portable, row, out)
}

#[inline(always)]
fn rows_times_with<K: Kernels>(
    kernels: K,
    x: &[f32],
    m: usize,
    weights: &WeightRows<'_>,
    rows: Range<usize>,
    out: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    for (i, row) in rows.enumerate() {
        let w: &[f32] = match weights {
            WeightRows::F32 { data, cols } => &data[row * cols..][..*cols],
            WeightRows::Blocks(blocks) => {
                scratch.resize(blocks.cols(), 0.0);
                blocks.dequantize_row(kernels, row, scratch);
                scratch
            }
        };
        let cols = w.len();
        for r in 0..m {
            out[i * m + r] = kernels.dot(&x[r * cols..][..cols], w);
        }
    }
}

/// The steps the row kernels are made of. `#[inline(always)]` throughout, so that they compile
/// with the instruction set [`x86::Avx2::run`] enables.
pub trait Kernels: Copy {
    /// `a · b` over their common length.
    fn dot(self, a: &[f32], b: &[f32]) -> f32;
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
        // Sixteen independent sums, which compilers turn into vector code.
        const LANES: usize = 16;
        let mut acc = [0f32; LANES];
        let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        let tail: f32 = (a_chunks.remainder().iter())
            .zip(b_chunks.remainder())
            .map(|(x, y)| x * y)
            .sum();
        for (x, y) in a_chunks.zip(b_chunks) {
            for i in 0..LANES {
                acc[i] += x[i] * y[i];
            }
        }
        acc.iter().sum::<f32>() + tail
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
