//! A container's process: started in its own process group with its output appended to the
//! container's log, stopped with SIGTERM, a grace period and SIGKILL to the whole group. A
//! `Process` that is dropped kills its group, so no process outlives its container.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::launch::LaunchSpec;
use super::state::now;

/// Lines of output kept as a termination message.
const TAIL_LINES: usize = 10;
/// The API server's limit on one termination message.
const TAIL_BYTES: usize = 4096;

/// How a process ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    pub code: i32,
    pub started_at: Time,
    pub finished_at: Time,
    pub ran_for: Duration,
    /// The last lines it wrote during this run.
    pub output_tail: String,
}

/// A running container process.
#[derive(Debug)]
pub struct Process {
    child: tokio::process::Child,
    group: Pid,
    started_at: Time,
    started: Instant,
    log: PathBuf,
    log_offset: u64,
    reaped: bool,
}

impl Process {
    /// Starts `spec` in `default_dir` (unless it names its own), appending output to `log`.
    pub fn spawn(spec: &LaunchSpec, default_dir: &Path, log: &Path) -> anyhow::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening log {}", log.display()))?;
        let log_offset = file.metadata().map(|m| m.len()).unwrap_or(0);
        let stderr = file.try_clone().context("duplicating the log file")?;
        let dir = spec.working_dir.as_deref().unwrap_or(default_dir);
        let child = tokio::process::Command::new(&spec.program)
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(stderr))
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} in {}", spec.program, dir.display()))?;
        let pid = child
            .id()
            .context("the process ended before it could be tracked")?;
        Ok(Self {
            child,
            group: Pid::from_raw(pid as i32),
            started_at: now(),
            started: Instant::now(),
            log: log.to_path_buf(),
            log_offset,
            reaped: false,
        })
    }

    pub fn started_at(&self) -> &Time {
        &self.started_at
    }

    /// Waits for the process to end (cancel-safe), then kills what is left of its group.
    pub async fn wait(&mut self) -> Exit {
        let status = self.child.wait().await;
        self.reaped = true;
        self.signal(Signal::SIGKILL);
        let code = match status {
            Ok(status) => exit_code(status),
            Err(_) => 128,
        };
        Exit {
            code,
            started_at: self.started_at.clone(),
            finished_at: now(),
            ran_for: self.started.elapsed(),
            output_tail: read_tail(&self.log, self.log_offset),
        }
    }

    /// SIGTERM to the group, up to `grace` for it to end, then SIGKILL.
    pub async fn stop(&mut self, grace: Duration) -> Exit {
        self.terminate();
        if let Ok(exit) = tokio::time::timeout(grace, self.wait()).await {
            return exit;
        }
        self.kill();
        self.wait().await
    }

    /// Asks the whole group to end (SIGTERM).
    pub fn terminate(&self) {
        self.signal(Signal::SIGTERM);
    }

    /// Ends the whole group now (SIGKILL).
    pub fn kill(&self) {
        self.signal(Signal::SIGKILL);
    }

    fn signal(&self, signal: Signal) {
        // ESRCH (the group is gone already) is the expected case after an exit.
        let _ = killpg(self.group, signal);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if !self.reaped {
            self.signal(Signal::SIGKILL);
        }
    }
}

/// The shell's convention: the exit status, or 128 + the signal that ended it.
fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(128)
}

fn read_tail(log: &Path, from: u64) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = std::fs::File::open(log)?;
        let len = file.metadata()?.len();
        let start = from.max(len.saturating_sub(4 * TAIL_BYTES as u64));
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    read()
        .map(|text| last_lines(&text, TAIL_LINES, TAIL_BYTES))
        .unwrap_or_default()
}

/// The last `lines` lines of `text`, at most `max_bytes` long (cut at a character boundary).
pub fn last_lines(text: &str, lines: usize, max_bytes: usize) -> String {
    let trimmed = text.trim_end_matches(['\n', '\r']);
    let start = trimmed
        .rmatch_indices('\n')
        .nth(lines.saturating_sub(1))
        .map_or(0, |(at, _)| at + 1);
    let mut tail = &trimmed[start..];
    while tail.len() > max_bytes {
        let mut cut = tail.len() - max_bytes;
        while !tail.is_char_boundary(cut) {
            cut += 1;
        }
        tail = &tail[cut..];
    }
    tail.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines() {
        let text: String = (1..=12).map(|n| format!("line {n}\n")).collect();
        let tail = last_lines(&text, 10, 4096);
        assert!(
            tail.starts_with("line 3\n") && tail.ends_with("line 12"),
            "{tail}"
        );
        assert_eq!(last_lines("one\ntwo\n\n", 10, 4096), "one\ntwo");
        assert_eq!(last_lines("", 10, 4096), "");
    }

    #[test]
    fn caps_the_size_at_a_character_boundary() {
        assert_eq!(last_lines("ééé", 10, 3), "é");
        assert_eq!(last_lines("abcdef", 10, 2), "ef");
    }

    #[tokio::test]
    async fn captures_exit_code_and_output_and_stops_with_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("c.log");
        let spec = |script: &str| LaunchSpec {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("WORD".into(), "hello".into())],
            working_dir: None,
        };
        let mut failing =
            Process::spawn(&spec("echo $WORD; echo oops >&2; exit 3"), dir.path(), &log).unwrap();
        let exit = failing.wait().await;
        assert_eq!((exit.code, exit.output_tail.as_str()), (3, "hello\noops"));

        let mut second = Process::spawn(&spec("exec sleep 30"), dir.path(), &log).unwrap();
        let exit = second.stop(Duration::from_secs(5)).await;
        assert_eq!(exit.code, 128 + 15);
        assert_eq!(exit.output_tail, "");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "hello\noops\n");
    }
}
