//! Forming model batches fairly across requests, under a token budget.
//!
//! The model thread keeps the admitted requests in arrival order and calls [`next_batch`]
//! whenever it is free. A batch is filled in rounds: each round takes the next input of every
//! request that still has one and whose input fits, so one request of 64 long inputs shares each
//! batch with the short requests that came after it instead of holding them back. A request's
//! inputs are taken in order, and an empty batch takes any input, so an oversized one still runs.

/// What the batcher needs to know about an admitted request.
pub trait Pending {
    /// Tokens of the next input not yet batched; `None` once every input is batched.
    fn next_tokens(&self) -> Option<usize>;
    /// Marks that input as batched and returns its index within the request.
    fn take_next(&mut self) -> usize;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_tokens: usize,
    pub max_requests: usize,
}

impl BatchLimits {
    /// Whether an input of `tokens` may join a batch that already holds `inputs` inputs and
    /// `batch_tokens` tokens.
    pub fn admits(&self, inputs: usize, batch_tokens: usize, tokens: usize) -> bool {
        inputs == 0 || (inputs < self.max_requests && batch_tokens + tokens <= self.max_tokens)
    }
}

/// One input chosen for a batch: the request's position in the slice, and the input's index
/// within that request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    pub request: usize,
    pub input: usize,
    pub tokens: usize,
}

/// Chooses the next batch from `pending` (in arrival order) and marks its inputs as batched.
/// Empty only when no request has an input left.
pub fn next_batch<P: Pending>(pending: &mut [P], limits: BatchLimits) -> Vec<Pick> {
    let mut picks = Vec::new();
    let mut tokens = 0;
    // A request whose next input did not fit waits for the next batch, keeping its order.
    let mut blocked = vec![false; pending.len()];
    loop {
        let mut progressed = false;
        for (index, request) in pending.iter_mut().enumerate() {
            if blocked[index] {
                continue;
            }
            let Some(next) = request.next_tokens() else {
                continue;
            };
            if !limits.admits(picks.len(), tokens, next) {
                blocked[index] = true;
                continue;
            }
            let input = request.take_next();
            picks.push(Pick {
                request: index,
                input,
                tokens: next,
            });
            tokens += next;
            progressed = true;
            if picks.len() >= limits.max_requests {
                return picks;
            }
        }
        if !progressed {
            return picks;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    struct Fake {
        inputs: Vec<usize>,
        taken: usize,
    }

    impl Pending for Fake {
        fn next_tokens(&self) -> Option<usize> {
            self.inputs.get(self.taken).copied()
        }
        fn take_next(&mut self) -> usize {
            self.taken += 1;
            self.taken - 1
        }
    }

    fn requests(inputs: &[&[usize]]) -> Vec<Fake> {
        inputs
            .iter()
            .map(|i| Fake {
                inputs: i.to_vec(),
                taken: 0,
            })
            .collect()
    }

    fn limits(max_tokens: usize, max_requests: usize) -> BatchLimits {
        BatchLimits {
            max_tokens,
            max_requests,
        }
    }

    #[test]
    fn a_short_request_is_not_held_back_by_a_long_one_before_it() {
        let big = [512; 64];
        let mut pending = requests(&[&big, &[8], &[9]]);
        let batch = next_batch(&mut pending, limits(16384, 64));
        let requests: Vec<usize> = batch.iter().map(|p| p.request).collect();
        assert!(
            requests.contains(&1) && requests.contains(&2),
            "{requests:?}"
        );
        assert_eq!(batch.iter().map(|p| p.tokens).sum::<usize>(), 31 * 512 + 17);
    }

    #[test]
    fn batches_fill_up_to_the_token_budget() {
        let mut pending = requests(&[&[4, 4, 4], &[1]]);
        let first = next_batch(&mut pending, limits(10, 8));
        assert_eq!(first.iter().map(|p| p.tokens).sum::<usize>(), 9);
        let second = next_batch(&mut pending, limits(10, 8));
        assert_eq!(second.len(), 1);
        assert!(next_batch(&mut pending, limits(10, 8)).is_empty());
    }

    #[test]
    fn an_oversized_input_runs_alone() {
        let mut pending = requests(&[&[50], &[2]]);
        let first = next_batch(&mut pending, limits(10, 8));
        assert_eq!((first.len(), first[0].tokens), (1, 50));
        assert_eq!(next_batch(&mut pending, limits(10, 8))[0].request, 1);
    }

    proptest! {
        #[test]
        fn every_input_runs_once_in_request_order_within_limits(
            shapes in prop::collection::vec(prop::collection::vec(1usize..40, 0..8), 0..12),
            max_tokens in 1usize..100,
            max_requests in 1usize..10,
        ) {
            let mut pending: Vec<Fake> = shapes
                .iter()
                .map(|inputs| Fake { inputs: inputs.clone(), taken: 0 })
                .collect();
            let limits = limits(max_tokens, max_requests);
            let mut seen: Vec<Vec<usize>> = vec![Vec::new(); pending.len()];
            loop {
                let waiting: Vec<bool> = pending.iter().map(|r| r.next_tokens().is_some()).collect();
                let batch = next_batch(&mut pending, limits);
                if batch.is_empty() {
                    prop_assert!(waiting.iter().all(|w| !w));
                    break;
                }
                let tokens: usize = batch.iter().map(|p| p.tokens).sum();
                prop_assert!(batch.len() <= max_requests);
                prop_assert!(tokens <= max_tokens || batch.len() == 1);
                // Fairness: with room left, a waiting request is missing only if it did not fit.
                if batch.len() < max_requests {
                    for (index, waited) in waiting.iter().enumerate() {
                        if *waited && !batch.iter().any(|p| p.request == index) {
                            let next = shapes[index][seen[index].len()];
                            prop_assert!(tokens + next > max_tokens);
                        }
                    }
                }
                for pick in batch {
                    prop_assert_eq!(shapes[pick.request][pick.input], pick.tokens);
                    seen[pick.request].push(pick.input);
                }
            }
            for (index, inputs) in seen.iter().enumerate() {
                prop_assert_eq!(inputs.clone(), (0..shapes[index].len()).collect::<Vec<_>>());
            }
        }
    }
}
