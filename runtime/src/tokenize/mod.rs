//! Turning request inputs into validated token id sequences.
//!
//! Owns the tokenizer and the input limits: empty inputs, out-of-vocabulary ids and inputs over
//! `--max-input-tokens` are rejected here (or truncated with `--truncate`), before anything is
//! queued for the model. At load, the tokenizer's vocabulary must fit the model's embedding
//! table: an id past its end would be an out-of-bounds read (a device-side assert on CUDA).

mod pool;

use std::path::Path;

use anyhow::anyhow;
use tokenizers::{Tokenizer, TruncationParams};

use crate::error::ApiError;

pub use pool::TokenizerPool;

/// One input of a request: text to tokenize, or token ids used as given.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Text(String),
    Ids(Vec<u32>),
}

impl Input {
    /// A cheap estimate of the tokens, before tokenizing: the id count, or for text about one
    /// token per six bytes plus the special tokens (on the low side, so that an estimate never
    /// refuses what would fit).
    pub fn estimated_tokens(&self) -> usize {
        match self {
            Self::Text(text) => text.len() / 6 + 2,
            Self::Ids(ids) => ids.len(),
        }
    }
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
        let tokenizer_vocab = tokenizer.get_vocab_size(true);
        anyhow::ensure!(
            tokenizer_vocab <= vocab_size,
            "{} has {tokenizer_vocab} tokens (added tokens included) but the model's embedding \
             table has {vocab_size} rows: this tokenizer does not belong to this model",
            path.display()
        );
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
        self.encode_while(inputs, || true)
    }

    /// Like [`encode`](Self::encode), but stops between inputs once `wanted` turns false.
    pub fn encode_while(
        &self,
        inputs: Vec<Input>,
        wanted: impl Fn() -> bool,
    ) -> Result<Vec<Vec<u32>>, ApiError> {
        if inputs.is_empty() {
            return Err(ApiError::invalid("input must not be empty", "input"));
        }
        let mut out = Vec::with_capacity(inputs.len());
        for (index, input) in inputs.into_iter().enumerate() {
            if !wanted() {
                return Err(ApiError::Internal("tokenization abandoned".to_owned()));
            }
            out.push(self.encode_one(index, input)?);
        }
        Ok(out)
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
