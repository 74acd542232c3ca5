//! What the load examples share.

use std::time::Duration;

/// The `p`th percentile (nearest rank) of latencies sorted ascending; not empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
