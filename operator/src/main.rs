//! The `kandle-operator` binary: `crd` prints the CustomResourceDefinition; `run` (the default)
//! serves metrics and health, optionally waits for the leader lease, and runs the controller
//! until SIGTERM or Ctrl-C.
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Parser;
use kandle_crds::ModelDeployment;
use kandle_operator::cli::{init_logging, Cli, Command, RunArgs};
use kandle_operator::controller::{run_with_context, Context};
use kandle_operator::election::{run_while_leading, LeaseSettings};
use kandle_operator::http::{serve_on, HttpState};
use kandle_operator::metrics::Metrics;
use kube::api::{Api, ListParams};
use tokio::net::TcpListener;
use tokio::sync::watch;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd) => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(kandle_crds::crd_yaml().as_bytes())?;
            stdout.flush()?;
            Ok(())
        }
        Some(Command::Run(args)) => run(*args).await,
        None => run(cli.run).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        let _ = shutdown_tx.send(true);
    });

    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, args.metrics_port));
    // Bind before anything else, so a taken port fails the start instead of going unnoticed.
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|err| anyhow::anyhow!("binding the metrics endpoint on {addr}: {err}"))?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    let http = tokio::spawn(serve_on(
        listener,
        HttpState {
            metrics: metrics.clone(),
            ready: ready.clone(),
        },
        shutdown_signal(shutdown_rx.clone()),
    ));

    let client_config = kube::Config::infer()
        .await
        .map_err(|err| anyhow::anyhow!("configuring the Kubernetes client: {err}"))?;
    let client =
        kandle_operator::client::client(client_config, args.client_limits(), metrics.clone())
            .map_err(|err| anyhow::anyhow!("configuring the Kubernetes client: {err}"))?;
    check_api(&client, args.namespace.as_deref()).await?;
    let identity = args.identity();
    let config = args.operator_config();
    tracing::info!(
        namespace = config.namespace.as_deref().unwrap_or("<all>"),
        runtime_image = %config.runtime_image,
        kube_api_qps = args.kube_api_qps,
        kube_api_burst = args.kube_api_burst,
        reconcile_concurrency = config.reconcile_concurrency,
        identity = %identity,
        "starting kandle-operator"
    );
    let ctx = Context::with_metrics(client.clone(), config, metrics, Some(identity.clone()));
    ready.store(true, Ordering::Relaxed);

    let controller = run_with_context(ctx, shutdown_signal(shutdown_rx.clone()));
    let result = if args.leader_election {
        let namespace = args
            .lease_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        let settings = LeaseSettings::new(namespace, args.lease_name.clone(), identity);
        run_while_leading(client, settings, shutdown_rx.clone(), controller).await
    } else {
        controller.await
    };
    // Stop serving /metrics too, then report how the controller ended.
    http.abort();
    result
}

/// Lists ModelDeployments once, so a missing CRD, missing RBAC or an unreachable API server
/// fails the start with a clear message instead of a silent controller.
async fn check_api(client: &kube::Client, namespace: Option<&str>) -> anyhow::Result<()> {
    let api: Api<ModelDeployment> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let scope = namespace.unwrap_or("all namespaces");
    api.list_metadata(&ListParams::default().limit(1))
        .await
        .map_err(|err| {
            anyhow::anyhow!(
                "listing ModelDeployments in {scope} failed (is the CRD installed? \
                 `kandle-operator crd | kubectl apply -f -`; does the RBAC allow it?): {err}"
            )
        })?;
    tracing::info!(scope, "the ModelDeployment API is reachable");
    Ok(())
}

/// Resolves once shutdown was requested.
async fn shutdown_signal(mut rx: watch::Receiver<bool>) {
    // A closed channel means the signal task is gone: treat it as a shutdown too.
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn wait_for_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %err, "listening for Ctrl-C failed");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "listening for SIGTERM failed");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
