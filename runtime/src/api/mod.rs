//! The HTTP edge: the router, the shared state, JSON extraction and request metrics.
//!
//! All APIs share one port. An inference request is admitted before its body is read
//! ([`admit_and_read`]), and its errors come out in the calling API's own error shape (never
//! axum's default text). Inference and model routes are counted in `kandle_requests_total` and
//! timed; probes and `/metrics` are not.

mod generate;
mod health;
mod openai;
mod openai_input;
mod v2;
mod v2_binary;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;

use crate::engine::{Admitted, Engine};
use crate::error::ApiError;
use crate::generate::Generator;
use crate::metrics::Metrics;

/// Where the server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Loading = 0,
    Ready = 1,
    Draining = 2,
    Failed = 3,
}

pub struct Shared {
    pub served_name: String,
    pub metrics: Arc<Metrics>,
    engine: OnceLock<Arc<Engine>>,
    generator: OnceLock<Arc<Generator>>,
    phase: AtomicU8,
}

#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(served_name: String, metrics: Arc<Metrics>) -> Self {
        Self(Arc::new(Shared {
            served_name,
            metrics,
            engine: OnceLock::new(),
            generator: OnceLock::new(),
            phase: AtomicU8::new(Phase::Loading as u8),
        }))
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Loading,
            1 => Phase::Ready,
            2 => Phase::Draining,
            _ => Phase::Failed,
        }
    }

    /// Publishes the loaded engine; ignored once draining has begun.
    pub fn set_ready(&self, engine: Engine) {
        let _ = self.engine.set(Arc::new(engine));
        self.mark_ready();
    }

    /// Publishes the loaded generation engine; ignored once draining has begun.
    pub fn set_ready_generator(&self, generator: Generator) {
        let _ = self.generator.set(Arc::new(generator));
        self.mark_ready();
    }

    fn mark_ready(&self) {
        let _ = self.phase.compare_exchange(
            Phase::Loading as u8,
            Phase::Ready as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }

    /// Why the server cannot serve: the model thread stopped or keeps failing. `None` while
    /// loading, since a loading server is alive.
    pub fn health_problem(&self) -> Option<String> {
        match (self.engine.get(), self.generator.get()) {
            (Some(engine), _) => engine.health_problem(),
            (_, Some(generator)) => generator.health_problem(),
            _ => None,
        }
    }

    /// The engine, if requests may use it now.
    pub fn engine(&self) -> Result<Arc<Engine>, ApiError> {
        match self.phase() {
            Phase::Draining => Err(ApiError::Draining),
            Phase::Loading | Phase::Failed => Err(ApiError::NotReady),
            Phase::Ready => match (self.engine.get(), self.generator.get()) {
                (Some(engine), _) => Ok(engine.clone()),
                (_, Some(_)) => Err(ApiError::WrongTask(format!(
                    "`{}` is a text generation model: use /v1/chat/completions or \
                     /v1/completions",
                    self.served_name
                ))),
                _ => Err(ApiError::NotReady),
            },
        }
    }

    /// The generation engine, if requests may use it now.
    pub fn generator(&self) -> Result<Arc<Generator>, ApiError> {
        match self.phase() {
            Phase::Draining => Err(ApiError::Draining),
            Phase::Loading | Phase::Failed => Err(ApiError::NotReady),
            Phase::Ready => match (self.generator.get(), self.engine.get()) {
                (Some(generator), _) => Ok(generator.clone()),
                (_, Some(_)) => Err(ApiError::WrongTask(format!(
                    "`{}` is an embedding model: use /v1/embeddings",
                    self.served_name
                ))),
                _ => Err(ApiError::NotReady),
            },
        }
    }

    /// When the served model finished loading (OpenAI's `created`), once it has.
    pub fn created(&self) -> Option<u64> {
        match (self.engine.get(), self.generator.get()) {
            (Some(engine), _) => Some(engine.info.created),
            (_, Some(generator)) => Some(generator.info.created),
            _ => None,
        }
    }

    /// Checks that `name` is the served model.
    pub fn check_model(&self, name: &str) -> Result<(), ApiError> {
        if name == self.served_name {
            Ok(())
        } else {
            Err(ApiError::UnknownModel(
                name.to_owned(),
                self.served_name.clone(),
            ))
        }
    }
}

pub fn router(state: AppState) -> Router {
    let apis = Router::new()
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/chat/completions", post(generate::chat_completions))
        .route("/v1/completions", post(generate::completions))
        .route("/v1/models", get(openai::models))
        .route("/v2", get(v2::server_metadata))
        .route("/v2/models/{name}", get(v2::model_metadata))
        .route("/v2/models/{name}/ready", get(v2::model_ready))
        .route("/v2/models/{name}/infer", post(v2::infer))
        .route_layer(middleware::from_fn_with_state(state.clone(), track));
    Router::new()
        .merge(apis)
        .route("/v2/health/live", get(v2::live))
        .route("/v2/health/ready", get(v2::ready))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found(request: Request) -> Response {
    let message = format!("no route for {} {}", request.method(), request.uri().path());
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

/// Counts and times each API request by its route template.
async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let inference =
        route == "/v1/embeddings" || route.ends_with("/completions") || route.ends_with("/infer");
    let in_flight = inference.then(|| InFlight::enter(&state.metrics));
    let started = Instant::now();
    let response = next.run(request).await;
    drop(in_flight);
    state.metrics.record_request(
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Counts a request in `kandle_requests_in_flight` until dropped, also when the client goes away
/// and the request's future is dropped midway.
struct InFlight(prometheus_client::metrics::gauge::Gauge);

impl InFlight {
    fn enter(metrics: &Metrics) -> Self {
        metrics.in_flight.inc();
        Self(metrics.in_flight.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// An engine that admits requests before their body is read.
pub trait Admits {
    fn admit(&self, content_length: Option<u64>) -> Result<Admitted, ApiError>;
    fn max_body_bytes(&self) -> usize;
    fn body_timeout(&self) -> Duration;
}

impl Admits for Engine {
    fn admit(&self, content_length: Option<u64>) -> Result<Admitted, ApiError> {
        Engine::admit(self, content_length)
    }
    fn max_body_bytes(&self) -> usize {
        Engine::max_body_bytes(self)
    }
    fn body_timeout(&self) -> Duration {
        Engine::body_timeout(self)
    }
}

impl Admits for Generator {
    fn admit(&self, content_length: Option<u64>) -> Result<Admitted, ApiError> {
        Generator::admit(self, content_length)
    }
    fn max_body_bytes(&self) -> usize {
        Generator::max_body_bytes(self)
    }
    fn body_timeout(&self) -> Duration {
        Generator::body_timeout(self)
    }
}

/// An admitted request's body, read after admission within the size limit and body timeout.
pub struct AdmittedBody<E = Engine> {
    pub engine: Arc<E>,
    pub admitted: Admitted,
    pub headers: HeaderMap,
    pub bytes: Bytes,
}

/// Admits the request (503 while loading or draining, 429 when full, 413 for an announced body
/// over the limit), then reads its body (413 over the limit, 408 when too slow).
pub async fn admit_and_read(state: &AppState, request: Request) -> Result<AdmittedBody, ApiError> {
    read_admitted(state.engine()?, request).await
}

/// [`admit_and_read`] for a given engine.
pub async fn read_admitted<E: Admits>(
    engine: Arc<E>,
    request: Request,
) -> Result<AdmittedBody<E>, ApiError> {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let admitted = engine.admit(announced)?;
    let (parts, body) = request.into_parts();
    let limited = Limited::new(body, engine.max_body_bytes());
    let timeout = engine.body_timeout();
    let collected = tokio::time::timeout(timeout, limited.collect())
        .await
        .map_err(|_| ApiError::BodyTimeout(timeout))?
        .map_err(|err| {
            if err.downcast_ref::<LengthLimitError>().is_some() {
                ApiError::BodyTooLarge
            } else {
                ApiError::InvalidJson(format!("cannot read the request body: {err}"))
            }
        })?;
    Ok(AdmittedBody {
        engine,
        admitted,
        headers: parts.headers,
        bytes: collected.to_bytes(),
    })
}

/// Deserializes a JSON body (borrowing from it where the type allows).
pub fn parse_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|err| ApiError::InvalidJson(format!("invalid request body: {err}")))
}
