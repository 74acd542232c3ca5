//! Warm-up before the server turns ready: a short input, then the largest batch the limits allow.
//!
//! The largest batch (as many longest inputs as `--max-batch-tokens` and `--max-batch-requests`
//! allow) makes an out-of-memory condition show at start, not on the first busy minute, and its
//! duration is the throughput that sizes the default token budget.

use std::time::Instant;

use anyhow::Context;

use super::worker::BatchModel;
use crate::batcher::BatchLimits;
use crate::tokenize::{Input, TextEncoder};

/// What the largest warm-up batch measured.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub inputs: usize,
    pub tokens: usize,
    pub seconds: f64,
    pub tokens_per_second: f64,
}

pub fn run(
    model: &impl BatchModel,
    encoder: &TextEncoder,
    limits: BatchLimits,
    max_input_tokens: usize,
) -> anyhow::Result<Measured> {
    let ids = encoder
        .encode(vec![Input::Text(
            "kandle warms up the model at its largest batch".to_owned(),
        )])
        .map_err(|err| anyhow::anyhow!("warm-up tokenization failed: {err}"))?
        .remove(0);
    check(model.embed(&[&ids]), 1).context("warm-up inference failed")?;

    let (inputs, length) = largest_batch(limits, max_input_tokens);
    let sequence: Vec<u32> = ids.iter().copied().cycle().take(length).collect();
    let batch: Vec<&[u32]> = vec![sequence.as_slice(); inputs];
    let started = Instant::now();
    check(model.embed(&batch), inputs).with_context(|| {
        format!(
            "warm-up at the largest batch ({inputs} inputs of {length} tokens) failed; lower \
             --max-batch-tokens or --max-batch-requests, or give the pod more memory"
        )
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let tokens = inputs * length;
    Ok(Measured {
        inputs,
        tokens,
        seconds,
        tokens_per_second: tokens as f64 / seconds.max(1e-6),
    })
}

/// The heaviest batch the limits allow: as many inputs of the longest length as fit.
pub fn largest_batch(limits: BatchLimits, max_input_tokens: usize) -> (usize, usize) {
    let length = max_input_tokens.max(1);
    let inputs = (limits.max_tokens / length).clamp(1, limits.max_requests.max(1));
    (inputs, length)
}

fn check(result: anyhow::Result<Vec<Vec<f32>>>, inputs: usize) -> anyhow::Result<()> {
    let vectors = result?;
    anyhow::ensure!(
        vectors.len() == inputs,
        "{} vectors for {inputs} inputs",
        vectors.len()
    );
    anyhow::ensure!(
        vectors.iter().flatten().all(|x| x.is_finite()),
        "the model produced non-finite values (NaN or infinity)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_tokens: usize, max_requests: usize) -> BatchLimits {
        BatchLimits {
            max_tokens,
            max_requests,
        }
    }

    #[test]
    fn the_largest_batch_fills_the_tighter_limit() {
        assert_eq!(largest_batch(limits(16384, 64), 256), (64, 256));
        assert_eq!(largest_batch(limits(16384, 64), 512), (32, 512));
        assert_eq!(largest_batch(limits(16384, 8), 256), (8, 256));
        assert_eq!(largest_batch(limits(300, 64), 256), (1, 256));
    }
}
