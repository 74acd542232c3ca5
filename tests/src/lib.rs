//! Test support for kandle's cross-crate tests: an in-process fake Kubernetes API server that
//! the operator's real reconcile runs against, a local Hugging Face Hub for the model fetcher,
//! and helpers to wait for conditions with a deadline instead of sleeping.
#![forbid(unsafe_code)]

pub mod e2e;
pub mod fake_api;
pub mod fetch_cli;
pub mod fixtures;
pub mod harness;
pub mod hub_server;
pub mod kubelet;
pub mod wait;

pub use fake_api::FakeApiServer;
