//! Attention on the CPU: every query token of a step (a decoding sequence's one, a prompt
//! chunk's many) against its own sequence's cache, computed straight on the tensors' buffers,
//! all tokens and heads in one parallel pass.
//!
//! Each query is computed alone, in the same order whatever else is in the step: a prompt
//! prefilled in one chunk or in several, alone or beside other sequences, gets the same keys,
//! values and outputs to the last bit. So does a request's text for a given seed. With candle
//! ops a chunk's attention is a few matrix products whose rounding depends on the chunk's
//! length, and a decode step took about a dozen small tensor operations per sequence and layer.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::linear::cpu_slice;
use super::row_kernels::{with_best_kernels, Kernels, WithKernels};
use crate::model::math;

/// One sequence's tokens in the step: `len` of them from column `offset` of the step's
/// queries, at positions `start..start + len`, and its whole cache (`[start + len, kv_heads,
/// head_dim]`, the step's tokens included).
pub struct SequenceRows {
    pub offset: usize,
    pub len: usize,
    pub start: usize,
    pub keys: Tensor,
    pub values: Tensor,
}

/// Attention output `[tokens, heads * head_dim]` for the step's rotated and scaled queries `q`
/// (`[tokens, heads * head_dim]`), the tokens of `sequences` in order; each token sees its
/// sequence's cache up to its own position.
pub fn cpu_attention(
    q: &Tensor,
    sequences: &[SequenceRows],
    heads: usize,
    kv_heads: usize,
) -> anyhow::Result<Tensor> {
    let (tokens, width) = q.dims2()?;
    let d = width / heads;
    let q = q.contiguous()?;
    let (q_storage, q_layout) = q.storage_and_layout();
    let q_data = &cpu_slice(&q_storage)?[q_layout.start_offset()..];
    let guards: Vec<_> = sequences
        .iter()
        .map(|s| (s.keys.storage_and_layout(), s.values.storage_and_layout()))
        .collect();
    // Per query row: its column in `q`, its position, and its sequence's cache.
    let mut rows = Vec::with_capacity(tokens);
    for (sequence, ((k, k_layout), (v, v_layout))) in sequences.iter().zip(&guards) {
        anyhow::ensure!(
            k_layout.is_contiguous() && v_layout.is_contiguous(),
            "the KV cache is not contiguous"
        );
        let seen = sequence.start + sequence.len;
        anyhow::ensure!(
            sequence.keys.dim(0)? == seen,
            "a cache of {} tokens for {seen} positions",
            sequence.keys.dim(0)?
        );
        let len = seen * kv_heads * d;
        let keys = &cpu_slice(k)?[k_layout.start_offset()..][..len];
        let values = &cpu_slice(v)?[v_layout.start_offset()..][..len];
        for i in 0..sequence.len {
            rows.push((sequence.offset + i, sequence.start + i + 1, keys, values));
        }
    }
    let mut out = vec![0f32; rows.len() * heads * d];
    let group = heads / kv_heads;
    // One task per token and query head, so that even one sequence uses every core.
    out.par_chunks_mut(d)
        .enumerate()
        .for_each_init(Vec::new, |scores, (task, out)| {
            let (token, seen, keys, values) = rows[task / heads];
            let head = task % heads;
            with_best_kernels(Head {
                query: &q_data[(token * heads + head) * d..][..d],
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

/// Rotary position embedding on the CPU, for rows `[tokens, heads * head_dim]` whose token `t`
/// is at the position of row `t` of `cos` and `sin` (`[tokens, head_dim / 2]`).
pub struct Rope<'a> {
    pub cos: &'a Tensor,
    pub sin: &'a Tensor,
    /// Pairs `(2i, 2i + 1)` (GGUF files), else `(i, i + head_dim / 2)` (Hugging Face).
    pub interleaved: bool,
    pub head_dim: usize,
}

/// Tokens per parallel task of [`Rope::rotate`].
const ROPE_TOKENS: usize = 32;

impl Rope<'_> {
    /// `x` rotated, each value then multiplied by `scale`, in the same layout: what candle's
    /// `rope` / `rope_i` compute, without the transposes to `[heads, tokens, head_dim]`.
    pub fn rotate(&self, x: &Tensor, scale: f32) -> anyhow::Result<Tensor> {
        let (tokens, width) = x.dims2()?;
        let (d, half) = (self.head_dim, self.head_dim / 2);
        let (cos, sin) = (self.cos.contiguous()?, self.sin.contiguous()?);
        let x = x.contiguous()?;
        let (x_storage, x_layout) = x.storage_and_layout();
        let (cos_storage, cos_layout) = cos.storage_and_layout();
        let (sin_storage, sin_layout) = sin.storage_and_layout();
        let x = &cpu_slice(&x_storage)?[x_layout.start_offset()..][..tokens * width];
        let cos = &cpu_slice(&cos_storage)?[cos_layout.start_offset()..][..tokens * half];
        let sin = &cpu_slice(&sin_storage)?[sin_layout.start_offset()..][..tokens * half];
        let mut out = vec![0f32; tokens * width];
        let interleaved = self.interleaved;
        out.par_chunks_mut(width * ROPE_TOKENS)
            .enumerate()
            .for_each(|(task, out)| {
                let first = task * ROPE_TOKENS;
                for (t, out) in out.chunks_exact_mut(width).enumerate() {
                    let token = first + t;
                    let (cos, sin) = (&cos[token * half..][..half], &sin[token * half..][..half]);
                    let x = &x[token * width..][..width];
                    for (x, out) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
                        for i in 0..half {
                            let (a, b) = if interleaved {
                                (2 * i, 2 * i + 1)
                            } else {
                                (i, i + half)
                            };
                            out[a] = (x[a] * cos[i] - x[b] * sin[i]) * scale;
                            out[b] = (x[a] * sin[i] + x[b] * cos[i]) * scale;
                        }
                    }
                }
            });
        Ok(Tensor::from_vec(out, (tokens, width), &Device::Cpu)?)
    }
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

    const HEADS: usize = 6;

    /// One token's attention with candle ops, as the GPU path computes it: the query in
    /// row `token`, seeing the first `seen` cache rows.
    fn reference(
        q: &Tensor,
        token: usize,
        seen: usize,
        sequence: &SequenceRows,
        kv_heads: usize,
    ) -> Tensor {
        let d = q.dim(1).unwrap() / HEADS;
        let group = HEADS / kv_heads;
        let q = q
            .narrow(0, token, 1)
            .unwrap()
            .reshape((kv_heads, group, d))
            .unwrap();
        // `[kv_heads, seen, d]`.
        let seen_rows = |t: &Tensor| t.narrow(0, 0, seen).unwrap().transpose(0, 1).unwrap();
        let (keys, values) = (seen_rows(&sequence.keys), seen_rows(&sequence.values));
        let scores = q.matmul(&keys.t().unwrap()).unwrap();
        let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
        probs
            .matmul(&values.contiguous().unwrap())
            .unwrap()
            .reshape((1, HEADS * d))
            .unwrap()
    }

    fn sequence(
        offset: usize,
        len: usize,
        start: usize,
        kv_heads: usize,
        d: usize,
    ) -> SequenceRows {
        let seen = start + len;
        SequenceRows {
            offset,
            len,
            start,
            keys: Tensor::randn(0f32, 1.0, (seen, kv_heads, d), &Device::Cpu).unwrap(),
            values: Tensor::randn(0f32, 1.0, (seen, kv_heads, d), &Device::Cpu).unwrap(),
        }
    }

    #[test]
    fn matches_candle_ops_for_decoding_tokens_and_prompt_chunks() {
        let (heads, kv_heads, d) = (HEADS, 2, 8);
        // A decoding token with 4 tokens cached, a first chunk of 3, a token with nothing
        // before it, and a chunk of 5 after 12 cached tokens.
        let sequences = [
            sequence(0, 1, 4, kv_heads, d),
            sequence(1, 3, 0, kv_heads, d),
            sequence(4, 1, 0, kv_heads, d),
            sequence(5, 5, 12, kv_heads, d),
        ];
        let tokens = 10;
        let q = Tensor::randn(0f32, 1.0, (tokens, heads * d), &Device::Cpu).unwrap();
        let got = cpu_attention(&q, &sequences, heads, kv_heads).unwrap();
        for sequence in &sequences {
            for i in 0..sequence.len {
                let token = sequence.offset + i;
                let want = reference(&q, token, sequence.start + i + 1, sequence, kv_heads)
                    .flatten_all()
                    .unwrap();
                let diff = (got.get(token).unwrap() - want)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max(0)
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(diff < 1e-5, "token {token}: {diff}");
            }
        }
    }

    #[test]
    fn a_chunk_gets_what_its_tokens_get_one_at_a_time() {
        let (heads, kv_heads, d) = (HEADS, 2, 8);
        let chunk = sequence(0, 7, 3, kv_heads, d);
        let q = Tensor::randn(0f32, 1.0, (7, heads * d), &Device::Cpu).unwrap();
        let whole = cpu_attention(&q, std::slice::from_ref(&chunk), heads, kv_heads).unwrap();
        for i in 0..7 {
            let seen = chunk.start + i + 1;
            let one = SequenceRows {
                offset: 0,
                len: 1,
                start: seen - 1,
                keys: chunk.keys.narrow(0, 0, seen).unwrap(),
                values: chunk.values.narrow(0, 0, seen).unwrap(),
            };
            let q = q.narrow(0, i, 1).unwrap();
            let alone = cpu_attention(&q, &[one], heads, kv_heads).unwrap();
            assert_eq!(
                alone.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                whole.get(i).unwrap().to_vec1::<f32>().unwrap(),
                "token {i}"
            );
        }
    }

    #[test]
    fn rope_matches_candle_in_both_layouts() {
        let (tokens, heads, d) = (5, 3, 8);
        let x = Tensor::randn(0f32, 1.0, (tokens, heads * d), &Device::Cpu).unwrap();
        let cos = Tensor::randn(0f32, 1.0, (tokens, d / 2), &Device::Cpu).unwrap();
        let sin = Tensor::randn(0f32, 1.0, (tokens, d / 2), &Device::Cpu).unwrap();
        for interleaved in [true, false] {
            let rope = Rope {
                cos: &cos,
                sin: &sin,
                interleaved,
                head_dim: d,
            };
            let got = rope.rotate(&x, 0.5).unwrap();
            // candle's: `[1, heads, tokens, d]`.
            let t = x
                .reshape((tokens, heads, d))
                .unwrap()
                .transpose(0, 1)
                .unwrap()
                .contiguous()
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let want = if interleaved {
                candle_nn::rotary_emb::rope_i(&t, &cos, &sin)
            } else {
                candle_nn::rotary_emb::rope(&t, &cos, &sin)
            }
            .unwrap();
            let want = (want.squeeze(0).unwrap().transpose(0, 1).unwrap() * 0.5)
                .unwrap()
                .reshape((tokens, heads * d))
                .unwrap();
            let diff = (got - want)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-6, "interleaved {interleaved}: {diff}");
        }
    }
}
