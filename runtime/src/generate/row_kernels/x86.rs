//! The row kernels in AVX2 and FMA instructions, through pulp's safe intrinsics.

use std::arch::x86_64::{__m128i, __m256};

use pulp::bytemuck::cast;
use pulp::x86::V3;

use super::{Kernels, BLOCK, LANES};

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

    /// 8 signed bytes widened to f32.
    #[inline(always)]
    fn bytes(self, quants: &[u8]) -> __m256 {
        let simd = self.0;
        let bytes: [u8; 8] = quants[..8].try_into().expect("8 bytes");
        let bytes: __m128i = cast([u64::from_le_bytes(bytes), 0]);
        simd.avx
            ._mm256_cvtepi32_ps(simd.avx2._mm256_cvtepi8_epi32(bytes))
    }

    /// The sum of a vector's lanes, in a fixed order.
    #[inline(always)]
    fn sum(self, value: __m256) -> f32 {
        let lanes: [f32; 8] = cast(value);
        ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
            + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]))
    }

    /// The 4-bit values of a block's 16 bytes, widened to f32: 4 vectors of 8, low nibbles
    /// first.
    #[inline(always)]
    fn nibbles(self, quants: &[u8]) -> [__m256; 4] {
        let simd = self.0;
        let bytes: [u8; 16] = quants[..16].try_into().expect("16 bytes");
        let bytes: __m128i = cast(bytes);
        let mask = simd.sse2._mm_set1_epi8(0x0F);
        let low = simd.sse2._mm_and_si128(bytes, mask);
        let high = simd
            .sse2
            ._mm_and_si128(simd.sse2._mm_srli_epi16::<4>(bytes), mask);
        let widen = |eight: __m128i| {
            simd.avx
                ._mm256_cvtepi32_ps(simd.avx2._mm256_cvtepu8_epi32(eight))
        };
        [
            widen(low),
            widen(simd.sse2._mm_srli_si128::<8>(low)),
            widen(high),
            widen(simd.sse2._mm_srli_si128::<8>(high)),
        ]
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
    fn weighted_rows(self, weights: &[f32], values: &[f32], stride: usize, out: &mut [f32]) {
        // 64 outputs at a time, held in registers across all the rows.
        const CHUNK: usize = 64;
        let simd = self.0;
        for (c, out) in out.chunks_mut(CHUNK).enumerate() {
            let first = c * CHUNK;
            let vectors = out.len() / 8;
            let mut acc = [simd.avx._mm256_setzero_ps(); CHUNK / 8];
            let mut tail = [0f32; 8];
            for (t, &p) in weights.iter().enumerate() {
                let row = &values[t * stride + first..][..out.len()];
                let p_wide = simd.avx._mm256_set1_ps(p);
                for (k, acc) in acc.iter_mut().enumerate().take(vectors) {
                    *acc = simd
                        .fma
                        ._mm256_fmadd_ps(p_wide, self.load(&row[k * 8..]), *acc);
                }
                for (tail, v) in tail.iter_mut().zip(&row[vectors * 8..]) {
                    *tail += p * v;
                }
            }
            for (k, acc) in acc.iter().enumerate().take(vectors) {
                self.store(*acc, &mut out[k * 8..]);
            }
            let rest = out.len() - vectors * 8;
            out[vectors * 8..].copy_from_slice(&tail[..rest]);
        }
    }

    #[inline(always)]
    fn nibble_dot(self, quants: &[u8], scales: &[f32], x: &[f32]) -> f32 {
        let simd = self.0;
        let mut acc = [simd.avx._mm256_setzero_ps(); 2];
        let blocks = quants.chunks_exact(16).zip(x.chunks_exact(BLOCK));
        for ((q, x), &d) in blocks.zip(scales) {
            let q = self.nibbles(q);
            let d = simd.avx._mm256_set1_ps(d);
            for (half, acc) in acc.iter_mut().enumerate() {
                // Values j and j + 16 of the block: one low and one high nibble per byte.
                let low = simd.avx._mm256_mul_ps(q[half], self.load(&x[half * 8..]));
                let sum =
                    simd.fma
                        ._mm256_fmadd_ps(q[half + 2], self.load(&x[16 + half * 8..]), low);
                *acc = simd.fma._mm256_fmadd_ps(sum, d, *acc);
            }
        }
        self.sum(simd.avx._mm256_add_ps(acc[0], acc[1]))
    }

    #[inline(always)]
    fn byte_dot(self, quants: &[u8], scales: &[f32], x: &[f32]) -> f32 {
        let simd = self.0;
        let mut acc = simd.avx._mm256_setzero_ps();
        let blocks = quants.chunks_exact(BLOCK).zip(x.chunks_exact(BLOCK));
        for ((q, x), &d) in blocks.zip(scales) {
            let mut sum = simd.avx._mm256_setzero_ps();
            for i in 0..4 {
                let q = self.bytes(&q[i * 8..]);
                sum = simd.fma._mm256_fmadd_ps(q, self.load(&x[i * 8..]), sum);
            }
            acc = simd
                .fma
                ._mm256_fmadd_ps(sum, simd.avx._mm256_set1_ps(d), acc);
        }
        self.sum(acc)
    }

    #[inline(always)]
    fn dequantize_q4_0(self, quants: &[u8], scales: &[f32], out: &mut [f32]) {
        let simd = self.0;
        let eight = simd.avx._mm256_set1_ps(8.0);
        for ((out, q), &d) in out
            .chunks_exact_mut(BLOCK)
            .zip(quants.chunks_exact(16))
            .zip(scales)
        {
            let d = simd.avx._mm256_set1_ps(d);
            for (i, q) in self.nibbles(q).into_iter().enumerate() {
                let value = simd.avx._mm256_mul_ps(simd.avx._mm256_sub_ps(q, eight), d);
                self.store(value, &mut out[i * 8..]);
            }
        }
    }

    #[inline(always)]
    fn dequantize_q4_1(self, quants: &[u8], scales: &[f32], mins: &[f32], out: &mut [f32]) {
        let simd = self.0;
        let blocks = out.chunks_exact_mut(BLOCK).zip(quants.chunks_exact(16));
        for ((out, q), (&d, &m)) in blocks.zip(scales.iter().zip(mins)) {
            let (d, m) = (simd.avx._mm256_set1_ps(d), simd.avx._mm256_set1_ps(m));
            for (i, q) in self.nibbles(q).into_iter().enumerate() {
                // Multiply, then add: rounded as candle's dequantize rounds, not fused.
                let value = simd.avx._mm256_add_ps(simd.avx._mm256_mul_ps(q, d), m);
                self.store(value, &mut out[i * 8..]);
            }
        }
    }

    #[inline(always)]
    fn dequantize_q8_0(self, quants: &[u8], scales: &[f32], out: &mut [f32]) {
        let simd = self.0;
        for ((out, q), &d) in out
            .chunks_exact_mut(BLOCK)
            .zip(quants.chunks_exact(BLOCK))
            .zip(scales)
        {
            let d = simd.avx._mm256_set1_ps(d);
            for i in 0..4 {
                let q = self.bytes(&q[i * 8..]);
                self.store(simd.avx._mm256_mul_ps(q, d), &mut out[i * 8..]);
            }
        }
    }
}
