//! The row kernels in AVX2 and FMA instructions, through pulp's safe intrinsics.

use std::arch::x86_64::{__m256, __m256i};

use pulp::bytemuck::cast;
use pulp::x86::V3;

use super::{BlockKind, Group, Kernels, TokenBlocks, ACTIVATION_MAX, GROUP_ROWS, LANES, PAIRS};

/// The kernels on a CPU with AVX2 and FMA.
#[derive(Clone, Copy)]
pub struct Avx2(V3);

impl Avx2 {
    /// `None` when the CPU lacks AVX2 or FMA.
    pub fn new() -> Option<Self> {
        V3::try_new().map(Self)
    }

    /// Runs `f` compiled with AVX2 and FMA enabled.
    #[inline(always)]
    pub fn run<R>(self, f: impl FnOnce() -> R) -> R {
        self.0.vectorize(f)
    }

    #[inline(always)]
    fn load(self, values: &[f32]) -> __m256 {
        let values: [f32; 8] = values[..8].try_into().expect("8 values");
        cast(values)
    }

    #[inline(always)]
    fn store(self, value: __m256, out: &mut [f32]) {
        let value: [f32; 8] = cast(value);
        out[..8].copy_from_slice(&value);
    }

    /// The sum of a vector's lanes, in a fixed order.
    #[inline(always)]
    fn sum(self, value: __m256) -> f32 {
        let lanes: [f32; 8] = cast(value);
        ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
            + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]))
    }

    /// The lane sums of four vectors, in order, by one tree of horizontal adds.
    #[inline(always)]
    fn sums_of_four(self, v: [__m256; 4]) -> [f32; 4] {
        let simd = self.0;
        let pairs = [
            simd.avx._mm256_hadd_ps(v[0], v[1]),
            simd.avx._mm256_hadd_ps(v[2], v[3]),
        ];
        // Lanes `[s0, s1, s2, s3 | s0, s1, s2, s3]`, each half the sum of four lanes.
        let quads = simd.avx._mm256_hadd_ps(pairs[0], pairs[1]);
        let halves = [
            simd.avx._mm256_castps256_ps128(quads),
            simd.avx._mm256_extractf128_ps::<1>(quads),
        ];
        cast(simd.sse._mm_add_ps(halves[0], halves[1]))
    }

    /// The dot products of `G` queries (each a multiple of eight long) with `K` (at most four)
    /// keys, one vector accumulator per query and key; the keys past `K` stay zero. Each key is
    /// loaded once for all the queries.
    #[inline(always)]
    fn key_accumulators<const G: usize, const K: usize>(
        self,
        queries: [&[f32]; G],
        keys: &[f32],
        stride: usize,
    ) -> [[__m256; 4]; G] {
        let simd = self.0;
        let d = queries[0].len();
        let mut rows: [&[f32]; K] = [&[]; K];
        for (k, row) in rows.iter_mut().enumerate() {
            *row = &keys[k * stride..][..d];
        }
        let zero = simd.avx._mm256_setzero_ps();
        let mut acc = [[zero; 4]; G];
        for at in (0..d).step_by(8) {
            let mut q = [zero; G];
            for g in 0..G {
                q[g] = self.load(&queries[g][at..]);
            }
            for k in 0..K {
                let key = self.load(&rows[k][at..]);
                for g in 0..G {
                    acc[g][k] = simd.fma._mm256_fmadd_ps(q[g], key, acc[g][k]);
                }
            }
        }
        acc
    }

    /// Columns `first..first + 8 * V` of `G` heads' weighted sums of the value rows, added
    /// to `out`: the `G × V` accumulators stay in registers across all the rows, and each value
    /// vector is loaded once for all the heads.
    #[inline(always)]
    fn weighted_columns<const G: usize, const V: usize>(
        self,
        weights: [&[f32]; G],
        values: &[f32],
        stride: usize,
        first: usize,
        out: &mut [&mut [f32]; G],
    ) {
        let simd = self.0;
        let seen = weights[0].len();
        let zero = simd.avx._mm256_setzero_ps();
        let mut acc = [[zero; V]; G];
        for g in 0..G {
            for v in 0..V {
                acc[g][v] = self.load(&out[g][first + v * 8..]);
            }
        }
        for t in 0..seen {
            let row = &values[t * stride + first..][..V * 8];
            let mut p = [zero; G];
            for g in 0..G {
                p[g] = simd.avx._mm256_set1_ps(weights[g][t]);
            }
            for v in 0..V {
                let x = self.load(&row[v * 8..]);
                for g in 0..G {
                    acc[g][v] = simd.fma._mm256_fmadd_ps(p[g], x, acc[g][v]);
                }
            }
        }
        for g in 0..G {
            for v in 0..V {
                self.store(acc[g][v], &mut out[g][first + v * 8..]);
            }
        }
    }

    /// `group_products` for one kind of block: nibbles (unsigned 4-bit) or signed bytes.
    #[inline(always)]
    fn block_products<const T: usize, const NIBBLES: bool>(
        self,
        group: Group<'_>,
        x: [TokenBlocks<'_>; T],
    ) -> [[f32; GROUP_ROWS]; T] {
        let simd = self.0;
        let kind = if NIBBLES {
            BlockKind::Nibbles
        } else {
            BlockKind::Bytes
        };
        let bytes = kind.group_bytes();
        let mask = simd.avx._mm256_set1_epi8(0x0F);
        let zero = simd.avx._mm256_setzero_si256();
        let has_mins = !group.mins.is_empty();
        let mut acc = [simd.avx._mm256_setzero_ps(); T];
        for (b, quants) in group.quants.chunks_exact(bytes).enumerate() {
            let mut pairs: [&[i32; PAIRS]; T] = [&[0; PAIRS]; T];
            for t in 0..T {
                pairs[t] = x[t].pairs[b * PAIRS..][..PAIRS]
                    .try_into()
                    .expect("a block of pairs");
            }
            let mut sums = [zero; T];
            let chunks = if NIBBLES { 4 } else { 8 };
            for c in 0..chunks {
                let chunk: [u8; 32] = quants[c * 32..][..32].try_into().expect("32 bytes");
                let raw: __m256i = cast(chunk);
                // Each vector: sixteen 16-bit quants, a pair of weights of each of 8 rows.
                let (vectors, count) = if NIBBLES {
                    let low = simd.avx2._mm256_and_si256(raw, mask);
                    let high = simd
                        .avx2
                        ._mm256_and_si256(simd.avx2._mm256_srli_epi16::<4>(raw), mask);
                    let vectors = [
                        simd.avx2._mm256_unpacklo_epi8(low, zero),
                        simd.avx2._mm256_unpackhi_epi8(low, zero),
                        simd.avx2._mm256_unpacklo_epi8(high, zero),
                        simd.avx2._mm256_unpackhi_epi8(high, zero),
                    ];
                    (vectors, 4)
                } else {
                    let sign = simd.avx2._mm256_cmpgt_epi8(zero, raw);
                    let low = simd.avx2._mm256_unpacklo_epi8(raw, sign);
                    let high = simd.avx2._mm256_unpackhi_epi8(raw, sign);
                    ([low, high, zero, zero], 2)
                };
                for (q, &vector) in vectors.iter().enumerate().take(count) {
                    let v = c * count + q;
                    for t in 0..T {
                        let pair = simd.avx._mm256_set1_epi32(pairs[t][v]);
                        let two = simd.avx2._mm256_madd_epi16(vector, pair);
                        sums[t] = simd.avx2._mm256_add_epi32(sums[t], two);
                    }
                }
            }
            let d = self.load(&group.scales[b * GROUP_ROWS..]);
            let m = if has_mins {
                self.load(&group.mins[b * GROUP_ROWS..])
            } else {
                simd.avx._mm256_setzero_ps()
            };
            for t in 0..T {
                let scale = simd
                    .avx
                    ._mm256_mul_ps(d, simd.avx._mm256_set1_ps(x[t].scales[b]));
                let sum = simd.avx._mm256_cvtepi32_ps(sums[t]);
                acc[t] = simd.fma._mm256_fmadd_ps(scale, sum, acc[t]);
                if has_mins {
                    let sum_x = simd.avx._mm256_set1_ps(x[t].sums[b]);
                    acc[t] = simd.fma._mm256_fmadd_ps(m, sum_x, acc[t]);
                }
            }
        }
        let mut out = [[0f32; GROUP_ROWS]; T];
        for t in 0..T {
            out[t] = cast(acc[t]);
        }
        out
    }
}

impl Kernels for Avx2 {
    #[inline(always)]
    fn dot(self, a: &[f32], b: &[f32]) -> f32 {
        let simd = self.0;
        let len = a.len().min(b.len());
        let (a, b) = (&a[..len], &b[..len]);
        let mut acc = [simd.avx._mm256_setzero_ps(); 4];
        let (a_chunks, b_chunks) = (a.chunks_exact(32), b.chunks_exact(32));
        let (a_tail, b_tail) = (a_chunks.remainder(), b_chunks.remainder());
        for (x, y) in a_chunks.zip(b_chunks) {
            for (i, acc) in acc.iter_mut().enumerate() {
                let (x, y) = (self.load(&x[i * 8..]), self.load(&y[i * 8..]));
                *acc = simd.fma._mm256_fmadd_ps(x, y, *acc);
            }
        }
        let sum = simd.avx._mm256_add_ps(
            simd.avx._mm256_add_ps(acc[0], acc[1]),
            simd.avx._mm256_add_ps(acc[2], acc[3]),
        );
        let mut tail = 0f32;
        for (x, y) in a_tail.iter().zip(b_tail) {
            tail += x * y;
        }
        self.sum(sum) + tail
    }

    #[inline(always)]
    fn dots_2x<const T: usize>(self, w: [&[f32]; 2], x: [&[f32]; T]) -> [[f32; T]; 2] {
        let simd = self.0;
        let len = w[0].len();
        let (w, x) = (w.map(|w| &w[..len]), x.map(|x| &x[..len]));
        let mut acc = [[simd.avx._mm256_setzero_ps(); T]; 2];
        let whole = len / 8 * 8;
        for at in (0..whole).step_by(8) {
            let w = [self.load(&w[0][at..]), self.load(&w[1][at..])];
            for r in 0..T {
                let x = self.load(&x[r][at..]);
                acc[0][r] = simd.fma._mm256_fmadd_ps(w[0], x, acc[0][r]);
                acc[1][r] = simd.fma._mm256_fmadd_ps(w[1], x, acc[1][r]);
            }
        }
        let mut out = [[0f32; T]; 2];
        for p in 0..2 {
            for r in 0..T {
                let mut tail = 0f32;
                for at in whole..len {
                    tail += w[p][at] * x[r][at];
                }
                out[p][r] = self.sum(acc[p][r]) + tail;
            }
        }
        out
    }

    #[inline(always)]
    fn rows_by_columns<const R: usize, const V: usize>(
        self,
        w: [&[f32]; R],
        columns: &[f32],
        out: &mut [[[f32; LANES]; V]; R],
    ) {
        let simd = self.0;
        let cols = w[0].len();
        let lanes = V * LANES;
        let columns = &columns[..cols * lanes];
        let mut rows: [&[f32]; R] = [&[]; R];
        for p in 0..R {
            rows[p] = &w[p][..cols];
        }
        let mut acc = [[simd.avx._mm256_setzero_ps(); V]; R];
        for c in 0..cols {
            let mut tokens = [simd.avx._mm256_setzero_ps(); V];
            for v in 0..V {
                tokens[v] = self.load(&columns[c * lanes + v * LANES..]);
            }
            for p in 0..R {
                let weight = simd.avx._mm256_set1_ps(rows[p][c]);
                for v in 0..V {
                    acc[p][v] = simd.fma._mm256_fmadd_ps(weight, tokens[v], acc[p][v]);
                }
            }
        }
        for p in 0..R {
            for v in 0..V {
                out[p][v] = cast(acc[p][v]);
            }
        }
    }

    #[inline(always)]
    fn key_scores<const G: usize>(
        self,
        queries: [&[f32]; G],
        keys: &[f32],
        stride: usize,
        scores: [&mut [f32]; G],
    ) {
        let d = queries[0].len();
        if !d.is_multiple_of(8) {
            return super::scores_by_dots(self, queries, keys, stride, scores);
        }
        // Four keys at a time, their sums reduced together. A last group of fewer keys adds
        // zeros in their place, so each key's score is the same whichever group it is in.
        let seen = scores[0].len();
        for t in (0..seen).step_by(4) {
            let keys = &keys[t * stride..];
            let acc = match seen - t {
                1 => self.key_accumulators::<G, 1>(queries, keys, stride),
                2 => self.key_accumulators::<G, 2>(queries, keys, stride),
                3 => self.key_accumulators::<G, 3>(queries, keys, stride),
                _ => self.key_accumulators::<G, 4>(queries, keys, stride),
            };
            let k = (seen - t).min(4);
            for g in 0..G {
                let sums = self.sums_of_four(acc[g]);
                scores[g][t..t + k].copy_from_slice(&sums[..k]);
            }
        }
    }

    #[inline(always)]
    fn weighted_rows<const G: usize>(
        self,
        weights: [&[f32]; G],
        values: &[f32],
        stride: usize,
        mut out: [&mut [f32]; G],
    ) {
        let d = out[0].len();
        if !d.is_multiple_of(8) {
            return super::weighted_by_rows(weights, values, stride, out);
        }
        // 32 columns of every head at a time.
        for first in (0..d).step_by(32) {
            match (d - first) / 8 {
                1 => self.weighted_columns::<G, 1>(weights, values, stride, first, &mut out),
                2 => self.weighted_columns::<G, 2>(weights, values, stride, first, &mut out),
                3 => self.weighted_columns::<G, 3>(weights, values, stride, first, &mut out),
                _ => self.weighted_columns::<G, 4>(weights, values, stride, first, &mut out),
            }
        }
    }

    #[inline(always)]
    fn quantize_block(self, x: &[f32], pairs: &mut [i32]) -> (f32, f32) {
        let simd = self.0;
        let x = &x[..32];
        let mut values = [simd.avx._mm256_setzero_ps(); 4];
        for (i, value) in values.iter_mut().enumerate() {
            *value = self.load(&x[i * 8..]);
        }
        let sign = simd.avx._mm256_set1_ps(-0.0);
        let mut amax = simd.avx._mm256_setzero_ps();
        let mut sum = values[0];
        for (i, &v) in values.iter().enumerate() {
            amax = simd
                .avx
                ._mm256_max_ps(amax, simd.avx._mm256_andnot_ps(sign, v));
            if i > 0 {
                sum = simd.avx._mm256_add_ps(sum, v);
            }
        }
        let lanes: [f32; 8] = cast(amax);
        let amax = lanes.iter().fold(0f32, |a, &x| a.max(x));
        let inverse = if amax > 0.0 {
            ACTIVATION_MAX / amax
        } else {
            0.0
        };
        let inverse = simd.avx._mm256_set1_ps(inverse);
        // Rounded to nearest even (the default rounding mode), then packed to 16 bits with
        // saturation; packing works per 128-bit lane, so the 64-bit quarters are put back in
        // order.
        let mut rounded = [simd.avx._mm256_setzero_si256(); 4];
        for (rounded, &value) in rounded.iter_mut().zip(&values) {
            *rounded = simd
                .avx
                ._mm256_cvtps_epi32(simd.avx._mm256_mul_ps(value, inverse));
        }
        for half in 0..2 {
            let packed = simd
                .avx2
                ._mm256_packs_epi32(rounded[2 * half], rounded[2 * half + 1]);
            let ordered = simd.avx2._mm256_permute4x64_epi64::<0b11_01_10_00>(packed);
            let ordered: [i32; 8] = cast(ordered);
            pairs[half * 8..][..8].copy_from_slice(&ordered);
        }
        (amax / ACTIVATION_MAX, self.sum(sum))
    }

    #[inline(always)]
    fn group_products<const T: usize>(
        self,
        kind: BlockKind,
        group: Group<'_>,
        x: [TokenBlocks<'_>; T],
    ) -> [[f32; GROUP_ROWS]; T] {
        match kind {
            BlockKind::Nibbles => self.block_products::<T, true>(group, x),
            BlockKind::Bytes => self.block_products::<T, false>(group, x),
        }
    }
}
