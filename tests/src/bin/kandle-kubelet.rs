//! `kandle-kubelet`: the stand-in kubelet of kandle's end-to-end tests as a command. It plays
//! the matching Nodes of the cluster named by `--kubeconfig` until SIGTERM, Ctrl-C or (with
//! `--exit-on-stdin-eof`) the end of its standard input, then stops every process it started.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::Parser;
use kandle_tests::kubelet::{run, KubeletConfig};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Debug, Parser)]
#[command(about = "Runs the pods of labelled Nodes as local processes (for end-to-end tests).")]
struct Args {
    /// Kubeconfig of the cluster.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Label selector of the Nodes to play.
    #[arg(long, default_value = "kandle.dev/e2e-node=true")]
    node_selector: String,
    /// PREFIX=PATH: images starting with PREFIX run the executable PATH with the container's args.
    #[arg(long = "image", value_parser = pair::<PathBuf>)]
    images: Vec<(String, PathBuf)>,
    /// Images starting with PREFIX run their command with the host's programs.
    #[arg(long = "shell-image", value_name = "PREFIX", default_value = "busybox")]
    shell_images: Vec<String>,
    /// NAME=DIR: the PVC NAME is the folder DIR.
    #[arg(long = "claim", value_parser = pair::<PathBuf>)]
    claims: Vec<(String, PathBuf)>,
    /// REF=DIR: image volumes of REF (a prefix) are the folder DIR.
    #[arg(long = "image-volume", value_parser = pair::<PathBuf>)]
    image_volumes: Vec<(String, PathBuf)>,
    /// Folder for emptyDirs and container logs.
    #[arg(long)]
    work_dir: PathBuf,
    /// How often probes run, in milliseconds.
    #[arg(long, default_value_t = 300)]
    probe_period_ms: u64,
    /// K=V: environment for every container.
    #[arg(long = "env", value_parser = pair::<String>)]
    env: Vec<(String, String)>,
    /// Shut down when standard input closes.
    #[arg(long)]
    exit_on_stdin_eof: bool,
}

fn pair<T: From<String>>(text: &str) -> Result<(String, T), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))?;
    Ok((key.to_string(), T::from(value.to_string())))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    let args = Args::parse();

    let kubeconfig = Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("reading {}", args.kubeconfig.display()))?;
    let client_config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .context("loading the kubeconfig")?;
    let client = kube::Client::try_from(client_config).context("building the client")?;

    let mut config = KubeletConfig::new(args.work_dir);
    config.node_selector = args.node_selector;
    config.images = args.images;
    config.shell_images = args.shell_images;
    config.claims = args.claims;
    config.image_volumes = args.image_volumes;
    config.probe_period = Duration::from_millis(args.probe_period_ms.max(1));
    config.env = args.env;

    let shutdown = shutdown_signal(args.exit_on_stdin_eof)?;
    run(client, config, shutdown).await
}

/// Resolves on SIGTERM, Ctrl-C, or the end of standard input when asked to watch it.
fn shutdown_signal(
    watch_stdin: bool,
) -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let mut terminate = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let (stdin_closed, stdin_eof) = tokio::sync::oneshot::channel::<()>();
    if watch_stdin {
        // A plain thread: a blocked read must not keep the runtime from shutting down.
        std::thread::Builder::new()
            .name("stdin-watch".into())
            .spawn(move || {
                let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
                let _ = stdin_closed.send(());
            })
            .map_err(|e| anyhow!("watching stdin: {e}"))?;
    } else {
        std::mem::forget(stdin_closed);
    }
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
            Ok(()) = stdin_eof => tracing::info!("standard input closed"),
        }
    })
}
