//! Failures of fake API requests, answered as `meta/v1 Status` bodies with the code and reason a
//! real API server uses, so `kube::Client` turns them into `kube::Error::Api` as it would against
//! a cluster.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// A request the fake refuses, with the Kubernetes reason and HTTP code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} ({code}): {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `Status.reason` (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, ...).
    pub reason: &'static str,
    /// What went wrong, in words.
    pub message: String,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: String) -> Self {
        Self {
            code,
            reason,
            message,
        }
    }

    /// The object does not exist.
    pub fn not_found(plural: &str, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{plural} \"{name}\" not found"))
    }

    /// The path names no served resource.
    pub fn unknown_path(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    /// A create found an object of that name.
    pub fn already_exists(plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{plural} \"{name}\" already exists"),
        )
    }

    /// A write carried a stale `resourceVersion`, or server-side apply met another owner.
    pub fn conflict(message: String) -> Self {
        Self::new(409, "Conflict", message)
    }

    /// The object breaks a validation rule.
    pub fn invalid(message: String) -> Self {
        Self::new(422, "Invalid", message)
    }

    /// The request itself is malformed.
    pub fn bad_request(message: String) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// The method is not served on this path.
    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow method {method} on this resource"),
        )
    }

    /// A PATCH with a content type that names no patch type.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format: {content_type:?}"),
        )
    }

    /// The watch asked for a resource version older than the kept history.
    pub fn expired(version: u64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {version}"),
        )
    }

    /// The `Status` object describing this failure.
    pub fn status_body(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, axum::Json(self.status_body())).into_response()
    }
}
