//! Autoscaling on serving load. The decision is pure ([`decide`]): the load history of a
//! `ModelDeployment` ([`History`], one sample of its ready replicas' metrics about every second)
//! gives a desired replica count through a stable window for ordinary changes and a panic
//! window that scales up at once when load jumps, then the spec's stabilization windows and
//! bounds. The [`collector`] reads the pods' metrics (through [`crate::scrape`]), keeps the
//! histories and wakes a pass when the decision changes; the planner sizes the revisions from
//! the decision.

pub mod collector;
mod decide;
mod history;

pub use decide::{decide, reasons, stabilization, Decision, Inputs};
pub use history::{delta, replicas_for, History, Point, Sample, Windows, DOWN_TOLERANCE};

#[cfg(test)]
mod tests;
