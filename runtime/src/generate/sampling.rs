//! Choosing the next token from a row of logits: penalties, temperature, top-k, top-p and a
//! seeded draw; and the log-probabilities a client may ask for.
//!
//! Each request owns its random stream (seeded by its `seed`, else by the server), so the same
//! seed gives the same text whether the request runs alone or beside others.

use std::collections::HashMap;

/// A request's sampling options, validated by the API.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    pub top_p: f32,
    /// 0 means no limit.
    pub top_k: usize,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub seed: u64,
    /// Top alternatives to report per token; `None` reports no log-probabilities.
    pub logprobs: Option<usize>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: 0,
            logprobs: None,
        }
    }
}

/// The chosen token's log-probability and the top alternatives, under the model's own
/// distribution (before penalties and temperature).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

/// SplitMix64: small, fast and fully determined by its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Per-request sampling state: its options, its random stream and its token counts.
pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
    counts: HashMap<u32, u32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        Self {
            rng: Rng::new(params.seed),
            params,
            counts: HashMap::new(),
        }
    }

    /// Picks the next token from `logits` and records it for the penalties.
    pub fn sample(&mut self, logits: &[f32]) -> (u32, Option<TokenLogprobs>) {
        let token = self.choose(logits);
        *self.counts.entry(token).or_default() += 1;
        let logprobs = self.params.logprobs.map(|top| logprobs(logits, token, top));
        (token, logprobs)
    }

    fn choose(&mut self, logits: &[f32]) -> u32 {
        let p = &self.params;
        let penalized = p.presence_penalty != 0.0 || p.frequency_penalty != 0.0;
        let mut adjusted;
        let logits = if penalized {
            adjusted = logits.to_vec();
            for (&token, &count) in &self.counts {
                if let Some(value) = adjusted.get_mut(token as usize) {
                    *value -= p.presence_penalty + p.frequency_penalty * count as f32;
                }
            }
            &adjusted[..]
        } else {
            logits
        };
        if p.temperature <= 0.0 {
            return argmax(logits);
        }
        let mut candidates: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l / p.temperature))
            .collect();
        candidates.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        if p.top_k > 0 {
            candidates.truncate(p.top_k);
        }
        let max = candidates[0].1;
        let mut weights: Vec<f64> = candidates
            .iter()
            .map(|&(_, l)| ((l - max) as f64).exp())
            .collect();
        let sum: f64 = weights.iter().sum();
        if p.top_p < 1.0 {
            let mut kept = 0.0;
            let mut keep = weights.len();
            for (i, w) in weights.iter().enumerate() {
                kept += w / sum;
                if kept >= p.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            weights.truncate(keep);
        }
        let sum: f64 = weights.iter().sum();
        let mut draw = self.rng.next_f64() * sum;
        for (i, w) in weights.iter().enumerate() {
            draw -= w;
            if draw < 0.0 {
                return candidates[i].0;
            }
        }
        candidates[weights.len() - 1].0
    }
}

/// The index of the largest logit (the first one on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &value) in logits.iter().enumerate() {
        if value > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Log-softmax of `token` and of the `top` most likely tokens.
pub fn logprobs(logits: &[f32], token: u32, top: usize) -> TokenLogprobs {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = logits
        .iter()
        .map(|&l| ((l - max) as f64).exp())
        .sum::<f64>()
        .ln() as f32
        + max;
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(top + 1);
    if top > 0 {
        for (i, &l) in logits.iter().enumerate() {
            if best.len() < top || l > best[best.len() - 1].1 {
                let at = best.partition_point(|&(_, b)| b >= l);
                best.insert(at, (i as u32, l));
                best.truncate(top);
            }
        }
    }
    TokenLogprobs {
        logprob: logits[token as usize] - log_sum,
        top: best.into_iter().map(|(i, l)| (i, l - log_sum)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32) -> SamplingParams {
        SamplingParams {
            temperature,
            ..SamplingParams::default()
        }
    }

    #[test]
    fn greedy_takes_the_largest_logit() {
        let mut sampler = Sampler::new(params(0.0));
        assert_eq!(sampler.sample(&[0.1, 3.0, 2.0]).0, 1);
    }

    #[test]
    fn the_same_seed_draws_the_same_tokens() {
        let logits: Vec<f32> = (0..100).map(|i| (i % 7) as f32 * 0.3).collect();
        let draw = |seed| {
            let mut sampler = Sampler::new(SamplingParams {
                seed,
                ..params(1.0)
            });
            (0..50)
                .map(|_| sampler.sample(&logits).0)
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn top_k_one_is_greedy_and_top_p_keeps_the_head() {
        let logits = [1.0, 5.0, 4.9, 0.0];
        let mut sampler = Sampler::new(SamplingParams {
            top_k: 1,
            seed: 3,
            ..params(1.0)
        });
        assert!((0..20).all(|_| sampler.sample(&logits).0 == 1));
        let mut sampler = Sampler::new(SamplingParams {
            top_p: 0.9,
            seed: 3,
            ..params(1.0)
        });
        assert!((0..200).all(|_| matches!(sampler.sample(&logits).0, 1 | 2)));
    }

    #[test]
    fn penalties_push_away_repeated_tokens() {
        let logits = [2.0, 1.5];
        let mut sampler = Sampler::new(SamplingParams {
            frequency_penalty: 1.0,
            ..params(0.0)
        });
        assert_eq!(sampler.sample(&logits).0, 0);
        assert_eq!(sampler.sample(&logits).0, 1, "0 was penalized by 1.0");
    }

    #[test]
    fn logprobs_are_normalized_and_sorted() {
        let logits = [0.0, 1.0, 2.0, -1.0];
        let result = logprobs(&logits, 1, 2);
        let total: f32 = logits
            .iter()
            .map(|&l| logprobs(&logits, 0, 0).logprob - logits[0] + l)
            .map(f32::exp)
            .sum();
        assert!((total - 1.0).abs() < 1e-5);
        assert_eq!(result.top.iter().map(|t| t.0).collect::<Vec<_>>(), [2, 1]);
        assert!((result.top[1].1 - result.logprob).abs() < 1e-6);
    }
}
