//! Attention of the decode step on the CPU: one new token per sequence against that sequence's
//! cache, computed straight on the tensors' buffers, all sequences in parallel.
//!
//! With candle ops this takes about a dozen small tensor operations per sequence and layer,
//! whose fixed cost dominated a 16-sequence step; here it is one parallel pass per layer.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::linear::cpu_slice;
use super::row_kernels::{with_best_kernels, Kernels, WithKernels};
use crate::model::math;

/// One decoding sequence: its token's column in the step's queries, and its whole cache
/// (`[seen, kv_heads, head_dim]`, the new token included).
pub struct DecodeRow {
    pub token: usize,
    pub keys: Tensor,
    pub values: Tensor,
}

/// Attention output `[rows, heads * head_dim]` for `rows`, given the step's scaled queries
/// `q`: `[heads, tokens, head_dim]`.
pub fn decode_attention(q: &Tensor, rows: &[DecodeRow], kv_heads: usize) -> anyhow::Result<Tensor> {
    let (heads, tokens, d) = q.dims3()?;
    let q = q.contiguous()?;
    let (q_storage, q_layout) = q.storage_and_layout();
    let q_data = &cpu_slice(&q_storage)?[q_layout.start_offset()..];
    let guards: Vec<_> = rows
        .iter()
        .map(|row| {
            (
                row.keys.storage_and_layout(),
                row.values.storage_and_layout(),
            )
        })
        .collect();
    let mut caches = Vec::with_capacity(rows.len());
    for (row, ((k, k_layout), (v, v_layout))) in rows.iter().zip(&guards) {
        anyhow::ensure!(
            k_layout.is_contiguous() && v_layout.is_contiguous(),
            "the KV cache is not contiguous"
        );
        let seen = row.keys.dim(0)?;
        let len = seen * kv_heads * d;
        let keys = &cpu_slice(k)?[k_layout.start_offset()..][..len];
        let values = &cpu_slice(v)?[v_layout.start_offset()..][..len];
        caches.push((row.token, seen, keys, values));
    }
    let mut out = vec![0f32; rows.len() * heads * d];
    let group = heads / kv_heads;
    // One task per sequence and query head, so that even one sequence uses every core.
    out.par_chunks_mut(d)
        .enumerate()
        .for_each_init(Vec::new, |scores, (task, out)| {
            let (token, seen, keys, values) = caches[task / heads];
            let head = task % heads;
            with_best_kernels(Head {
                query: &q_data[(head * tokens + token) * d..][..d],
                kv: head / group,
                kv_heads,
                seen,
                keys,
                values,
                scores,
                out,
            });
        });
    Ok(Tensor::from_vec(
        out,
        (rows.len(), heads * d),
        &Device::Cpu,
    )?)
}

/// One query head against its KV head in one sequence's cache.
struct Head<'a> {
    query: &'a [f32],
    kv: usize,
    kv_heads: usize,
    seen: usize,
    keys: &'a [f32],
    values: &'a [f32],
    scores: &'a mut Vec<f32>,
    out: &'a mut [f32],
}

impl WithKernels for Head<'_> {
    type Output = ();

    #[inline(always)]
    fn with<K: Kernels>(self, kernels: K) {
        // Plain loops, no closures: a closure compiles on its own, without the instruction
        // set of the kernels it would call.
        let d = self.query.len();
        let stride = self.kv_heads * d;
        let first = self.kv * d;
        self.scores.resize(self.seen, 0.0);
        for (t, score) in self.scores.iter_mut().enumerate() {
            *score = kernels.dot(self.query, &self.keys[first + t * stride..][..d]);
        }
        math::softmax(self.scores);
        kernels.weighted_rows(self.scores, &self.values[first..], stride, self.out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same attention with candle ops, as the prefill path computes it.
    fn reference(q: &Tensor, row: &DecodeRow, kv_heads: usize) -> Tensor {
        let (heads, _, d) = q.dims3().unwrap();
        let group = heads / kv_heads;
        let q = q
            .narrow(1, row.token, 1)
            .unwrap()
            .reshape((kv_heads, group, d))
            .unwrap();
        let keys = row.keys.transpose(0, 1).unwrap();
        let values = row.values.transpose(0, 1).unwrap();
        let scores = q.matmul(&keys.t().unwrap()).unwrap();
        let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
        probs
            .matmul(&values.contiguous().unwrap())
            .unwrap()
            .reshape((1, heads * d))
            .unwrap()
    }

    #[test]
    fn matches_candle_ops_for_sequences_of_different_lengths() {
        let (heads, kv_heads, d, tokens) = (6, 2, 8, 3);
        let q = Tensor::randn(0f32, 1.0, (heads, tokens, d), &Device::Cpu).unwrap();
        let rows: Vec<DecodeRow> = [5usize, 1, 17]
            .iter()
            .enumerate()
            .map(|(token, &seen)| DecodeRow {
                token,
                keys: Tensor::randn(0f32, 1.0, (seen, kv_heads, d), &Device::Cpu).unwrap(),
                values: Tensor::randn(0f32, 1.0, (seen, kv_heads, d), &Device::Cpu).unwrap(),
            })
            .collect();
        let got = decode_attention(&q, &rows, kv_heads).unwrap();
        for (i, row) in rows.iter().enumerate() {
            let want = reference(&q, row, kv_heads).flatten_all().unwrap();
            let got = got.get(i).unwrap();
            let diff = (got - want)
                .unwrap()
                .abs()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-5, "row {i}: {diff}");
        }
    }
}
