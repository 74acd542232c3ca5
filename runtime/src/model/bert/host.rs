//! BERT's forward on the CPU in f32: candle's matmuls with the fused passes of
//! [`crate::model::cpu`] and [`crate::model::attention`] between them.

use candle_core::{Result, Tensor};

use super::{to_host, Bert, Layer};
use crate::model::attention::Attention;
use crate::model::cpu::{AddNorm, BiasActivation, Embed, Norm};

/// f32 copies of a layer's biases and norms, for the fused CPU passes.
struct HostLayer {
    qkv_bias: Vec<f32>,
    attn_out_bias: Vec<f32>,
    attn_norm: Norm,
    intermediate_bias: Vec<f32>,
    output_bias: Vec<f32>,
    out_norm: Norm,
}

impl HostLayer {
    fn new(l: &Layer) -> Result<Self> {
        Ok(Self {
            qkv_bias: to_host(&l.qkv.bias)?,
            attn_out_bias: to_host(&l.attn_out.bias)?,
            attn_norm: l.attn_norm.to_host()?,
            intermediate_bias: to_host(&l.intermediate.bias)?,
            output_bias: to_host(&l.output.bias)?,
            out_norm: l.out_norm.to_host()?,
        })
    }
}

/// What the fused CPU forward needs besides the weight matrices.
pub(super) struct HostParams {
    token_type: Vec<f32>,
    embed_norm: Norm,
    layers: Vec<HostLayer>,
}

impl HostParams {
    pub(super) fn new(bert: &Bert) -> Result<Self> {
        Ok(Self {
            token_type: to_host(&bert.token_type)?,
            embed_norm: bert.embed_norm.to_host()?,
            layers: bert
                .layers
                .iter()
                .map(HostLayer::new)
                .collect::<Result<_>>()?,
        })
    }
}

impl Bert {
    /// The forward pass on the CPU in f32: matmuls by candle, the passes between them fused.
    pub(super) fn forward_host(
        &self,
        host: &HostParams,
        ids: &[u32],
        lengths: &[usize],
    ) -> Result<Tensor> {
        let positions: Vec<u32> = lengths.iter().flat_map(|&len| 0..len as u32).collect();
        let embed = Embed {
            ids,
            positions: &positions,
            token_type: &host.token_type,
            norm: &host.embed_norm,
        };
        let mut x = embed.apply(&self.word, &self.position)?;
        for (layer, p) in self.layers.iter().zip(&host.layers) {
            let attention = Attention {
                bias: &p.qkv_bias,
                lengths,
                heads: self.config.num_attention_heads,
            };
            let context = attention.apply(&layer.qkv.matmul(&x)?)?;
            let attended = layer.attn_out.matmul(&context)?;
            attended.inplace_op2(
                &x,
                &AddNorm {
                    bias: &p.attn_out_bias,
                    norm: &p.attn_norm,
                },
            )?;
            let inner = layer.intermediate.matmul(&attended)?;
            inner.inplace_op1(&BiasActivation {
                bias: &p.intermediate_bias,
                activation: self.activation,
            })?;
            x = layer.output.matmul(&inner)?;
            x.inplace_op2(
                &attended,
                &AddNorm {
                    bias: &p.output_bias,
                    norm: &p.out_norm,
                },
            )?;
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::{DType, Device};
    use candle_nn::VarBuilder;

    use super::*;
    use crate::model::Encoder;

    /// A small BERT with random weights: 2 layers, hidden 24, 3 heads.
    fn tiny_bert() -> Bert {
        let (vocab, hidden, inter, positions) = (50, 24, 40, 256);
        let dev = Device::Cpu;
        let mut shapes: Vec<(String, Vec<usize>)> = vec![
            (
                "embeddings.word_embeddings.weight".into(),
                vec![vocab, hidden],
            ),
            (
                "embeddings.position_embeddings.weight".into(),
                vec![positions, hidden],
            ),
            (
                "embeddings.token_type_embeddings.weight".into(),
                vec![2, hidden],
            ),
            ("embeddings.LayerNorm.weight".into(), vec![hidden]),
            ("embeddings.LayerNorm.bias".into(), vec![hidden]),
        ];
        for i in 0..2 {
            let l = format!("encoder.layer.{i}");
            for (name, shape) in [
                ("attention.self.query", [hidden, hidden]),
                ("attention.self.key", [hidden, hidden]),
                ("attention.self.value", [hidden, hidden]),
                ("attention.output.dense", [hidden, hidden]),
                ("intermediate.dense", [inter, hidden]),
                ("output.dense", [hidden, inter]),
            ] {
                shapes.push((format!("{l}.{name}.weight"), shape.to_vec()));
                shapes.push((format!("{l}.{name}.bias"), vec![shape[0]]));
            }
            for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
                shapes.push((format!("{l}.{norm}.weight"), vec![hidden]));
                shapes.push((format!("{l}.{norm}.bias"), vec![hidden]));
            }
        }
        let tensors: HashMap<String, Tensor> = shapes
            .into_iter()
            .map(|(name, shape)| {
                let t = Tensor::randn(0f32, 0.5, shape, &dev).unwrap();
                (name, t)
            })
            .collect();
        let config = serde_json::json!({
            "vocab_size": vocab, "hidden_size": hidden, "num_hidden_layers": 2,
            "num_attention_heads": 3, "intermediate_size": inter,
            "max_position_embeddings": positions,
        });
        Bert::load(&config, VarBuilder::from_tensors(tensors, DType::F32, &dev)).unwrap()
    }

    #[test]
    fn fused_forward_matches_plain_candle_ops() {
        let mut bert = tiny_bert();
        assert!(bert.host.is_some(), "f32 on the CPU takes the fused path");
        // Repeated lengths exercise the grouped attention of the plain path.
        let lengths = [1, 7, 7, 60, 90, 200];
        let ids: Vec<u32> = (0..lengths.iter().sum::<usize>())
            .map(|i| (i * 7 % 50) as u32)
            .collect();
        let fused = Device::Cpu
            .with_context(|| bert.forward(&ids, &lengths))
            .unwrap();
        bert.host = None;
        let plain = bert.forward(&ids, &lengths).unwrap();
        let diff = (fused - plain).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-4);
    }
}
