//! Scalar f32 math for the CPU kernels, written so that loops over slices vectorize.
//!
//! libm's `erf` and `exp` are scalar calls; the rational erf (the one Eigen and XLA use for f32)
//! and the Cephes-style exp below have no branches or calls, so the compiler turns loops over
//! them into SIMD. Reductions keep eight independent partial sums: a plain f32 fold is a chain
//! the compiler may not reorder. Everything uses plain `a * b + c`: `f32::mul_add` becomes a libm
//! call on targets built without FMA.

const LANES: usize = 8;

/// erf for f32, max absolute error about 1e-7 (inputs clamped to [-4, 4], where erf is ±1 in f32).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p - 2.101_024e-6;
    p = x2 * p - 5.692_506_4e-5;
    p = x2 * p - 7.349_906_3e-4;
    p = x2 * p - 2.954_6e-3;
    p = x2 * p - 1.609_603_3e-2;
    let p = x * p;
    let mut q = x2 * -1.456_607_2e-5 - 2.133_740_6e-4;
    q = x2 * q - 1.682_827e-3;
    q = x2 * q - 7.373_329e-3;
    q = x2 * q - 1.426_474e-2;
    p / q
}

/// Exact (erf) GELU: `x * (1 + erf(x / sqrt(2))) / 2`.
#[inline(always)]
pub fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `e^x` for `x <= 0` (softmax after subtracting the maximum); relative error about 2e-7.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    // Below -87 the result would be subnormal; softmax loses nothing by flushing it to e^-87.
    let x = x.clamp(-87.0, 0.0);
    // Adding 1.5 * 2^23 rounds to an integer and leaves it in the low mantissa bits.
    const SHIFTER: f32 = 12_582_912.0;
    let shifted = x * std::f32::consts::LOG2_E + SHIFTER;
    let n = shifted - SHIFTER;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let poly = p * r * r + r + 1.0;
    let n = shifted.to_bits() as i32 - SHIFTER.to_bits() as i32;
    poly * f32::from_bits(((n + 127) as u32) << 23)
}

/// SiLU, `x / (1 + e^-x)`, through [`exp_nonpositive`] of `-|x|` so that it vectorizes.
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    let e = exp_nonpositive(-x.abs());
    // sigmoid(x) = 1 / (1 + e^-x) for x >= 0, e^x / (1 + e^x) below.
    let sigmoid = if x >= 0.0 { 1.0 } else { e } / (1.0 + e);
    x * sigmoid
}

/// Sum of `f(x)` over `xs`.
#[inline(always)]
pub fn sum_by(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder().iter().map(|&x| f(x)).sum::<f32>();
    for chunk in chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a += f(x);
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// Dot product of two equally long slices.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let rest: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// `y += a * x`.
#[inline(always)]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    y.iter_mut().zip(x).for_each(|(y, &x)| *y += a * x);
}

/// The largest value of `xs` (negative infinity when empty), eight lanes at a time.
#[inline(always)]
pub fn max(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = lane.max(x);
        }
    }
    lanes.iter().copied().fold(rest, f32::max)
}

/// In-place softmax of one row.
#[inline(always)]
pub fn softmax(row: &mut [f32]) {
    let max = max(row);
    row.iter_mut().for_each(|x| *x = exp_nonpositive(*x - max));
    let scale = 1.0 / sum_by(row, |x| x);
    row.iter_mut().for_each(|x| *x *= scale);
}

/// In-place layer norm of one row: `(x - mean) / sqrt(var + eps) * gamma + beta`.
#[inline(always)]
pub fn layer_norm(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = row.len() as f32;
    let mean = sum_by(row, |x| x) / n;
    let var = sum_by(row, |x| (x - mean) * (x - mean)) / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((x, &g), &b) in row.iter_mut().zip(gamma).zip(beta) {
        *x = (*x - mean) * inv * g + b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silu_matches_std() {
        let worst = (-20000..=20000)
            .map(|i| i as f32 / 1000.0)
            .map(|x| {
                let want = x as f64 / (1.0 + (-x as f64).exp());
                (silu(x) as f64 - want).abs() / want.abs().max(1e-30)
            })
            .fold(0.0, f64::max);
        assert!(worst < 1e-6, "max relative silu error {worst}");
        assert!(silu(-200.0) <= 0.0 && silu(-200.0) > -1e-30);
        assert_eq!(silu(200.0), 200.0);
    }

    #[test]
    fn erf_matches_the_reference() {
        let worst = (-6000..=6000)
            .map(|i| i as f32 / 1000.0)
            .map(|x| (erf(x) - candle_core::cpu::erf::erf_f32(x)).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-6, "max erf error {worst}");
    }

    #[test]
    fn exp_matches_std_over_the_softmax_range() {
        let worst = (0..=87_000)
            .map(|i| -(i as f32) / 1000.0)
            .map(|x| ((exp_nonpositive(x) - x.exp()) / x.exp()).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-6, "max relative exp error {worst}");
        assert!(exp_nonpositive(-1e4) >= 0.0 && exp_nonpositive(-1e4) < 1e-37);
    }

    #[test]
    fn reductions_cover_the_remainder() {
        let xs: Vec<f32> = (1..=19).map(|i| i as f32).collect();
        assert_eq!(sum_by(&xs, |x| x), 190.0);
        assert_eq!(dot(&xs, &xs), (1..=19).map(|i| (i * i) as f32).sum::<f32>());
    }

    #[test]
    fn softmax_and_layer_norm_rows() {
        let mut row = [1.0, 2.0, 3.0];
        softmax(&mut row);
        let e: Vec<f32> = [1f32, 2.0, 3.0].iter().map(|x| (x - 3.0).exp()).collect();
        let total: f32 = e.iter().sum();
        for (got, want) in row.iter().zip(&e) {
            assert!((got - want / total).abs() < 1e-6);
        }
        let mut row = [1.0, 3.0];
        layer_norm(&mut row, &[2.0, 2.0], &[0.5, 0.5], 0.0);
        assert_eq!(row, [-1.5, 2.5]);
    }
}
