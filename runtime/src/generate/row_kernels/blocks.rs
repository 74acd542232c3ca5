//! GGUF block weights (Q4_0, Q4_1, Q8_0) held for the integer row kernels, and activations
//! quantized to meet them.
//!
//! A product is computed per block of 32 as `d · dx · Σ q·p + m · Σ x`: `q` the weight's
//! quants, `d` its scale, `m` its minimum (Q4_1; `-8d` for Q4_0, whose quants are `q - 8`;
//! none for Q8_0); `p` the activations quantized to 16 bits with the scale `dx`. The sums
//! `Σ q·p` are exact 32-bit integers, so a token's products do not depend on which other
//! tokens share the call, or on how many.
//!
//! Why 16-bit activations: the 8-bit ones of llama.cpp and candle's quantized matmul multiply
//! twice as fast, but on SmolLM2 they drop teacher-forced top-1 agreement with transformers
//! from 761/761 to 731/761 positions. At 16 bits the agreement stays 761/761.
//!
//! Layout: rows in groups of [`GROUP_ROWS`]; each group's blocks are stored so that a 32-byte
//! load unpacks, with one instruction per vector, into vectors of sixteen 16-bit quants that
//! hold two neighbouring weights (a "pair") of each of the eight rows. A pair vector times a
//! broadcast pair of activations (`madd`) adds two products to each row's 32-bit sum.

use candle_core::quantized::GgmlDType;

use super::{with_best_kernels, Kernels, WithKernels};

/// Weights per GGUF block.
pub const BLOCK: usize = 32;

/// Rows stored together, one per 32-bit lane of a vector.
pub const GROUP_ROWS: usize = 8;

/// Pairs of weights per block.
pub const PAIRS: usize = BLOCK / 2;

/// The largest magnitude of a quantized activation.
pub const ACTIVATION_MAX: f32 = i16::MAX as f32;

/// A weight matrix `[rows, cols]` of GGUF blocks of 32 along each row, regrouped.
pub struct BlockMatrix {
    kind: BlockKind,
    rows: usize,
    cols: usize,
    /// `[group][block][row of the group]`.
    scales: Vec<f32>,
    /// As `scales`: Q4_1's minimums, Q4_0's `-8d`; empty for Q8_0.
    mins: Vec<f32>,
    /// `[group][block][group_bytes]`, placed by [`position`].
    quants: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Unsigned 4-bit quants, two per byte.
    Nibbles,
    /// Signed 8-bit quants.
    Bytes,
}

impl BlockKind {
    /// Quant bytes of one block of a group's eight rows.
    pub fn group_bytes(self) -> usize {
        match self {
            Self::Nibbles => GROUP_ROWS * BLOCK / 2,
            Self::Bytes => GROUP_ROWS * BLOCK,
        }
    }
}

/// Where weight `k` of row `r` of a group's block is: its byte, and whether it is the high
/// nibble. Pair `k / 2` is vector `v`; its lane `j` (16 bits) holds row `j / 2`, weight
/// `k % 2`. Unpacking a 32-byte chunk's low (high) half-lanes gives bytes 0–7 and 16–23 (8–15
/// and 24–31), in lane order. Nibbles: chunk `v / 4` gives its low nibbles' two vectors, then
/// its high nibbles'. Bytes: chunk `v / 2` gives two vectors.
fn position(kind: BlockKind, r: usize, k: usize) -> (usize, bool) {
    let (v, j) = (k / 2, 2 * r + k % 2);
    let in_half = j % 8 + j / 8 * 16 + v % 2 * 8;
    match kind {
        BlockKind::Nibbles => (v / 4 * 32 + in_half, v % 4 >= 2),
        BlockKind::Bytes => (v / 2 * 32 + in_half, false),
    }
}

/// The integer quant of weight `k` of row `r` in a group's block `bytes`.
#[inline(always)]
pub fn quant(kind: BlockKind, bytes: &[u8], r: usize, k: usize) -> i32 {
    let (at, high) = position(kind, r, k);
    match (kind, high) {
        (BlockKind::Bytes, _) => bytes[at] as i8 as i32,
        (BlockKind::Nibbles, false) => (bytes[at] & 0x0F) as i32,
        (BlockKind::Nibbles, true) => (bytes[at] >> 4) as i32,
    }
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
        let (kind, block_bytes) = match dtype {
            GgmlDType::Q4_0 => (BlockKind::Nibbles, 18),
            GgmlDType::Q4_1 => (BlockKind::Nibbles, 20),
            GgmlDType::Q8_0 => (BlockKind::Bytes, 34),
            other => anyhow::bail!("no CPU row kernel for {other:?} weights"),
        };
        anyhow::ensure!(
            cols.is_multiple_of(BLOCK),
            "a row of {cols} weights is not whole blocks"
        );
        let per_row = cols / BLOCK;
        anyhow::ensure!(
            raw.len() == rows * per_row * block_bytes,
            "{dtype:?} tensor [{rows}, {cols}] has {} bytes, expected {}",
            raw.len(),
            rows * per_row * block_bytes
        );
        let half = |bytes: &[u8]| half::f16::from_le_bytes([bytes[0], bytes[1]]).to_f32();
        let groups = rows.div_ceil(GROUP_ROWS);
        let slots = groups * per_row * GROUP_ROWS;
        let mut matrix = Self {
            kind,
            rows,
            cols,
            scales: vec![0.0; slots],
            mins: if kind == BlockKind::Bytes {
                Vec::new()
            } else {
                vec![0.0; slots]
            },
            quants: vec![0; groups * per_row * kind.group_bytes()],
        };
        for (row, raw_row) in raw.chunks_exact(per_row * block_bytes).enumerate() {
            let (group, r) = (row / GROUP_ROWS, row % GROUP_ROWS);
            for (b, block) in raw_row.chunks_exact(block_bytes).enumerate() {
                let at = group * per_row + b;
                let d = half(&block[0..2]);
                matrix.scales[at * GROUP_ROWS + r] = d;
                let quants = match dtype {
                    GgmlDType::Q4_1 => {
                        matrix.mins[at * GROUP_ROWS + r] = half(&block[2..4]);
                        &block[4..]
                    }
                    // d·(q - 8) = d·q - 8d, both exact in f32.
                    GgmlDType::Q4_0 => {
                        matrix.mins[at * GROUP_ROWS + r] = -8.0 * d;
                        &block[2..]
                    }
                    _ => &block[2..],
                };
                let out = &mut matrix.quants[at * kind.group_bytes()..][..kind.group_bytes()];
                for k in 0..BLOCK {
                    let (byte, high) = position(kind, r, k);
                    out[byte] |= match kind {
                        // GGUF: byte j holds weight j (low nibble) and j + 16 (high).
                        BlockKind::Nibbles => {
                            let q = if k < 16 {
                                quants[k] & 0x0F
                            } else {
                                quants[k - 16] >> 4
                            };
                            if high {
                                q << 4
                            } else {
                                q
                            }
                        }
                        BlockKind::Bytes => quants[k],
                    };
                }
            }
        }
        Ok(matrix)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn kind(&self) -> BlockKind {
        self.kind
    }

    /// Group `group`'s blocks.
    #[inline(always)]
    pub fn group(&self, group: usize) -> Group<'_> {
        let per_row = self.cols / BLOCK;
        let slots = per_row * GROUP_ROWS;
        Group {
            quants: &self.quants[group * per_row * self.kind.group_bytes()..]
                [..per_row * self.kind.group_bytes()],
            scales: &self.scales[group * slots..][..slots],
            mins: if self.mins.is_empty() {
                &[]
            } else {
                &self.mins[group * slots..][..slots]
            },
        }
    }

    /// Row `row` as f32, into `out` (`cols` long): `d·q + m`, which for each block type is
    /// exactly what candle's `dequantize` computes. The tests check the regrouped layout with
    /// it; the kernels never dequantize.
    #[cfg(test)]
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        let group = self.group(row / GROUP_ROWS);
        let r = row % GROUP_ROWS;
        let bytes = self.kind.group_bytes();
        for (b, out) in out[..self.cols].chunks_exact_mut(BLOCK).enumerate() {
            let quants = &group.quants[b * bytes..][..bytes];
            let d = group.scales[b * GROUP_ROWS + r];
            let m = group.mins.get(b * GROUP_ROWS + r).copied().unwrap_or(0.0);
            for (k, out) in out.iter_mut().enumerate() {
                *out = quant(self.kind, quants, r, k) as f32 * d + m;
            }
        }
    }
}

/// One group's blocks: quants, and per block and row scales and minimums (empty for Q8_0).
#[derive(Clone, Copy)]
pub struct Group<'a> {
    pub quants: &'a [u8],
    pub scales: &'a [f32],
    pub mins: &'a [f32],
}

/// Activation rows `[m, cols]` quantized per block of 32 to 16 bits.
pub struct QuantizedTokens {
    cols: usize,
    /// `[token][pair]`: two quantized values per `i32`, the first in the low half.
    pairs: Vec<i32>,
    /// `[token][block]`: `dx`.
    scales: Vec<f32>,
    /// `[token][block]`: the sum of the block's f32 values.
    sums: Vec<f32>,
}

impl QuantizedTokens {
    /// `rows` (`m` of them), on the best kernels of this CPU.
    pub fn new(rows: &[f32], m: usize) -> Self {
        struct Work<'a>(&'a [f32], usize);
        impl WithKernels for Work<'_> {
            type Output = QuantizedTokens;
            #[inline(always)]
            fn with<K: Kernels>(self, kernels: K) -> QuantizedTokens {
                QuantizedTokens::with_kernels(kernels, self.0, self.1)
            }
        }
        with_best_kernels(Work(rows, m))
    }

    #[inline(always)]
    pub fn with_kernels<K: Kernels>(kernels: K, rows: &[f32], m: usize) -> Self {
        let cols = rows.len() / m.max(1);
        let blocks = rows.len() / BLOCK;
        let mut tokens = Self {
            cols,
            pairs: vec![0; rows.len() / 2],
            scales: Vec::with_capacity(blocks),
            sums: Vec::with_capacity(blocks),
        };
        for (block, pairs) in rows
            .chunks_exact(BLOCK)
            .zip(tokens.pairs.chunks_exact_mut(PAIRS))
        {
            let (scale, sum) = kernels.quantize_block(block, pairs);
            tokens.scales.push(scale);
            tokens.sums.push(sum);
        }
        tokens
    }

    /// Token `t`'s blocks.
    #[inline(always)]
    pub fn token(&self, t: usize) -> TokenBlocks<'_> {
        let blocks = self.cols / BLOCK;
        TokenBlocks {
            pairs: &self.pairs[t * self.cols / 2..][..self.cols / 2],
            scales: &self.scales[t * blocks..][..blocks],
            sums: &self.sums[t * blocks..][..blocks],
        }
    }
}

/// One token's quantized blocks.
#[derive(Clone, Copy)]
pub struct TokenBlocks<'a> {
    pub pairs: &'a [i32],
    pub scales: &'a [f32],
    pub sums: &'a [f32],
}

/// Two 16-bit values as a pair, the first in the low half.
#[inline(always)]
pub fn pair(first: i16, second: i16) -> i32 {
    (first as u16 as u32 | (second as u16 as u32) << 16) as i32
}

/// The two 16-bit values of a pair.
#[inline(always)]
pub fn unpair(pair: i32) -> [i32; 2] {
    [pair as i16 as i32, (pair >> 16) as i16 as i32]
}
