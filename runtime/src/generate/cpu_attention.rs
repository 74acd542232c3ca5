//! Attention on the CPU: every query token of a step (a decoding sequence's one, a prompt
//! chunk's many) against its own sequence's cache (a [`HostLayer`]: each KV head's rows of all
//! tokens contiguous), all tokens and KV heads in one parallel pass, the query heads that share
//! a KV head together so that each key and value is read once for them.
//!
//! Each query is computed alone, in the same order whatever else is in the step: a prompt
//! prefilled in one chunk or in several, alone or beside other sequences, gets the same keys,
//! values and outputs to the last bit. So does a request's text for a given seed. With candle
//! ops a chunk's attention is a few matrix products whose rounding depends on the chunk's
//! length, and a decode step took about a dozen small tensor operations per sequence and layer.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::kv_cache::{HostLayer, BLOCK_TOKENS};
use super::linear::with_cpu_values;
use super::row_kernels::{with_best_kernels, Kernels, WithKernels};
use crate::model::math;

/// One sequence's tokens in the step: `len` of them from row `offset` of the step's queries,
/// at positions `start..start + len`, and its cache of this layer (the step's tokens
/// included).
pub struct SequenceRows<'a> {
    pub offset: usize,
    pub len: usize,
    pub start: usize,
    pub cache: &'a HostLayer,
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
    // Per query row: its row in `q`, the positions it sees, and its sequence's cache.
    let mut rows = Vec::with_capacity(tokens);
    for sequence in sequences {
        let seen = sequence.start + sequence.len;
        anyhow::ensure!(
            sequence.cache.len() == seen,
            "a cache of {} tokens for {seen} positions",
            sequence.cache.len()
        );
        for i in 0..sequence.len {
            rows.push((sequence.offset + i, sequence.start + i + 1, sequence.cache));
        }
    }
    let mut out = vec![0f32; rows.len() * width];
    let group = heads / kv_heads;
    // One task per token and KV head, its query heads together: each key and value is read
    // once for all of them.
    with_cpu_values(q, |q_data| {
        out.par_chunks_mut(group * d)
            .enumerate()
            .for_each_init(Vec::new, |scores, (task, out)| {
                let (token, seen, cache) = rows[task / kv_heads];
                let kv = task % kv_heads;
                let (keys, values) = cache.head_rows(kv);
                with_best_kernels(KvGroup {
                    queries: &q_data[(token * heads + kv * group) * d..][..group * d],
                    d,
                    keys,
                    values,
                    seen,
                    scores,
                    out,
                });
            });
        Ok(())
    })?;
    Ok(Tensor::from_vec(out, (rows.len(), width), &Device::Cpu)?)
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
        let mut out = vec![0f32; tokens * width];
        with_cpu_values(x, |x| {
            with_cpu_values(self.cos, |cos| {
                with_cpu_values(self.sin, |sin| {
                    self.rotate_rows(x, cos, sin, scale, width, &mut out);
                    Ok(())
                })
            })
        })?;
        Ok(Tensor::from_vec(out, (tokens, width), &Device::Cpu)?)
    }

    /// [`Rope::rotate`] on the rows' values.
    fn rotate_rows(
        &self,
        x: &[f32],
        cos: &[f32],
        sin: &[f32],
        scale: f32,
        width: usize,
        out: &mut [f32],
    ) {
        let (d, half) = (self.head_dim, self.head_dim / 2);
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
    }
}

/// The query heads that share one KV head, against that head's rows of one sequence's cache
/// (`[tokens][d]`).
struct KvGroup<'a> {
    queries: &'a [f32],
    d: usize,
    keys: &'a [f32],
    values: &'a [f32],
    seen: usize,
    scores: &'a mut Vec<f32>,
    /// The group's outputs, zeros to start with: the kernels add to them block by block.
    out: &'a mut [f32],
}

/// Query heads computed together, at most: their accumulators fill the vector registers.
const HEADS_AT_ONCE: usize = 3;

impl KvGroup<'_> {
    /// Heads `first..first + H` of the group.
    #[inline(always)]
    fn heads<K: Kernels, const H: usize>(&mut self, kernels: K, first: usize) {
        // Plain loops, no closures around the kernels: a closure compiles on its own, without
        // the instruction set of the kernels it would call.
        let (d, seen) = (self.d, self.seen);
        self.scores.resize(H * seen, 0.0);
        let mut queries: [&[f32]; H] = [&[]; H];
        for (h, query) in queries.iter_mut().enumerate() {
            *query = &self.queries[(first + h) * d..][..d];
        }
        for at in (0..seen).step_by(BLOCK_TOKENS) {
            let n = (seen - at).min(BLOCK_TOKENS);
            let mut rows = self.scores.chunks_exact_mut(seen);
            let scores: [&mut [f32]; H] =
                std::array::from_fn(|_| &mut rows.next().expect("H rows")[at..at + n]);
            let keys = &self.keys[at * d..][..n * d];
            kernels.key_scores(queries, keys, d, scores);
        }
        for row in self.scores.chunks_exact_mut(seen) {
            math::softmax(row);
        }
        let mut outs = self.out[first * d..].chunks_exact_mut(d);
        let mut out: [&mut [f32]; H] = std::array::from_fn(|_| outs.next().expect("H outputs"));
        for at in (0..seen).step_by(BLOCK_TOKENS) {
            let n = (seen - at).min(BLOCK_TOKENS);
            let mut weights: [&[f32]; H] = [&[]; H];
            for (weights, row) in weights.iter_mut().zip(self.scores.chunks_exact(seen)) {
                *weights = &row[at..at + n];
            }
            let values = &self.values[at * d..][..n * d];
            let out = out.each_mut().map(|out| &mut **out);
            kernels.weighted_rows(weights, values, d, out);
        }
    }
}

impl WithKernels for KvGroup<'_> {
    type Output = ();

    #[inline(always)]
    fn with<K: Kernels>(mut self, kernels: K) {
        let heads = self.queries.len() / self.d;
        let mut first = 0;
        while first < heads {
            match heads - first {
                1 => self.heads::<K, 1>(kernels, first),
                2 => self.heads::<K, 2>(kernels, first),
                _ => self.heads::<K, HEADS_AT_ONCE>(kernels, first),
            }
            first += HEADS_AT_ONCE;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest absolute difference between two tensors of one shape.
    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// A sequence's step tokens and its random cache, as tensors `[seen, kv_heads, d]` and as
    /// the [`HostLayer`] the kernels read.
    struct Cached {
        offset: usize,
        len: usize,
        start: usize,
        keys: Tensor,
        values: Tensor,
        layer: HostLayer,
    }

    impl Cached {
        fn new(offset: usize, len: usize, start: usize, kv_heads: usize, d: usize) -> Self {
            let seen = start + len;
            let random = || Tensor::randn(0f32, 1.0, (seen, kv_heads, d), &Device::Cpu).unwrap();
            let (keys, values) = (random(), random());
            let layer = Self::layer(&keys, &values);
            Self {
                offset,
                len,
                start,
                keys,
                values,
                layer,
            }
        }

        /// A layer holding `keys` and `values`, appended in uneven pieces.
        fn layer(keys: &Tensor, values: &Tensor) -> HostLayer {
            let (seen, kv_heads, d) = keys.dims3().unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let (keys, values) = (flat(keys), flat(values));
            let mut layer = HostLayer::new(kv_heads, d);
            let width = kv_heads * d;
            let mut at = 0;
            for piece in [1, 50, 30, 1].iter().cycle() {
                if at == seen {
                    break;
                }
                let rows = at * width..(at + piece).min(seen) * width;
                layer.append(&keys[rows.clone()], &values[rows]);
                at = (at + piece).min(seen);
            }
            layer
        }

        fn rows(&self) -> SequenceRows<'_> {
            SequenceRows {
                offset: self.offset,
                len: self.len,
                start: self.start,
                cache: &self.layer,
            }
        }
    }

    /// One token's attention with candle ops, as the GPU path computes it: the query in
    /// row `token`, seeing the first `seen` cache rows.
    fn reference(q: &Tensor, token: usize, seen: usize, cached: &Cached, heads: usize) -> Tensor {
        let (_, kv_heads, d) = cached.keys.dims3().unwrap();
        let group = heads / kv_heads;
        let q = q
            .narrow(0, token, 1)
            .unwrap()
            .reshape((kv_heads, group, d))
            .unwrap();
        // `[kv_heads, seen, d]`.
        let seen_rows = |t: &Tensor| t.narrow(0, 0, seen).unwrap().transpose(0, 1).unwrap();
        let (keys, values) = (seen_rows(&cached.keys), seen_rows(&cached.values));
        let scores = q.matmul(&keys.t().unwrap()).unwrap();
        let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
        probs
            .matmul(&values.contiguous().unwrap())
            .unwrap()
            .reshape((1, heads * d))
            .unwrap()
    }

    #[test]
    fn matches_candle_ops_for_decoding_tokens_and_prompt_chunks() {
        // Query heads per KV head 3, 1, 4 (three then one at a time) and 5 (three then two);
        // head sizes with one vector, several, a partial last group of columns, and none (12).
        for (heads, kv_heads, d) in [(6, 2, 8), (6, 6, 16), (4, 1, 40), (5, 1, 12), (10, 2, 64)] {
            // A decoding token with 4 tokens cached, a first chunk of 3, a token with nothing
            // before it, a chunk of 5 after 12 cached tokens, a token after 70 (in the second
            // block of the cache) and a chunk across the end of the first block.
            let sequences = [
                Cached::new(0, 1, 4, kv_heads, d),
                Cached::new(1, 3, 0, kv_heads, d),
                Cached::new(4, 1, 0, kv_heads, d),
                Cached::new(5, 5, 12, kv_heads, d),
                Cached::new(10, 1, 70, kv_heads, d),
                Cached::new(11, 9, 60, kv_heads, d),
            ];
            // Scaled by 1/sqrt(d) as the model's queries are, so scores are of order one.
            let tokens = 20;
            let scale = 1.0 / (d as f32).sqrt();
            let q = Tensor::randn(0f32, scale, (tokens, heads * d), &Device::Cpu).unwrap();
            let rows: Vec<_> = sequences.iter().map(Cached::rows).collect();
            let got = cpu_attention(&q, &rows, heads, kv_heads).unwrap();
            for sequence in &sequences {
                for i in 0..sequence.len {
                    let token = sequence.offset + i;
                    let seen = sequence.start + i + 1;
                    let want = reference(&q, token, seen, sequence, heads);
                    let diff = max_diff(&got.narrow(0, token, 1).unwrap(), &want);
                    assert!(
                        diff < 1e-5,
                        "{heads}/{kv_heads} heads of {d}, token {token}: {diff}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_chunk_gets_what_its_tokens_get_one_at_a_time() {
        let (heads, kv_heads, d) = (6, 2, 8);
        let chunk = Cached::new(0, 70, 3, kv_heads, d);
        let q = Tensor::randn(0f32, 1.0, (70, heads * d), &Device::Cpu).unwrap();
        let whole = cpu_attention(&q, &[chunk.rows()], heads, kv_heads).unwrap();
        for i in 0..70 {
            let seen = chunk.start + i + 1;
            let keys = chunk.keys.narrow(0, 0, seen).unwrap();
            let values = chunk.values.narrow(0, 0, seen).unwrap();
            let one = SequenceRows {
                offset: 0,
                len: 1,
                start: seen - 1,
                cache: &Cached::layer(&keys, &values),
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
            let diff = max_diff(&got, &want);
            assert!(diff < 1e-6, "interleaved {interleaved}: {diff}");
        }
    }
}
