//! Kubernetes probes and the Prometheus endpoint.
//!
//! `/healthz` answers 200 while the process serves HTTP and the model can answer: 503 once the
//! model thread has stopped or `--unhealthy-after-failures` batches in a row have failed, so the
//! liveness probe restarts the pod. `/readyz` answers 200 only once the model is loaded and warmed
//! up, while it is healthy, and not once draining has begun.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::{AppState, Phase};

pub async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match state.health_problem() {
        None => (StatusCode::OK, Json(json!({"status": "alive"}))),
        Some(reason) => unhealthy(reason),
    }
}

fn unhealthy(reason: String) -> (StatusCode, Json<Value>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "unhealthy", "reason": reason})),
    )
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if let Some(reason) = state.health_problem() {
        return unhealthy(reason);
    }
    let (status, word) = match state.phase() {
        Phase::Ready => (StatusCode::OK, "ready"),
        Phase::Loading => (StatusCode::SERVICE_UNAVAILABLE, "loading"),
        Phase::Draining => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
        Phase::Failed => (StatusCode::SERVICE_UNAVAILABLE, "failed"),
    };
    (status, Json(json!({"status": word})))
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}
