//! The server's lifecycle: bind, load in the background, serve, drain.
//!
//! [`serve`] answers `/healthz` at once and `/readyz` with 503 until the model is loaded and
//! warmed up. When `shutdown` resolves, readiness turns 503, no new connections are accepted and
//! in-flight requests get up to `--drain-timeout` to finish.

use std::future::Future;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use tokio::net::TcpListener;

use crate::api::{self, AppState, Phase};
use crate::config::{Config, TaskChoice};
use crate::engine::Engine;
use crate::generate::safetensors::is_causal_lm;
use crate::generate::{gguf_files, Generator};
use crate::listener::LimitedListener;
use crate::metrics::Metrics;

/// Loads the model for its task and publishes it in `state`. Blocking.
fn load(config: &Config, metrics: Arc<Metrics>, state: &AppState) -> anyhow::Result<()> {
    match task(config)? {
        TaskChoice::Generation => {
            let generator = Generator::load(config, metrics)?;
            let info = &generator.info;
            tracing::info!(
                model = %info.name,
                device = %info.device,
                weights = %info.weights,
                architecture = %info.architecture,
                context_length = info.context_length,
                kv_cache_tokens = info.kv_cache_tokens,
                "generation model loaded and warmed up; ready"
            );
            state.set_ready_generator(generator);
        }
        _ => {
            let engine = Engine::load(config, metrics)?;
            tracing::info!(
                model = %engine.info.name,
                device = %engine.info.device,
                dtype = %engine.info.dtype,
                dim = engine.info.dim,
                max_input_tokens = engine.info.max_input_tokens,
                pooling = engine.info.pooling,
                normalized = engine.info.normalized,
                "model loaded and warmed up; ready"
            );
            state.set_ready(engine);
        }
    }
    Ok(())
}

/// `--task`, with `auto` resolved from the folder: generation when it holds a `.gguf` file or a
/// `config.json` naming a `...ForCausalLM` architecture.
pub fn task(config: &Config) -> anyhow::Result<TaskChoice> {
    Ok(match config.task {
        TaskChoice::Auto if config.model_file.is_some() => TaskChoice::Generation,
        TaskChoice::Auto if !gguf_files(&config.model_dir)?.is_empty() => TaskChoice::Generation,
        TaskChoice::Auto if is_causal_lm(&config.model_dir) => TaskChoice::Generation,
        TaskChoice::Auto => TaskChoice::Embedding,
        chosen => chosen,
    })
}

/// Serves `config`'s model on `listener` until `shutdown` resolves and the drain completes.
/// Returns an error when the model cannot be loaded.
pub async fn serve<S>(config: Config, listener: TcpListener, shutdown: S) -> anyhow::Result<()>
where
    S: Future<Output = ()> + Send + 'static,
{
    config.validate().map_err(|err| anyhow!(err))?;
    let metrics = Arc::new(Metrics::new());
    let state = AppState::new(config.served_name(), metrics.clone());
    let address = listener.local_addr().context("listener has no address")?;

    let (drain_started, drain_signal) = tokio::sync::oneshot::channel::<()>();
    let draining = state.clone();
    let listener = LimitedListener::new(listener, config.max_connections);
    let server =
        axum::serve(listener, api::router(state.clone())).with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutdown requested; draining");
            draining.set_phase(Phase::Draining);
            let _ = drain_started.send(());
        });
    let mut server = tokio::spawn(async move { server.await });
    tracing::info!(%address, model_dir = %config.model_dir.display(), "listening; loading the model");

    let drain_timeout = config.drain_timeout;
    let ready = state.clone();
    let mut load = tokio::task::spawn_blocking(move || load(&config, metrics, &ready));
    tokio::select! {
        loaded = &mut load => match loaded {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                state.set_phase(Phase::Failed);
                server.abort();
                return Err(err.context("cannot load the model"));
            }
            Err(err) => {
                state.set_phase(Phase::Failed);
                server.abort();
                return Err(anyhow!("model loading crashed: {err}"));
            }
        },
        finished = &mut server => {
            // Shut down before the model finished loading.
            return finished.context("server task failed")?.context("server failed");
        }
    }
    drop(state);

    let deadline = async {
        if drain_signal.await.is_ok() {
            tokio::time::sleep(drain_timeout).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        finished = &mut server => finished.context("server task failed")?.context("server failed")?,
        () = deadline => {
            tracing::warn!(?drain_timeout, "drain timeout reached with requests still in flight; exiting");
            server.abort();
        }
    }
    tracing::info!("drained; bye");
    Ok(())
}
