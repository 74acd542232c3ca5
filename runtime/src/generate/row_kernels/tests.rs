use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use std::ops::Range;

use super::*;

/// A `[rows, cols]` weight quantized by candle to `dtype`, and the same dequantized by candle.
fn quantized(dtype: GgmlDType, rows: usize, cols: usize) -> (BlockMatrix, Vec<f32>) {
    let values: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * (1.0 + (i % 13) as f32))
        .collect();
    let tensor = Tensor::from_vec(values, (rows, cols), &Device::Cpu).unwrap();
    let q = QTensor::quantize(&tensor, dtype).unwrap();
    let dequantized = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap();
    let blocks = BlockMatrix::from_gguf(dtype, rows, cols, &q.data().unwrap()).unwrap();
    (blocks, dequantized.to_vec1().unwrap())
}

const TYPES: [GgmlDType; 3] = [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0];

#[test]
fn rows_dequantize_exactly_as_candle_dequantizes() {
    // 13 rows: a last group of five, padded to eight.
    for dtype in TYPES {
        let (blocks, expected) = quantized(dtype, 13, 96);
        for row in 0..13 {
            let mut out = vec![0f32; 96];
            blocks.dequantize_row(row, &mut out);
            assert_eq!(out, expected[row * 96..][..96], "{dtype:?} row {row}");
        }
    }
}

/// `tokens` activation rows of `cols` values, with an outlier in some blocks.
fn activations(tokens: usize, cols: usize) -> Vec<f32> {
    (0..tokens * cols)
        .map(|i| match i % 97 {
            0 => 40.0,
            _ => (i % 17) as f32 / 8.0 - 1.0,
        })
        .collect()
}

/// The products on the best kernels of this CPU or the portable ones, `[token][row - first]`.
fn products(
    x: &Tokens<'_>,
    weights: &WeightRows<'_>,
    rows: Range<usize>,
    portable: bool,
) -> Vec<Vec<f32>> {
    let mut out = vec![vec![f32::NAN; rows.len()]; x.m];
    let call = RowsTimes {
        x,
        weights,
        rows,
        out: out.iter_mut().map(Vec::as_mut_slice).collect(),
    };
    if portable {
        call.with(Portable)
    } else {
        call.run()
    }
    out
}

#[test]
fn products_match_plain_dot_products_for_every_row_and_token() {
    let (rows, cols) = (37, 160);
    // Rows 8..37: a task that does not start at the first row, ending in a part of a group.
    const FIRST: usize = 8;
    // Block weights: tiles of six, four, two and one tokens. f32 weights: one token; up to
    // eight (dot products four, two and one tokens at a time); more (weights broadcast
    // against groups of sixteen tokens, the last group one vector or two).
    for tokens in [1, 2, 3, 5, 6, 8, 9, 16, 17, 25, 32] {
        let x = activations(tokens, cols);
        for dtype in TYPES {
            let (blocks, dense) = quantized(dtype, rows, cols);
            for weights in [
                WeightRows::Blocks(&blocks),
                WeightRows::F32 { data: &dense, cols },
            ] {
                assert_eq!(weights.rows(), rows);
                let x_tokens = Tokens::new(&x, tokens, std::slice::from_ref(&weights));
                let best = products(&x_tokens, &weights, FIRST..rows, false);
                let portable = products(&x_tokens, &weights, FIRST..rows, true);
                let blocks = matches!(weights, WeightRows::Blocks(_));
                if blocks {
                    // Exact integer sums, and the same float steps in the same order.
                    assert_eq!(best, portable, "{dtype:?}, {tokens} tokens");
                }
                for row in FIRST..rows {
                    for token in 0..tokens {
                        let x = &x[token * cols..][..cols];
                        let w = &dense[row * cols..][..cols];
                        let want = dot64(w, x);
                        let bound = if blocks { rounding_bound(w, x) } else { 0.0 };
                        let scale: f64 = w.iter().zip(x).map(|(w, x)| (w * x).abs() as f64).sum();
                        for (kernels, out) in [("best", &best), ("portable", &portable)] {
                            let got = out[token][row - FIRST] as f64;
                            assert!(
                                (got - want).abs() <= bound + 1e-5 * scale.max(1.0),
                                "{dtype:?} {kernels} row {row} token {token} of {tokens}: \
                                 {got} != {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}

fn dot64(w: &[f32], x: &[f32]) -> f64 {
    w.iter().zip(x).map(|(&w, &x)| w as f64 * x as f64).sum()
}

/// The most that rounding `x` per block of 32 to 16 bits can move `w · x`: each value moves
/// by at most half a step, and multiplies `d·q`, at most `|w|` plus the block's largest `|w|`
/// (the minimum is multiplied with the exact sum of the block).
fn rounding_bound(w: &[f32], x: &[f32]) -> f64 {
    let mut bound = 0f64;
    for (w, x) in w.chunks(BLOCK).zip(x.chunks(BLOCK)) {
        let step = x.iter().fold(0f32, |a, x| a.max(x.abs())) as f64 / 32767.0;
        let wmax = w.iter().fold(0f32, |a, w| a.max(w.abs())) as f64;
        bound += w
            .iter()
            .map(|&w| (w.abs() as f64 + wmax) * step / 2.0)
            .sum::<f64>();
    }
    bound
}

#[test]
fn a_tokens_block_products_do_not_depend_on_the_others_in_the_call() {
    let (rows, cols) = (24, 96);
    for dtype in TYPES {
        let (blocks, _) = quantized(dtype, rows, cols);
        let weights = WeightRows::Blocks(&blocks);
        let x = activations(13, cols);
        let all = Tokens::new(&x, 13, std::slice::from_ref(&weights));
        let together = products(&all, &weights, 0..rows, false);
        for token in 0..13 {
            let one = &x[token * cols..][..cols];
            let alone = Tokens::new(one, 1, std::slice::from_ref(&weights));
            let alone = products(&alone, &weights, 0..rows, false);
            assert_eq!(alone[0], together[token], "{dtype:?} token {token}");
        }
    }
}

#[test]
fn dot_products_of_any_length_match_on_every_kernel_set() {
    for len in [0, 1, 7, 31, 32, 33, 100] {
        let a: Vec<f32> = (0..len).map(|i| i as f32 * 0.25 - 3.0).collect();
        let b: Vec<f32> = (0..len).map(|i| 1.5 - i as f32 * 0.125).collect();
        let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((Portable.dot(&a, &b) - want).abs() <= 1e-3, "len {len}");
        #[cfg(target_arch = "x86_64")]
        if let Some(avx2) = x86::Avx2::new() {
            let got = avx2.run(|| avx2.dot(&a, &b));
            assert!(
                (got - want).abs() <= 1e-3,
                "len {len}, AVX2: {got} != {want}"
            );
        }
    }
}

#[test]
fn a_tensor_of_a_type_without_kernels_is_refused_by_name() {
    let refused = |result: anyhow::Result<BlockMatrix>| result.err().expect("refused");
    let err = refused(BlockMatrix::from_gguf(GgmlDType::Q4K, 1, 256, &[0; 144]));
    assert!(err.to_string().contains("Q4K"), "{err}");
    let err = refused(BlockMatrix::from_gguf(GgmlDType::Q8_0, 2, 32, &[0; 34]));
    assert!(err.to_string().contains("expected 68"), "{err}");
}

#[test]
fn weighted_rows_match_on_every_kernel_set() {
    for d in [5, 8, 64, 70, 130] {
        let (tokens, stride) = (9, d + 3);
        let values: Vec<f32> = (0..tokens * stride)
            .map(|i| (i % 11) as f32 - 5.0)
            .collect();
        // Two heads' weights; the outputs start at 1 and the sums are added to them.
        let weights: Vec<Vec<f32>> = (1..=2)
            .map(|h| (0..tokens).map(|t| h as f32 / (t + 1) as f32).collect())
            .collect();
        let want: Vec<Vec<f32>> = weights
            .iter()
            .map(|weights| {
                (0..d)
                    .map(|j| {
                        (0..tokens)
                            .map(|t| weights[t] * values[t * stride + j])
                            .sum::<f32>()
                            + 1.0
                    })
                    .collect()
            })
            .collect();
        let close = |got: &[Vec<f32>]| {
            got.iter()
                .flatten()
                .zip(want.iter().flatten())
                .all(|(g, w)| (g - w).abs() <= 1e-4)
        };
        let heads = [weights[0].as_slice(), weights[1].as_slice()];
        let mut out = vec![vec![1.0; d]; 2];
        let [a, b] = &mut out[..] else { unreachable!() };
        Portable.weighted_rows(heads, &values, stride, [a, b]);
        assert!(close(&out), "d {d}, portable: {out:?} != {want:?}");
        #[cfg(target_arch = "x86_64")]
        if let Some(avx2) = x86::Avx2::new() {
            let mut out = vec![vec![1.0; d]; 2];
            let [a, b] = &mut out[..] else { unreachable!() };
            avx2.run(|| avx2.weighted_rows(heads, &values, stride, [a, b]));
            assert!(close(&out), "d {d}, AVX2: {out:?} != {want:?}");
            let mut one = vec![1.0; d];
            avx2.run(|| avx2.weighted_rows([heads[1]], &values, stride, [&mut one]));
            assert_eq!(
                one, out[1],
                "d {d}: a head alone gets what it gets beside another"
            );
        }
    }
}

#[test]
fn key_scores_match_on_every_kernel_set() {
    for d in [8, 12, 64] {
        for seen in 1..=9 {
            let stride = d + 5;
            let keys: Vec<f32> = (0..seen * stride).map(|i| (i % 13) as f32 - 6.0).collect();
            let queries: Vec<Vec<f32>> = (0..3)
                .map(|h| (0..d).map(|i| ((i + h) % 7) as f32 * 0.25).collect())
                .collect();
            let want: Vec<Vec<f32>> = queries
                .iter()
                .map(|q| {
                    (0..seen)
                        .map(|t| (0..d).map(|i| q[i] * keys[t * stride + i]).sum())
                        .collect()
                })
                .collect();
            let heads = [&queries[0][..], &queries[1][..], &queries[2][..]];
            let mut got = vec![vec![f32::NAN; seen]; 3];
            let [a, b, c] = &mut got[..] else {
                unreachable!()
            };
            Portable.key_scores(heads, &keys, stride, [a, b, c]);
            assert_eq!(got, want, "d {d}, {seen} keys, portable");
            #[cfg(target_arch = "x86_64")]
            if let Some(avx2) = x86::Avx2::new() {
                let mut got = vec![vec![f32::NAN; seen]; 3];
                let [a, b, c] = &mut got[..] else {
                    unreachable!()
                };
                avx2.run(|| avx2.key_scores(heads, &keys, stride, [a, b, c]));
                assert_eq!(got, want, "d {d}, {seen} keys, AVX2");
                let mut one = vec![f32::NAN; seen];
                avx2.run(|| avx2.key_scores([heads[2]], &keys, stride, [&mut one]));
                assert_eq!(
                    one, got[2],
                    "d {d}: a head alone gets what it gets beside others"
                );
            }
        }
    }
}

#[test]
fn activations_quantize_alike_on_every_kernel_set() {
    let blocks: Vec<Vec<f32>> = vec![
        vec![0.0; BLOCK],
        (0..BLOCK).map(|i| i as f32 - 15.5).collect(),
        // A step of exactly 1, and values halfway between steps (rounded to even).
        (0..BLOCK)
            .map(|i| match i {
                0 => 32767.0,
                _ => (i as f32 + 0.5) * if i % 2 == 0 { 1.0 } else { -1.0 },
            })
            .collect(),
        activations(1, BLOCK),
    ];
    for x in &blocks {
        let mut want = [0i32; PAIRS];
        let (scale, sum) = Portable.quantize_block(x, &mut want);
        let amax = x.iter().fold(0f32, |a, x| a.max(x.abs()));
        assert_eq!(scale, amax / 32767.0);
        assert!(
            (sum - x.iter().sum::<f32>()).abs() <= 1e-4 * x.iter().map(|x| x.abs()).sum::<f32>()
        );
        for (i, &pair) in want.iter().enumerate() {
            for (j, value) in unpair(pair).into_iter().enumerate() {
                let exact = if amax > 0.0 {
                    x[2 * i + j] / amax * 32767.0
                } else {
                    0.0
                };
                assert!(
                    (value as f32 - exact).abs() <= 0.5 + 1e-3,
                    "{value} for {exact}"
                );
            }
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(avx2) = x86::Avx2::new() {
            let mut got = [0i32; PAIRS];
            let (got_scale, got_sum) = avx2.run(|| avx2.quantize_block(x, &mut got));
            assert_eq!((got, got_scale, got_sum), (want, scale, sum));
        }
    }
}
