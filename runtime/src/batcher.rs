//! Forming model batches from the request queue under a token budget.
//!
//! The model thread calls [`next_batch`] whenever it is free: it blocks for the first job, then
//! takes whatever else is already queued while the batch stays within `max_tokens` and
//! `max_requests`. Jobs whose client has gone away are dropped here, before inference. A job that
//! does not fit is carried over to start the next batch, so order is kept.

use tokio::sync::mpsc;

/// What the batcher needs to know about a queued job.
pub trait Queued {
    fn tokens(&self) -> usize;
    /// True when nobody waits for the answer any more.
    fn is_cancelled(&self) -> bool;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_tokens: usize,
    pub max_requests: usize,
}

/// A batch ready for the model.
#[derive(Debug)]
pub struct Batch<J> {
    pub jobs: Vec<J>,
    pub tokens: usize,
    /// Jobs taken off the queue for this batch, cancelled ones included.
    pub dequeued: usize,
    pub cancelled: usize,
}

impl<J> Batch<J> {
    fn new() -> Self {
        Self {
            jobs: Vec::new(),
            tokens: 0,
            dequeued: 0,
            cancelled: 0,
        }
    }
}

impl BatchLimits {
    /// Whether a job of `tokens` may join a batch that already holds `jobs` jobs and
    /// `batch_tokens` tokens. An empty batch takes any job, so an oversized job still runs.
    pub fn admits(&self, jobs: usize, batch_tokens: usize, tokens: usize) -> bool {
        jobs == 0 || (jobs < self.max_requests && batch_tokens + tokens <= self.max_tokens)
    }
}

/// Blocks until at least one live job is queued and returns the batch, or `None` once the queue
/// is closed and empty. `carry` holds a job taken from the queue that did not fit last time.
pub fn next_batch<J: Queued>(
    queue: &mut mpsc::Receiver<J>,
    carry: &mut Option<J>,
    limits: BatchLimits,
) -> Option<Batch<J>> {
    let mut batch = Batch::new();
    loop {
        let job = match carry.take() {
            Some(job) => job,
            None if batch.jobs.is_empty() => match queue.try_recv() {
                Ok(job) => {
                    batch.dequeued += 1;
                    job
                }
                // Nothing queued: hand back what was dropped so far, else wait.
                Err(_) if batch.dequeued > 0 => return Some(batch),
                Err(_) => {
                    let job = queue.blocking_recv()?;
                    batch.dequeued += 1;
                    job
                }
            },
            None => match queue.try_recv() {
                Ok(job) => {
                    batch.dequeued += 1;
                    job
                }
                Err(_) => return Some(batch),
            },
        };
        if job.is_cancelled() {
            batch.cancelled += 1;
            continue;
        }
        let tokens = job.tokens();
        if !limits.admits(batch.jobs.len(), batch.tokens, tokens) {
            *carry = Some(job);
            return Some(batch);
        }
        batch.tokens += tokens;
        batch.jobs.push(job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Fake {
        id: usize,
        tokens: usize,
        cancelled: bool,
    }

    impl Queued for Fake {
        fn tokens(&self) -> usize {
            self.tokens
        }
        fn is_cancelled(&self) -> bool {
            self.cancelled
        }
    }

    fn queue(jobs: &[Fake]) -> mpsc::Receiver<Fake> {
        let (tx, rx) = mpsc::channel(jobs.len().max(1));
        for job in jobs {
            tx.try_send(job.clone()).unwrap();
        }
        rx
    }

    fn drain(jobs: &[Fake], limits: BatchLimits) -> Vec<Batch<Fake>> {
        let mut rx = queue(jobs);
        rx.close();
        let mut carry = None;
        std::iter::from_fn(|| next_batch(&mut rx, &mut carry, limits)).collect()
    }

    fn job(id: usize, tokens: usize) -> Fake {
        Fake {
            id,
            tokens,
            cancelled: false,
        }
    }

    #[test]
    fn batches_fill_up_to_the_token_budget() {
        let limits = BatchLimits {
            max_tokens: 10,
            max_requests: 8,
        };
        let batches = drain(&[job(0, 4), job(1, 4), job(2, 4), job(3, 1)], limits);
        let ids: Vec<Vec<usize>> = batches
            .iter()
            .map(|b| b.jobs.iter().map(|j| j.id).collect())
            .collect();
        assert_eq!(ids, vec![vec![0, 1], vec![2, 3]]);
    }

    #[test]
    fn an_oversized_job_runs_alone() {
        let limits = BatchLimits {
            max_tokens: 10,
            max_requests: 8,
        };
        let batches = drain(&[job(0, 50), job(1, 2)], limits);
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].tokens, 50);
    }

    #[test]
    fn cancelled_jobs_never_reach_the_model() {
        let limits = BatchLimits {
            max_tokens: 100,
            max_requests: 8,
        };
        let mut gone = job(1, 5);
        gone.cancelled = true;
        let batches = drain(&[job(0, 5), gone, job(2, 5)], limits);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].jobs.len(), 2);
        assert_eq!((batches[0].dequeued, batches[0].cancelled), (3, 1));
    }

    proptest! {
        #[test]
        fn every_live_job_runs_once_in_order_within_limits(
            specs in prop::collection::vec((1usize..40, any::<bool>()), 0..60),
            max_tokens in 1usize..100,
            max_requests in 1usize..10,
        ) {
            let jobs: Vec<Fake> = specs
                .iter()
                .enumerate()
                .map(|(id, &(tokens, cancelled))| Fake { id, tokens, cancelled })
                .collect();
            let limits = BatchLimits { max_tokens, max_requests };
            let batches = drain(&jobs, limits);

            let ran: Vec<usize> = batches.iter().flat_map(|b| b.jobs.iter().map(|j| j.id)).collect();
            let live: Vec<usize> = jobs.iter().filter(|j| !j.cancelled).map(|j| j.id).collect();
            prop_assert_eq!(ran, live);
            prop_assert_eq!(batches.iter().map(|b| b.dequeued).sum::<usize>(), jobs.len());
            for batch in &batches {
                prop_assert!(batch.jobs.len() <= max_requests);
                prop_assert_eq!(batch.tokens, batch.jobs.iter().map(|j| j.tokens).sum::<usize>());
                prop_assert!(batch.tokens <= max_tokens || batch.jobs.len() == 1);
            }
        }
    }
}
