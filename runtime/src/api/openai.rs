//! The OpenAI-compatible API: `POST /v1/embeddings` and `GET /v1/models`.
//!
//! Parses OpenAI's request shapes (text, texts, token ids, batches of token ids), applies
//! `dimensions` and `encoding_format`, and renders every error in OpenAI's
//! `{"error":{"message","type","param","code"}}` shape.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{ApiJson, AppState};
use crate::error::ApiError;
use crate::model::pooling::normalize;
use crate::tokenize::Input;

/// An [`ApiError`] rendered the OpenAI way.
pub struct OpenAiError(ApiError);

impl From<ApiError> for OpenAiError {
    fn from(err: ApiError) -> Self {
        Self(err)
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let kind = match status {
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        };
        let body = json!({"error": {
            "message": self.0.to_string(),
            "type": kind,
            "param": self.0.param(),
            "code": self.0.code(),
        }});
        let mut response = (status, Json(body)).into_response();
        if matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    #[default]
    Float,
    Base64,
}

#[derive(Debug, Deserialize)]
pub struct EmbeddingsRequest {
    input: Value,
    model: Option<String>,
    #[serde(default)]
    encoding_format: EncodingFormat,
    dimensions: Option<usize>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Vector {
    Float(Vec<f32>),
    Base64(String),
}

/// OpenAI's `input`: a string, strings, token ids, or lists of token ids.
fn parse_input(value: Value) -> Result<Vec<Input>, ApiError> {
    let bad = || {
        ApiError::invalid(
            "input must be a string, an array of strings, an array of token ids or an array of arrays of token ids",
            "input",
        )
    };
    let token = |v: &Value| {
        v.as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(bad)
    };
    match value {
        Value::String(text) => Ok(vec![Input::Text(text)]),
        Value::Array(items) => match items.first() {
            None => Err(ApiError::invalid("input must not be empty", "input")),
            Some(Value::String(_)) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(text) => Ok(Input::Text(text)),
                    _ => Err(bad()),
                })
                .collect(),
            Some(Value::Number(_)) => Ok(vec![Input::Ids(
                items.iter().map(token).collect::<Result<_, _>>()?,
            )]),
            Some(Value::Array(_)) => items
                .iter()
                .map(|v| match v {
                    Value::Array(ids) => {
                        Ok(Input::Ids(ids.iter().map(token).collect::<Result<_, _>>()?))
                    }
                    _ => Err(bad()),
                })
                .collect(),
            Some(_) => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// `dimensions`: keep the first `dims` values and rescale to unit length.
fn shorten(vector: &mut Vec<f32>, dims: usize) {
    vector.truncate(dims);
    normalize(vector);
}

fn encode(vector: Vec<f32>, format: EncodingFormat) -> Vector {
    match format {
        EncodingFormat::Float => Vector::Float(vector),
        EncodingFormat::Base64 => {
            let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
            Vector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }
}

pub async fn embeddings(
    State(state): State<AppState>,
    ApiJson(request, _): ApiJson<EmbeddingsRequest, OpenAiError>,
) -> Result<Json<EmbeddingsResponse>, OpenAiError> {
    if let Some(model) = &request.model {
        state.check_model(model)?;
    }
    let engine = state.engine()?;
    let _permit = engine.admit()?;
    let inputs = parse_input(request.input)?;
    let dim = engine.info.dim;
    match request.dimensions {
        Some(d) if d == 0 || d > dim => {
            return Err(ApiError::invalid(
                format!("dimensions must be between 1 and {dim}, got {d}"),
                "dimensions",
            )
            .into())
        }
        _ => {}
    }
    let result = engine.embed(inputs).await?;
    let dimensions = request.dimensions.filter(|&d| d < dim);
    let data = result
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, mut vector)| {
            if let Some(d) = dimensions {
                shorten(&mut vector, d);
            }
            EmbeddingData {
                object: "embedding",
                index,
                embedding: encode(vector, request.encoding_format),
            }
        })
        .collect();
    Ok(Json(EmbeddingsResponse {
        object: "list",
        data,
        model: state.served_name.clone(),
        usage: Usage {
            prompt_tokens: result.prompt_tokens,
            total_tokens: result.prompt_tokens,
        },
    }))
}

/// The embeddings reply; typed so the f32 vectors serialize in their shortest f32 form.
#[derive(Serialize)]
pub struct EmbeddingsResponse {
    object: &'static str,
    data: Vec<EmbeddingData>,
    model: String,
    usage: Usage,
}

#[derive(Serialize)]
struct EmbeddingData {
    object: &'static str,
    index: usize,
    embedding: Vector,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

pub async fn models(State(state): State<AppState>) -> Json<Value> {
    let engine = state.engine().ok();
    Json(json!({
        "object": "list",
        "data": [{
            "id": state.served_name,
            "object": "model",
            "created": engine.as_ref().map_or(0, |e| e.info.created),
            "owned_by": "kandle",
            "ready": engine.is_some(),
        }],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_input_shapes_parse() {
        assert_eq!(
            parse_input(json!("hi")).unwrap(),
            vec![Input::Text("hi".into())]
        );
        assert_eq!(parse_input(json!(["a", "b"])).unwrap().len(), 2);
        assert_eq!(
            parse_input(json!([101, 7592, 102])).unwrap(),
            vec![Input::Ids(vec![101, 7592, 102])]
        );
        assert_eq!(parse_input(json!([[101], [102, 103]])).unwrap().len(), 2);
    }

    #[test]
    fn wrong_input_types_are_rejected() {
        for bad in [
            json!(42),
            json!(null),
            json!({"text": "a"}),
            json!(["a", 1]),
            json!([-1]),
            json!([1.5]),
            json!([[1], "a"]),
            json!([true]),
        ] {
            let err = parse_input(bad.clone()).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{bad}");
        }
        assert_eq!(
            parse_input(json!([])).unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn base64_is_little_endian_f32() {
        let Vector::Base64(text) = encode(vec![1.0, -2.5], EncodingFormat::Base64) else {
            panic!("expected base64");
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap();
        assert_eq!(&bytes[..4], &1.0f32.to_le_bytes());
        assert_eq!(&bytes[4..], &(-2.5f32).to_le_bytes());
    }

    #[test]
    fn shortened_vectors_have_unit_length() {
        let mut v = vec![0.6, 0.0, 0.8, 0.0];
        shorten(&mut v, 2);
        assert_eq!(v, vec![1.0, 0.0]);
    }
}
