//! Retries with exponential backoff, and the one fresh start a hash mismatch gets.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use super::verify::Mismatch;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The wait before retry `retry` (0-based): 1 s, 2 s, 4 s, ... at most 30 s.
pub fn backoff(retry: u32) -> Duration {
    FIRST_BACKOFF
        .checked_mul(1 << retry.min(16))
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF)
}

/// Why one attempt failed.
#[derive(Debug)]
pub enum Failure {
    /// Worth another try: a connection error, a cut body, a 5xx or a 429.
    Transient(String),
    /// Another try cannot help: a 401, 403 or 404, a full disk.
    Fatal(anyhow::Error),
    /// The bytes arrived but are not the expected ones.
    Mismatch(Mismatch),
}

impl From<std::io::Error> for Failure {
    fn from(err: std::io::Error) -> Self {
        Self::Fatal(err.into())
    }
}

/// How often and after what waits transient failures are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub retries: u32,
    pub backoff: fn(u32) -> Duration,
}

impl RetryPolicy {
    /// `retries` retries after [`backoff`].
    pub fn new(retries: u32) -> Self {
        Self { retries, backoff }
    }
}

/// Runs `attempt` until it succeeds, retrying transient failures as `policy` says. A mismatch
/// deletes `partial` and starts over once, then fails.
pub async fn with_retries<T, F, Fut>(
    name: &str,
    policy: RetryPolicy,
    partial: Option<&Path>,
    mut attempt: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut retried = 0;
    let mut mismatched = false;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(Failure::Fatal(err)) => return Err(err),
            Err(Failure::Mismatch(mismatch)) => {
                if let Some(partial) = partial {
                    remove_if_present(partial)?;
                }
                if mismatched {
                    anyhow::bail!("{name}: {mismatch}");
                }
                tracing::warn!("{name}: {mismatch}; downloading it again from the start");
                mismatched = true;
            }
            Err(Failure::Transient(why)) => {
                let retries = policy.retries;
                if retried >= retries {
                    let tries = if retries == 0 {
                        String::new()
                    } else {
                        format!(" (gave up after {retries} retries)")
                    };
                    anyhow::bail!("{name}: {why}{tries}");
                }
                let wait = (policy.backoff)(retried);
                retried += 1;
                tracing::warn!(
                    "{name}: {why}; retry {retried} of {retries} in {}s",
                    wait.as_secs()
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

pub fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_up_to_thirty() {
        let waits: Vec<u64> = (0..8).map(|retry| backoff(retry).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    fn no_wait(retries: u32) -> RetryPolicy {
        RetryPolicy {
            retries,
            backoff: |_| Duration::ZERO,
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_then_reported() {
        let mut calls = 0;
        let result: anyhow::Result<()> = with_retries("f", no_wait(2), None, || {
            calls += 1;
            async { Err(Failure::Transient("connection reset".into())) }
        })
        .await;
        assert_eq!(calls, 3);
        assert_eq!(
            result.unwrap_err().to_string(),
            "f: connection reset (gave up after 2 retries)"
        );
    }

    #[tokio::test]
    async fn a_mismatch_gets_one_fresh_start_whatever_the_retries() {
        let mut calls = 0;
        let result: anyhow::Result<()> = with_retries("f", no_wait(0), None, || {
            calls += 1;
            async {
                Err(Failure::Mismatch(Mismatch {
                    what: "sha256",
                    expected: "ab".into(),
                    got: "cd".into(),
                }))
            }
        })
        .await;
        assert_eq!(calls, 2);
        assert!(result
            .unwrap_err()
            .to_string()
            .starts_with("f: sha256 mismatch: expected ab, got cd"));
    }
}
