//! One container's life: "pull" its image and set up its mounts, start its process, run its
//! probes, restart it with back-off when it ends or fails its liveness probe (init containers
//! end for good once they succeed), and stop it when the pod is stopped.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Container;
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, Instant};

use super::backoff::go_duration;
use super::image::{self, Launcher};
use super::launch::{launch_spec, LaunchSpec};
use super::pod::{PodContext, Stop};
use super::probe::{ContainerProbes, Round, Target};
use super::process::{Exit, Process};
use super::state::{now, Kind, Termination};
use super::volumes::{mounts, Mounts};

/// How a container task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An init container that succeeded.
    Completed,
    /// The pod is being stopped.
    Stopped,
}

/// The least time a process gets between SIGTERM and SIGKILL on a graceful stop.
const MIN_GRACE: Duration = Duration::from_secs(2);

/// Runs container `index` of `kind` until it completes (init) or the pod is stopped.
pub async fn run_container(
    ctx: Arc<PodContext>,
    kind: Kind,
    index: usize,
    mut stop: watch::Receiver<Stop>,
) -> Outcome {
    let container = ctx.container(kind, index).clone();
    let mut crashes = 0u32;
    let mut setup_failures = 0u32;
    loop {
        if *stop.borrow() != Stop::No {
            return Outcome::Stopped;
        }
        let prepared = match prepare(&ctx, &container) {
            Ok(prepared) => prepared,
            Err(problem) => {
                setup_failures += 1;
                if wait_out_problem(&ctx, kind, index, problem, setup_failures, &mut stop).await {
                    return Outcome::Stopped;
                }
                continue;
            }
        };
        setup_failures = 0;

        let ran_for = match run_once(&ctx, kind, index, &container, &prepared, &mut stop).await {
            Run::Stopped => return Outcome::Stopped,
            Run::Completed => return Outcome::Completed,
            Run::Failed { ran_for } => ran_for,
        };
        if ran_for.is_some_and(|ran_for| ctx.backoff.resets_after(ran_for)) {
            crashes = 0;
        }
        crashes += 1;
        let delay = ctx.backoff.delay(crashes);
        let message = format!(
            "back-off {} restarting failed container={} pod={}_{}({})",
            go_duration(delay),
            container.name,
            ctx.facts.name,
            ctx.facts.namespace,
            ctx.facts.uid
        );
        ctx.update(kind, index, |record| {
            record.back_off("CrashLoopBackOff", message)
        });
        if sleep_or_stop(delay, &mut stop).await {
            return Outcome::Stopped;
        }
    }
}

/// How one run of a container's process went.
enum Run {
    /// An init container succeeded.
    Completed,
    /// It ended (or never started) and is to be restarted; how long it ran, if it did.
    Failed { ran_for: Option<Duration> },
    /// The pod was stopped.
    Stopped,
}

/// Starts the process once and follows it until it ends or is stopped.
async fn run_once(
    ctx: &PodContext,
    kind: Kind,
    index: usize,
    container: &Container,
    prepared: &Prepared,
    stop: &mut watch::Receiver<Stop>,
) -> Run {
    let log = ctx.pod_dir.join(format!("{}.log", container.name));
    let mut process = match Process::spawn(&prepared.launch, &ctx.pod_dir, &log) {
        Ok(process) => process,
        Err(error) => {
            tracing::warn!(pod = %ctx.key(), container = %container.name, "{error:#}");
            ctx.update(kind, index, |record| {
                record.terminate(Termination::start_error(format!("{error:#}"), now()))
            });
            return Run::Failed { ran_for: None };
        }
    };
    let started = kind == Kind::Init || container.startup_probe.is_none();
    let ready = kind == Kind::Main && started && container.readiness_probe.is_none();
    let started_at = process.started_at().clone();
    ctx.update(kind, index, |record| {
        record.run(started_at, prepared.image_id.clone(), started);
        record.ready = ready;
    });
    tracing::info!(pod = %ctx.key(), container = %container.name, "container started");
    let (exit, ending) = supervise(ctx, kind, index, container, prepared, &mut process, stop).await;
    tracing::info!(pod = %ctx.key(), container = %container.name, code = exit.code, ?ending, "container ended");
    let completed = kind == Kind::Init && exit.code == 0 && ending == Ending::Exited;
    ctx.update(kind, index, |record| {
        record.terminate(Termination::exited(
            exit.code,
            exit.started_at.clone(),
            exit.finished_at.clone(),
            exit.output_tail.clone(),
        ));
        record.ready = completed;
    });
    match ending {
        Ending::Stopped => Run::Stopped,
        _ if completed => Run::Completed,
        _ => Run::Failed {
            ran_for: Some(exit.ran_for),
        },
    }
}

/// A container ready to start.
struct Prepared {
    launch: LaunchSpec,
    image_id: String,
    mounts: Mounts,
}

/// Why a container cannot be started yet.
struct Problem {
    reason: &'static str,
    message: String,
    /// Shown as ErrImagePull, then ImagePullBackOff while waiting to retry.
    pull: Option<String>,
}

fn prepare(ctx: &PodContext, container: &Container) -> Result<Prepared, Problem> {
    let config = &ctx.config;
    let image = container.image.as_deref().unwrap_or_default();
    let launcher: Launcher = image::resolve(image, &config.images, &config.shell_images)
        .ok_or_else(|| Problem {
            reason: "ErrImagePull",
            message: image::pull_failure(image),
            pull: Some(format!("image \"{image}\"")),
        })?;
    let mounts = mounts(
        container.volume_mounts.as_deref().unwrap_or_default(),
        &ctx.volumes,
    )
    .map_err(|error| Problem {
        reason: error.reason,
        pull: (error.reason == "ErrImagePull").then(|| "an image volume".to_string()),
        message: error.message,
    })?;
    let launch =
        launch_spec(container, &launcher, &mounts, &ctx.facts, &config.env).map_err(|message| {
            Problem {
                reason: "CreateContainerConfigError",
                message,
                pull: None,
            }
        })?;
    Ok(Prepared {
        image_id: launcher.image_id(image),
        launch,
        mounts,
    })
}

/// Shows `problem` and waits before the next try; true if the pod was stopped meanwhile.
async fn wait_out_problem(
    ctx: &PodContext,
    kind: Kind,
    index: usize,
    problem: Problem,
    failures: u32,
    stop: &mut watch::Receiver<Stop>,
) -> bool {
    let delay = ctx.backoff.delay(failures);
    ctx.update(kind, index, |record| {
        record.wait(problem.reason, Some(problem.message.clone()))
    });
    let Some(what) = problem.pull else {
        return sleep_or_stop(delay, stop).await;
    };
    // ErrImagePull shows for a moment, as in a real pull, then the back-off.
    if sleep_or_stop(Duration::from_secs(1).min(delay), stop).await {
        return true;
    }
    let message = format!("Back-off pulling {what}: ErrImagePull: {}", problem.message);
    ctx.update(kind, index, |record| {
        record.wait("ImagePullBackOff", Some(message))
    });
    sleep_or_stop(delay, stop).await
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Exited,
    Unhealthy,
    Stopped,
}

/// Waits for the process to end, probing it meanwhile; stops it when a probe fails for good
/// or the pod is stopped.
async fn supervise(
    ctx: &PodContext,
    kind: Kind,
    index: usize,
    container: &Container,
    prepared: &Prepared,
    process: &mut Process,
    stop: &mut watch::Receiver<Stop>,
) -> (Exit, Ending) {
    let mut probes = match kind {
        Kind::Main => ContainerProbes::of(container),
        Kind::Init => ContainerProbes::default(),
    };
    let ports = container.ports.clone().unwrap_or_default();
    let working_dir = prepared
        .launch
        .working_dir
        .clone()
        .unwrap_or_else(|| ctx.pod_dir.clone());
    let ip = ctx
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pod_ip
        .unwrap_or(std::net::Ipv4Addr::LOCALHOST);
    let target = Target {
        ip,
        ports: &ports,
        env: &prepared.launch.env,
        working_dir: &working_dir,
        mounts: &prepared.mounts,
    };
    let mut ticker = tokio::time::interval(ctx.config.probe_period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            exit = process.wait() => return (exit, Ending::Exited),
            _ = until_stopped(stop) => {
                return (stop_process(ctx, container, process, stop).await, Ending::Stopped);
            }
            _ = ticker.tick(), if probes.any() => {
                let round = probes.run(&target, &ctx.http).await;
                if let Some(failure) = round.restart {
                    tracing::info!(pod = %ctx.key(), container = %container.name, "{failure}, will be restarted");
                    let exit = process.stop(termination_grace(ctx)).await;
                    return (exit, Ending::Unhealthy);
                }
                apply_probe_round(ctx, kind, index, &container.name, round, probes.has_readiness());
            }
        }
    }
}

/// Records what a round of probes found: started, and ready or not.
fn apply_probe_round(
    ctx: &PodContext,
    kind: Kind,
    index: usize,
    name: &str,
    round: Round,
    has_readiness: bool,
) {
    if round.started_now {
        ctx.update(kind, index, |record| {
            record.started = true;
            record.ready = !has_readiness;
        });
    }
    let Some((ready, why)) = round.readiness else {
        return;
    };
    let was_ready = ctx.state.lock().unwrap_or_else(|e| e.into_inner()).main[index].ready;
    if was_ready != ready {
        if !ready {
            tracing::info!(pod = %ctx.key(), container = %name, "Readiness probe failed: {why}");
        }
        ctx.update(kind, index, |record| record.ready = ready);
    }
}

/// Stops a running process as `stop` asks: preStop sleep, SIGTERM, wait until the deadline,
/// SIGKILL; at once when the pod is gone.
async fn stop_process(
    ctx: &PodContext,
    container: &Container,
    process: &mut Process,
    stop: &mut watch::Receiver<Stop>,
) -> Exit {
    let mode = *stop.borrow();
    let Stop::Graceful {
        deadline, pre_stop, ..
    } = mode
    else {
        process.kill();
        return process.wait().await;
    };
    let deadline = Instant::from_std(deadline);
    let pre_stop_sleep = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(|h| h.sleep.as_ref())
        .map(|s| Duration::from_secs(s.seconds.max(0) as u64))
        .filter(|_| pre_stop);
    if let Some(pause) = pre_stop_sleep {
        tokio::select! {
            exit = process.wait() => return exit,
            _ = sleep_until(deadline.min(Instant::now() + pause)) => {}
            _ = until_killed(stop) => {
                process.kill();
                return process.wait().await;
            }
        }
    }
    tracing::debug!(pod = %ctx.key(), container = %container.name, "sending SIGTERM");
    process.terminate();
    let kill_at = deadline.max(Instant::now() + MIN_GRACE);
    tokio::select! {
        exit = process.wait() => exit,
        _ = sleep_until(kill_at) => {
            process.kill();
            process.wait().await
        }
        _ = until_killed(stop) => {
            process.kill();
            process.wait().await
        }
    }
}

/// The grace a container gets when a probe restarts it.
fn termination_grace(ctx: &PodContext) -> Duration {
    let seconds = ctx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    Duration::from_secs(seconds.max(0) as u64)
}

/// Sleeps for `delay`; true if the pod was stopped first.
async fn sleep_or_stop(delay: Duration, stop: &mut watch::Receiver<Stop>) -> bool {
    tokio::select! {
        _ = sleep(delay) => false,
        _ = until_stopped(stop) => true,
    }
}

/// Resolves once the pod is to stop (or the kubelet is gone).
async fn until_stopped(stop: &mut watch::Receiver<Stop>) {
    let _ = stop.wait_for(|s| *s != Stop::No).await;
}

/// Resolves once the pod's processes are to be killed at once (or the kubelet is gone).
async fn until_killed(stop: &mut watch::Receiver<Stop>) {
    let _ = stop.wait_for(|s| *s == Stop::Now).await;
}
