//! KServe's Open Inference Protocol v2: server and model metadata, health, and `infer`.
//!
//! Texts come in as one BYTES tensor of shape `[N]` (or `[N, 1]`); embeddings go out as one FP32
//! tensor `[N, dim]` with row-major flattened data, as JSON or in the binary tensor data
//! extension (see `v2_binary`). Errors use v2's `{"error": "..."}` shape.

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::v2_binary::{binary_texts, fp32_bytes, json_texts, split_body, HEADER_LENGTH};
use super::{admit_and_read, parse_json, AppState, Phase};
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
struct InferRequest<'a> {
    id: Option<String>,
    #[serde(borrow)]
    inputs: Vec<InferInput<'a>>,
    outputs: Option<Vec<RequestedOutput>>,
    #[serde(default)]
    parameters: RequestParameters,
}

#[derive(Debug, Deserialize)]
struct InferInput<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    /// Parsed afterwards with the request limits.
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    parameters: InputParameters,
}

#[derive(Debug, Default, Deserialize)]
struct InputParameters {
    binary_data_size: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
struct RequestParameters {
    #[serde(default)]
    binary_data_output: bool,
}

#[derive(Debug, Deserialize)]
struct RequestedOutput {
    name: String,
    #[serde(default)]
    parameters: OutputParameters,
}

#[derive(Debug, Default, Deserialize)]
struct OutputParameters {
    binary_data: Option<bool>,
}

/// The texts of the request's single BYTES input, from its JSON `data` or its binary data.
fn texts(
    mut inputs: Vec<InferInput>,
    binary: &[u8],
    max_inputs: usize,
) -> Result<Vec<Input>, ApiError> {
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
    let flat = match (input.data, input.parameters.binary_data_size) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                format!("input {:?} has both data and binary_data_size", input.name),
                "data",
            ))
        }
        (Some(data), None) => json_texts(data.get(), max_inputs)?,
        (None, Some(size)) if size == binary.len() => binary_texts(binary, max_inputs)?,
        (None, Some(size)) => {
            return Err(ApiError::invalid(
                format!(
                    "input {:?} has binary_data_size {size} but {} bytes follow the JSON header",
                    input.name,
                    binary.len()
                ),
                "binary_data_size",
            ))
        }
        (None, None) => {
            return Err(ApiError::invalid(
                format!(
                    "input {:?} has neither data nor parameters.binary_data_size",
                    input.name
                ),
                "data",
            ))
        }
    };
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

/// Whether the `embedding` output goes out as binary data; an unknown output name is an error.
fn binary_output(request: &InferRequest) -> Result<bool, ApiError> {
    let mut binary = request.parameters.binary_data_output;
    for output in request.outputs.iter().flatten() {
        if output.name != OUTPUT {
            return Err(ApiError::invalid(
                format!(
                    "unknown output {:?}; this model has one output, {OUTPUT:?}",
                    output.name
                ),
                "outputs",
            ));
        }
        if let Some(flag) = output.parameters.binary_data {
            binary = flag;
        }
    }
    Ok(binary)
}

const OUTPUT: &str = "embedding";

pub async fn infer(
    State(state): State<AppState>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, V2Error> {
    state.check_model(&name)?;
    let body = admit_and_read(&state, request).await?;
    let (json, binary) = split_body(&body.headers, &body.bytes)?;
    let request: InferRequest = parse_json(json)?;
    let engine = &body.engine;
    let binary_out = binary_output(&request)?;
    let inputs = texts(request.inputs, binary, engine.input_limits().max_inputs)?;
    let result = engine.embed(&body.admitted, inputs).await?;
    let shape = [result.vectors.len(), engine.info.dim];
    let mut reply = InferResponse {
        id: request.id,
        model_name: state.served_name.clone(),
        model_version: engine.info.version.clone(),
        outputs: [InferOutput {
            name: OUTPUT,
            datatype: "FP32",
            shape,
            data: None,
            parameters: None,
        }],
    };
    if !binary_out {
        reply.outputs[0].data = Some(result.vectors.into_iter().flatten().collect());
        return Ok(Json(reply).into_response());
    }
    let data = fp32_bytes(&result.vectors);
    reply.outputs[0].parameters = Some(json!({"binary_data_size": data.len()}));
    let mut bytes = serde_json::to_vec(&reply)
        .map_err(|err| ApiError::Internal(format!("cannot encode the reply: {err}")))?;
    let header_length = bytes.len();
    bytes.extend_from_slice(&data);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                HeaderName::from_static(HEADER_LENGTH),
                header_length.to_string(),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// The infer reply; typed so the f32 data serialize in their shortest f32 form.
#[derive(Serialize)]
struct InferResponse {
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
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Vec<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
}

pub async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "kandle-runtime",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
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

pub async fn live(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match state.health_problem() {
        None => (StatusCode::OK, Json(json!({"live": true}))),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"live": false, "reason": reason})),
        ),
    }
}

pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let ready = state.phase() == Phase::Ready && state.health_problem().is_none();
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

    fn request(json: &str) -> InferRequest<'_> {
        serde_json::from_str(json).unwrap()
    }

    fn input(shape: &str, datatype: &str, data: &str) -> String {
        format!(
            r#"{{"inputs":[{{"name":"text","shape":{shape},"datatype":"{datatype}","data":{data}}}]}}"#
        )
    }

    #[test]
    fn bytes_inputs_become_texts() {
        let json = input("[2]", "BYTES", r#"["a", "b"]"#);
        let parsed = texts(request(&json).inputs, &[], 8).unwrap();
        assert_eq!(
            parsed,
            vec![Input::Text("a".into()), Input::Text("b".into())]
        );
        let json = input("[2, 1]", "BYTES", r#"[["a"], ["b"]]"#);
        assert_eq!(texts(request(&json).inputs, &[], 8).unwrap().len(), 2);
    }

    #[test]
    fn mismatched_tensors_are_rejected() {
        for json in [
            input("[3]", "BYTES", r#"["a", "b"]"#),
            input("[1]", "FP32", "[1.0]"),
            input("[1]", "BYTES", "[1]"),
            input("[1, 2, 3]", "BYTES", r#"["a"]"#),
            r#"{"inputs":[]}"#.to_owned(),
            r#"{"inputs":[{"name":"t","shape":[1],"datatype":"BYTES"}]}"#.to_owned(),
        ] {
            assert!(texts(request(&json).inputs, &[], 8).is_err(), "{json}");
        }
    }

    #[test]
    fn binary_inputs_must_match_their_announced_size() {
        let json = r#"{"inputs":[{"name":"t","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":6}}]}"#;
        let data = [&2u32.to_le_bytes()[..], b"hi"].concat();
        assert_eq!(
            texts(request(json).inputs, &data, 8).unwrap(),
            vec![Input::Text("hi".into())]
        );
        let err = texts(request(json).inputs, &data[..5], 8).unwrap_err();
        assert!(err.to_string().contains("binary_data_size 6"), "{err}");
    }

    #[test]
    fn outputs_are_binary_when_asked() {
        let plain = request(r#"{"inputs":[]}"#);
        assert!(!binary_output(&plain).unwrap());
        let all = request(r#"{"inputs":[],"parameters":{"binary_data_output":true}}"#);
        assert!(binary_output(&all).unwrap());
        let one = request(
            r#"{"inputs":[],"outputs":[{"name":"embedding","parameters":{"binary_data":true}}]}"#,
        );
        assert!(binary_output(&one).unwrap());
        let unknown = request(r#"{"inputs":[],"outputs":[{"name":"logits"}]}"#);
        assert!(binary_output(&unknown).is_err());
    }
}
