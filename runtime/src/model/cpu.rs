//! Fused f32 passes for BERT's forward on the CPU, as candle custom ops.
//!
//! Each dense layer's bias is added by the pass that follows its matmul instead of a pass of its
//! own: the activation after the intermediate layer, residual add and layer norm after the two
//! output layers (one pass, not two), and the attention kernel for Q, K and V
//! ([`super::attention`]). The embedding lookup, its sums and its layer norm are one pass too.
//! The passes work in place on the matmul's output where they can and split rows over the rayon
//! pool they run in.

use candle_core::{
    bail, CpuStorage, CustomOp2, InplaceOp1, InplaceOp2, Layout, Result, Shape, Tensor,
};
use rayon::prelude::*;

use super::math;

/// Rows per rayon task: enough work to amortize the split for rows of a few hundred values.
const ROWS_PER_TASK: usize = 8;

pub(super) fn slice<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("{op} needs a contiguous input");
    };
    Ok(&storage.as_slice::<f32>()?[start..end])
}

fn slice_mut<'a>(storage: &'a mut CpuStorage, layout: &Layout, op: &str) -> Result<&'a mut [f32]> {
    let (Some((start, end)), CpuStorage::F32(data)) = (layout.contiguous_offsets(), storage) else {
        bail!("{op} needs a contiguous f32 input");
    };
    Ok(&mut data[start..end])
}

/// An element-wise activation, applied by the fused bias pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    GeluErf,
    GeluTanh,
    Relu,
}

fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh())
}

/// `x = activation(x + bias)` over `[tokens, bias.len()]`, in place.
pub struct BiasActivation<'a> {
    pub bias: &'a [f32],
    pub activation: Activation,
}

impl BiasActivation<'_> {
    fn run(&self, x: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
        let dim = self.bias.len();
        x.par_chunks_mut(dim * ROWS_PER_TASK).for_each(|rows| {
            for row in rows.chunks_exact_mut(dim) {
                for (v, &b) in row.iter_mut().zip(self.bias) {
                    *v = f(*v + b);
                }
            }
        });
    }
}

impl InplaceOp1 for BiasActivation<'_> {
    fn name(&self) -> &'static str {
        "kandle-bias-activation"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let x = slice_mut(storage, layout, self.name())?;
        // One monomorphized loop per activation, so that each vectorizes.
        match self.activation {
            Activation::GeluErf => self.run(x, math::gelu_erf),
            Activation::GeluTanh => self.run(x, gelu_tanh),
            Activation::Relu => self.run(x, |v| v.max(0.0)),
        }
        Ok(())
    }
}

/// Layer norm parameters as plain f32.
pub struct Norm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub eps: f32,
}

/// `x = layer_norm(x + bias + residual)` over `[tokens, bias.len()]`, in place.
pub struct AddNorm<'a> {
    pub bias: &'a [f32],
    pub norm: &'a Norm,
}

impl InplaceOp2 for AddNorm<'_> {
    fn name(&self) -> &'static str {
        "kandle-add-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let x = slice_mut(s1, l1, self.name())?;
        let residual = slice(s2, l2, self.name())?;
        let dim = self.bias.len();
        if x.len() != residual.len() || !x.len().is_multiple_of(dim) {
            bail!(
                "{}: shapes {:?} and {:?} do not match",
                self.name(),
                l1.shape(),
                l2.shape()
            );
        }
        let Norm { gamma, beta, eps } = self.norm;
        x.par_chunks_mut(dim * ROWS_PER_TASK)
            .zip(residual.par_chunks(dim * ROWS_PER_TASK))
            .for_each(|(rows, res)| {
                for (row, res) in rows.chunks_exact_mut(dim).zip(res.chunks_exact(dim)) {
                    for ((v, &r), &b) in row.iter_mut().zip(res).zip(self.bias) {
                        *v += r + b;
                    }
                    math::layer_norm(row, gamma, beta, *eps);
                }
            });
        Ok(())
    }
}

/// `layer_norm(word[id] + position[pos] + token_type)` for each token: `[tokens, hidden]`.
pub struct Embed<'a> {
    pub ids: &'a [u32],
    pub positions: &'a [u32],
    pub token_type: &'a [f32],
    pub norm: &'a Norm,
}

impl Embed<'_> {
    /// Runs over the word and position embedding tables.
    pub fn apply(&self, word: &Tensor, position: &Tensor) -> Result<Tensor> {
        word.apply_op2_no_bwd(position, self)
    }
}

impl CustomOp2 for Embed<'_> {
    fn name(&self) -> &'static str {
        "kandle-embed"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let word = slice(s1, l1, self.name())?;
        let position = slice(s2, l2, self.name())?;
        let dim = self.token_type.len();
        let (words, places) = (word.len() / dim, position.len() / dim);
        if let Some(id) = self.ids.iter().find(|&&id| id as usize >= words) {
            bail!("token id {id} is outside the vocabulary of {words}");
        }
        if let Some(p) = self.positions.iter().find(|&&p| p as usize >= places) {
            bail!("position {p} is outside the {places} position embeddings");
        }
        let Norm { gamma, beta, eps } = self.norm;
        let mut out = vec![0f32; self.ids.len() * dim];
        out.par_chunks_mut(dim)
            .zip(self.ids.par_iter().zip(self.positions))
            .with_min_len(ROWS_PER_TASK)
            .for_each(|(row, (&id, &pos))| {
                let w = &word[id as usize * dim..][..dim];
                let p = &position[pos as usize * dim..][..dim];
                for (((v, &w), &p), &t) in row.iter_mut().zip(w).zip(p).zip(self.token_type) {
                    *v = w + p + t;
                }
                math::layer_norm(row, gamma, beta, *eps);
            });
        Ok((CpuStorage::F32(out), Shape::from((self.ids.len(), dim))))
    }
}
