//! Probes: one check of an httpGet, tcpSocket or exec probe against a container, the threshold
//! bookkeeping that turns single results into a verdict, and a container's three probes run
//! together (startup first; readiness and liveness once it has passed). Probes run every tick
//! of the kubelet's probe period, whatever their `periodSeconds`; `initialDelaySeconds` is
//! honoured as written, and so is the time a startup probe allows (`failureThreshold` ×
//! `periodSeconds`): probing faster must not kill a slow-loading container sooner than a real
//! kubelet would.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ContainerPort, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::time::Instant;

use super::volumes::Mounts;

/// Counts consecutive results against a probe's success and failure thresholds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracker {
    success_threshold: u32,
    failure_threshold: u32,
    successes: u32,
    failures: u32,
}

impl Tracker {
    pub fn new(probe: &Probe) -> Self {
        let threshold = |value: Option<i32>, default: u32| {
            value
                .and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v > 0)
                .unwrap_or(default)
        };
        Self {
            success_threshold: threshold(probe.success_threshold, 1),
            failure_threshold: threshold(probe.failure_threshold, 3),
            successes: 0,
            failures: 0,
        }
    }

    /// Records a result: `Some(true)` once enough successes in a row, `Some(false)` once enough
    /// failures in a row, `None` while undecided.
    pub fn record(&mut self, success: bool) -> Option<bool> {
        if success {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            (self.successes >= self.success_threshold).then_some(true)
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            (self.failures >= self.failure_threshold).then_some(false)
        }
    }
}

/// A container's probes and their bookkeeping.
#[derive(Default)]
pub struct ContainerProbes {
    startup: Option<Scheduled>,
    readiness: Option<Scheduled>,
    liveness: Option<Scheduled>,
    started: bool,
}

/// What one round of probes found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// The startup probe passed in this round.
    pub started_now: bool,
    /// The readiness verdict, when there is one, with the last failure's message.
    pub readiness: Option<(bool, String)>,
    /// The container must be restarted, and why.
    pub restart: Option<String>,
}

impl ContainerProbes {
    pub fn of(container: &Container) -> Self {
        Self {
            startup: Scheduled::of(&container.startup_probe).map(Scheduled::with_time_budget),
            readiness: Scheduled::of(&container.readiness_probe),
            liveness: Scheduled::of(&container.liveness_probe),
            started: container.startup_probe.is_none(),
        }
    }

    pub fn any(&self) -> bool {
        self.startup.is_some() || self.readiness.is_some() || self.liveness.is_some()
    }

    pub fn has_readiness(&self) -> bool {
        self.readiness.is_some()
    }

    /// Runs the probes that are due.
    pub async fn run(&mut self, target: &Target<'_>, http: &reqwest::Client) -> Round {
        let mut round = Round::default();
        if !self.started {
            let Some(startup) = self.startup.as_mut() else {
                return round;
            };
            match startup.check(target, http).await {
                (Some(true), _) => {
                    self.started = true;
                    round.started_now = true;
                }
                (Some(false), why) => {
                    round.restart = Some(format!("Startup probe failed: {why}"));
                    return round;
                }
                (None, _) => return round,
            }
        }
        if let Some(readiness) = &mut self.readiness {
            if let (Some(ready), why) = readiness.check(target, http).await {
                round.readiness = Some((ready, why));
            }
        }
        if let Some(liveness) = &mut self.liveness {
            if let (Some(false), why) = liveness.check(target, http).await {
                round.restart = Some(format!("Liveness probe failed: {why}"));
            }
        }
        round
    }
}

/// One probe with its thresholds and initial delay.
struct Scheduled {
    probe: Probe,
    tracker: Tracker,
    not_before: Instant,
    /// Failures give up only from then on.
    fail_not_before: Option<Instant>,
}

impl Scheduled {
    fn of(probe: &Option<Probe>) -> Option<Self> {
        probe.as_ref().map(|probe| Self {
            not_before: Instant::now()
                + Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64),
            tracker: Tracker::new(probe),
            probe: probe.clone(),
            fail_not_before: None,
        })
    }

    /// Gives up no sooner than `failureThreshold` × `periodSeconds` after the initial delay.
    fn with_time_budget(mut self) -> Self {
        let seconds =
            |v: Option<i32>, default: i32| u64::try_from(v.unwrap_or(default)).unwrap_or(0);
        let budget =
            seconds(self.probe.failure_threshold, 3) * seconds(self.probe.period_seconds, 10);
        self.fail_not_before = Some(self.not_before + Duration::from_secs(budget));
        self
    }

    /// The verdict after one more check (none before the initial delay is over), and the
    /// check's failure message.
    async fn check(
        &mut self,
        target: &Target<'_>,
        http: &reqwest::Client,
    ) -> (Option<bool>, String) {
        if Instant::now() < self.not_before {
            return (None, String::new());
        }
        let result = check(&self.probe, target, http).await;
        let verdict = self.tracker.record(result.is_ok());
        let too_soon = self.fail_not_before.is_some_and(|at| Instant::now() < at);
        let verdict = verdict.filter(|passed| *passed || !too_soon);
        (verdict, result.err().unwrap_or_default())
    }
}

/// What a probe runs against: the pod's address and the container's ports, and for exec
/// probes the container's environment, folder and mounts.
pub struct Target<'a> {
    pub ip: Ipv4Addr,
    pub ports: &'a [ContainerPort],
    pub env: &'a [(String, String)],
    pub working_dir: &'a Path,
    pub mounts: &'a Mounts,
}

/// Runs `probe` once; an error says why it failed.
pub async fn check(
    probe: &Probe,
    target: &Target<'_>,
    http: &reqwest::Client,
) -> Result<(), String> {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(get) = &probe.http_get {
        let port = port_number(&get.port, target.ports)?;
        let scheme = get.scheme.as_deref().unwrap_or("HTTP").to_ascii_lowercase();
        let host = get.host.clone().unwrap_or_else(|| target.ip.to_string());
        let path = get.path.as_deref().unwrap_or("/");
        let slash = if path.starts_with('/') { "" } else { "/" };
        let url = format!("{scheme}://{host}:{port}{slash}{path}");
        let mut request = http.get(&url).timeout(timeout);
        for header in get.http_headers.as_deref().unwrap_or_default() {
            request = request.header(&header.name, &header.value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("Get \"{url}\": {}", innermost(&e)))?;
        let code = response.status().as_u16();
        return if (200..400).contains(&code) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {code}"))
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let port = port_number(&tcp.port, target.ports)?;
        let host = tcp.host.clone().unwrap_or_else(|| target.ip.to_string());
        let address = format!("{host}:{port}");
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&address)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {address}: {e}")),
            Err(_) => Err(format!("dial tcp {address}: i/o timeout")),
        };
    }
    if let Some(exec) = &probe.exec {
        return run_exec(exec.command.as_deref().unwrap_or_default(), target, timeout).await;
    }
    Err("probe has no httpGet, tcpSocket or exec action this kubelet supports".to_string())
}

async fn run_exec(
    command: &[String],
    target: &Target<'_>,
    timeout: Duration,
) -> Result<(), String> {
    let words: Vec<String> = command.iter().map(|w| target.mounts.rewrite(w)).collect();
    let Some((program, args)) = words.split_first() else {
        return Err("exec probe without a command".to_string());
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .envs(target.env.iter().map(|(k, v)| (k, v)))
        .current_dir(target.working_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("exec {program}: {e}"))?;
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("command {program} exited with {status}")),
        Ok(Err(e)) => Err(format!("exec {program}: {e}")),
        Err(_) => Err(format!("command {program} timed out")),
    }
}

/// The root cause of an error ("Connection refused"), not its generic wrapper.
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// A probe's port: a number, or the name of one of the container's ports.
pub fn port_number(port: &IntOrString, ports: &[ContainerPort]) -> Result<i32, String> {
    match port {
        IntOrString::Int(number) => Ok(*number),
        IntOrString::String(name) => match name.parse::<i32>() {
            Ok(number) => Ok(number),
            Err(_) => ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| format!("port \"{name}\" is not a port of the container")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_need_consecutive_results() {
        let mut tracker = Tracker::new(&Probe {
            failure_threshold: Some(2),
            success_threshold: Some(2),
            ..Default::default()
        });
        assert_eq!(tracker.record(true), None);
        assert_eq!(tracker.record(false), None);
        assert_eq!(tracker.record(true), None);
        assert_eq!(tracker.record(true), Some(true));
        assert_eq!(tracker.record(true), Some(true));
        assert_eq!(tracker.record(false), None);
        assert_eq!(tracker.record(false), Some(false));
    }

    #[test]
    fn defaults_are_one_success_and_three_failures() {
        let mut tracker = Tracker::new(&Probe::default());
        assert_eq!(tracker.record(false), None);
        assert_eq!(tracker.record(false), None);
        assert_eq!(tracker.record(false), Some(false));
        assert_eq!(tracker.record(true), Some(true));
    }

    #[tokio::test]
    async fn startup_gates_readiness_and_liveness_restarts() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port() as i32;
        let tcp = |port: i32, failure_threshold| Probe {
            tcp_socket: Some(k8s_openapi::api::core::v1::TCPSocketAction {
                port: IntOrString::Int(port),
                host: None,
            }),
            failure_threshold: Some(failure_threshold),
            ..Default::default()
        };
        // A port nobody listens on: bind and drop.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port() as i32
        };
        let container = Container {
            startup_probe: Some(tcp(port, 3)),
            readiness_probe: Some(tcp(port, 1)),
            liveness_probe: Some(tcp(closed, 2)),
            ..Default::default()
        };
        let mounts = Mounts::default();
        let target = Target {
            ip: Ipv4Addr::LOCALHOST,
            ports: &[],
            env: &[],
            working_dir: Path::new("/"),
            mounts: &mounts,
        };
        let http = reqwest::Client::new();
        let mut probes = ContainerProbes::of(&container);
        let first = probes.run(&target, &http).await;
        assert!(first.started_now);
        assert_eq!(first.readiness, Some((true, String::new())));
        assert_eq!(first.restart, None, "one liveness failure is not enough");
        let second = probes.run(&target, &http).await;
        assert!(!second.started_now);
        assert!(second
            .restart
            .unwrap()
            .starts_with("Liveness probe failed: dial tcp"));
        drop(listener);
    }

    #[test]
    fn ports_resolve_by_number_or_name() {
        let ports = [ContainerPort {
            name: Some("http".into()),
            container_port: 8080,
            ..Default::default()
        }];
        assert_eq!(port_number(&IntOrString::Int(9), &ports), Ok(9));
        assert_eq!(
            port_number(&IntOrString::String("http".into()), &ports),
            Ok(8080)
        );
        assert_eq!(
            port_number(&IntOrString::String("81".into()), &ports),
            Ok(81)
        );
        assert!(port_number(&IntOrString::String("grpc".into()), &ports).is_err());
    }
}
