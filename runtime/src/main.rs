//! The `kandle-runtime` binary: flags, logging, threads and signals around [`kandle_runtime::serve`];
//! `kandle-runtime fetch ...` runs [`kandle_runtime::fetch`] instead.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kandle_runtime::config::LogFormat;
use kandle_runtime::fetch::{self, FetchCommand};
use kandle_runtime::{device, Config};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|arg| arg == "fetch") {
        return fetch_main(FetchCommand::parse_from(std::env::args_os().skip(1)));
    }
    let config = Config::parse();
    init_logging(config.log_format);
    // Before any other thread exists: candle's matmuls size their work from this.
    let threads = device::cpu_threads(config.threads);
    device::configure_cpu_threads(threads);
    tracing::info!(threads, "CPU inference threads");

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(%err, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port))
            .await
            .map_err(|err| {
                anyhow::anyhow!("cannot listen on {}:{}: {err}", config.host, config.port)
            })?;
        kandle_runtime::serve(config, listener, shutdown_signal()).await
    });
    // A model still loading when the signal came must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), "kandle-runtime failed");
            ExitCode::FAILURE
        }
    }
}

fn fetch_main(command: FetchCommand) -> ExitCode {
    init_logging(LogFormat::Text);
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(fetch::run(&command)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            fetch::report_failure(&err, &command.common().termination_log);
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(%err, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = terminate => tracing::info!("SIGTERM received"),
        result = tokio::signal::ctrl_c() => match result {
            Ok(()) => tracing::info!("SIGINT received"),
            Err(err) => {
                tracing::warn!(%err, "cannot watch SIGINT");
                std::future::pending::<()>().await;
            }
        },
    }
}
