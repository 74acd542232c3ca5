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

/// One layer's keys and values in memory, each KV head's rows of all tokens side by side
/// (`[kv_heads][tokens][head_dim]`), grown a block of [`BLOCK_TOKENS`] tokens at a time.
/// Attention reads one head's rows as one run: the CPU's prefetchers reach full speed only on
/// long runs (on the machine of `docs/benchmarks.md`, one thread reads runs of 16 KB every third
/// at 9 GB/s, of 256 KB at 20 GB/s).
pub struct HostLayer {
    /// Per KV head, `[tokens][head_dim]`, whole blocks long.
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    len: usize,
    head_dim: usize,
}

impl HostLayer {
    pub fn new(kv_heads: usize, head_dim: usize) -> Self {
        Self {
            keys: vec![Vec::new(); kv_heads],
            values: vec![Vec::new(); kv_heads],
            len: 0,
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

    /// Appends tokens' keys and values, each token's row `[kv_heads * head_dim]`.
    pub fn append(&mut self, keys: &[f32], values: &[f32]) {
        let d = self.head_dim;
        let width = self.keys.len() * d;
        debug_assert_eq!(keys.len(), values.len());
        let tokens = keys.len() / width;
        let needed = blocks_for(self.len + tokens) * BLOCK_TOKENS * d;
        for (head, (head_keys, head_values)) in
            self.keys.iter_mut().zip(self.values.iter_mut()).enumerate()
        {
            for (cache, rows) in [(head_keys, keys), (head_values, values)] {
                if needed > cache.len() {
                    // Exactly the blocks needed: the pool has counted them, no more.
                    cache.reserve_exact(needed - cache.len());
                    cache.resize(needed, 0.0);
                }
                for (t, row) in rows.chunks_exact(width).enumerate() {
                    let at = (self.len + t) * d;
                    cache[at..at + d].copy_from_slice(&row[head * d..][..d]);
                }
            }
        }
        self.len += tokens;
    }

    /// KV head `head`'s keys and values, `[tokens][head_dim]`, whole blocks long (rows past
    /// [`HostLayer::len`] are zeros).
    pub fn head_rows(&self, head: usize) -> (&[f32], &[f32]) {
        (&self.keys[head], &self.values[head])
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
    fn a_host_layer_holds_each_heads_rows_together_in_whole_blocks() {
        let (kv_heads, d) = (2, 3);
        let mut layer = HostLayer::new(kv_heads, d);
        // Token t's row is `[t, t, t | -t, -t, -t]`: head 0 then head 1.
        let row = |t: usize| [t as f32; 3].into_iter().chain([-(t as f32); 3]);
        let rows = |tokens: std::ops::Range<usize>| tokens.flat_map(row).collect::<Vec<f32>>();
        layer.append(&rows(0..1), &rows(0..1));
        assert_eq!(layer.head_rows(1).0.len(), BLOCK_TOKENS * d, "one block");
        layer.append(&rows(1..BLOCK_TOKENS + 2), &rows(1..BLOCK_TOKENS + 2));
        assert_eq!(layer.len(), BLOCK_TOKENS + 2);
        for head in 0..kv_heads {
            let (keys, values) = layer.head_rows(head);
            assert_eq!(keys.len(), 2 * BLOCK_TOKENS * d, "two blocks, no more");
            assert_eq!(keys, values);
        }
        // Head 1's rows: every token's in order, across the end of the first block, then
        // the unused rest of the second.
        let (keys, _) = layer.head_rows(1);
        let t = BLOCK_TOKENS as f32;
        assert_eq!(
            keys[(BLOCK_TOKENS - 1) * d..][..4 * d],
            [
                1.0 - t,
                1.0 - t,
                1.0 - t,
                -t,
                -t,
                -t,
                -t - 1.0,
                -t - 1.0,
                -t - 1.0,
                0.0,
                0.0,
                0.0
            ]
        );
        assert_eq!(
            layer.head_rows(0).0[..2 * d],
            [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
        );
    }

    #[test]
    fn pool_is_sized_from_bytes() {
        let pool = BlockPool::sized(10 * 1024 * BLOCK_TOKENS as u64, 1024);
        assert_eq!(pool.total(), 10);
    }
}
