//! The kandle operator: turns each `ModelDeployment` into revisions of kandle-runtime pods and
//! keeps its status honest.
//!
//! ```text
//! watch ModelDeployment ─> observe (read children) ─> plan (pure) ─> apply (server-side apply)
//! ```
//!
//! Every rule (revisions, rollout, history, status, events) lives in [`plan`], a pure function
//! of the resource, what was observed and the current time. [`observe`] and [`apply`] only talk
//! to the API server; [`controller`] wires the three into a kube-runtime controller. The
//! process around it (the `kandle-operator` binary) is [`cli`], [`http`] and [`metrics`], and
//! [`election`] runs the controller only while holding the leader Lease that [`leader`] reasons
//! about.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod analysis;
pub mod apply;
pub mod autoscale;
pub mod backoff;
pub mod cache;
pub mod canary;
pub mod cli;
pub mod client;
pub mod command;
pub mod compact;
pub mod config;
pub mod controller;
pub mod election;
pub mod error;
pub mod http;
pub mod hub;
pub mod kubectl;
pub mod leader;
pub mod metrics;
pub mod observe;
pub mod plan;
pub mod pod_problems;
pub mod rbac;
pub mod scrape;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod traffic;
pub mod upgrades;

pub use config::OperatorConfig;
pub use error::Error;
pub use observe::Observed;
pub use plan::Plan;
