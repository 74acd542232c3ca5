//! The Llama-family decoder, run over a ragged batch: each step's tokens from every sequence go
//! through the projections and MLPs as one matrix (the weights are read once per step for all
//! sequences), and attention runs per sequence against that sequence's own KV cache (on the CPU
//! one query token at a time against an in-memory cache, [`super::cpu_attention`]).
//!
//! Weights come from a GGUF file ([`Llama::from_gguf`]) and stay quantized (the CPU default for
//! the block types the row kernels take, multiplied with activations rounded to 16 bits; see
//! [`super::linear`]), or are dequantized at load to f32 or f16 (the GPU default, where
//! batched quantized matmuls would dequantize whole weights on every step).

use candle_core::quantized::{gguf_file, QTensor};
use candle_core::{DType, Device, Tensor, D};
use rayon::prelude::*;

use super::cpu_attention::{cpu_attention, Rope, SequenceRows};
use super::kv_cache::SeqCache;
use super::linear::{with_cpu_values, Linear};
use crate::model::math;

/// The shape of the network, from the file's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub architecture: String,
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub rms_eps: f64,
    pub rope_base: f32,
    pub context_length: usize,
    pub vocab_size: usize,
    /// Rotary embedding on interleaved pairs (GGUF files, whose Q and K weights are permuted
    /// for it) rather than on the two halves of each head (Hugging Face checkpoints).
    pub rope_interleaved: bool,
}

/// The GGUF architectures served.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama"];

impl LlamaConfig {
    pub fn from_gguf(content: &gguf_file::Content) -> anyhow::Result<Self> {
        let get = |key: &str| {
            content
                .metadata
                .get(key)
                .ok_or_else(|| anyhow::anyhow!("the GGUF metadata has no `{key}`"))
        };
        let architecture = get("general.architecture")?.to_string()?.clone();
        anyhow::ensure!(
            SUPPORTED_ARCHITECTURES.contains(&architecture.as_str()),
            "unsupported model architecture `{architecture}`: kandle generates with {} models",
            SUPPORTED_ARCHITECTURES.join(", ")
        );
        let arch = |key: &str| get(&format!("{architecture}.{key}"));
        let u = |key: &str| -> anyhow::Result<usize> { Ok(arch(key)?.to_u32()? as usize) };
        let hidden = u("embedding_length")?;
        let heads = u("attention.head_count")?;
        let kv_heads = u("attention.head_count_kv").unwrap_or(heads);
        anyhow::ensure!(
            heads > 0 && hidden % heads == 0 && heads % kv_heads.max(1) == 0,
            "inconsistent attention shape: {hidden} wide, {heads} heads, {kv_heads} KV heads"
        );
        let vocab_size = match u("vocab_size") {
            Ok(n) => n,
            Err(_) => get("tokenizer.ggml.tokens")?.to_vec()?.len(),
        };
        Ok(Self {
            layers: u("block_count")?,
            hidden,
            heads,
            kv_heads,
            head_dim: hidden / heads,
            rms_eps: arch("attention.layer_norm_rms_epsilon")?.to_f32()? as f64,
            rope_base: arch("rope.freq_base")
                .and_then(|v| Ok(v.to_f32()?))
                .unwrap_or(10_000.0),
            context_length: u("context_length")?,
            vocab_size,
            rope_interleaved: true,
            architecture,
        })
    }

    /// Bytes of K and V one token takes across all layers, in f32.
    pub fn kv_bytes_per_token(&self) -> usize {
        2 * self.layers * self.kv_heads * self.head_dim * DType::F32.size_in_bytes()
    }
}

/// How the matmul weights are held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// As stored in the file (Q4_1, Q8_0, K-quants...).
    Quantized,
    /// Dequantized at load to this float type.
    Dequantized(DType),
}

/// One decoder layer's weights; matmul weights are `[out, in]`.
pub struct Layer {
    pub attn_norm: Tensor,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub ffn_norm: Tensor,
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

/// The whole network's weights, however they were read.
pub struct Weights {
    /// `[vocab, hidden]`, f32.
    pub embeddings: Tensor,
    pub layers: Vec<Layer>,
    pub norm: Tensor,
    pub lm_head: Linear,
}

pub struct Llama {
    pub config: LlamaConfig,
    embeddings: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Linear,
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

/// One sequence's tokens in a step: they follow what its cache already holds.
pub struct Chunk<'a> {
    pub tokens: &'a [u32],
    pub cache: &'a mut SeqCache,
    /// Logits of every token of the chunk instead of only the last (teacher forcing).
    pub all_logits: bool,
}

impl Llama {
    pub fn from_gguf<R: std::io::Read + std::io::Seek>(
        content: &gguf_file::Content,
        reader: &mut R,
        device: &Device,
        format: WeightFormat,
    ) -> anyhow::Result<Self> {
        let config = LlamaConfig::from_gguf(content)?;
        let mut tensor = |name: &str| -> anyhow::Result<QTensor> {
            content
                .tensor(reader, name, device)
                .map_err(|err| anyhow::anyhow!("cannot read tensor `{name}`: {err}"))
        };
        let embeddings_q = tensor("token_embd.weight")?;
        let embeddings = embeddings_q.dequantize(device)?;
        let lm_head = match tensor("output.weight") {
            Ok(output) => Linear::from_qtensor(output, format)?,
            Err(_) => Linear::from_qtensor(embeddings_q, format)?, // tied embeddings
        };
        let mut layers = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let mut matmul = |name: &str| -> anyhow::Result<Linear> {
                Linear::from_qtensor(tensor(&format!("blk.{i}.{name}.weight"))?, format)
            };
            layers.push(Layer {
                q: matmul("attn_q")?,
                k: matmul("attn_k")?,
                v: matmul("attn_v")?,
                o: matmul("attn_output")?,
                gate: matmul("ffn_gate")?,
                up: matmul("ffn_up")?,
                down: matmul("ffn_down")?,
                attn_norm: tensor(&format!("blk.{i}.attn_norm.weight"))?.dequantize(device)?,
                ffn_norm: tensor(&format!("blk.{i}.ffn_norm.weight"))?.dequantize(device)?,
            });
        }
        let norm = tensor("output_norm.weight")?.dequantize(device)?;
        let weights = Weights {
            embeddings,
            layers,
            norm,
            lm_head,
        };
        Self::new(config, weights, device)
    }

    /// A model from weights read elsewhere (a safetensors folder).
    pub fn new(config: LlamaConfig, weights: Weights, device: &Device) -> anyhow::Result<Self> {
        let (cos, sin) = rope_tables(&config, device)?;
        Ok(Self {
            config,
            embeddings: weights.embeddings,
            layers: weights.layers,
            norm: weights.norm,
            lm_head: weights.lm_head,
            cos,
            sin,
            device: device.clone(),
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A cache for one sequence.
    pub fn new_cache(&self) -> SeqCache {
        let c = &self.config;
        SeqCache::new(c.layers, self.device.is_cpu(), c.kv_heads, c.head_dim)
    }

    /// Runs one step over `chunks` and returns, per chunk, the logits (f32, on the CPU) of its
    /// last token, or of each of its tokens when it asked for all.
    pub fn forward(&self, chunks: &mut [Chunk<'_>]) -> anyhow::Result<Vec<Tensor>> {
        if self.device.is_cpu() {
            // On a thread of the pool, the step's many parallel passes are joins that the
            // other threads steal from, not jobs handed in from outside and waited for.
            rayon::scope(|_| self.step(chunks))
        } else {
            self.step(chunks)
        }
    }

    fn step(&self, chunks: &mut [Chunk<'_>]) -> anyhow::Result<Vec<Tensor>> {
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        let mut spans = Vec::with_capacity(chunks.len());
        for chunk in chunks.iter() {
            anyhow::ensure!(!chunk.tokens.is_empty(), "empty chunk");
            let start = chunk.cache.len();
            anyhow::ensure!(
                start + chunk.tokens.len() <= self.config.context_length,
                "sequence longer than the model's {} positions",
                self.config.context_length
            );
            spans.push((ids.len(), chunk.tokens.len(), start));
            ids.extend_from_slice(chunk.tokens);
            positions.extend((start..start + chunk.tokens.len()).map(|p| p as u32));
        }
        let total = ids.len();
        let ids = Tensor::from_vec(ids, total, &self.device)?;
        let positions = Tensor::from_vec(positions, total, &self.device)?;
        let cos = self.cos.index_select(&positions, 0)?;
        let sin = self.sin.index_select(&positions, 0)?;
        let mut x = self.embeddings.index_select(&ids, 0)?;
        let eps = self.config.rms_eps as f32;
        for (index, layer) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, eps)?;
            let attended = self.attention(layer, index, &h, &cos, &sin, chunks, &spans)?;
            x = (x + layer.o.forward(&attended)?)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, eps)?;
            let [gate, up]: [Tensor; 2] = Linear::forward_all(&[&layer.gate, &layer.up], &h)?
                .try_into()
                .expect("two outputs");
            let gated = silu_times(&gate, &up)?;
            x = (x + layer.down.forward(&gated)?)?;
        }
        // The rows that need logits, gathered so the output projection (the largest matrix)
        // is read once per step, not once per sequence.
        let mut picked = Vec::new();
        for (chunk, &(offset, len, _)) in chunks.iter().zip(&spans) {
            let first = if chunk.all_logits {
                offset
            } else {
                offset + len - 1
            };
            picked.extend(first as u32..(offset + len) as u32);
        }
        let picked_len = picked.len();
        let picked = Tensor::from_vec(picked, picked_len, &self.device)?;
        let rows = candle_nn::ops::rms_norm(&x.index_select(&picked, 0)?, &self.norm, eps)?;
        let logits = self
            .lm_head
            .forward(&rows)?
            .to_dtype(DType::F32)?
            .to_device(&Device::Cpu)?;
        let mut outputs = Vec::with_capacity(chunks.len());
        let mut next = 0;
        for (chunk, &(_, len, _)) in chunks.iter().zip(&spans) {
            let count = if chunk.all_logits { len } else { 1 };
            outputs.push(logits.narrow(0, next, count)?);
            next += count;
        }
        Ok(outputs)
    }

    /// Self-attention of one layer: projections over all tokens at once, then each sequence
    /// against its cache. Returns `[tokens, hidden]`.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        layer: &Layer,
        index: usize,
        h: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        chunks: &mut [Chunk<'_>],
        spans: &[(usize, usize, usize)],
    ) -> anyhow::Result<Tensor> {
        let c = &self.config;
        let total = h.dim(0)?;
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        let [q, k, v]: [Tensor; 3] = Linear::forward_all(&[&layer.q, &layer.k, &layer.v], h)?
            .try_into()
            .expect("three outputs");
        let append = |chunks: &mut [Chunk<'_>], k: &Tensor, v: &Tensor| {
            let mut caches = Vec::with_capacity(chunks.len());
            for (chunk, &(offset, len, _)) in chunks.iter_mut().zip(spans) {
                caches.push(chunk.cache.append(
                    index,
                    &k.narrow(0, offset, len)?,
                    &v.narrow(0, offset, len)?,
                )?);
            }
            anyhow::Ok(caches)
        };
        if self.device.is_cpu() {
            // Token-major throughout, `[tokens, heads, d]`: no transposes.
            let rope = Rope {
                cos,
                sin,
                interleaved: c.rope_interleaved,
                head_dim: c.head_dim,
            };
            let q = rope.rotate(&q, scale as f32)?;
            let k = rope.rotate(&k, 1.0)?;
            let width = c.kv_heads * c.head_dim;
            with_cpu_values(&k, |k| {
                with_cpu_values(&v, |v| {
                    for (chunk, &(offset, len, _)) in chunks.iter_mut().zip(spans) {
                        let rows = offset * width..(offset + len) * width;
                        chunk
                            .cache
                            .host_layer_mut(index)?
                            .append(&k[rows.clone()], &v[rows]);
                    }
                    anyhow::Ok(())
                })
            })?;
            let mut sequences = Vec::with_capacity(chunks.len());
            for (chunk, &(offset, len, start)) in chunks.iter().zip(spans) {
                sequences.push(SequenceRows {
                    offset,
                    len,
                    start,
                    cache: chunk.cache.host_layer(index)?,
                });
            }
            return cpu_attention(&q, &sequences, c.heads, c.kv_heads);
        }
        let heads = |t: Tensor, n: usize| -> candle_core::Result<Tensor> {
            // [tokens, n * d] -> [1, n, tokens, d], rotated at each token's own position.
            let t = t
                .reshape((total, n, c.head_dim))?
                .transpose(0, 1)?
                .contiguous()?;
            if c.rope_interleaved {
                candle_nn::rotary_emb::rope_i(&t.unsqueeze(0)?, cos, sin)
            } else {
                candle_nn::rotary_emb::rope(&t.unsqueeze(0)?, cos, sin)
            }
        };
        let q = (heads(q, c.heads)?.squeeze(0)? * scale)?;
        // Keys and values token-major, `[tokens, kv_heads, d]`, so that each sequence's share is
        // a contiguous slice its cache can take without a copy.
        let k = heads(k, c.kv_heads)?
            .squeeze(0)?
            .transpose(0, 1)?
            .contiguous()?;
        let v = v.reshape((total, c.kv_heads, c.head_dim))?;
        let group = c.heads / c.kv_heads;
        let caches = append(chunks, &k, &v)?;
        let mut outputs = Vec::with_capacity(chunks.len());
        for (&(offset, len, start), (keys, values)) in spans.iter().zip(caches) {
            let (keys, values) = (keys.transpose(0, 1)?, values.transpose(0, 1)?);
            let seen = start + len;
            // Grouped-query attention without copying K/V: the heads sharing a KV head become
            // rows of one matrix.
            let q = q
                .narrow(1, offset, len)?
                .reshape((c.kv_heads, group * len, c.head_dim))?;
            let scores = q.matmul(&keys.t()?)?;
            let scores = if len > 1 {
                let mask = causal_mask(len, start, &self.device)?;
                scores
                    .reshape((c.kv_heads, group, len, seen))?
                    .broadcast_add(&mask)?
                    .reshape((c.kv_heads, group * len, seen))?
            } else {
                scores
            };
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let out = probs.matmul(&values)?; // [kv_heads, group * len, d]
            let out = out
                .reshape((c.heads, len, c.head_dim))?
                .transpose(0, 1)?
                .reshape((len, c.hidden))?;
            outputs.push(out);
        }
        Ok(Tensor::cat(&outputs, 0)?)
    }
}

/// Values per parallel task of [`silu_times`].
const SILU_CHUNK: usize = 8192;

/// `silu(gate) * up`: on the CPU one parallel pass, instead of candle's two passes (whose `exp`
/// is a libm call per value).
fn silu_times(gate: &Tensor, up: &Tensor) -> anyhow::Result<Tensor> {
    if !gate.device().is_cpu() || gate.dtype() != DType::F32 {
        return Ok((candle_nn::ops::silu(gate)? * up)?);
    }
    let mut out = vec![0f32; gate.elem_count()];
    with_cpu_values(gate, |g| {
        with_cpu_values(up, |u| {
            out.par_chunks_mut(SILU_CHUNK)
                .zip(g.par_chunks(SILU_CHUNK).zip(u.par_chunks(SILU_CHUNK)))
                .for_each(|(out, (g, u))| {
                    for ((out, &g), &u) in out.iter_mut().zip(g).zip(u) {
                        *out = math::silu(g) * u;
                    }
                });
            Ok(())
        })
    })?;
    Ok(Tensor::from_vec(out, gate.shape(), &Device::Cpu)?)
}

/// cos and sin of every position, `[context, head_dim / 2]`.
fn rope_tables(config: &LlamaConfig, device: &Device) -> anyhow::Result<(Tensor, Tensor)> {
    let d = config.head_dim;
    let inv_freq: Vec<f32> = (0..d)
        .step_by(2)
        .map(|i| 1.0 / config.rope_base.powf(i as f32 / d as f32))
        .collect();
    let inv_freq = Tensor::from_vec(inv_freq, (1, d / 2), device)?;
    let positions = Tensor::arange(0u32, config.context_length as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((config.context_length, 1))?;
    let angles = positions.matmul(&inv_freq)?;
    Ok((angles.cos()?, angles.sin()?))
}

/// `[len, start + len]`: token `i` of the chunk sees the cache and the chunk up to itself.
fn causal_mask(len: usize, start: usize, device: &Device) -> candle_core::Result<Tensor> {
    let seen = start + len;
    let mask: Vec<f32> = (0..len)
        .flat_map(|i| {
            (0..seen).map(move |j| {
                if j > start + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Tensor::from_vec(mask, (len, seen), device)
}

/// The index of the largest value of a 1-D f32 tensor.
pub fn argmax(logits: &Tensor) -> anyhow::Result<u32> {
    Ok(logits.argmax(D::Minus1)?.to_scalar::<u32>()?)
}
