//! The `kubectl kandle` plugin: shows where a ModelDeployment's rollout stands and steers it
//! (promote, abort, retry, pause, resume through the `kandle.dev/command` annotation; undo
//! through the spec). Installed on the `PATH` as `kubectl-kandle`, kubectl runs it for
//! `kubectl kandle ...`. All of the work is in `kandle_operator::kubectl`; this parses the
//! arguments, builds a client from the kubeconfig, prints, and exits 1 with the error's message.
#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};

use clap::{Parser, Subcommand};
use futures::StreamExt;
use kandle_operator::command::Command;
use kandle_operator::kubectl::{api, UndoOptions};

/// Show and steer kandle ModelDeployment rollouts (kandle.dev/v1alpha1, short name md).
#[derive(Parser, Debug)]
#[command(name = "kubectl-kandle", bin_name = "kubectl kandle", version)]
struct Cli {
    /// Namespace of the ModelDeployment (default: the kubeconfig context's, else `default`).
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    /// The kubeconfig file (default: `KUBECONFIG`, then `~/.kube/config`, then in-cluster).
    #[arg(long, global = true, value_name = "PATH")]
    kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true, value_name = "NAME")]
    context: Option<String>,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand, Debug)]
enum Verb {
    /// Model, stable and canary revisions, steps, analyses, pods per revision and conditions.
    Status {
        /// The ModelDeployment.
        name: String,
        /// Print the view again whenever the ModelDeployment or its pods change, until Ctrl-C.
        #[arg(short, long)]
        watch: bool,
    },
    /// End the canary's current step now (`--full`: promote the canary at once).
    Promote {
        /// The ModelDeployment.
        name: String,
        /// Skip the remaining steps: the canary becomes the stable revision once available.
        #[arg(long)]
        full: bool,
    },
    /// Roll the canary back: the stable revision serves all traffic.
    Abort {
        /// The ModelDeployment.
        name: String,
    },
    /// Start an aborted canary again from its first step (or walk the steps of one that is
    /// being promoted without them).
    Retry {
        /// The ModelDeployment.
        name: String,
    },
    /// Hold the canary at its current step.
    Pause {
        /// The ModelDeployment.
        name: String,
    },
    /// Let a paused canary go on.
    Resume {
        /// The ModelDeployment.
        name: String,
    },
    /// Set the spec's model, runtime, resources and scheduling back to a recorded revision.
    Undo {
        /// The ModelDeployment.
        name: String,
        /// Revision number to go back to (see `history`; default: the previous stable one).
        #[arg(long, value_name = "N")]
        to_revision: Option<i64>,
        /// Change the spec even when a GitOps tool (Argo CD, Flux) manages it.
        #[arg(short, long)]
        yes: bool,
    },
    /// The revisions the ModelDeployment has run, newest last.
    History {
        /// The ModelDeployment.
        name: String,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(err) = run(cli).await {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

/// A client from the kubeconfig kubectl would use, or the one `--kubeconfig` and `--context`
/// name.
async fn client(cli: &Cli) -> anyhow::Result<kube::Client> {
    let options = kube::config::KubeConfigOptions {
        context: cli.context.clone(),
        ..Default::default()
    };
    let config = match (&cli.kubeconfig, &cli.context) {
        (Some(path), _) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|err| anyhow::anyhow!("reading {}: {err}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &options).await?
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&options).await?,
        (None, None) => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = client(&cli).await.map_err(|err| {
        anyhow::anyhow!("configuring the Kubernetes client from the kubeconfig: {err:#}")
    })?;
    let namespace = cli
        .namespace
        .unwrap_or_else(|| client.default_namespace().to_string());
    let ns = namespace.as_str();
    let said = match cli.verb {
        Verb::Status { name, watch: true } => return watch(&client, ns, &name).await,
        Verb::Status { name, watch: false } => api::status(&client, ns, &name).await?,
        Verb::History { name } => api::history(&client, ns, &name).await?,
        Verb::Undo {
            name,
            to_revision,
            yes,
        } => {
            let undone = api::undo(&client, ns, &name, &UndoOptions { to_revision, yes }).await?;
            if let Some(warning) = undone.warning {
                eprintln!("Warning: {warning}.");
            }
            undone.said
        }
        Verb::Promote { name, full } => send(&client, ns, &name, Command::Promote { full }).await?,
        Verb::Abort { name } => send(&client, ns, &name, Command::Abort).await?,
        Verb::Retry { name } => send(&client, ns, &name, Command::Retry).await?,
        Verb::Pause { name } => send(&client, ns, &name, Command::Pause).await?,
        Verb::Resume { name } => send(&client, ns, &name, Command::Resume).await?,
    };
    print!("{said}");
    Ok(())
}

/// Sends `command` with the current time in nanoseconds as its unique id.
async fn send(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    command: Command,
) -> Result<String, kandle_operator::kubectl::Error> {
    let now = chrono::Utc::now();
    let id = now
        .timestamp_nanos_opt()
        .map_or_else(|| now.timestamp_micros().to_string(), |n| n.to_string());
    api::command(client, namespace, name, command, &id).await
}

/// Prints the status view on every change until Ctrl-C; a terminal is cleared between views.
async fn watch(client: &kube::Client, namespace: &str, name: &str) -> anyhow::Result<()> {
    let views = api::watch(client, namespace, name).await?;
    futures::pin_mut!(views);
    let clear = std::io::stdout().is_terminal();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            next = views.next() => match next {
                None => return Ok(()),
                Some(Err(err)) => eprintln!("warning: {err:#} (retrying)"),
                Some(Ok(view)) => {
                    let mut out = std::io::stdout().lock();
                    if clear {
                        write!(out, "\x1b[2J\x1b[H")?;
                    } else {
                        writeln!(out, "---")?;
                    }
                    write!(out, "{view}")?;
                    out.flush()?;
                }
            },
        }
    }
}
