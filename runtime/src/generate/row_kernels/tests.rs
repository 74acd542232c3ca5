use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

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
    for dtype in TYPES {
        let (blocks, expected) = quantized(dtype, 5, 96);
        for row in 0..5 {
            let mut out = vec![0f32; 96];
            dequantize_row(&blocks, row, &mut out);
            assert_eq!(out, expected[row * 96..][..96], "{dtype:?} row {row}");
            blocks.dequantize_row(Portable, row, &mut out);
            assert_eq!(
                out,
                expected[row * 96..][..96],
                "{dtype:?} row {row}, portable"
            );
        }
    }
}

#[test]
fn products_match_plain_dot_products_for_every_row_and_token() {
    let (rows, cols) = (37, 160);
    // Rows 2..37: a task that does not start at the first row, with an odd count.
    const FIRST: usize = 2;
    // One token (multiplied straight from the quants); up to eight (rows dequantized first,
    // dot products four, two and one tokens at a time); more (weights broadcast
    // against groups of sixteen tokens, the last group one vector or two).
    for tokens in [1, 2, 3, 6, 8, 9, 16, 17, 25, 32] {
        let x: Vec<f32> = (0..tokens * cols)
            .map(|i| (i % 17) as f32 / 8.0 - 1.0)
            .collect();
        let x_tokens = Tokens::new(&x, tokens);
        for dtype in TYPES {
            let (blocks, dense) = quantized(dtype, rows, cols);
            for weights in [
                WeightRows::Blocks(&blocks),
                WeightRows::F32 { data: &dense, cols },
            ] {
                assert_eq!(weights.rows(), rows);
                // On the best kernels of this CPU and on the portable ones.
                let products = |portable: bool| {
                    let mut out = vec![vec![f32::NAN; rows - FIRST]; tokens];
                    let call = RowsTimes {
                        x: &x_tokens,
                        weights: &weights,
                        rows: FIRST..rows,
                        out: out.iter_mut().map(Vec::as_mut_slice).collect(),
                        scratch: &mut Vec::new(),
                    };
                    if portable {
                        call.with(Portable)
                    } else {
                        call.run()
                    }
                    out
                };
                let (best, portable) = (products(false), products(true));
                for row in FIRST..rows {
                    for token in 0..tokens {
                        let want: f32 = (0..cols)
                            .map(|c| x[token * cols + c] * dense[row * cols + c])
                            .sum();
                        for (kernels, out) in [("best", &best), ("portable", &portable)] {
                            let got = out[token][row - FIRST];
                            assert!(
                                (got - want).abs() <= 1e-4 * want.abs().max(1.0),
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
        let weights: Vec<f32> = (0..tokens).map(|t| 1.0 / (t + 1) as f32).collect();
        let want: Vec<f32> = (0..d)
            .map(|j| {
                (0..tokens)
                    .map(|t| weights[t] * values[t * stride + j])
                    .sum()
            })
            .collect();
        let close = |got: &[f32]| got.iter().zip(&want).all(|(g, w)| (g - w).abs() <= 1e-4);
        let mut out = vec![f32::NAN; d];
        Portable.weighted_rows(&weights, &values, stride, &mut out);
        assert!(close(&out), "d {d}, portable: {out:?} != {want:?}");
        #[cfg(target_arch = "x86_64")]
        if let Some(avx2) = x86::Avx2::new() {
            let mut out = vec![f32::NAN; d];
            avx2.run(|| avx2.weighted_rows(&weights, &values, stride, &mut out));
            assert!(close(&out), "d {d}, AVX2: {out:?} != {want:?}");
        }
    }
}
