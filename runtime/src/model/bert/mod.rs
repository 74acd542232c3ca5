//! BERT encoder over packed (unpadded) batches, built on candle ops.
//!
//! All dense layers run once over every token of the batch (`[tokens, hidden]`, one large
//! matmul each, no padding); only attention is done per sequence (per group of equal-length
//! sequences on other devices). Q, K and V share one fused weight, and the `1/sqrt(head_dim)`
//! scale is folded into Q. On the CPU in f32 the passes between the matmuls are fused
//! ([`super::cpu`], [`super::attention`]); other devices and dtypes run plain candle ops.

mod host;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;
use serde::Deserialize;

use super::cpu::{Activation, Norm};
use super::Encoder;
use host::HostParams;

fn default_act() -> String {
    "gelu".to_owned()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

impl Activation {
    fn parse(name: &str) -> Result<Self> {
        match name {
            "gelu" => Ok(Self::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Self::GeluTanh),
            "relu" => Ok(Self::Relu),
            other => candle_core::bail!("unsupported hidden_act {other:?}"),
        }
    }

    fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::GeluErf => x.gelu_erf(),
            Self::GeluTanh => x.gelu(),
            Self::Relu => x.relu(),
        }
    }
}

fn to_host(t: &Tensor) -> Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.to_vec1()
}

/// `y = x W^T + b` over a `[tokens, in]` matrix.
struct Dense {
    /// `W^T`, `[in, out]`, stored transposed: gemm then reads the weight in the order its
    /// kernel wants and packs less of it per call.
    weight_t: Tensor,
    bias: Tensor,
}

impl Dense {
    fn load(vb: VarBuilder, out_dim: usize, in_dim: usize) -> Result<Self> {
        Ok(Self {
            weight_t: vb.get((out_dim, in_dim), "weight")?.t()?.contiguous()?,
            bias: vb.get(out_dim, "bias")?,
        })
    }

    /// `x W^T`, without the bias.
    fn matmul(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.weight_t)
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.matmul(x)?.broadcast_add(&self.bias)
    }
}

struct LayerNorm {
    gamma: Tensor,
    beta: Tensor,
    eps: f32,
}

impl LayerNorm {
    fn load(vb: VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            gamma: vb.get(dim, "weight")?,
            beta: vb.get(dim, "bias")?,
            eps: eps as f32,
        })
    }

    /// `layer_norm(x + residual)`.
    fn forward(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        candle_nn::ops::layer_norm(&(x + residual)?, &self.gamma, &self.beta, self.eps)
    }

    fn to_host(&self) -> Result<Norm> {
        Ok(Norm {
            gamma: to_host(&self.gamma)?,
            beta: to_host(&self.beta)?,
            eps: self.eps,
        })
    }
}

struct Layer {
    qkv: Dense,
    attn_out: Dense,
    attn_norm: LayerNorm,
    intermediate: Dense,
    output: Dense,
    out_norm: LayerNorm,
}

impl Layer {
    fn load(vb: VarBuilder, c: &BertConfig) -> Result<Self> {
        let h = c.hidden_size;
        let attn = vb.pp("attention");
        let own = attn.pp("self");
        let scale = 1.0 / ((h / c.num_attention_heads) as f64).sqrt();
        let q = Dense::load(own.pp("query"), h, h)?;
        let k = Dense::load(own.pp("key"), h, h)?;
        let v = Dense::load(own.pp("value"), h, h)?;
        let qkv = Dense {
            weight_t: Tensor::cat(&[(q.weight_t * scale)?, k.weight_t, v.weight_t], 1)?,
            bias: Tensor::cat(&[(q.bias * scale)?, k.bias, v.bias], 0)?,
        };
        Ok(Self {
            qkv,
            attn_out: Dense::load(attn.pp("output").pp("dense"), h, h)?,
            attn_norm: LayerNorm::load(attn.pp("output").pp("LayerNorm"), h, c.layer_norm_eps)?,
            intermediate: Dense::load(vb.pp("intermediate").pp("dense"), c.intermediate_size, h)?,
            output: Dense::load(vb.pp("output").pp("dense"), h, c.intermediate_size)?,
            out_norm: LayerNorm::load(vb.pp("output").pp("LayerNorm"), h, c.layer_norm_eps)?,
        })
    }
}

/// A run of `count` consecutive sequences of `len` tokens starting at token `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Group {
    start: usize,
    count: usize,
    len: usize,
}

fn groups(lengths: &[usize]) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    let mut start = 0;
    for &len in lengths.iter().filter(|&&len| len > 0) {
        match out.last_mut() {
            Some(g) if g.len == len => g.count += 1,
            _ => out.push(Group {
                start,
                count: 1,
                len,
            }),
        }
        start += len;
    }
    out
}

pub struct Bert {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    activation: Activation,
    config: BertConfig,
    device: Device,
    /// Present on the CPU in f32, where the fused passes run.
    host: Option<HostParams>,
}

impl Bert {
    pub fn load(config: &serde_json::Value, vb: VarBuilder) -> anyhow::Result<Self> {
        let c: BertConfig = serde_json::from_value(config.clone())?;
        if let Some(kind) = c.position_embedding_type.as_deref() {
            anyhow::ensure!(
                kind == "absolute",
                "position_embedding_type {kind:?} is not supported"
            );
        }
        anyhow::ensure!(
            c.num_attention_heads > 0 && c.hidden_size.is_multiple_of(c.num_attention_heads),
            "hidden_size {} is not a multiple of num_attention_heads {}",
            c.hidden_size,
            c.num_attention_heads
        );
        let emb = vb.pp("embeddings");
        let h = c.hidden_size;
        let token_type = emb.get((c.type_vocab_size, h), "token_type_embeddings.weight")?;
        let layers = (0..c.num_hidden_layers)
            .map(|i| Layer::load(vb.pp(format!("encoder.layer.{i}")), &c))
            .collect::<Result<Vec<_>>>()?;
        let mut bert = Self {
            word: emb.get((c.vocab_size, h), "word_embeddings.weight")?,
            position: emb.get((c.max_position_embeddings, h), "position_embeddings.weight")?,
            // Single-segment input: every token has type 0.
            token_type: token_type.get(0)?,
            embed_norm: LayerNorm::load(emb.pp("LayerNorm"), h, c.layer_norm_eps)?,
            layers,
            activation: Activation::parse(&c.hidden_act)?,
            device: vb.device().clone(),
            config: c,
            host: None,
        };
        if bert.device.is_cpu() && vb.dtype() == DType::F32 {
            bert.host = Some(HostParams::new(&bert)?);
        }
        Ok(bert)
    }

    fn embed(&self, ids: &[u32], lengths: &[usize]) -> Result<Tensor> {
        let positions: Vec<u32> = lengths.iter().flat_map(|&len| 0..len as u32).collect();
        let ids = Tensor::new(ids, &self.device)?;
        let positions = Tensor::new(positions.as_slice(), &self.device)?;
        let x = self.word.embedding(&ids)?;
        let p = self.position.embedding(&positions)?;
        let x = (x + p)?.broadcast_add(&self.token_type)?;
        candle_nn::ops::layer_norm(
            &x,
            &self.embed_norm.gamma,
            &self.embed_norm.beta,
            self.embed_norm.eps,
        )
    }

    /// Self-attention of each group over the fused `[tokens, 3 * hidden]` projections.
    fn attention(&self, qkv: &Tensor, groups: &[Group]) -> Result<Tensor> {
        let heads = self.config.num_attention_heads;
        let head_dim = self.config.hidden_size / heads;
        let one_group = |g: &Group| -> Result<Tensor> {
            let x = qkv
                .narrow(0, g.start, g.count * g.len)?
                .reshape((g.count, g.len, 3, heads, head_dim))?
                .permute((2, 0, 3, 1, 4))?
                .contiguous()?;
            let (q, k, v) = (x.get(0)?, x.get(1)?, x.get(2)?);
            let scores = q.matmul(&k.t()?)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            probs
                .matmul(&v)?
                .transpose(1, 2)?
                .reshape((g.count * g.len, self.config.hidden_size))
        };
        // Each group's matmuls are too small to keep the CPU threads busy, so run groups side
        // by side; a GPU gets them one after another on its stream.
        let parts = if self.device.is_cpu() {
            groups
                .par_iter()
                .map(one_group)
                .collect::<Result<Vec<_>>>()?
        } else {
            groups.iter().map(one_group).collect::<Result<Vec<_>>>()?
        };
        Tensor::cat(&parts, 0)
    }
}

impl Encoder for Bert {
    fn forward(&self, ids: &[u32], lengths: &[usize]) -> Result<Tensor> {
        if let Some(&too_long) = lengths
            .iter()
            .find(|&&l| l > self.config.max_position_embeddings)
        {
            candle_core::bail!(
                "sequence of {too_long} tokens exceeds max_position_embeddings {}",
                self.config.max_position_embeddings
            );
        }
        if let Some(host) = &self.host {
            return self.forward_host(host, ids, lengths);
        }
        let groups = groups(lengths);
        let mut x = self.embed(ids, lengths)?;
        for layer in &self.layers {
            let qkv = layer.qkv.forward(&x)?;
            let context = self.attention(&qkv, &groups)?;
            let attended = layer
                .attn_norm
                .forward(&layer.attn_out.forward(&context)?, &x)?;
            let inner = self
                .activation
                .apply(&layer.intermediate.forward(&attended)?)?;
            x = layer
                .out_norm
                .forward(&layer.output.forward(&inner)?, &attended)?;
        }
        Ok(x)
    }

    fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }

    fn max_positions(&self) -> usize {
        self.config.max_position_embeddings
    }

    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_lengths_share_a_group() {
        assert_eq!(
            groups(&[2, 2, 3, 5, 5, 5]),
            vec![
                Group {
                    start: 0,
                    count: 2,
                    len: 2
                },
                Group {
                    start: 4,
                    count: 1,
                    len: 3
                },
                Group {
                    start: 7,
                    count: 3,
                    len: 5
                },
            ]
        );
        assert!(groups(&[]).is_empty());
    }

    #[test]
    fn activations_parse() {
        assert!(Activation::parse("gelu").is_ok());
        assert!(Activation::parse("swish").is_err());
    }
}
