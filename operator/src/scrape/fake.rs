//! A [`MetricsSource`] that answers what a test set, per pod IP.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{MetricsSource, PodMetrics, PodTarget, Reading, ScrapeError};

/// Metrics set by a test; a pod with none set cannot be read.
#[derive(Default)]
pub struct FakeMetrics {
    by_ip: Mutex<HashMap<String, PodMetrics>>,
}

impl FakeMetrics {
    /// Sets what the pod at `ip` answers.
    pub fn set(&self, ip: &str, metrics: PodMetrics) {
        self.lock().insert(ip.to_string(), metrics);
    }

    /// Makes the pod at `ip` unreadable.
    pub fn remove(&self, ip: &str) {
        self.lock().remove(ip);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PodMetrics>> {
        self.by_ip
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl MetricsSource for FakeMetrics {
    fn read<'a>(&'a self, target: &'a PodTarget) -> Reading<'a> {
        let found = self.lock().get(&target.ip).cloned();
        Box::pin(async move {
            found.ok_or_else(|| ScrapeError::Request {
                url: format!("http://{}:{}/metrics", target.ip, target.port),
                message: "connection refused".to_string(),
            })
        })
    }
}
