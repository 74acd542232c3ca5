//! Turning request inputs into validated token id sequences.
//!
//! Owns the tokenizer and the input limits: empty inputs, out-of-vocabulary ids and inputs over
//! `--max-input-tokens` are rejected here (or truncated with `--truncate`), before anything is
//! queued for the model.

use std::path::Path;

use anyhow::anyhow;
use tokenizers::{Tokenizer, TruncationParams};

use crate::error::ApiError;

/// One input of a request: text to tokenize, or token ids used as given.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Text(String),
    Ids(Vec<u32>),
}

pub struct TextEncoder {
    tokenizer: Tokenizer,
    max_input_tokens: usize,
    truncate: bool,
    vocab_size: usize,
}

impl TextEncoder {
    pub fn load(
        path: &Path,
        max_input_tokens: usize,
        truncate: bool,
        vocab_size: usize,
    ) -> anyhow::Result<Self> {
        let mut tokenizer = Tokenizer::from_file(path)
            .map_err(|err| anyhow!("cannot load {}: {err}", path.display()))?;
        // Padding would waste compute (batches are packed); truncation happens only on request.
        tokenizer.with_padding(None);
        let truncation = truncate.then(|| TruncationParams {
            max_length: max_input_tokens,
            ..TruncationParams::default()
        });
        tokenizer
            .with_truncation(truncation)
            .map_err(|err| anyhow!("cannot configure truncation: {err}"))?;
        Ok(Self {
            tokenizer,
            max_input_tokens,
            truncate,
            vocab_size,
        })
    }

    pub fn max_input_tokens(&self) -> usize {
        self.max_input_tokens
    }

    /// Tokenizes and checks every input; the first bad one decides the error.
    pub fn encode(&self, inputs: Vec<Input>) -> Result<Vec<Vec<u32>>, ApiError> {
        if inputs.is_empty() {
            return Err(ApiError::invalid("input must not be empty", "input"));
        }
        inputs
            .into_iter()
            .enumerate()
            .map(|(index, input)| self.encode_one(index, input))
            .collect()
    }

    fn encode_one(&self, index: usize, input: Input) -> Result<Vec<u32>, ApiError> {
        let mut ids = match input {
            Input::Text(text) if text.is_empty() => {
                return Err(ApiError::invalid(
                    format!("input {index} is an empty string"),
                    "input",
                ))
            }
            Input::Text(text) => self
                .tokenizer
                .encode(text, true)
                .map_err(|err| ApiError::invalid(format!("input {index}: {err}"), "input"))?
                .get_ids()
                .to_vec(),
            Input::Ids(ids) if ids.is_empty() => {
                return Err(ApiError::invalid(
                    format!("input {index} has no tokens"),
                    "input",
                ))
            }
            Input::Ids(ids) => {
                if let Some(bad) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
                    return Err(ApiError::invalid(
                        format!(
                            "input {index} has token id {bad}, outside the vocabulary of {}",
                            self.vocab_size
                        ),
                        "input",
                    ));
                }
                ids
            }
        };
        if ids.len() > self.max_input_tokens {
            if !self.truncate {
                return Err(ApiError::InputTooLong {
                    index,
                    tokens: ids.len(),
                    limit: self.max_input_tokens,
                });
            }
            ids.truncate(self.max_input_tokens);
        }
        Ok(ids)
    }
}
