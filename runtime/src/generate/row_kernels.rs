//! CPU kernels for activation rows against a large weight matrix, each weight read once per
//! call while it is in L1. Also the vector steps of CPU attention ([`Kernels::key_scores`],
//! [`Kernels::weighted_rows`]).
//!
//! candle's CPU matmul spends most of a decode step (one row per sequence) packing the whole
//! weight matrix, and its quantized matmul rounds the activations to 8 bits. Here:
//!
//! - GGUF blocks of 32 (Q4_0, Q4_1, Q8_0), at any token count (decode steps and prompt
//!   chunks): activations quantized to 16 bits per block, integer products of eight rows with
//!   up to six tokens at a time, exact 32-bit sums scaled per block ([`blocks`] says why 16
//!   bits). A token's products are the same whichever tokens share the call.
//! - f32 rows, up to [`ROW_KERNEL_MAX_TOKENS`](super::linear::ROW_KERNEL_MAX_TOKENS) tokens:
//!   one token by dot products; up to eight, two rows against four or two tokens at once; more
//!   as a gemm microkernel does it (each weight broadcast against sixteen tokens held column by
//!   column, six rows at once).
//!
//! Each kernel exists twice behind [`Kernels`]: [`Portable`] plain loops, and on x86-64 with
//! AVX2 and FMA (`x86::Avx2`, chosen at run time by [`with_best_kernels`]) the same steps in
//! vector instructions through pulp's safe intrinsics, so one binary serves old and new CPUs and
//! the crate stays free of `unsafe`.

use std::ops::Range;

use crate::model::math;

mod blocks;
#[cfg(target_arch = "x86_64")]
mod x86;

use blocks::{pair, quant, unpair, ACTIVATION_MAX, PAIRS};
pub use blocks::{BlockKind, BlockMatrix, Group, QuantizedTokens, TokenBlocks, BLOCK, GROUP_ROWS};

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

/// The activation rows of one product, `[m, cols]`, prepared for the weights they meet.
pub struct Tokens<'a> {
    rows: &'a [f32],
    m: usize,
    cols: usize,
    /// For f32 weights and more than [`LANES`] tokens, in groups of [`GROUP`]: each group
    /// column by column, `[cols, lanes]`, its tokens zero-padded to one or two vectors; else
    /// empty.
    columns: Vec<f32>,
    /// For block weights.
    quantized: Option<QuantizedTokens>,
}

/// Tokens that the f32 broadcast kernel holds in registers at once: two vectors.
const GROUP: usize = 2 * LANES;

impl<'a> Tokens<'a> {
    /// `rows` (`m` of them) prepared for each kind of `weights`.
    pub fn new(rows: &'a [f32], m: usize, weights: &[WeightRows<'_>]) -> Self {
        let cols = rows.len() / m.max(1);
        let mut tokens = Self {
            rows,
            m,
            cols,
            columns: Vec::new(),
            quantized: None,
        };
        if weights.iter().any(|w| matches!(w, WeightRows::Blocks(_))) {
            tokens.quantized = Some(QuantizedTokens::new(rows, m));
        }
        if m <= LANES || !weights.iter().any(|w| matches!(w, WeightRows::F32 { .. })) {
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
/// `x`, each token's products with weight rows `rows`. For block weights `rows` starts at a
/// multiple of [`GROUP_ROWS`].
pub struct RowsTimes<'a, 'w> {
    pub x: &'a Tokens<'a>,
    pub weights: &'a WeightRows<'w>,
    pub rows: Range<usize>,
    pub out: Vec<&'a mut [f32]>,
}

/// Tokens multiplied at once with a group of block rows, at most.
const TOKEN_TILE: usize = 6;

impl RowsTimes<'_, '_> {
    /// Runs on the best kernels of this CPU.
    pub fn run(self) {
        with_best_kernels(self)
    }

    /// Block weights: tiles of up to [`TOKEN_TILE`] tokens, each against every group of rows.
    #[inline(always)]
    fn block_groups<K: Kernels>(mut self, kernels: K, blocks: &BlockMatrix) {
        let x = self
            .x
            .quantized
            .as_ref()
            .expect("tokens quantized for block weights");
        let rows = self.rows.clone();
        assert!(
            rows.start.is_multiple_of(GROUP_ROWS),
            "block rows are taken from a group's first"
        );
        let mut first = 0;
        while first < self.x.m {
            let out = &mut self.out[first..];
            let tokens = first..self.x.m;
            first += match tokens.len() {
                left if left >= TOKEN_TILE => {
                    block_tile::<K, TOKEN_TILE>(kernels, blocks, x, tokens, &rows, out)
                }
                4 | 5 => block_tile::<K, 4>(kernels, blocks, x, tokens, &rows, out),
                2 | 3 => block_tile::<K, 2>(kernels, blocks, x, tokens, &rows, out),
                _ => block_tile::<K, 1>(kernels, blocks, x, tokens, &rows, out),
            };
        }
    }

    /// f32 weights, more than [`LANES`] tokens: weight rows [`TILE_ROWS`] at a time, each
    /// multiplied with each group of tokens, one weight broadcast against one or two vectors
    /// of tokens.
    #[inline(always)]
    fn broadcast_tiles<K: Kernels>(mut self, kernels: K, data: &[f32], cols: usize) {
        let (x, rows) = (self.x, self.rows.clone());
        for first in rows.clone().step_by(TILE_ROWS) {
            let tile = first..(first + TILE_ROWS).min(rows.end);
            let w: [&[f32]; TILE_ROWS] = tile_rows(data, cols, tile.clone());
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

    /// f32 weights, up to [`LANES`] tokens, too few to fill a vector: dot products, two weight
    /// rows against four tokens at a time.
    #[inline(always)]
    fn paired_dots<K: Kernels>(mut self, kernels: K, data: &[f32], cols: usize) {
        let (x, rows) = (self.x, self.rows.clone());
        for first in rows.clone().step_by(2) {
            let pair = first..(first + 2).min(rows.end);
            let w: [&[f32]; 2] = tile_rows(data, cols, pair.clone());
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

/// The first `T` of `tokens` against weight rows `rows` of `blocks`, group by group, into
/// `out` (one slice per token, from the first); returns `T`.
#[inline(always)]
fn block_tile<K: Kernels, const T: usize>(
    kernels: K,
    blocks: &BlockMatrix,
    x: &QuantizedTokens,
    tokens: Range<usize>,
    rows: &Range<usize>,
    out: &mut [&mut [f32]],
) -> usize {
    let mut tile = [x.token(tokens.start); T];
    for (t, tile) in tile.iter_mut().enumerate() {
        *tile = x.token(tokens.start + t);
    }
    for group in rows.start / GROUP_ROWS..rows.end.div_ceil(GROUP_ROWS) {
        let group_rows = group * GROUP_ROWS..((group + 1) * GROUP_ROWS).min(rows.end);
        let (at, len) = (group_rows.start - rows.start, group_rows.len());
        let products = kernels.group_products(blocks.kind(), blocks.group(group), tile);
        for (out, products) in out.iter_mut().zip(products) {
            out[at..][..len].copy_from_slice(&products[..len]);
        }
    }
    T
}

/// f32 weight rows `tile` (at most `R`; past its end the last is repeated).
#[inline(always)]
fn tile_rows<const R: usize>(data: &[f32], cols: usize, tile: Range<usize>) -> [&[f32]; R] {
    let mut w: [&[f32]; R] = [&[]; R];
    for (p, w) in w.iter_mut().enumerate() {
        let row = tile.start + p.min(tile.len() - 1);
        *w = &data[row * cols..][..cols];
    }
    w
}

/// Weight rows multiplied at once with a group of tokens: with two vectors of tokens, 12
/// accumulators.
const TILE_ROWS: usize = 6;

/// Floats per vector of the widest kernels.
const LANES: usize = 8;

impl WithKernels for RowsTimes<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with<K: Kernels>(mut self, kernels: K) {
        let x = self.x;
        match *self.weights {
            WeightRows::Blocks(blocks) => self.block_groups(kernels, blocks),
            WeightRows::F32 { data, cols } if x.m > LANES => {
                self.broadcast_tiles(kernels, data, cols)
            }
            WeightRows::F32 { data, cols } if x.m > 1 => self.paired_dots(kernels, data, cols),
            WeightRows::F32 { data, cols } => {
                for (i, row) in self.rows.clone().enumerate() {
                    self.out[0][i] = kernels.dot(x.row(0), &data[row * cols..][..cols]);
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
    /// `out[t][r]`: the products of the eight rows of `group` with each of `x`, block by
    /// block `acc = (d · dx) · Σ q·p + acc`, then `acc = m · Σx + acc` (both fused
    /// multiply-adds), as the [`blocks`] module describes.
    #[inline(always)]
    fn group_products<const T: usize>(
        self,
        kind: BlockKind,
        group: Group<'_>,
        x: [TokenBlocks<'_>; T],
    ) -> [[f32; GROUP_ROWS]; T] {
        let bytes = kind.group_bytes();
        let mut acc = [[0f32; GROUP_ROWS]; T];
        for (b, quants) in group.quants.chunks_exact(bytes).enumerate() {
            for (x, acc) in x.iter().zip(acc.iter_mut()) {
                let pairs = &x.pairs[b * PAIRS..][..PAIRS];
                for (r, acc) in acc.iter_mut().enumerate() {
                    let mut sum = 0i32;
                    for (v, &pair) in pairs.iter().enumerate() {
                        let [first, second] = unpair(pair);
                        sum += quant(kind, quants, r, 2 * v) * first
                            + quant(kind, quants, r, 2 * v + 1) * second;
                    }
                    let scale = group.scales[b * GROUP_ROWS + r] * x.scales[b];
                    *acc = scale.mul_add(sum as f32, *acc);
                    if let Some(&m) = group.mins.get(b * GROUP_ROWS + r) {
                        *acc = m.mul_add(x.sums[b], *acc);
                    }
                }
            }
        }
        acc
    }
    /// One block of 32 activations quantized to 16 bits, round half to even, into `pairs` (16):
    /// returns the scale `dx` and the block's sum (added lane by lane as eight lanes of four,
    /// then the lanes as [`x86::Avx2`] sums a vector).
    #[inline(always)]
    fn quantize_block(self, x: &[f32], pairs: &mut [i32]) -> (f32, f32) {
        let x = &x[..BLOCK];
        let amax = x.iter().fold(0f32, |a, x| a.max(x.abs()));
        let inverse = if amax > 0.0 {
            ACTIVATION_MAX / amax
        } else {
            0.0
        };
        for (out, two) in pairs[..PAIRS].iter_mut().zip(x.chunks_exact(2)) {
            let [first, second] = [two[0], two[1]].map(|x| (x * inverse).round_ties_even() as i16);
            *out = pair(first, second);
        }
        let mut lanes = [0f32; LANES];
        for (l, lane) in lanes.iter_mut().enumerate() {
            *lane = ((x[l] + x[l + 8]) + x[l + 16]) + x[l + 24];
        }
        let sum = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
            + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
        (amax / ACTIVATION_MAX, sum)
    }
    /// `scores[g][t] = queries[g] · keys[t * stride..][..d]` for each `t` of the scores: `G`
    /// query heads against the cached keys of the KV head they share.
    #[inline(always)]
    fn key_scores<const G: usize>(
        self,
        queries: [&[f32]; G],
        keys: &[f32],
        stride: usize,
        scores: [&mut [f32]; G],
    ) {
        scores_by_dots(self, queries, keys, stride, scores);
    }
    /// `out[g] += Σ_t weights[g][t] · values[t * stride..][..d]`: `G` heads' attention
    /// outputs from the values of the KV head they share, added in order of `t` to what `out`
    /// holds.
    #[inline(always)]
    fn weighted_rows<const G: usize>(
        self,
        weights: [&[f32]; G],
        values: &[f32],
        stride: usize,
        out: [&mut [f32]; G],
    ) {
        weighted_by_rows(weights, values, stride, out);
    }
}

/// [`Kernels::key_scores`] one key and head at a time.
#[inline(always)]
fn scores_by_dots<K: Kernels, const G: usize>(
    kernels: K,
    queries: [&[f32]; G],
    keys: &[f32],
    stride: usize,
    scores: [&mut [f32]; G],
) {
    for (query, scores) in queries.iter().zip(scores) {
        for (t, score) in scores.iter_mut().enumerate() {
            *score = kernels.dot(query, &keys[t * stride..][..query.len()]);
        }
    }
}

/// [`Kernels::weighted_rows`] one head and value row at a time.
#[inline(always)]
fn weighted_by_rows<const G: usize>(
    weights: [&[f32]; G],
    values: &[f32],
    stride: usize,
    out: [&mut [f32]; G],
) {
    for (weights, out) in weights.iter().zip(out) {
        let len = out.len();
        for (t, &p) in weights.iter().enumerate() {
            math::axpy(p, &values[t * stride..][..len], out);
        }
    }
}

/// Plain loops, for any CPU.
#[derive(Clone, Copy)]
pub struct Portable;

impl Kernels for Portable {
    #[inline(always)]
    fn dot(self, a: &[f32], b: &[f32]) -> f32 {
        math::dot(a, b)
    }
}

#[cfg(test)]
mod tests;
