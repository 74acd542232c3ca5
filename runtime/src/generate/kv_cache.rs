//! The KV cache: per sequence, per layer, keys and values grown in blocks of [`BLOCK_TOKENS`]
//! tokens, in memory for the CPU kernels or in tensors on a device; and the [`BlockPool`] that
//! bounds how many blocks all sequences hold together.
//!
//! The pool is bookkeeping only (the scheduler asks it before a sequence grows), so memory stays
//! within `--kv-cache-memory`: a sequence's buffers (or tensors, on a device) grow exactly one
//! block at a time, and are freed with the sequence.

use candle_core::Tensor;
use candle_nn::kv_cache::KvCache;

/// Tokens per cache block: the unit of allocation and accounting.
pub const BLOCK_TOKENS: usize = 64;

/// Blocks needed to hold `tokens` tokens.
pub fn blocks_for(tokens: usize) -> usize {
    tokens.div_ceil(BLOCK_TOKENS)
}

/// One sequence's keys and values, per layer.
pub enum SeqCache {
    /// In memory, for the CPU kernels: see [`HostLayer`].
    Host(Vec<HostLayer>),
    /// On a device, `[tokens, kv_heads, head_dim]` tensors for candle's ops.
    Device(Vec<KvCache>),
}

impl Default for SeqCache {
    fn default() -> Self {
        Self::Host(Vec::new())
    }
}

impl SeqCache {
    /// A cache of `layers` layers of `kv_heads × head_dim` keys and values, in memory when
    /// `host`, else in tensors on the device of the first append.
    pub fn new(layers: usize, host: bool, kv_heads: usize, head_dim: usize) -> Self {
        if host {
            Self::Host(
                (0..layers)
                    .map(|_| HostLayer::new(kv_heads, head_dim))
                    .collect(),
            )
        } else {
            Self::Device((0..layers).map(|_| KvCache::new(0, BLOCK_TOKENS)).collect())
        }
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        match self {
            Self::Host(layers) => layers.last().map_or(0, HostLayer::len),
            Self::Device(layers) => layers
                .last()
                .map_or(0, |layer| layer.k_cache().current_seq_len()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a chunk's keys and values (`[tokens, kv_heads, head_dim]`) to `layer` of a
    /// device cache and returns all of them so far.
    pub fn append(
        &mut self,
        layer: usize,
        keys: &Tensor,
        values: &Tensor,
    ) -> anyhow::Result<(Tensor, Tensor)> {
        match self {
            Self::Device(layers) => Ok(layers[layer].append(keys, values)?),
            Self::Host(_) => anyhow::bail!("tensor append to an in-memory KV cache"),
        }
    }

    /// `layer` of an in-memory cache.
    pub fn host_layer(&self, layer: usize) -> anyhow::Result<&HostLayer> {
        match self {
            Self::Host(layers) => Ok(&layers[layer]),
            Self::Device(_) => anyhow::bail!("a device KV cache read as in-memory"),
        }
    }

    /// `layer` of an in-memory cache, to append to.
    pub fn host_layer_mut(&mut self, layer: usize) -> anyhow::Result<&mut HostLayer> {
        match self {
            Self::Host(layers) => Ok(&mut layers[layer]),
            Self::Device(_) => anyhow::bail!("a device KV cache written as in-memory"),
        }
    }
}

/// One layer's keys and values in memory, in blocks of [`BLOCK_TOKENS`] tokens, each block
/// head-major (`[kv_heads, BLOCK_TOKENS, head_dim]`): attention reads one KV head's rows of a
/// block as one contiguous run, and growing by a block leaves the blocks before it as they are.
pub struct HostLayer {
    keys: Vec<f32>,
    values: Vec<f32>,
    len: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl HostLayer {
    pub fn new(kv_heads: usize, head_dim: usize) -> Self {
        Self {
            keys: Vec::new(),
            values: Vec::new(),
            len: 0,
            kv_heads,
            head_dim,
        }
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Values in one block of keys (or of values).
    pub fn block_len(&self) -> usize {
        self.kv_heads * BLOCK_TOKENS * self.head_dim
    }

    /// Appends tokens' keys and values, each token's row `[kv_heads * head_dim]`.
    pub fn append(&mut self, keys: &[f32], values: &[f32]) {
        let width = self.kv_heads * self.head_dim;
        debug_assert_eq!(keys.len(), values.len());
        let tokens = keys.len() / width;
        let needed = blocks_for(self.len + tokens) * self.block_len();
        if needed > self.keys.len() {
            // Exactly the blocks needed: the pool has counted them, no more.
            self.keys.reserve_exact(needed - self.keys.len());
            self.values.reserve_exact(needed - self.values.len());
            self.keys.resize(needed, 0.0);
            self.values.resize(needed, 0.0);
        }
        let d = self.head_dim;
        for (t, (k, v)) in keys
            .chunks_exact(width)
            .zip(values.chunks_exact(width))
            .enumerate()
        {
            let position = self.len + t;
            let block = position / BLOCK_TOKENS * self.block_len();
            for head in 0..self.kv_heads {
                let at = block + (head * BLOCK_TOKENS + position % BLOCK_TOKENS) * d;
                self.keys[at..at + d].copy_from_slice(&k[head * d..][..d]);
                self.values[at..at + d].copy_from_slice(&v[head * d..][..d]);
            }
        }
        self.len += tokens;
    }

    /// The keys and values held, block after block.
    pub fn rows(&self) -> (&[f32], &[f32]) {
        (&self.keys, &self.values)
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
    fn a_host_layer_holds_whole_blocks_each_heads_rows_together() {
        let (kv_heads, d) = (2, 3);
        let mut layer = HostLayer::new(kv_heads, d);
        // Token t's row is `[t, t, t | -t, -t, -t]`: head 0 then head 1.
        let row = |t: usize| [t as f32; 3].into_iter().chain([-(t as f32); 3]);
        let rows = |tokens: std::ops::Range<usize>| tokens.flat_map(row).collect::<Vec<f32>>();
        layer.append(&rows(0..1), &rows(0..1));
        assert_eq!(layer.rows().0.len(), layer.block_len());
        layer.append(&rows(1..BLOCK_TOKENS + 2), &rows(1..BLOCK_TOKENS + 2));
        assert_eq!(layer.len(), BLOCK_TOKENS + 2);
        let (keys, values) = layer.rows();
        assert_eq!(keys.len(), 2 * layer.block_len(), "two blocks, no more");
        assert_eq!(keys, values);
        // Head 1's rows of the second block: tokens 64 and 65, then the unused rest.
        let second = &keys[layer.block_len() + BLOCK_TOKENS * d..][..3 * d];
        let t = BLOCK_TOKENS as f32;
        assert_eq!(
            second,
            [-t, -t, -t, -t - 1.0, -t - 1.0, -t - 1.0, 0.0, 0.0, 0.0]
        );
        assert_eq!(keys[d], 1.0, "head 0's rows of a block are contiguous");
    }

    #[test]
    fn pool_is_sized_from_bytes() {
        let pool = BlockPool::sized(10 * 1024 * BLOCK_TOKENS as u64, 1024);
        assert_eq!(pool.total(), 10);
    }
}
