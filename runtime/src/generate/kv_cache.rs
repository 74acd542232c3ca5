//! The KV cache: per sequence, per layer, keys and values grown in blocks of [`BLOCK_TOKENS`]
//! tokens; and the [`BlockPool`] that bounds how many blocks all sequences hold together.
//!
//! The pool is bookkeeping only (the scheduler asks it before a sequence grows), so memory stays
//! within `--kv-cache-memory`: a sequence's tensors grow exactly one block at a time, and are
//! freed with the sequence.

use candle_core::Tensor;
use candle_nn::kv_cache::KvCache;

/// Tokens per cache block: the unit of allocation and accounting.
pub const BLOCK_TOKENS: usize = 64;

/// Blocks needed to hold `tokens` tokens.
pub fn blocks_for(tokens: usize) -> usize {
    tokens.div_ceil(BLOCK_TOKENS)
}

/// One sequence's keys and values, `[tokens, kv_heads, head_dim]` per layer.
#[derive(Default)]
pub struct SeqCache {
    layers: Vec<KvCache>,
}

impl SeqCache {
    pub fn new(layers: usize) -> Self {
        Self {
            layers: (0..layers).map(|_| KvCache::new(0, BLOCK_TOKENS)).collect(),
        }
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.layers
            .last()
            .map_or(0, |layer| layer.k_cache().current_seq_len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a chunk's keys and values to `layer` and returns all of them so far.
    pub fn append(
        &mut self,
        layer: usize,
        keys: &Tensor,
        values: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        self.layers[layer].append(keys, values)
    }
}

/// The blocks all sequences may hold together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockPool {
    total: usize,
    used: usize,
}

impl BlockPool {
    pub fn new(total: usize) -> Self {
        Self { total, used: 0 }
    }

    /// Blocks that fit in `bytes` when each token takes `bytes_per_token`.
    pub fn sized(bytes: u64, bytes_per_token: usize) -> Self {
        let per_block = (bytes_per_token * BLOCK_TOKENS) as u64;
        Self::new((bytes / per_block.max(1)) as usize)
    }

    pub fn total(&self) -> usize {
        self.total
    }

    pub fn used(&self) -> usize {
        self.used
    }

    pub fn free(&self) -> usize {
        self.total - self.used
    }

    /// Takes `n` blocks if that many are free.
    pub fn take(&mut self, n: usize) -> bool {
        if n <= self.free() {
            self.used += n;
            true
        } else {
            false
        }
    }

    pub fn give_back(&mut self, n: usize) {
        debug_assert!(n <= self.used, "giving back more blocks than taken");
        self.used -= n.min(self.used);
    }

    /// Fraction of blocks in use, 0 to 1.
    pub fn usage(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.used as f64 / self.total as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_up() {
        assert_eq!(blocks_for(0), 0);
        assert_eq!(blocks_for(1), 1);
        assert_eq!(blocks_for(BLOCK_TOKENS), 1);
        assert_eq!(blocks_for(BLOCK_TOKENS + 1), 2);
    }

    #[test]
    fn pool_never_overcommits() {
        let mut pool = BlockPool::new(3);
        assert!(pool.take(2));
        assert!(!pool.take(2));
        assert_eq!(pool.free(), 1);
        pool.give_back(2);
        assert!(pool.take(3));
        assert_eq!(pool.usage(), 1.0);
    }

    #[test]
    fn pool_is_sized_from_bytes() {
        let pool = BlockPool::sized(10 * 1024 * BLOCK_TOKENS as u64, 1024);
        assert_eq!(pool.total(), 10);
    }
}
