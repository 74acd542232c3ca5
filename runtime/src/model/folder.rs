//! Reading and checking a Hugging Face model folder before anything is loaded.
//!
//! [`ModelFolder::open`] finds the weights (single or sharded), the tokenizer, the architecture
//! and the sentence-transformers pooling/normalization, and fails with a message that names the
//! missing or unsupported piece.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::pooling::Pooling;
use super::Architecture;

#[derive(Debug, Clone)]
pub struct ModelFolder {
    pub dir: PathBuf,
    pub architecture: Architecture,
    /// The raw `config.json`, parsed further by the architecture.
    pub config: serde_json::Value,
    pub weights: Vec<PathBuf>,
    pub tokenizer: PathBuf,
    pub pooling: Pooling,
    pub normalize: bool,
    /// sentence-transformers' `max_seq_length`, when the folder sets one.
    pub max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct StModule {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

impl ModelFolder {
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        if !dir.is_dir() {
            bail!(
                "model folder {} does not exist or is not a folder",
                dir.display()
            );
        }
        let config: serde_json::Value = read_json(&dir.join("config.json"))?;
        let architecture = Architecture::detect(&config)?;
        let tokenizer = require_file(dir, "tokenizer.json")?;
        let weights = find_weights(dir)?;
        let (pooling, normalize) = read_modules(dir)?;
        let max_seq_length = match dir.join("sentence_bert_config.json") {
            path if path.is_file() => read_json::<SentenceBertConfig>(&path)?.max_seq_length,
            _ => None,
        };
        Ok(Self {
            dir: dir.to_owned(),
            architecture,
            config,
            weights,
            tokenizer,
            pooling,
            normalize,
            max_seq_length,
        })
    }

    /// Checks the weights against `expected` (hex sha256 of the weight files in order).
    pub fn verify_sha256(&self, expected: &str) -> anyhow::Result<()> {
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        for path in &self.weights {
            let mut file = std::fs::File::open(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            loop {
                let n = file.read(&mut buffer)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buffer[..n]);
            }
        }
        let actual = hex::encode(hasher.finalize());
        if !actual.eq_ignore_ascii_case(expected.trim()) {
            bail!("weights sha256 mismatch: expected {expected}, the folder has {actual}");
        }
        Ok(())
    }
}

fn require_file(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    if !path.is_file() {
        bail!("model folder {} has no {name}", dir.display());
    }
    Ok(path)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => anyhow!("model folder has no {}", path.display()),
        _ => anyhow!("cannot read {}: {err}", path.display()),
    })?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid", path.display()))
}

/// `model.safetensors`, else the shards `model.safetensors.index.json` lists.
pub fn find_weights(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.is_file() {
        bail!(
            "model folder {} has neither model.safetensors nor model.safetensors.index.json",
            dir.display()
        );
    }
    let index: ShardIndex = read_json(&index)?;
    let shards: BTreeSet<&String> = index.weight_map.values().collect();
    if shards.is_empty() {
        bail!("model.safetensors.index.json lists no shards");
    }
    shards
        .into_iter()
        .map(|shard| require_file(dir, shard))
        .collect()
}

/// Pooling and normalization from sentence-transformers' `modules.json`.
fn read_modules(dir: &Path) -> anyhow::Result<(Pooling, bool)> {
    let modules: Vec<StModule> = read_json(&dir.join("modules.json"))
        .context("the sentence-transformers modules.json says how to pool; it is required")?;
    let short = |m: &StModule| m.kind.rsplit('.').next().unwrap_or_default().to_owned();
    let pooling_module = modules
        .iter()
        .find(|m| short(m) == "Pooling")
        .ok_or_else(|| anyhow!("modules.json has no Pooling module"))?;
    let pooling = Pooling::from_config(&read_json(
        &dir.join(&pooling_module.path).join("config.json"),
    )?)?;
    let normalize = modules.iter().any(|m| short(m) == "Normalize");
    if let Some(other) = modules
        .iter()
        .map(short)
        .find(|k| !matches!(k.as_str(), "Transformer" | "Pooling" | "Normalize"))
    {
        bail!("modules.json has a {other} module, which this server does not support");
    }
    Ok((pooling, normalize))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kandle-folder-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
        std::fs::write(dir.join("config.json"), r#"{"model_type":"bert"}"#).unwrap();
        std::fs::write(dir.join("tokenizer.json"), "{}").unwrap();
        std::fs::write(dir.join("model.safetensors"), "weights").unwrap();
        std::fs::write(
            dir.join("modules.json"),
            r#"[{"path":"","type":"sentence_transformers.models.Transformer"},
                {"path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
                {"path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("1_Pooling/config.json"),
            r#"{"pooling_mode_cls_token":true,"pooling_mode_mean_tokens":false}"#,
        )
        .unwrap();
        dir
    }

    #[test]
    fn a_complete_folder_opens() {
        let dir = folder("ok");
        let model = ModelFolder::open(&dir).unwrap();
        assert_eq!(model.pooling, Pooling::Cls);
        assert!(model.normalize);
        assert_eq!(model.weights, vec![dir.join("model.safetensors")]);
        let sha = hex::encode(Sha256::digest(b"weights"));
        model.verify_sha256(&sha).unwrap();
        let err = model.verify_sha256(&"0".repeat(64)).unwrap_err();
        assert!(err.to_string().contains("mismatch"), "{err}");
    }

    #[test]
    fn missing_pieces_are_named() {
        let dir = folder("tok");
        std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
        let err = ModelFolder::open(&dir).unwrap_err();
        assert!(err.to_string().contains("tokenizer.json"), "{err}");

        let dir = folder("weights");
        std::fs::remove_file(dir.join("model.safetensors")).unwrap();
        let err = ModelFolder::open(&dir).unwrap_err();
        assert!(err.to_string().contains("model.safetensors"), "{err}");
    }

    #[test]
    fn unknown_architectures_are_rejected() {
        let dir = folder("arch");
        std::fs::write(dir.join("config.json"), r#"{"model_type":"mamba"}"#).unwrap();
        let err = ModelFolder::open(&dir).unwrap_err();
        assert!(format!("{err:#}").contains("mamba"), "{err:#}");
    }

    #[test]
    fn shards_come_from_the_index() {
        let dir = folder("shards");
        std::fs::remove_file(dir.join("model.safetensors")).unwrap();
        std::fs::write(
            dir.join("model.safetensors.index.json"),
            r#"{"weight_map":{"a":"model-00002.safetensors","b":"model-00001.safetensors"}}"#,
        )
        .unwrap();
        let err = ModelFolder::open(&dir).unwrap_err();
        assert!(err.to_string().contains("model-00001.safetensors"), "{err}");
        std::fs::write(dir.join("model-00001.safetensors"), "").unwrap();
        std::fs::write(dir.join("model-00002.safetensors"), "").unwrap();
        let model = ModelFolder::open(&dir).unwrap();
        assert_eq!(model.weights.len(), 2);
    }
}
