//! Turning per-token hidden states into one vector per input, and L2 normalization.
//!
//! Works on the packed layout the model produces: the hidden states of all sequences of a batch
//! one after another, `lengths[i]` rows for sequence `i`, no padding.

use anyhow::bail;
use rayon::prelude::*;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    Cls,
    Mean,
    Max,
    MeanSqrtLen,
    LastToken,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PoolingConfig {
    pooling_mode_cls_token: bool,
    pooling_mode_mean_tokens: bool,
    pooling_mode_max_tokens: bool,
    pooling_mode_mean_sqrt_len_tokens: bool,
    pooling_mode_weightedmean_tokens: bool,
    pooling_mode_lasttoken: bool,
}

impl Pooling {
    /// Reads sentence-transformers' `1_Pooling/config.json`.
    pub fn from_config(config: &serde_json::Value) -> anyhow::Result<Self> {
        let c: PoolingConfig = serde_json::from_value(config.clone())?;
        if c.pooling_mode_weightedmean_tokens {
            bail!("weighted-mean pooling is not supported");
        }
        let modes = [
            (c.pooling_mode_cls_token, Self::Cls),
            (c.pooling_mode_mean_tokens, Self::Mean),
            (c.pooling_mode_max_tokens, Self::Max),
            (c.pooling_mode_mean_sqrt_len_tokens, Self::MeanSqrtLen),
            (c.pooling_mode_lasttoken, Self::LastToken),
        ];
        let mut chosen = modes.iter().filter(|(on, _)| *on).map(|(_, mode)| *mode);
        match (chosen.next(), chosen.next()) {
            (Some(mode), None) => Ok(mode),
            (None, _) => bail!("the pooling config enables no pooling mode"),
            (Some(_), Some(_)) => bail!("combining several pooling modes is not supported"),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cls => "cls",
            Self::Mean => "mean",
            Self::Max => "max",
            Self::MeanSqrtLen => "mean_sqrt_len",
            Self::LastToken => "last_token",
        }
    }

    /// Pools `hidden` (`sum(lengths)` rows of `dim` values) into one vector per sequence,
    /// L2-normalized if `normalize`; sequences are split over the rayon pool.
    pub fn pool(
        self,
        hidden: &[f32],
        dim: usize,
        lengths: &[usize],
        normalize: bool,
    ) -> Vec<Vec<f32>> {
        let starts: Vec<usize> = lengths
            .iter()
            .scan(0, |start, &len| {
                *start += len;
                Some(*start - len)
            })
            .collect();
        starts
            .par_iter()
            .zip(lengths)
            .map(|(&start, &len)| {
                let mut v = self.pool_one(&hidden[start * dim..(start + len) * dim], dim, len);
                if normalize {
                    self::normalize(&mut v);
                }
                v
            })
            .collect()
    }

    fn pool_one(self, rows: &[f32], dim: usize, len: usize) -> Vec<f32> {
        let row = |i: usize| &rows[i * dim..(i + 1) * dim];
        match self {
            _ if len == 0 => vec![0.0; dim],
            Self::Cls => row(0).to_vec(),
            Self::LastToken => row(len - 1).to_vec(),
            Self::Max => (1..len).fold(row(0).to_vec(), |mut acc, i| {
                acc.iter_mut().zip(row(i)).for_each(|(a, &x)| *a = a.max(x));
                acc
            }),
            Self::Mean | Self::MeanSqrtLen => {
                let mut sum = vec![0.0f32; dim];
                for i in 0..len {
                    sum.iter_mut().zip(row(i)).for_each(|(s, &x)| *s += x);
                }
                let scale = match self {
                    Self::Mean => 1.0 / len as f32,
                    _ => 1.0 / (len as f32).sqrt(),
                };
                sum.iter_mut().for_each(|s| *s *= scale);
                sum
            }
        }
    }
}

/// Scales `v` to unit L2 norm (left as is when it is all zeros).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pooling_modes_over_packed_rows() {
        // Two sequences of dim 2: [[1,2],[3,4]] and [[5,-6]].
        let hidden = [1.0, 2.0, 3.0, 4.0, 5.0, -6.0];
        let lengths = [2, 1];
        assert_eq!(
            Pooling::Mean.pool(&hidden, 2, &lengths, false),
            vec![vec![2.0, 3.0], vec![5.0, -6.0]]
        );
        assert_eq!(
            Pooling::Cls.pool(&hidden, 2, &lengths, false),
            vec![vec![1.0, 2.0], vec![5.0, -6.0]]
        );
        assert_eq!(
            Pooling::Max.pool(&hidden, 2, &lengths, false),
            vec![vec![3.0, 4.0], vec![5.0, -6.0]]
        );
        assert_eq!(
            Pooling::LastToken.pool(&hidden, 2, &lengths, false)[0],
            vec![3.0, 4.0]
        );
    }

    #[test]
    fn config_picks_exactly_one_mode() {
        let mean = json!({"pooling_mode_mean_tokens": true, "word_embedding_dimension": 384});
        assert_eq!(Pooling::from_config(&mean).unwrap(), Pooling::Mean);
        assert!(Pooling::from_config(&json!({})).is_err());
        let both = json!({"pooling_mode_mean_tokens": true, "pooling_mode_cls_token": true});
        assert!(Pooling::from_config(&both).is_err());
    }

    #[test]
    fn normalize_gives_unit_length() {
        let mut v = vec![3.0, 4.0];
        normalize(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut zero = vec![0.0, 0.0];
        normalize(&mut zero);
        assert_eq!(zero, vec![0.0, 0.0]);
    }
}
