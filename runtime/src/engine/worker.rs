//! The model thread: holds the admitted requests, runs fair batches and answers each request once.
//!
//! Before each batch it drops requests whose client has gone and answers 504 at once to those
//! that can no longer finish in time (their remaining tokens at the measured throughput end past
//! their deadline), so overload spends the model's time only on answers someone will get.
//! A failed batch (an error, a panic, or a non-finite value in the output) fails the requests in
//! it and is reported to [`Health`].

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::health::Health;
use crate::admission::TokenPermit;
use crate::batcher::{next_batch, BatchLimits, Pending, Pick};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::model::EmbeddingModel;

/// What the model thread runs: a batch of token id sequences to one vector each.
pub trait BatchModel {
    fn embed(&self, sequences: &[&[u32]]) -> anyhow::Result<Vec<Vec<f32>>>;
}

impl BatchModel for EmbeddingModel {
    fn embed(&self, sequences: &[&[u32]]) -> anyhow::Result<Vec<Vec<f32>>> {
        EmbeddingModel::embed(self, sequences)
    }
}

pub type Reply = oneshot::Sender<Result<Vec<Vec<f32>>, ApiError>>;

/// One admitted request on its way to the model.
pub struct Work {
    pub inputs: Vec<Vec<u32>>,
    pub deadline: Instant,
    pub reply: Reply,
    /// Returns the request's tokens to the budget once it is answered or dropped.
    pub tokens: TokenPermit,
}

struct Active {
    work: Work,
    taken: usize,
    vectors: Vec<Vec<f32>>,
}

impl Pending for Active {
    fn next_tokens(&self) -> Option<usize> {
        self.work.inputs.get(self.taken).map(Vec::len)
    }
    fn take_next(&mut self) -> usize {
        self.taken += 1;
        self.taken - 1
    }
}

impl Active {
    /// Answers the request. Its tokens go back to the budget first, so a client that has its
    /// answer never sees them still counted.
    fn answer(self, result: Result<Vec<Vec<f32>>, ApiError>) {
        let Work { reply, tokens, .. } = self.work;
        drop(tokens);
        // The client may have gone meanwhile; nothing to do then.
        let _ = reply.send(result);
    }

    fn remaining_tokens(&self) -> usize {
        self.work.inputs[self.taken..].iter().map(Vec::len).sum()
    }
    fn untaken(&self) -> usize {
        self.work.inputs.len() - self.taken
    }
}

pub struct Settings {
    pub limits: BatchLimits,
    /// Tokens per second measured at warm-up; refined from every batch.
    pub tokens_per_second: f64,
    pub timeout: Duration,
}

/// Runs until the queue is closed (the engine is dropped) and every admitted request is answered.
pub fn run(
    model: &impl BatchModel,
    mut queue: mpsc::Receiver<Work>,
    settings: Settings,
    health: &Arc<Health>,
    metrics: &Metrics,
) {
    let _alive = health.thread_guard();
    let mut active: Vec<Active> = Vec::new();
    let mut rate = settings.tokens_per_second.max(1.0);
    loop {
        if active.is_empty() {
            match queue.blocking_recv() {
                Some(work) => active.push(Active::new(work)),
                None => break,
            }
        }
        while let Ok(work) = queue.try_recv() {
            active.push(Active::new(work));
        }
        drop_hopeless(&mut active, Instant::now(), rate, settings.timeout, metrics);
        let picks = next_batch(&mut active, settings.limits);
        if picks.is_empty() {
            // Only requests with nothing left to run remain (none, or an empty one): answer them.
            answer_finished(&mut active);
            continue;
        }
        metrics.queue_depth.dec_by(picks.len() as i64);
        let tokens: usize = picks.iter().map(|p| p.tokens).sum();
        metrics.batch_size.observe(picks.len() as f64);
        metrics.batch_tokens.observe(tokens as f64);
        let sequences: Vec<&[u32]> = picks
            .iter()
            .map(|p| active[p.request].work.inputs[p.input].as_slice())
            .collect();
        let started = Instant::now();
        let result = run_batch(model, &sequences);
        let seconds = started.elapsed().as_secs_f64();
        metrics.inference_duration.observe(seconds);
        match result {
            Ok(vectors) => {
                health.batch_succeeded();
                rate = 0.8 * rate + 0.2 * (tokens as f64 / seconds.max(1e-6));
                for (pick, vector) in picks.iter().zip(vectors) {
                    active[pick.request].vectors.push(vector);
                }
            }
            Err((reason, message)) => {
                tracing::error!(error = %message, inputs = picks.len(), "inference failed");
                health.batch_failed(&message);
                metrics.batch_failure(reason);
                fail_requests(&mut active, &picks, &message, metrics);
            }
        }
        answer_finished(&mut active);
    }
    tracing::debug!("model thread stopped");
}

impl Active {
    fn new(work: Work) -> Self {
        let capacity = work.inputs.len();
        Self {
            work,
            taken: 0,
            vectors: Vec::with_capacity(capacity),
        }
    }
}

/// Runs one batch, turning panics and non-finite outputs into failures with a metric reason.
fn run_batch(
    model: &impl BatchModel,
    sequences: &[&[u32]],
) -> Result<Vec<Vec<f32>>, (&'static str, String)> {
    // A bug in a kernel must fail the batch, not take the server down.
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| model.embed(sequences)));
    let vectors = match result {
        Ok(Ok(vectors)) => vectors,
        Ok(Err(err)) => return Err(("error", format!("inference failed: {err:#}"))),
        Err(_) => return Err(("panic", "inference failed: the model panicked".to_owned())),
    };
    if vectors.len() != sequences.len() {
        return Err((
            "error",
            format!(
                "inference failed: {} vectors for {} inputs",
                vectors.len(),
                sequences.len()
            ),
        ));
    }
    if vectors.iter().flatten().any(|x| !x.is_finite()) {
        return Err((
            "non_finite",
            "inference failed: the model produced non-finite values (NaN or infinity)".to_owned(),
        ));
    }
    Ok(vectors)
}

/// Drops requests nobody waits for, and answers 504 to those that cannot finish in time.
fn drop_hopeless(
    active: &mut Vec<Active>,
    now: Instant,
    tokens_per_second: f64,
    timeout: Duration,
    metrics: &Metrics,
) {
    let hopeless = remove_where(active, |_, request| {
        request.work.reply.is_closed()
            || !can_finish(
                now,
                request.work.deadline,
                request.remaining_tokens(),
                tokens_per_second,
            )
    });
    for request in hopeless {
        metrics.queue_depth.dec_by(request.untaken() as i64);
        if request.work.reply.is_closed() {
            metrics.abandoned("cancelled");
        } else {
            metrics.abandoned("deadline");
            request.answer(Err(ApiError::Timeout(timeout)));
        }
    }
}

/// Whether `tokens` of work started `now` at `tokens_per_second` ends before `deadline`.
pub fn can_finish(now: Instant, deadline: Instant, tokens: usize, tokens_per_second: f64) -> bool {
    let needed = Duration::from_secs_f64(tokens as f64 / tokens_per_second.max(1.0));
    now + needed <= deadline
}

/// Answers the error to every request with an input in the failed batch.
fn fail_requests(active: &mut Vec<Active>, picks: &[Pick], message: &str, metrics: &Metrics) {
    let failed = remove_where(active, |index, _| picks.iter().any(|p| p.request == index));
    for request in failed {
        metrics.queue_depth.dec_by(request.untaken() as i64);
        request.answer(Err(ApiError::Internal(message.to_owned())));
    }
}

/// Sends every request whose inputs all have vectors its answer.
fn answer_finished(active: &mut Vec<Active>) {
    let finished = remove_where(active, |_, r| r.vectors.len() == r.work.inputs.len());
    for mut request in finished {
        let vectors = std::mem::take(&mut request.vectors);
        request.answer(Ok(vectors));
    }
}

/// Removes the requests matching `remove` (given their position), keeping the others' order.
fn remove_where(
    active: &mut Vec<Active>,
    mut remove: impl FnMut(usize, &Active) -> bool,
) -> Vec<Active> {
    let mut removed = Vec::new();
    let mut kept = Vec::with_capacity(active.len());
    for (index, request) in active.drain(..).enumerate() {
        if remove(index, &request) {
            removed.push(request);
        } else {
            kept.push(request);
        }
    }
    *active = kept;
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::{Admission, AdmissionLimits};
    use prometheus_client::metrics::gauge::Gauge;
    use std::sync::Mutex;

    /// Embeds a sequence as `[first id, length]`; a sequence starting with 666 fails the batch,
    /// one starting with 777 gives NaN.
    #[derive(Default)]
    struct Fake {
        batches: Mutex<Vec<Vec<u32>>>,
    }

    impl BatchModel for Fake {
        fn embed(&self, sequences: &[&[u32]]) -> anyhow::Result<Vec<Vec<f32>>> {
            self.batches
                .lock()
                .unwrap()
                .push(sequences.iter().map(|s| s[0]).collect());
            if sequences.iter().any(|s| s[0] == 666) {
                anyhow::bail!("device lost");
            }
            Ok(sequences
                .iter()
                .map(|s| match s[0] {
                    777 => vec![f32::NAN, 0.0],
                    id => vec![id as f32, s.len() as f32],
                })
                .collect())
        }
    }

    struct Harness {
        admission: Admission,
        queue: mpsc::Sender<Work>,
        health: Arc<Health>,
        thread: std::thread::JoinHandle<()>,
        model: Arc<Fake>,
    }

    fn start(tokens_per_second: f64) -> Harness {
        let admission = Admission::new(
            AdmissionLimits {
                max_requests: 16,
                max_body_bytes: 1024,
                max_pending_body_bytes: 1024,
                max_queued_tokens: 1000,
            },
            Gauge::default(),
        );
        let (queue, jobs) = mpsc::channel(16);
        let health = Arc::new(Health::new(2));
        let model = Arc::new(Fake::default());
        let settings = Settings {
            limits: BatchLimits {
                max_tokens: 100,
                max_requests: 4,
            },
            tokens_per_second,
            timeout: Duration::from_secs(1),
        };
        let (thread_health, thread_model) = (health.clone(), model.clone());
        let thread = std::thread::spawn(move || {
            run(
                &*thread_model,
                jobs,
                settings,
                &thread_health,
                &Metrics::new(),
            )
        });
        Harness {
            admission,
            queue,
            health,
            thread,
            model,
        }
    }

    impl Harness {
        fn send(
            &self,
            inputs: Vec<Vec<u32>>,
            deadline: Instant,
        ) -> oneshot::Receiver<Result<Vec<Vec<f32>>, ApiError>> {
            let (reply, answer) = oneshot::channel();
            let tokens = self.admission.admit_tokens(1).unwrap();
            self.queue
                .blocking_send(Work {
                    inputs,
                    deadline,
                    reply,
                    tokens,
                })
                .unwrap();
            answer
        }

        fn stop(self) -> Vec<Vec<u32>> {
            drop(self.queue);
            self.thread.join().unwrap();
            assert_eq!(self.admission.queued_tokens(), 0, "every permit came back");
            self.model.batches.lock().unwrap().clone()
        }
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn each_request_gets_its_vectors_in_input_order() {
        let harness = start(1e6);
        let answer = harness.send(vec![vec![1; 3], vec![2; 5], vec![3; 1]], later());
        let vectors = answer.blocking_recv().unwrap().unwrap();
        assert_eq!(
            vectors,
            vec![vec![1.0, 3.0], vec![2.0, 5.0], vec![3.0, 1.0]]
        );
        harness.stop();
    }

    #[test]
    fn a_failed_batch_fails_its_requests_and_makes_the_model_unhealthy() {
        let harness = start(1e6);
        for bad in [666, 777] {
            let answer = harness.send(vec![vec![bad, 1]], later());
            let err = answer.blocking_recv().unwrap().unwrap_err();
            assert_eq!(err.status(), axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        }
        let problem = harness.health.problem().expect("two failures in a row");
        assert!(problem.contains("non-finite"), "{problem}");
        let good = harness.send(vec![vec![5]], later());
        assert!(good.blocking_recv().unwrap().is_ok());
        assert_eq!(harness.health.problem(), None);
        harness.stop();
    }

    #[test]
    fn requests_that_cannot_make_their_deadline_are_answered_504_without_inference() {
        // 10 tokens per second: 50 tokens need 5 s, the deadline is in 1 s.
        let harness = start(10.0);
        let answer = harness.send(vec![vec![9; 50]], Instant::now() + Duration::from_secs(1));
        let err = answer.blocking_recv().unwrap().unwrap_err();
        assert_eq!(err.status(), axum::http::StatusCode::GATEWAY_TIMEOUT);
        let (gone, answer) = oneshot::channel();
        drop(answer);
        let tokens = harness.admission.admit_tokens(1).unwrap();
        harness
            .queue
            .blocking_send(Work {
                inputs: vec![vec![8]],
                deadline: later(),
                reply: gone,
                tokens,
            })
            .unwrap();
        assert!(harness.stop().is_empty(), "nothing reached the model");
    }

    #[test]
    fn a_request_without_inputs_is_answered_not_spun_on() {
        let harness = start(1e6);
        let answer = harness.send(Vec::new(), later());
        assert_eq!(
            answer.blocking_recv().unwrap().unwrap(),
            Vec::<Vec<f32>>::new()
        );
        assert!(harness.stop().is_empty());
    }

    #[test]
    fn can_finish_compares_the_work_with_the_time_left() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(2);
        assert!(can_finish(now, deadline, 100, 100.0));
        assert!(!can_finish(now, deadline, 300, 100.0));
    }
}
