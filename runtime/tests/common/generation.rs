//! The SmolLM2-135M-Instruct reference (tests/data/smollm2, made by
//! scripts/generation_reference.py with Hugging Face transformers from the GGUF file dequantized
//! to f32) and the ways tests drive the decoder against it.

use std::collections::HashMap;

use kandle_runtime::generate::chat_template::ChatMessage;
use kandle_runtime::generate::llama::{Chunk, Llama};
use kandle_runtime::generate::sampling::argmax;
use serde::Deserialize;

#[derive(Deserialize)]
pub struct Reference {
    pub tokenization: Vec<Tokenized>,
    pub chat: Vec<ChatCase>,
    pub prompts: Vec<Prompt>,
    pub logits: LogitRows,
}

#[derive(Deserialize)]
pub struct Tokenized {
    pub text: String,
    /// Without special tokens added.
    pub ids: Vec<u32>,
}

#[derive(Deserialize)]
pub struct ChatCase {
    pub messages: Vec<ChatMessage>,
    pub add_generation_prompt: bool,
    pub rendered: String,
}

#[derive(Deserialize)]
pub struct Prompt {
    pub name: String,
    pub ids: Vec<u32>,
    /// transformers' argmax at every position of `ids`.
    pub argmax: Vec<u32>,
    /// transformers' greedy continuation.
    pub greedy: Vec<u32>,
}

#[derive(Deserialize)]
pub struct LogitRows {
    pub vocab: usize,
    pub rows: Vec<Row>,
}

#[derive(Deserialize)]
pub struct Row {
    pub prompt: String,
    pub position: usize,
}

/// Reference logits, keyed by (prompt, position).
pub type Logits = HashMap<(String, usize), Vec<f32>>;

fn data(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/smollm2")
        .join(name)
}

pub fn reference() -> Reference {
    serde_json::from_slice(&std::fs::read(data("reference.json")).unwrap()).unwrap()
}

impl Reference {
    pub fn prompt(&self, name: &str) -> &Prompt {
        self.prompts
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("the reference has no prompt {name:?}"))
    }
}

/// The reference logits (stored as f16).
pub fn reference_logits(reference: &Reference) -> Logits {
    let bytes = std::fs::read(data("logits.f16")).unwrap();
    let vocab = reference.logits.vocab;
    assert_eq!(bytes.len(), reference.logits.rows.len() * vocab * 2);
    reference
        .logits
        .rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let values = bytes[i * vocab * 2..(i + 1) * vocab * 2]
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect();
            ((row.prompt.clone(), row.position), values)
        })
        .collect()
}

/// Logits of every position of `ids`, in one forward pass.
pub fn teacher_forced(model: &Llama, ids: &[u32]) -> Vec<Vec<f32>> {
    let mut cache = model.new_cache();
    let logits = model
        .forward(&mut [Chunk {
            tokens: ids,
            cache: &mut cache,
            all_logits: true,
        }])
        .unwrap();
    logits[0].to_vec2::<f32>().unwrap()
}

/// `steps` tokens of greedy decoding after `prompt`, one token per step.
pub fn greedy(model: &Llama, prompt: &[u32], steps: usize) -> Vec<u32> {
    let mut cache = model.new_cache();
    let mut next = prompt.to_vec();
    let mut out = Vec::new();
    for _ in 0..steps {
        let logits = model
            .forward(&mut [Chunk {
                tokens: &next,
                cache: &mut cache,
                all_logits: false,
            }])
            .unwrap();
        let token = argmax(&logits[0].flatten_all().unwrap().to_vec1::<f32>().unwrap());
        out.push(token);
        next = vec![token];
    }
    out
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// Gap between the two largest values.
pub fn top_gap(row: &[f32]) -> f32 {
    let mut sorted = row.to_vec();
    sorted.sort_unstable_by(|a, b| b.total_cmp(a));
    sorted[0] - sorted[1]
}

/// Teacher-forces `prompt` and asserts what f32 weights must give: cosine >= 0.9999 against
/// the reference logits at each recorded position, and transformers' argmax at every position
/// whose top two logits are not a near-tie. Returns the worst cosine.
pub fn assert_matches_reference(model: &Llama, prompt: &Prompt, expected: &Logits) -> f64 {
    let mut worst = 1.0f64;
    for (position, row) in teacher_forced(model, &prompt.ids).iter().enumerate() {
        if let Some(want) = expected.get(&(prompt.name.clone(), position)) {
            let cos = cosine(row, want);
            worst = worst.min(cos);
            assert!(
                cos >= 0.9999,
                "{} position {position}: cosine {cos}",
                prompt.name
            );
        }
        let got = argmax(row);
        // Positions where transformers' own top two are within 0.01 may flip on rounding.
        if got != prompt.argmax[position] && top_gap(row) > 0.01 {
            panic!(
                "{} position {position}: argmax {got}, transformers {}",
                prompt.name, prompt.argmax[position]
            );
        }
    }
    worst
}
