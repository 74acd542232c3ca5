//! CPU kernels for a few activation rows against a large weight matrix: each weight row is read
//! once per call and multiplied with every activation row while it is in L1. Also the vector
//! steps of decode attention ([`Kernels::dot`], [`Kernels::weighted_rows`]).
//!
//! This is the shape of a decode step (one row per sequence), where candle's CPU matmul spends
//! most of its time packing the whole weight matrix, and its quantized matmul rounds the
//! activations to 8 bits. Here GGUF blocks of 32 (Q4_0, Q4_1, Q8_0) meet f32 activations: for one
//! token straight from the quants (`d · Σ q·x + m · Σ x` per block); for more tokens
//! dequantized a few rows at a time exactly as candle dequantizes them, then up to eight tokens
//! as dot products (two rows against four or two tokens at once), more as a gemm microkernel does it
//! (each weight broadcast against sixteen tokens held column by column, six rows at once). The
//! quantized model computes what the f32-dequantized one computes, up to rounding, reading a
//! quarter to an eighth of the memory.
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

/// The activation rows of one product, `[m, cols]`, prepared for the row kernels.
pub struct Tokens<'a> {
    rows: &'a [f32],
    m: usize,
    cols: usize,
    /// The sums of each block of the row, for one token on block weights; else empty.
    block_sums: Vec<f32>,
    /// For more than [`LANES`] tokens, in groups of [`GROUP`]: each group column by column,
    /// `[cols, lanes]`, its tokens zero-padded to one or two vectors; else empty.
    columns: Vec<f32>,
}

/// Tokens that [`RowsTimes`] holds in registers at once: two vectors.
const GROUP: usize = 2 * LANES;

impl<'a> Tokens<'a> {
    pub fn new(rows: &'a [f32], m: usize) -> Self {
        let cols = rows.len() / m.max(1);
        let mut tokens = Self {
            rows,
            m,
            cols,
            block_sums: Vec::new(),
            columns: Vec::new(),
        };
        if m <= FUSED_MAX_TOKENS {
            if cols.is_multiple_of(BLOCK) {
                tokens.block_sums = rows
                    .chunks_exact(BLOCK)
                    .map(|block| block.iter().sum())
                    .collect();
            }
            return tokens;
        }
        if m <= LANES {
            return tokens;
        }
        for group in tokens.groups() {
            let lanes = group.len().next_multiple_of(LANES);
            let at = tokens.columns.len();
            tokens.columns.resize(at + cols * lanes, 0.0);
            let columns = &mut tokens.columns[at..];
            for (t, row) in rows[group.start * cols..group.end * cols]
                .chunks_exact(cols)
                .enumerate()
            {
                for (c, &value) in row.iter().enumerate() {
                    columns[c * lanes + t] = value;
                }
            }
        }
        tokens
    }

    /// The tokens in groups of up to [`GROUP`].
    fn groups(&self) -> impl Iterator<Item = Range<usize>> {
        let m = self.m;
        (0..m).step_by(GROUP).map(move |t| t..(t + GROUP).min(m))
    }

    fn row(&self, r: usize) -> &[f32] {
        &self.rows[r * self.cols..][..self.cols]
    }
}

/// One call of the row kernels: `out[r][i] = x[r] · w[rows.start + i]` for the `m` rows of
/// `x`, each token's products with weight rows `rows`. `scratch` holds dequantized rows.
pub struct RowsTimes<'a, 'w> {
    pub x: &'a Tokens<'a>,
    pub weights: &'a WeightRows<'w>,
    pub rows: Range<usize>,
    pub out: Vec<&'a mut [f32]>,
    pub scratch: &'a mut Vec<f32>,
}

impl RowsTimes<'_, '_> {
    /// Runs on the best kernels of this CPU.
    pub fn run(self) {
        with_best_kernels(self)
    }

    /// More than [`LANES`] tokens: weight rows [`TILE_ROWS`] at a time, each tile dequantized
    /// once and multiplied with each group of tokens, one weight broadcast against one or two
    /// vectors of tokens.
    #[inline(always)]
    fn broadcast_tiles<K: Kernels>(mut self, kernels: K) {
        let (x, rows) = (self.x, self.rows.clone());
        let cols = x.cols;
        for first in rows.clone().step_by(TILE_ROWS) {
            let tile = first..(first + TILE_ROWS).min(rows.end);
            let w: [&[f32]; TILE_ROWS] =
                tile_rows(kernels, self.weights, tile.clone(), self.scratch);
            let at = tile.start - rows.start;
            let mut columns = &x.columns[..];
            for group in x.groups() {
                let mut products = [[[0f32; LANES]; 2]; TILE_ROWS];
                if group.len() > LANES {
                    let (here, rest) = columns.split_at(cols * GROUP);
                    columns = rest;
                    kernels.rows_by_columns::<TILE_ROWS, 2>(w, here, &mut products);
                } else {
                    let (here, rest) = columns.split_at(cols * LANES);
                    columns = rest;
                    let mut one = [[[0f32; LANES]; 1]; TILE_ROWS];
                    kernels.rows_by_columns::<TILE_ROWS, 1>(w, here, &mut one);
                    for (products, one) in products.iter_mut().zip(one) {
                        products[0] = one[0];
                    }
                }
                for (t, out) in self.out[group.clone()].iter_mut().enumerate() {
                    for (p, products) in products.iter().take(tile.len()).enumerate() {
                        out[at + p] = products[t / LANES][t % LANES];
                    }
                }
            }
        }
    }

    /// Up to [`LANES`] tokens, too few to fill a vector: dot products, two weight rows (each
    /// dequantized once) against four tokens at a time.
    #[inline(always)]
    fn paired_dots<K: Kernels>(mut self, kernels: K) {
        let (x, rows) = (self.x, self.rows.clone());
        for first in rows.clone().step_by(2) {
            let pair = first..(first + 2).min(rows.end);
            let w: [&[f32]; 2] = tile_rows(kernels, self.weights, pair.clone(), self.scratch);
            let at = pair.start - rows.start;
            let mut r = 0;
            while r + 2 <= x.m {
                let dots: [[f32; 4]; 2];
                let count = if r + 4 <= x.m {
                    dots = kernels.dots_2x(w, [x.row(r), x.row(r + 1), x.row(r + 2), x.row(r + 3)]);
                    4
                } else {
                    let two = kernels.dots_2x(w, [x.row(r), x.row(r + 1)]);
                    dots = [
                        [two[0][0], two[0][1], 0.0, 0.0],
                        [two[1][0], two[1][1], 0.0, 0.0],
                    ];
                    2
                };
                for (p, dots) in dots.iter().take(pair.len()).enumerate() {
                    for (out, &dot) in self.out[r..r + count].iter_mut().zip(dots) {
                        out[at + p] = dot;
                    }
                }
                r += count;
            }
            for (r, out) in self.out.iter_mut().enumerate().skip(r) {
                for (p, w) in w.iter().take(pair.len()).enumerate() {
                    out[at + p] = kernels.dot(x.row(r), w);
                }
            }
        }
    }
}

/// Weight rows `tile` (at most `R`; past its end the last is repeated) as f32: the rows
/// themselves, or dequantized into `scratch`.
#[inline(always)]
fn tile_rows<'s, K: Kernels, const R: usize>(
    kernels: K,
    weights: &'s WeightRows<'_>,
    tile: Range<usize>,
    scratch: &'s mut Vec<f32>,
) -> [&'s [f32]; R] {
    let cols = weights.cols();
    let row = |p: usize| tile.start + p.min(tile.len() - 1);
    let mut w: [&[f32]; R] = [&[]; R];
    match weights {
        WeightRows::F32 { data, .. } => {
            for (p, w) in w.iter_mut().enumerate() {
                *w = &data[row(p) * cols..][..cols];
            }
        }
        WeightRows::Blocks(blocks) => {
            scratch.resize(R * cols, 0.0);
            for (p, part) in scratch.chunks_exact_mut(cols).enumerate() {
                blocks.dequantize_row(kernels, row(p), part);
            }
            for (w, part) in w.iter_mut().zip(scratch.chunks_exact(cols)) {
                *w = part;
            }
        }
    }
    w
}

/// Weight rows multiplied at once with a group of tokens: with two vectors of tokens, 12
/// accumulators.
const TILE_ROWS: usize = 6;

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

/// Up to this many tokens, block rows are multiplied straight from their quants; above it,
/// each row is dequantized once and shared by the tokens (from two tokens on, the faster).
const FUSED_MAX_TOKENS: usize = 1;

/// Floats per vector of the widest kernels.
const LANES: usize = 8;

impl WithKernels for RowsTimes<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with<K: Kernels>(self, kernels: K) {
        let x = self.x;
        if x.m > FUSED_MAX_TOKENS {
            return if x.m > LANES {
                self.broadcast_tiles(kernels)
            } else {
                self.paired_dots(kernels)
            };
        }
        let Self {
            weights,
            rows,
            mut out,
            ..
        } = self;
        let cols = weights.cols();
        match weights {
            WeightRows::F32 { data, .. } => {
                for (i, row) in rows.enumerate() {
                    let w = &data[row * cols..][..cols];
                    for (r, out) in out.iter_mut().enumerate() {
                        out[i] = kernels.dot(x.row(r), w);
                    }
                }
            }
            WeightRows::Blocks(blocks) => {
                let per_row = cols / BLOCK;
                for (i, row) in rows.enumerate() {
                    let (quants, scales, mins) = blocks.row(row);
                    for (r, out) in out.iter_mut().enumerate() {
                        let sums = &x.block_sums[r * per_row..][..per_row];
                        out[i] = match blocks.kind {
                            BlockKind::Q4_0 => {
                                kernels.nibble_dot(quants, scales, x.row(r))
                                    - 8.0 * kernels.dot(scales, sums)
                            }
                            BlockKind::Q4_1 => {
                                kernels.nibble_dot(quants, scales, x.row(r))
                                    + kernels.dot(mins, sums)
                            }
                            BlockKind::Q8_0 => kernels.byte_dot(quants, scales, x.row(r)),
                        };
                    }
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
    /// `[w[i] · x[r]]` for two weight rows and `T` activation rows, all of one length.
    #[inline(always)]
    fn dots_2x<const T: usize>(self, w: [&[f32]; 2], x: [&[f32]; T]) -> [[f32; T]; 2] {
        w.map(|w| x.map(|x| self.dot(w, x)))
    }
    /// `out[p][v][l] = Σ_c w[p][c] · columns[c * V * 8 + v * 8 + l]`: `R` weight rows against
    /// `V · 8` tokens laid out column by column.
    #[inline(always)]
    fn rows_by_columns<const R: usize, const V: usize>(
        self,
        w: [&[f32]; R],
        columns: &[f32],
        out: &mut [[[f32; LANES]; V]; R],
    ) {
        let lanes = V * LANES;
        for (p, w) in w.iter().enumerate() {
            for (c, &weight) in w.iter().enumerate() {
                let column = &columns[c * lanes..][..lanes];
                for (v, out) in out[p].iter_mut().enumerate() {
                    math::axpy(weight, &column[v * LANES..][..LANES], out);
                }
            }
        }
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
