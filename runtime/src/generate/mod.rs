//! Text generation: decoder LLMs (Llama family, from GGUF files or Hugging Face safetensors
//! folders) served with continuous batching.
//!
//! ```text
//! API (chat template, tokenizer) -> Generator::submit (admission by tokens)
//!   -> model thread (worker): Scheduler decides each step -> Llama runs it over the ragged
//!      batch with per-sequence KV caches -> sampling -> detokenize, stop strings -> events
//! ```
pub mod chat_template;
mod cpu_attention;
pub mod detokenize;
mod engine;
pub mod kv_cache;
pub mod linear;
pub mod llama;
pub mod row_kernels;
pub mod safetensors;
pub mod sampling;
pub mod scheduler;
pub mod stop;
pub mod tokenizer;
mod worker;

pub use engine::{gguf_files, GenerateOptions, GenerationInfo, Generator};
pub use worker::{Event, FinishReason, GeneratedToken};
