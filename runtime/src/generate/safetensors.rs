//! Llama-family decoders from Hugging Face safetensors folders: `config.json`, then
//! `model.safetensors` or the shards `model.safetensors.index.json` lists.
//!
//! Served: `LlamaForCausalLM` (`model_type: llama`) and `MistralForCausalLM` (`mistral`) with
//! f32, f16 or bf16 tensors. Refused at load, naming the field: `rope_scaling`, attention or MLP
//! biases, an activation other than SiLU, quantized checkpoints (`quantization_config`), and a
//! `head_dim` other than `hidden_size / num_attention_heads`. A `sliding_window` shorter than
//! `max_position_embeddings` (Mistral v0.1) caps the context to it: within the window, sliding
//! and full attention are the same.
//!
//! The crate has no unsafe code, so the files are not memory-mapped: each is read into memory in
//! turn and its tensors converted to the weights' type as they are taken, so the peak is one
//! file beside the converted weights.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context};
use candle_core::safetensors::SliceSafetensors;
use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use super::linear::Linear;
use super::llama::{Layer, Llama, LlamaConfig, WeightFormat, Weights};

/// The architectures served, as `config.json`'s `architectures` and `model_type` name them.
pub const SUPPORTED_ARCHITECTURES: &[(&str, &str)] = &[
    ("LlamaForCausalLM", "llama"),
    ("MistralForCausalLM", "mistral"),
];

const EMBEDDINGS: &str = "model.embed_tokens.weight";
const NORM: &str = "model.norm.weight";
const LM_HEAD: &str = "lm_head.weight";

/// The fields of `config.json` the decoder needs, and those it refuses.
#[derive(Debug, Clone, Deserialize)]
struct HfConfig {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f32>,
    max_position_embeddings: usize,
    vocab_size: usize,
    tie_word_embeddings: Option<bool>,
    torch_dtype: Option<String>,
    /// transformers 4.56 and later write `dtype` instead of `torch_dtype`.
    dtype: Option<String>,
    rope_scaling: Option<serde_json::Value>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    hidden_act: Option<String>,
    sliding_window: Option<usize>,
    quantization_config: Option<serde_json::Value>,
}

/// A checked safetensors folder, before its weights are read.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    dir: PathBuf,
    hf: HfConfig,
    /// The config the decoder runs with.
    pub config: LlamaConfig,
    /// The type `config.json` says the weights are stored in (f32 when it does not say).
    pub stored_dtype: DType,
    files: Vec<PathBuf>,
}

/// Whether `dir` has a `config.json` naming a `...ForCausalLM` architecture (served or not: an
/// unsupported one then fails at load with a message that names it).
pub fn is_causal_lm(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("config.json")) else {
        return false;
    };
    let Ok(config) = serde_json::from_str::<serde_json::Value>(&text) else {
        return false;
    };
    config["architectures"].as_array().is_some_and(|names| {
        names
            .iter()
            .filter_map(|n| n.as_str())
            .any(|n| n.ends_with("ForCausalLM"))
    })
}

impl Checkpoint {
    /// Reads and checks `config.json` and finds the weight files; reads no weights.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let not_served = || format!("{} is not served", path.display());
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        let architecture = architecture(&json).with_context(not_served)?;
        let hf: HfConfig = serde_json::from_value(json)
            .with_context(|| format!("{} is not a Llama-family config", path.display()))?;
        let (config, stored_dtype) = check(&hf, architecture).with_context(not_served)?;
        let files = crate::model::folder::find_weights(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            hf,
            config,
            stored_dtype,
            files,
        })
    }

    /// Bytes the weights take in f32.
    pub fn f32_bytes(&self) -> u64 {
        let c = &self.config;
        let (q, kv) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
        let per_layer = c.hidden * (2 * q + 2 * kv + 3 * self.hf.intermediate_size + 2);
        let heads = if self.tied() { 1 } else { 2 };
        let total = c.layers * per_layer + heads * c.vocab_size * c.hidden + c.hidden;
        total as u64 * 4
    }

    /// The type the matmul weights are held in: the one asked for, or with
    /// [`WeightFormat::Quantized`] (which a float checkpoint has not) the stored type, where a
    /// bf16 checkpoint is held in f16. bf16 is refused when asked for: the decoder multiplies
    /// its f32 activations by f32 or f16 weights only.
    pub fn weight_dtype(&self, format: WeightFormat) -> anyhow::Result<DType> {
        match format {
            WeightFormat::Dequantized(DType::BF16) => bail!(
                "bf16 weights are not supported for generation (the decoder multiplies f32 \
                 activations by f32 or f16 weights); use --dtype f32 or f16"
            ),
            WeightFormat::Dequantized(dtype) => Ok(dtype),
            WeightFormat::Quantized if self.stored_dtype == DType::F32 => Ok(DType::F32),
            WeightFormat::Quantized => Ok(DType::F16),
        }
    }

    /// Reads the weights onto `device` and builds the decoder.
    pub fn load(&self, device: &Device, format: WeightFormat) -> anyhow::Result<Llama> {
        let dtype = self.weight_dtype(format)?;
        let mut tensors = self.read_tensors(device, dtype)?;
        let weights = self.weights(&mut tensors, dtype)?;
        Llama::new(self.config.clone(), weights, device)
    }

    fn tied(&self) -> bool {
        self.hf.tie_word_embeddings.unwrap_or(false)
    }

    /// Every tensor the decoder takes, with its shape.
    fn expected(&self) -> HashMap<String, Vec<usize>> {
        let c = &self.config;
        let (hidden, inter) = (c.hidden, self.hf.intermediate_size);
        let (q, kv) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
        let mut shapes = HashMap::from([
            (EMBEDDINGS.to_owned(), vec![c.vocab_size, hidden]),
            (NORM.to_owned(), vec![hidden]),
        ]);
        if !self.tied() {
            shapes.insert(LM_HEAD.to_owned(), vec![c.vocab_size, hidden]);
        }
        for i in 0..c.layers {
            let layer = [
                ("input_layernorm", vec![hidden]),
                ("post_attention_layernorm", vec![hidden]),
                ("self_attn.q_proj", vec![q, hidden]),
                ("self_attn.k_proj", vec![kv, hidden]),
                ("self_attn.v_proj", vec![kv, hidden]),
                ("self_attn.o_proj", vec![hidden, q]),
                ("mlp.gate_proj", vec![inter, hidden]),
                ("mlp.up_proj", vec![inter, hidden]),
                ("mlp.down_proj", vec![hidden, inter]),
            ];
            for (name, shape) in layer {
                shapes.insert(layer_tensor(i, name), shape);
            }
        }
        shapes
    }

    /// The tensors the decoder takes from every file, checked and converted: embeddings and
    /// norms to f32, matmul weights to `dtype`.
    fn read_tensors(
        &self,
        device: &Device,
        dtype: DType,
    ) -> anyhow::Result<HashMap<String, Tensor>> {
        let expected = self.expected();
        let mut tensors = HashMap::with_capacity(expected.len());
        for file in &self.files {
            let bytes =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let content = SliceSafetensors::new(&bytes)
                .with_context(|| format!("{} is not a safetensors file", file.display()))?;
            for (name, _) in content.tensors() {
                let Some(shape) = expected.get(&name) else {
                    continue;
                };
                let tensor = read_tensor(&content, &name, shape, device)
                    .with_context(|| format!("{}: tensor `{name}`", file.display()))?;
                let dtype = if is_f32(&name) { DType::F32 } else { dtype };
                tensors.insert(name, tensor.to_dtype(dtype)?);
            }
        }
        let mut missing: Vec<&String> = expected
            .keys()
            .filter(|n| !tensors.contains_key(*n))
            .collect();
        missing.sort();
        if let Some(first) = missing.first() {
            bail!(
                "{} lacks {} tensor(s) the model needs, e.g. `{first}` (files read: {})",
                self.dir.display(),
                missing.len(),
                self.file_names()
            );
        }
        Ok(tensors)
    }

    /// The decoder's weights, taken out of `tensors` (which [`Self::read_tensors`] checked).
    fn weights(
        &self,
        tensors: &mut HashMap<String, Tensor>,
        dtype: DType,
    ) -> anyhow::Result<Weights> {
        let mut take = |name: &str| {
            tensors
                .remove(name)
                .with_context(|| format!("tensor `{name}` was not read"))
        };
        let embeddings = take(EMBEDDINGS)?;
        let lm_head = match self.tied() {
            true => Linear::from_tensor(embeddings.to_dtype(dtype)?)?,
            false => Linear::from_tensor(take(LM_HEAD)?)?,
        };
        let mut layers = Vec::with_capacity(self.config.layers);
        for i in 0..self.config.layers {
            let mut get = |name: &str| take(&layer_tensor(i, name));
            layers.push(Layer {
                attn_norm: get("input_layernorm")?,
                q: Linear::from_tensor(get("self_attn.q_proj")?)?,
                k: Linear::from_tensor(get("self_attn.k_proj")?)?,
                v: Linear::from_tensor(get("self_attn.v_proj")?)?,
                o: Linear::from_tensor(get("self_attn.o_proj")?)?,
                ffn_norm: get("post_attention_layernorm")?,
                gate: Linear::from_tensor(get("mlp.gate_proj")?)?,
                up: Linear::from_tensor(get("mlp.up_proj")?)?,
                down: Linear::from_tensor(get("mlp.down_proj")?)?,
            });
        }
        Ok(Weights {
            embeddings,
            layers,
            norm: take(NORM)?,
            lm_head,
        })
    }

    fn file_names(&self) -> String {
        self.files
            .iter()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The decoder's config from `config.json`, with the stored weight type, or why it is not
/// served.
fn check(hf: &HfConfig, architecture: &str) -> anyhow::Result<(LlamaConfig, DType)> {
    refuse_unsupported(hf)?;
    let heads = hf.num_attention_heads;
    let kv_heads = hf.num_key_value_heads.unwrap_or(heads);
    ensure!(
        heads > 0
            && kv_heads > 0
            && hf.hidden_size.is_multiple_of(heads)
            && heads.is_multiple_of(kv_heads),
        "inconsistent attention shape: hidden_size {}, {heads} heads, {kv_heads} KV heads",
        hf.hidden_size
    );
    let head_dim = hf.hidden_size / heads;
    if let Some(explicit) = hf.head_dim.filter(|&d| d != head_dim) {
        bail!(
            "`head_dim` {explicit} differs from hidden_size / num_attention_heads ({head_dim}); \
             the decoder needs heads that tile the hidden size"
        );
    }
    let context_length = match hf.sliding_window {
        Some(window) if window < hf.max_position_embeddings => {
            tracing::info!(
                window,
                max_position_embeddings = hf.max_position_embeddings,
                "the context is capped to the sliding window"
            );
            window
        }
        _ => hf.max_position_embeddings,
    };
    let config = LlamaConfig {
        architecture: architecture.to_owned(),
        layers: hf.num_hidden_layers,
        hidden: hf.hidden_size,
        heads,
        kv_heads,
        head_dim,
        rms_eps: hf.rms_norm_eps.unwrap_or(1e-6),
        rope_base: hf.rope_theta.unwrap_or(10_000.0),
        context_length,
        vocab_size: hf.vocab_size,
        rope_interleaved: false,
    };
    Ok((config, stored_dtype(hf)?))
}

/// The `model_type` of a served architecture: from `architectures`, else `model_type`.
fn architecture(config: &serde_json::Value) -> anyhow::Result<&'static str> {
    let names: Vec<&str> = config["architectures"]
        .as_array()
        .map(|names| names.iter().filter_map(|n| n.as_str()).collect())
        .unwrap_or_default();
    let model_type = config["model_type"].as_str().unwrap_or_default();
    let found = SUPPORTED_ARCHITECTURES
        .iter()
        .find(|(class, kind)| names.contains(class) || (names.is_empty() && model_type == *kind));
    match found {
        Some((_, kind)) => Ok(kind),
        None => bail!(
            "unsupported architecture {} (model_type {model_type:?}): kandle generates from \
             safetensors folders of {}",
            names.join(", "),
            SUPPORTED_ARCHITECTURES
                .iter()
                .map(|(class, _)| *class)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Refuses what the decoder would silently compute wrong.
fn refuse_unsupported(hf: &HfConfig) -> anyhow::Result<()> {
    if let Some(scaling) = &hf.rope_scaling {
        bail!("`rope_scaling` {scaling} is not supported: kandle applies no RoPE scaling");
    }
    ensure!(
        hf.attention_bias != Some(true),
        "`attention_bias: true` is not supported: the decoder's projections have no bias"
    );
    ensure!(
        hf.mlp_bias != Some(true),
        "`mlp_bias: true` is not supported: the decoder's MLP has no bias"
    );
    if let Some(act) = hf.hidden_act.as_deref().filter(|a| *a != "silu") {
        bail!("`hidden_act` {act:?} is not supported: the decoder's MLP uses silu");
    }
    ensure!(
        hf.quantization_config.is_none(),
        "quantized checkpoints (`quantization_config`) are not supported; serve f32, f16 or \
         bf16 weights, or a GGUF file"
    );
    Ok(())
}

/// `torch_dtype` (or `dtype`): float32, float16 or bfloat16; float32 when absent.
fn stored_dtype(hf: &HfConfig) -> anyhow::Result<DType> {
    let name = hf.dtype.as_deref().or(hf.torch_dtype.as_deref());
    Ok(match name {
        None | Some("float32") => DType::F32,
        Some("float16") => DType::F16,
        Some("bfloat16") => DType::BF16,
        Some(other) => bail!("`torch_dtype` {other:?} is not supported: f32, f16 or bf16 only"),
    })
}

/// One tensor of a file, checked for a float type and `shape`.
fn read_tensor(
    content: &SliceSafetensors<'_>,
    name: &str,
    shape: &[usize],
    device: &Device,
) -> anyhow::Result<Tensor> {
    let tensor = content.load(name, device)?;
    ensure!(
        matches!(tensor.dtype(), DType::F32 | DType::F16 | DType::BF16),
        "type {:?} is not supported: f32, f16 or bf16 only",
        tensor.dtype()
    );
    ensure!(
        tensor.dims() == shape,
        "shape {:?}, but config.json makes it {shape:?}",
        tensor.dims()
    );
    Ok(tensor)
}

fn layer_tensor(layer: usize, name: &str) -> String {
    format!("model.layers.{layer}.{name}.weight")
}

/// Embeddings and norms stay f32: the decoder's activations are f32.
fn is_f32(name: &str) -> bool {
    name == EMBEDDINGS || name.ends_with("norm.weight")
}

#[cfg(test)]
mod tests;
