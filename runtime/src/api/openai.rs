//! The OpenAI-compatible API: `POST /v1/embeddings` and `GET /v1/models`.
//!
//! Parses OpenAI's request shapes (text, texts, token ids, batches of token ids; see
//! `openai_input`), applies `dimensions` and `encoding_format`, and renders every error in
//! OpenAI's `{"error":{"message","type","param","code"}}` shape.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::openai_input::parse_input;
use super::{admit_and_read, parse_json, AppState};
use crate::error::ApiError;
use crate::model::pooling::normalize;

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
struct EmbeddingsRequest<'a> {
    /// Parsed afterwards with the request limits (see `openai_input`).
    #[serde(borrow)]
    input: &'a RawValue,
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

/// `dimensions`: keep the first `dims` values, and rescale to unit length when the model's own
/// output is normalized (so a shortened vector is what the model would normalize it to).
fn shorten(vector: &mut Vec<f32>, dims: usize, normalized: bool) {
    vector.truncate(dims);
    if normalized {
        normalize(vector);
    }
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
    request: Request,
) -> Result<Json<EmbeddingsResponse>, OpenAiError> {
    let body = admit_and_read(&state, request).await?;
    let request: EmbeddingsRequest = parse_json(&body.bytes)?;
    if let Some(model) = &request.model {
        state.check_model(model)?;
    }
    let engine = &body.engine;
    let dim = engine.info.dim;
    if let Some(d) = request.dimensions.filter(|&d| d == 0 || d > dim) {
        return Err(ApiError::invalid(
            format!("dimensions must be between 1 and {dim}, got {d}"),
            "dimensions",
        )
        .into());
    }
    let inputs = parse_input(request.input.get(), engine.input_limits())?;
    let result = engine.embed(&body.admitted, inputs).await?;
    let data = result
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, mut vector)| {
            if let Some(d) = request.dimensions {
                shorten(&mut vector, d, engine.info.normalized);
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
    let ready = state.engine().is_ok() || state.generator().is_ok();
    Json(json!({
        "object": "list",
        "data": [{
            "id": state.served_name,
            "object": "model",
            "created": state.created().unwrap_or(0),
            "owned_by": "kandle",
            "ready": ready,
        }],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn shortened_vectors_are_renormalized_exactly_when_the_model_normalizes() {
        let mut v = vec![0.6, 0.0, 0.8, 0.0];
        shorten(&mut v, 2, true);
        assert_eq!(v, vec![1.0, 0.0]);
        let mut raw = vec![3.0, 4.0, 5.0];
        shorten(&mut raw, 2, false);
        assert_eq!(raw, vec![3.0, 4.0]);
        let mut full = vec![3.0, 4.0];
        shorten(&mut full, 2, true);
        assert_eq!(full, vec![0.6, 0.8]);
    }
}
