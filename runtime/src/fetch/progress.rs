//! Progress lines for the logs: one when a file starts, then at most one every
//! [`LOG_EVERY`] while its bytes arrive.

use std::time::{Duration, Instant};

/// The longest silence while a file downloads.
pub const LOG_EVERY: Duration = Duration::from_secs(5);

/// `612 B`, `45.1 MiB`, `1.3 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `model.safetensors: 45.1 MiB of 86.7 MiB (52%), 12.3 MiB/s`.
pub fn progress_line(name: &str, done: u64, total: Option<u64>, per_second: f64) -> String {
    let rate = human_bytes(per_second.max(0.0) as u64);
    match total {
        Some(total) if total > 0 => format!(
            "{name}: {} of {} ({}%), {rate}/s",
            human_bytes(done),
            human_bytes(total),
            done.saturating_mul(100) / total
        ),
        _ => format!("{name}: {}, {rate}/s", human_bytes(done)),
    }
}

/// Counts the bytes of one file and logs now and then.
pub struct Progress<'a> {
    name: &'a str,
    total: Option<u64>,
    done: u64,
    /// Bytes that were already there when this attempt started (a resumed partial).
    resumed: u64,
    started: Instant,
    last_log: Instant,
}

impl<'a> Progress<'a> {
    pub fn new(name: &'a str, total: Option<u64>, resumed: u64) -> Self {
        let now = Instant::now();
        Self {
            name,
            total,
            done: resumed,
            resumed,
            started: now,
            last_log: now,
        }
    }

    pub fn done(&self) -> u64 {
        self.done
    }

    pub fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        if self.last_log.elapsed() >= LOG_EVERY {
            self.last_log = Instant::now();
            tracing::info!("{}", self.line());
        }
    }

    /// The current line, with the rate of this attempt.
    pub fn line(&self) -> String {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = (self.done - self.resumed) as f64 / seconds;
        progress_line(self.name, self.done, self.total, rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(human_bytes(612), "612 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(90_868_376), "86.7 MiB");
        assert_eq!(human_bytes(1_395_864_371), "1.3 GiB");
    }

    #[test]
    fn a_progress_line_shows_done_total_percent_and_rate() {
        let line = progress_line(
            "model.safetensors",
            47_290_777,
            Some(90_868_376),
            12.3 * 1024.0 * 1024.0,
        );
        assert_eq!(
            line,
            "model.safetensors: 45.1 MiB of 86.7 MiB (52%), 12.3 MiB/s"
        );
    }

    #[test]
    fn without_a_known_size_the_line_has_no_percentage() {
        assert_eq!(
            progress_line("archive", 2048, None, 1024.0),
            "archive: 2.0 KiB, 1.0 KiB/s"
        );
    }
}
