//! The errors a request can end in, and the one place they map to an HTTP status.
//!
//! Everything below the HTTP edge returns [`ApiError`]; each API flavour (OpenAI, v2) wraps it
//! in its own `IntoResponse` type that only decides the body's shape.

use axum::http::StatusCode;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// The body is not valid JSON or does not have the expected fields and types.
    #[error("{0}")]
    InvalidJson(String),
    /// The body is well-formed but its content cannot be served (empty input, bad option).
    #[error("{message}")]
    InvalidInput {
        message: String,
        param: Option<&'static str>,
    },
    #[error("the model `{0}` does not exist; this server serves `{1}`")]
    UnknownModel(String, String),
    #[error("input {index} has {tokens} tokens, more than the limit of {limit} tokens (the server truncates only when started with --truncate)")]
    InputTooLong {
        index: usize,
        tokens: usize,
        limit: usize,
    },
    #[error("input {index} has more than {limit} token ids, the limit (the server truncates only when started with --truncate)")]
    TooManyIds { index: usize, limit: usize },
    #[error("this model's context is {limit} tokens, but the prompt has {prompt} tokens and max_tokens asks for {requested} more; lower max_tokens to at most {} or shorten the prompt", limit.saturating_sub(*prompt))]
    ContextLength {
        prompt: usize,
        requested: usize,
        limit: usize,
    },
    /// The route belongs to another task than the served model's.
    #[error("{0}")]
    WrongTask(String),
    #[error("the request body is larger than the server accepts")]
    BodyTooLarge,
    #[error("{0}; retry later")]
    Overloaded(String),
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(std::time::Duration),
    #[error("the request did not finish within {0:?}")]
    Timeout(std::time::Duration),
    #[error("the model is still loading")]
    NotReady,
    #[error("the server is shutting down")]
    Draining,
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: &'static str) -> Self {
        Self::InvalidInput {
            message: message.into(),
            param: Some(param),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidJson(_)
            | Self::InvalidInput { .. }
            | Self::ContextLength { .. }
            | Self::WrongTask(_) => StatusCode::BAD_REQUEST,
            Self::UnknownModel(..) => StatusCode::NOT_FOUND,
            Self::InputTooLong { .. } | Self::TooManyIds { .. } | Self::BodyTooLarge => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::Overloaded(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::NotReady | Self::Draining => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short machine-readable code (OpenAI's `code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalid_json",
            Self::InvalidInput { .. } => "invalid_input",
            Self::UnknownModel(..) => "model_not_found",
            Self::InputTooLong { .. } | Self::TooManyIds { .. } | Self::ContextLength { .. } => {
                "context_length_exceeded"
            }
            Self::WrongTask(_) => "unsupported_task",
            Self::BodyTooLarge => "body_too_large",
            Self::Overloaded(_) => "rate_limit_exceeded",
            Self::Timeout(_) => "timeout",
            Self::BodyTimeout(_) => "body_timeout",
            Self::NotReady => "model_loading",
            Self::Draining => "shutting_down",
            Self::Internal(_) => "internal_error",
        }
    }

    /// The request field the error is about, when there is one.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            Self::InvalidInput { param, .. } => *param,
            Self::UnknownModel(..) => Some("model"),
            Self::InputTooLong { .. } | Self::TooManyIds { .. } => Some("input"),
            Self::ContextLength { .. } => Some("max_tokens"),
            _ => None,
        }
    }
}
