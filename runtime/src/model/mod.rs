//! The embedding model: an architecture-specific encoder plus pooling and normalization.
//!
//! An [`Encoder`] maps a packed batch of token ids to hidden states; [`Architecture`] is the one
//! place that knows which encoders exist, so adding an architecture means a new file and a new
//! variant here. [`EmbeddingModel`] is synchronous and owned by the model thread.

mod attention;
mod bert;
mod cpu;
pub mod folder;
pub(crate) mod math;
pub mod pooling;

use std::collections::HashMap;

use anyhow::{bail, Context};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

pub use folder::ModelFolder;
pub use pooling::Pooling;

/// A transformer body over a packed batch: `ids` holds the sequences one after another,
/// `lengths[i]` tokens for sequence `i`, and sequences of equal length come together.
pub trait Encoder: Send + Sync {
    /// Hidden states, `[sum(lengths), hidden_size]`, in the model's dtype.
    fn forward(&self, ids: &[u32], lengths: &[usize]) -> candle_core::Result<Tensor>;
    fn hidden_size(&self) -> usize;
    /// The longest sequence the position embeddings allow.
    fn max_positions(&self) -> usize;
    fn vocab_size(&self) -> usize;
}

/// The encoder families this server can load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Bert,
}

impl Architecture {
    /// Picks the architecture from `config.json`'s `model_type` (or `architectures`).
    pub fn detect(config: &serde_json::Value) -> anyhow::Result<Self> {
        let model_type = config.get("model_type").and_then(|v| v.as_str());
        let architectures: Vec<&str> = config
            .get("architectures")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        match model_type {
            Some("bert") => Ok(Self::Bert),
            None if architectures.iter().any(|a| a.starts_with("Bert")) => Ok(Self::Bert),
            other => bail!(
                "unsupported model architecture (model_type {:?}, architectures {:?}); supported: bert",
                other.unwrap_or("missing"),
                architectures
            ),
        }
    }

    fn load(self, config: &serde_json::Value, vb: VarBuilder) -> anyhow::Result<Box<dyn Encoder>> {
        match self {
            Self::Bert => Ok(Box::new(bert::Bert::load(config, vb)?)),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bert => "bert",
        }
    }
}

pub struct EmbeddingModel {
    encoder: Box<dyn Encoder>,
    pooling: Pooling,
    normalize: bool,
    device: Device,
}

impl EmbeddingModel {
    pub fn load(folder: &ModelFolder, device: &Device, dtype: DType) -> anyhow::Result<Self> {
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for path in &folder.weights {
            let shard = candle_core::safetensors::load(path, device)
                .with_context(|| format!("cannot read weights {}", path.display()))?;
            tensors.extend(shard);
        }
        // Some exports prefix every tensor with the task head's base name.
        let prefix = ["bert", "model"]
            .into_iter()
            .find(|p| tensors.contains_key(&format!("{p}.embeddings.word_embeddings.weight")));
        let vb = VarBuilder::from_tensors(tensors, dtype, device);
        let vb = match prefix {
            Some(p) => vb.pp(p),
            None => vb,
        };
        let encoder = folder
            .architecture
            .load(&folder.config, vb)
            .with_context(|| format!("cannot build the {} model", folder.architecture.as_str()))?;
        Ok(Self {
            encoder,
            pooling: folder.pooling,
            normalize: folder.normalize,
            device: device.clone(),
        })
    }

    pub fn dim(&self) -> usize {
        self.encoder.hidden_size()
    }

    pub fn max_positions(&self) -> usize {
        self.encoder.max_positions()
    }

    pub fn vocab_size(&self) -> usize {
        self.encoder.vocab_size()
    }

    /// Embeds each sequence of token ids; the result is in the order of `sequences`.
    pub fn embed(&self, sequences: &[&[u32]]) -> anyhow::Result<Vec<Vec<f32>>> {
        // Equal lengths side by side let the encoder batch their attention.
        let mut order: Vec<usize> = (0..sequences.len()).collect();
        order.sort_by_key(|&i| sequences[i].len());
        let lengths: Vec<usize> = order.iter().map(|&i| sequences[i].len()).collect();
        let ids: Vec<u32> = order
            .iter()
            .flat_map(|&i| sequences[i].iter().copied())
            .collect();
        if ids.is_empty() {
            return Ok(vec![vec![0.0; self.dim()]; sequences.len()]);
        }
        // On CPU this runs inside candle's own thread pool, kept warm across the many short
        // parallel sections of a forward pass; pooling splits over the same threads.
        let pooled = self.device.with_context(|| -> anyhow::Result<_> {
            let hidden = self
                .encoder
                .forward(&ids, &lengths)?
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            Ok(self
                .pooling
                .pool(&hidden, self.dim(), &lengths, self.normalize))
        })?;
        let mut out = vec![Vec::new(); sequences.len()];
        for (vector, &i) in pooled.into_iter().zip(&order) {
            out[i] = vector;
        }
        Ok(out)
    }
}
