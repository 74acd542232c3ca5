//! Polling with a deadline: tests wait for what they expect to become true, never for a fixed
//! time, and fail with the last observation when the deadline passes.

use std::future::Future;
use std::time::Duration;

/// How long tests wait for the fake or the operator to converge.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(20);
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `check` until it returns `Ok(Some(value))`, or fails after `deadline` with the last
/// `Ok(None)` reason or error. `describe` names what was awaited in the failure.
pub async fn until<T, F, Fut>(describe: &str, deadline: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let start = tokio::time::Instant::now();
    loop {
        let last = match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => "condition not met yet".to_string(),
            Err(e) => format!("{e:#}"),
        };
        if start.elapsed() > deadline {
            anyhow::bail!("timed out after {deadline:?} waiting for {describe}: {last}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
