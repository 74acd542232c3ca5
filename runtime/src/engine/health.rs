//! Whether the model can still answer: what `/healthz` reports once the model is loaded.
//!
//! The model thread reports every batch. The server is unhealthy when that thread has stopped
//! (it only stops on a bug) or when `--unhealthy-after-failures` batches in a row have failed (a
//! sticky CUDA error, a model that only produces NaN): the pod then fails its liveness probe and
//! Kubernetes restarts it, instead of answering 500 forever behind a green probe.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub struct Health {
    thread_alive: AtomicBool,
    failures_in_a_row: AtomicUsize,
    unhealthy_after: usize,
    last_error: Mutex<Option<String>>,
}

impl Health {
    pub fn new(unhealthy_after: usize) -> Self {
        Self {
            thread_alive: AtomicBool::new(true),
            failures_in_a_row: AtomicUsize::new(0),
            unhealthy_after: unhealthy_after.max(1),
            last_error: Mutex::new(None),
        }
    }

    /// Why the model cannot answer, or `None` while it can.
    pub fn problem(&self) -> Option<String> {
        if !self.thread_alive.load(Ordering::Acquire) {
            return Some("the model thread has stopped".to_owned());
        }
        let failures = self.failures_in_a_row.load(Ordering::Acquire);
        if failures >= self.unhealthy_after {
            let last = self
                .last_error
                .lock()
                .map(|e| e.clone().unwrap_or_default())
                .unwrap_or_default();
            return Some(format!(
                "the last {failures} model batches failed; the last error: {last}"
            ));
        }
        None
    }

    pub fn batch_succeeded(&self) {
        self.failures_in_a_row.store(0, Ordering::Release);
    }

    pub fn batch_failed(&self, error: &str) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error.to_owned());
        }
        self.failures_in_a_row.fetch_add(1, Ordering::AcqRel);
    }

    /// Marks the model thread as stopped when dropped, also when the thread unwinds.
    pub fn thread_guard(self: &Arc<Self>) -> ThreadGuard {
        ThreadGuard(self.clone())
    }
}

pub struct ThreadGuard(Arc<Health>);

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        self.0.thread_alive.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_in_a_row_make_it_unhealthy_and_a_success_heals() {
        let health = Health::new(3);
        health.batch_failed("boom");
        health.batch_failed("boom");
        assert_eq!(health.problem(), None);
        health.batch_succeeded();
        health.batch_failed("a");
        health.batch_failed("b");
        health.batch_failed("NaN in the output");
        let problem = health.problem().expect("unhealthy");
        assert!(
            problem.contains("last 3") && problem.contains("NaN"),
            "{problem}"
        );
        health.batch_succeeded();
        assert_eq!(health.problem(), None);
    }

    #[test]
    fn a_model_thread_that_dies_makes_it_unhealthy() {
        let health = Arc::new(Health::new(3));
        let guard = health.thread_guard();
        let thread = std::thread::spawn(move || {
            let _guard = guard;
            panic!("a bug in the model thread");
        });
        assert!(thread.join().is_err());
        assert_eq!(
            health.problem().as_deref(),
            Some("the model thread has stopped")
        );
    }
}
