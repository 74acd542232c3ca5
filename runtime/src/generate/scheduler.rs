//! Continuous batching, decided step by step: which sequences run in the next model step and
//! with how many tokens. Pure bookkeeping; the model thread acts on its [`Step`]s.
//!
//! Each step:
//! 1. every running sequence that is decoding gets its one token; when the KV cache has no block
//!    left for it, the most recently admitted sequence is preempted (its blocks freed, its tokens
//!    kept) and goes back to the front of the queue, to be prefilled again later;
//! 2. what is left of the step's token budget goes to prompts still being prefilled, in chunks,
//!    so a long prompt never stalls the sequences that are decoding;
//! 3. waiting sequences join, in arrival order, while there are slots, budget and blocks.

use std::collections::{HashMap, VecDeque};

use super::kv_cache::{blocks_for, BlockPool, BLOCK_TOKENS};

pub type SeqId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerLimits {
    /// Sequences running at once.
    pub max_running: usize,
    /// Tokens in one step: one per decoding sequence, the rest for prefill chunks.
    pub step_tokens: usize,
}

/// One sequence's share of a step: its tokens `start..start + len` go through the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheduled {
    pub id: SeqId,
    pub start: usize,
    pub len: usize,
    /// The chunk reaches the sequence's last known token, so a new token is sampled after it.
    pub samples: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    pub scheduled: Vec<Scheduled>,
    /// Sequences whose cache was dropped to make room; they must start their cache again.
    pub preempted: Vec<SeqId>,
}

#[derive(Debug, Clone, Copy)]
struct Progress {
    /// Tokens known: the prompt and what was generated so far.
    known: usize,
    /// Tokens in the cache.
    cached: usize,
    blocks: usize,
}

pub struct Scheduler {
    limits: SchedulerLimits,
    pool: BlockPool,
    waiting: VecDeque<SeqId>,
    running: Vec<SeqId>,
    progress: HashMap<SeqId, Progress>,
    preemptions: u64,
}

impl Scheduler {
    pub fn new(limits: SchedulerLimits, pool: BlockPool) -> Self {
        Self {
            limits,
            pool,
            waiting: VecDeque::new(),
            running: Vec::new(),
            progress: HashMap::new(),
            preemptions: 0,
        }
    }

    /// Tokens the cache can hold for one sequence when it runs alone.
    pub fn capacity_tokens(&self) -> usize {
        self.pool.total() * BLOCK_TOKENS
    }

    pub fn pool(&self) -> &BlockPool {
        &self.pool
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn preemptions(&self) -> u64 {
        self.preemptions
    }

    pub fn is_idle(&self) -> bool {
        self.running.is_empty() && self.waiting.is_empty()
    }

    /// Queues a sequence whose prompt has `prompt_tokens` tokens.
    pub fn add(&mut self, id: SeqId, prompt_tokens: usize) {
        self.progress.insert(
            id,
            Progress {
                known: prompt_tokens,
                cached: 0,
                blocks: 0,
            },
        );
        self.waiting.push_back(id);
    }

    /// Records the token sampled for `id`; it is cached in the next step.
    pub fn append_token(&mut self, id: SeqId) {
        if let Some(p) = self.progress.get_mut(&id) {
            p.known += 1;
        }
    }

    /// Forgets a finished or cancelled sequence and frees its blocks.
    pub fn remove(&mut self, id: SeqId) {
        if let Some(p) = self.progress.remove(&id) {
            self.pool.give_back(p.blocks);
        }
        self.running.retain(|&r| r != id);
        self.waiting.retain(|&w| w != id);
    }

    /// Decides the next step and books its tokens as cached.
    pub fn step(&mut self) -> Step {
        let mut step = Step::default();
        let mut budget = self.limits.step_tokens;
        self.decode(&mut step, &mut budget);
        self.prefill(&mut step, &mut budget);
        self.admit(&mut step, &mut budget);
        if step.scheduled.is_empty() && !self.running.is_empty() {
            // Prompts being prefilled hold every block and none can grow: free the newest.
            let last = self.running.len() - 1;
            self.preempt(last, &mut step);
            return self.retry_after(step);
        }
        for s in &step.scheduled {
            let p = self
                .progress
                .get_mut(&s.id)
                .expect("scheduled sequences are tracked");
            p.cached += s.len;
        }
        step
    }

    fn retry_after(&mut self, earlier: Step) -> Step {
        let mut step = self.step();
        let mut preempted = earlier.preempted;
        preempted.append(&mut step.preempted);
        step.preempted = preempted;
        step
    }

    fn decode(&mut self, step: &mut Step, budget: &mut usize) {
        let mut i = 0;
        while i < self.running.len() && *budget > 0 {
            let id = self.running[i];
            let p = self.progress[&id];
            if p.known - p.cached != 1 {
                i += 1;
                continue;
            }
            if !self.grow(id, p.cached + 1) {
                let last = self.running.len() - 1;
                self.preempt(last, step);
                continue; // `i` is retried, unless it was the one preempted
            }
            step.scheduled.push(Scheduled {
                id,
                start: p.cached,
                len: 1,
                samples: true,
            });
            *budget -= 1;
            i += 1;
        }
    }

    fn prefill(&mut self, step: &mut Step, budget: &mut usize) {
        for i in 0..self.running.len() {
            let id = self.running[i];
            let p = self.progress[&id];
            if p.known - p.cached <= 1 || *budget == 0 {
                continue;
            }
            let room = (p.blocks + self.pool.free()) * BLOCK_TOKENS - p.cached;
            let len = (p.known - p.cached).min(*budget).min(room);
            if len == 0 || !self.grow(id, p.cached + len) {
                continue;
            }
            step.scheduled.push(Scheduled {
                id,
                start: p.cached,
                len,
                samples: p.cached + len == p.known,
            });
            *budget -= len;
        }
    }

    fn admit(&mut self, step: &mut Step, budget: &mut usize) {
        while let Some(&id) = self.waiting.front() {
            if self.running.len() >= self.limits.max_running || *budget == 0 {
                break;
            }
            let p = self.progress[&id];
            let len = p.known.min(*budget);
            if !self.grow(id, len) {
                break;
            }
            self.waiting.pop_front();
            self.running.push(id);
            step.scheduled.push(Scheduled {
                id,
                start: 0,
                len,
                samples: len == p.known,
            });
            *budget -= len;
        }
    }

    /// Takes the blocks `id` needs to hold `tokens` tokens.
    fn grow(&mut self, id: SeqId, tokens: usize) -> bool {
        let p = self.progress.get_mut(&id).expect("tracked");
        let needed = blocks_for(tokens).saturating_sub(p.blocks);
        if self.pool.take(needed) {
            p.blocks += needed;
            true
        } else {
            false
        }
    }

    fn preempt(&mut self, index: usize, step: &mut Step) {
        let id = self.running.remove(index);
        let p = self.progress.get_mut(&id).expect("tracked");
        self.pool.give_back(p.blocks);
        p.blocks = 0;
        p.cached = 0;
        self.waiting.push_front(id);
        step.scheduled.retain(|s| s.id != id);
        step.preempted.push(id);
        self.preemptions += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheduler(max_running: usize, step_tokens: usize, blocks: usize) -> Scheduler {
        Scheduler::new(
            SchedulerLimits {
                max_running,
                step_tokens,
            },
            BlockPool::new(blocks),
        )
    }

    fn lens(step: &Step) -> Vec<(SeqId, usize)> {
        step.scheduled.iter().map(|s| (s.id, s.len)).collect()
    }

    /// Runs a step and feeds a sampled token to each sequence that sampled.
    fn run(s: &mut Scheduler) -> Step {
        let step = s.step();
        for sched in &step.scheduled {
            if sched.samples {
                s.append_token(sched.id);
            }
        }
        step
    }

    #[test]
    fn long_prompts_are_prefilled_in_chunks_beside_decoding_sequences() {
        let mut s = scheduler(8, 100, 100);
        s.add(1, 10);
        assert_eq!(lens(&run(&mut s)), [(1, 10)]);
        s.add(2, 250);
        // Sequence 1 decodes one token each step; 2's prompt fills the rest of the budget.
        assert_eq!(lens(&run(&mut s)), [(1, 1), (2, 99)]);
        assert_eq!(lens(&run(&mut s)), [(1, 1), (2, 99)]);
        let step = run(&mut s);
        assert_eq!(lens(&step), [(1, 1), (2, 52)]);
        assert!(step.scheduled[1].samples, "the last chunk samples");
        assert_eq!(lens(&run(&mut s)), [(1, 1), (2, 1)]);
    }

    #[test]
    fn new_requests_join_the_running_batch_at_the_next_step() {
        let mut s = scheduler(8, 512, 100);
        s.add(1, 5);
        run(&mut s);
        s.add(2, 5);
        assert_eq!(lens(&run(&mut s)), [(1, 1), (2, 5)]);
        assert_eq!(s.running(), 2);
    }

    #[test]
    fn a_full_cache_preempts_the_newest_and_resumes_it_later() {
        // Two blocks in all: each sequence fits one block until it grows past 64 tokens.
        let mut s = scheduler(8, 512, 2);
        s.add(1, 64);
        s.add(2, 60);
        assert_eq!(lens(&run(&mut s)), [(1, 64), (2, 60)]);
        // 1 needs a second block for its 65th token: 2, the newest, gives its block back.
        let step = run(&mut s);
        assert_eq!(step.preempted, [2]);
        assert_eq!(lens(&step), [(1, 1)]);
        assert_eq!(s.waiting(), 1);
        s.remove(1);
        // 2 comes back with its prompt and the token it had generated.
        assert_eq!(lens(&run(&mut s)), [(2, 61)]);
        assert_eq!(s.preemptions(), 1);
    }

    #[test]
    fn waiting_requests_wait_for_blocks_rather_than_fail() {
        let mut s = scheduler(8, 512, 1);
        s.add(1, 10);
        s.add(2, 10);
        assert_eq!(lens(&run(&mut s)), [(1, 10)]);
        assert_eq!(s.waiting(), 1);
        s.remove(1);
        assert_eq!(lens(&run(&mut s)), [(2, 10)]);
        assert_eq!(s.pool().used(), 1);
        s.remove(2);
        assert_eq!(s.pool().used(), 0);
        assert!(s.is_idle());
    }

    #[test]
    fn prefills_that_fill_the_cache_do_not_deadlock() {
        let mut s = scheduler(8, 64, 2);
        s.add(1, 100);
        s.add(2, 100);
        assert_eq!(lens(&run(&mut s)), [(1, 64)]);
        // 1 needs its second block; the step budget let 2 in only once 1 is done with it.
        let step = run(&mut s);
        assert_eq!(lens(&step), [(1, 36)]);
        assert!(step.scheduled[0].samples);
    }

    #[test]
    fn the_running_limit_holds() {
        let mut s = scheduler(2, 512, 100);
        for id in 1..=3 {
            s.add(id, 4);
        }
        assert_eq!(lens(&run(&mut s)), [(1, 4), (2, 4)]);
        assert_eq!(s.waiting(), 1);
    }
}
