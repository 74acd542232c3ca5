//! KServe's Open Inference Protocol v2: server and model metadata, health, and `infer`.
//!
//! Texts come in as one BYTES tensor of shape `[N]` (or `[N, 1]`); embeddings go out as one FP32
//! tensor `[N, dim]` with row-major flattened data. Errors use v2's `{"error": "..."}` shape.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{ApiJson, AppState, Phase};
use crate::error::ApiError;
use crate::tokenize::Input;

/// An [`ApiError`] rendered the v2 way.
pub struct V2Error(ApiError);

impl From<ApiError> for V2Error {
    fn from(err: ApiError) -> Self {
        Self(err)
    }
}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        (self.0.status(), Json(json!({"error": self.0.to_string()}))).into_response()
    }
}

#[derive(Debug, Deserialize)]
pub struct InferRequest {
    id: Option<String>,
    inputs: Vec<InferInput>,
}

#[derive(Debug, Deserialize)]
struct InferInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    data: Value,
}

/// The texts of the request's single BYTES input.
fn texts(mut inputs: Vec<InferInput>) -> Result<Vec<Input>, ApiError> {
    if inputs.len() != 1 {
        return Err(ApiError::invalid(
            format!("expected exactly one input tensor, got {}", inputs.len()),
            "inputs",
        ));
    }
    let input = inputs.remove(0);
    if input.datatype != "BYTES" {
        return Err(ApiError::invalid(
            format!(
                "input {:?} has datatype {}, expected BYTES",
                input.name, input.datatype
            ),
            "datatype",
        ));
    }
    let valid_shape = match input.shape.as_slice() {
        [n] | [n, 1] => usize::try_from(*n).ok(),
        _ => None,
    };
    let Some(count) = valid_shape else {
        return Err(ApiError::invalid(
            format!("input shape {:?} must be [N] or [N, 1]", input.shape),
            "shape",
        ));
    };
    let mut flat = Vec::new();
    flatten(input.data, &mut flat)?;
    if flat.len() != count {
        return Err(ApiError::invalid(
            format!(
                "input shape {:?} says {count} elements but data has {}",
                input.shape,
                flat.len()
            ),
            "data",
        ));
    }
    Ok(flat)
}

fn flatten(data: Value, out: &mut Vec<Input>) -> Result<(), ApiError> {
    match data {
        Value::String(text) => out.push(Input::Text(text)),
        Value::Array(items) => {
            for item in items {
                flatten(item, out)?;
            }
        }
        other => {
            return Err(ApiError::invalid(
                format!("BYTES data must be strings, got {other}"),
                "data",
            ))
        }
    }
    Ok(())
}

pub async fn infer(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(request, _): ApiJson<InferRequest, V2Error>,
) -> Result<Json<InferResponse>, V2Error> {
    state.check_model(&name)?;
    let engine = state.engine()?;
    let _permit = engine.admit()?;
    let inputs = texts(request.inputs)?;
    let result = engine.embed(inputs).await?;
    let rows = result.vectors.len();
    Ok(Json(InferResponse {
        id: request.id,
        model_name: state.served_name.clone(),
        model_version: engine.info.version.clone(),
        outputs: [InferOutput {
            name: "embedding",
            datatype: "FP32",
            shape: [rows, engine.info.dim],
            data: result.vectors.into_iter().flatten().collect(),
        }],
    }))
}

/// The infer reply; typed so the f32 data serialize in their shortest f32 form.
#[derive(Serialize)]
pub struct InferResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    model_name: String,
    model_version: String,
    outputs: [InferOutput; 1],
}

#[derive(Serialize)]
struct InferOutput {
    name: &'static str,
    datatype: &'static str,
    shape: [usize; 2],
    data: Vec<f32>,
}

pub async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "kandle-runtime",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": [],
    }))
}

pub async fn model_metadata(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, V2Error> {
    state.check_model(&name)?;
    let engine = state.engine()?;
    Ok(Json(json!({
        "name": state.served_name,
        "versions": [engine.info.version],
        "platform": "kandle-candle",
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "embedding", "datatype": "FP32", "shape": [-1, engine.info.dim]}],
    })))
}

pub async fn model_ready(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, V2Error> {
    state.check_model(&name)?;
    state.engine()?;
    Ok(StatusCode::OK)
}

pub async fn live() -> Json<Value> {
    Json(json!({"live": true}))
}

pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let ready = state.phase() == Phase::Ready;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({"ready": ready})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(shape: Value, datatype: &str, data: Value) -> Vec<InferInput> {
        serde_json::from_value(
            json!([{"name": "text", "shape": shape, "datatype": datatype, "data": data}]),
        )
        .unwrap()
    }

    #[test]
    fn bytes_inputs_become_texts() {
        let parsed = texts(input(json!([2]), "BYTES", json!(["a", "b"]))).unwrap();
        assert_eq!(
            parsed,
            vec![Input::Text("a".into()), Input::Text("b".into())]
        );
        let nested = texts(input(json!([2, 1]), "BYTES", json!([["a"], ["b"]]))).unwrap();
        assert_eq!(nested.len(), 2);
    }

    #[test]
    fn mismatched_tensors_are_rejected() {
        assert!(texts(input(json!([3]), "BYTES", json!(["a", "b"]))).is_err());
        assert!(texts(input(json!([1]), "FP32", json!([1.0]))).is_err());
        assert!(texts(input(json!([1]), "BYTES", json!([1]))).is_err());
        assert!(texts(input(json!([1, 2, 3]), "BYTES", json!(["a"]))).is_err());
        assert!(texts(Vec::new()).is_err());
    }
}
