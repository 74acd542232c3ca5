//! kandle-runtime: the inference server that runs in every kandle pod.
//!
//! It loads a Hugging Face embedding model folder with candle and serves it over HTTP:
//!
//! ```text
//! HTTP (listener, api) -> admission before the body (admission) -> typed parsing (api)
//!   -> tokenizer threads (tokenize) -> admission by tokens -> model thread (engine), fair
//!   token-budget batches (batcher) -> model (model) -> one reply per request -> HTTP
//! ```
//!
//! A folder holding a decoder LLM (a GGUF file, or a Llama-family safetensors checkpoint) is
//! served by [`generate`] instead: OpenAI chat completions and completions, with continuous
//! batching on the model thread.
//!
//! [`serve`] runs the whole server on a given listener, so tests run it in-process; the binary
//! adds flag parsing, logging, CPU thread sizing and signal handling around it. [`fetch`] is
//! the `kandle-runtime fetch` subcommand that fills the model folder before the server starts.
#![forbid(unsafe_code)]
#![deny(warnings)]

pub mod admission;
pub mod api;
pub mod batcher;
pub mod config;
pub mod device;
pub mod engine;
pub mod error;
pub mod fetch;
pub mod generate;
mod listener;
pub mod metrics;
pub mod model;
mod server;
pub mod tokenize;

pub use config::Config;
pub use server::serve;
