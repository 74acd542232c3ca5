//! The HTTP edge: the router, the shared state, JSON extraction and request metrics.
//!
//! All APIs share one port. Bodies are parsed by [`ApiJson`], whose rejections come out in the
//! calling API's own error shape (never axum's default 415/422 text). Inference and model routes
//! are counted in `kandle_requests_total` and timed; probes and `/metrics` are not.

mod health;
mod openai;
mod v2;

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{FromRequest, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;

use crate::engine::Engine;
use crate::error::ApiError;
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

    /// The engine, if requests may use it now.
    pub fn engine(&self) -> Result<Arc<Engine>, ApiError> {
        match self.phase() {
            Phase::Draining => Err(ApiError::Draining),
            Phase::Loading | Phase::Failed => Err(ApiError::NotReady),
            Phase::Ready => self.engine.get().cloned().ok_or(ApiError::NotReady),
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
    let inference = route == "/v1/embeddings" || route.ends_with("/infer");
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

/// A JSON body whose rejection is the API flavour `F`'s error.
pub struct ApiJson<T, F>(pub T, PhantomData<F>);

impl<S, T, F> FromRequest<S> for ApiJson<T, F>
where
    S: Send + Sync,
    T: DeserializeOwned,
    F: From<ApiError> + IntoResponse,
{
    type Rejection = F;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => ApiError::BodyTooLarge,
                    _ => ApiError::InvalidJson(rejection.body_text()),
                })?;
        serde_json::from_slice(&bytes)
            .map(|value| Self(value, PhantomData))
            .map_err(|err| {
                F::from(ApiError::InvalidJson(format!(
                    "invalid request body: {err}"
                )))
            })
    }
}
