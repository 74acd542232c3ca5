//! Self-attention over a packed batch on the CPU, straight from the fused QKV projection.
//!
//! Reads `[tokens, 3 * hidden]` (Q already scaled by `1/sqrt(head_dim)`, biases not yet added),
//! and writes each head's context into its columns of `[tokens, hidden]`, the layout the output
//! projection reads: no permute, no copies into per-head tensors, no concatenation. Sequences
//! run side by side on the rayon pool; per sequence and head the work is a few `len × len`
//! products of `head_dim` vectors, too small for a gemm call to pay off.

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{cpu::slice, math};

pub struct Attention<'a> {
    /// The fused Q, K, V bias (`3 * hidden`).
    pub bias: &'a [f32],
    /// Tokens of each sequence, in the order they are packed.
    pub lengths: &'a [usize],
    pub heads: usize,
}

impl Attention<'_> {
    pub fn apply(&self, qkv: &Tensor) -> Result<Tensor> {
        qkv.apply_op1_no_bwd(self)
    }

    /// One sequence: `qkv` holds its `len` rows, `out` receives its `len` context rows.
    fn sequence(&self, qkv: &[f32], out: &mut [f32], scratch: &mut Vec<f32>) {
        let hidden = self.bias.len() / 3;
        let d = hidden / self.heads;
        let len = out.len() / hidden;
        scratch.clear();
        scratch.resize(3 * len * d + len, 0.0);
        let (q, rest) = scratch.split_at_mut(len * d);
        let (k, rest) = rest.split_at_mut(len * d);
        let (v, scores) = rest.split_at_mut(len * d);
        for h in 0..self.heads {
            // Gather this head's rows with their biases: [len, d] each.
            for (part, dst) in [&mut *q, &mut *k, &mut *v].into_iter().enumerate() {
                let col = part * hidden + h * d;
                let bias = &self.bias[col..col + d];
                for (t, dst) in dst.chunks_exact_mut(d).enumerate() {
                    let src = &qkv[t * 3 * hidden + col..][..d];
                    for ((x, &s), &b) in dst.iter_mut().zip(src).zip(bias) {
                        *x = s + b;
                    }
                }
            }
            for (i, qi) in q.chunks_exact(d).enumerate() {
                for (s, kj) in scores.iter_mut().zip(k.chunks_exact(d)) {
                    *s = math::dot(qi, kj);
                }
                math::softmax(scores);
                let o = &mut out[i * hidden + h * d..][..d];
                o.fill(0.0);
                for (&p, vj) in scores.iter().zip(v.chunks_exact(d)) {
                    math::axpy(p, vj, o);
                }
            }
        }
    }
}

impl CustomOp1 for Attention<'_> {
    fn name(&self) -> &'static str {
        "kandle-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let qkv = slice(storage, layout, self.name())?;
        let hidden = self.bias.len() / 3;
        let tokens: usize = self.lengths.iter().sum();
        if self.heads == 0 || !hidden.is_multiple_of(self.heads) || qkv.len() != tokens * 3 * hidden
        {
            bail!(
                "{}: input {:?} does not fit {tokens} tokens",
                self.name(),
                layout.shape()
            );
        }
        let mut out = vec![0f32; tokens * hidden];
        let mut parts = Vec::with_capacity(self.lengths.len());
        let (mut qkv_rest, mut out_rest) = (qkv, out.as_mut_slice());
        for &len in self.lengths {
            let (q, qr) = qkv_rest.split_at(len * 3 * hidden);
            let (o, or) = std::mem::take(&mut out_rest).split_at_mut(len * hidden);
            parts.push((q, o));
            (qkv_rest, out_rest) = (qr, or);
        }
        parts
            .into_par_iter()
            .for_each_init(Vec::new, |scratch, (q, o)| self.sequence(q, o, scratch));
        Ok((CpuStorage::F32(out), Shape::from((tokens, hidden))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, D};

    /// Plain candle ops on one sequence: softmax(q k^T) v per head, biases added first.
    fn reference(qkv: &Tensor, bias: &Tensor, heads: usize) -> Tensor {
        let (len, three_h) = qkv.dims2().unwrap();
        let d = three_h / 3 / heads;
        let x = qkv
            .broadcast_add(bias)
            .unwrap()
            .reshape((len, 3, heads, d))
            .unwrap()
            .permute((1, 2, 0, 3))
            .unwrap()
            .contiguous()
            .unwrap();
        let (q, k, v) = (x.get(0).unwrap(), x.get(1).unwrap(), x.get(2).unwrap());
        let scores = q.matmul(&k.t().unwrap()).unwrap();
        let probs = candle_nn::ops::softmax(&scores, D::Minus1).unwrap();
        probs
            .matmul(&v)
            .unwrap()
            .transpose(0, 1)
            .unwrap()
            .reshape((len, heads * d))
            .unwrap()
    }

    #[test]
    fn matches_candle_ops_per_sequence() {
        let (heads, d, lengths) = (3, 12, [1usize, 5, 5, 17]);
        let hidden = heads * d;
        let tokens: usize = lengths.iter().sum();
        let dev = Device::Cpu;
        let qkv = Tensor::randn(0f32, 1.0, (tokens, 3 * hidden), &dev).unwrap();
        let bias = Tensor::randn(0f32, 1.0, 3 * hidden, &dev).unwrap();
        let bias_vec = bias.to_vec1::<f32>().unwrap();
        let op = Attention {
            bias: &bias_vec,
            lengths: &lengths,
            heads,
        };
        let ours = op.apply(&qkv).unwrap();
        let mut start = 0;
        for len in lengths {
            let want = reference(&qkv.narrow(0, start, len).unwrap(), &bias, heads);
            let got = ours.narrow(0, start, len).unwrap();
            let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
            assert!(
                diff.to_scalar::<f32>().unwrap() < 1e-5,
                "sequence at {start}"
            );
            start += len;
        }
    }
}
