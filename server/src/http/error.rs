//! [`ApiError`]: every failure the HTTP API reports, as JSON with a stable code.
//!
//! Clients see `{"error": {"code": "...", "message": "..."}}` with a message safe to show;
//! internal details go to the log (with the request's span), never into a response.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use soulbox_engine::sandbox::FileError;
use soulbox_engine::{BackendError, EngineError, SandboxError};

/// Seconds a client is asked to wait before retrying a refused request.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: bad JSON, wrong types, unknown fields, invalid values.
    #[error("{0}")]
    BadRequest(String),
    /// No API key, or one that is unknown or revoked.
    #[error("{0}")]
    Unauthorized(String),
    /// No such sandbox, context, file or route.
    #[error("{0}")]
    NotFound(String),
    /// Something already exists where it should not.
    #[error("{0}")]
    Conflict(String),
    /// The body is over the limit for this route.
    #[error("{0}")]
    TooLarge(String),
    /// Every execution slot is taken, or too many sandboxes are open: retry later.
    #[error("{0}")]
    Busy(String),
    /// A backend is not ready (runtimes missing).
    #[error("{0}")]
    Unavailable(String),
    /// A fault on our side; the details are logged.
    #[error("internal error")]
    Internal(String),
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: String,
}

impl ApiError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooLarge(_) => "payload_too_large",
            ApiError::Busy(_) => "busy",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "request failed");
        }
        let status = self.status();
        let body = Body { error: Detail { code: self.code(), message: self.to_string() } };
        let mut response = (status, Json(body)).into_response();
        if matches!(self, ApiError::Busy(_) | ApiError::Unavailable(_)) {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}

impl From<crate::database::DatabaseError> for ApiError {
    fn from(error: crate::database::DatabaseError) -> Self {
        ApiError::Internal(error.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::TooLarge("the request body is too large".into())
            }
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

impl From<BackendError> for ApiError {
    fn from(error: BackendError) -> Self {
        match error {
            BackendError::Busy { .. } => ApiError::Busy(error.to_string()),
            BackendError::Rejected(message) => ApiError::BadRequest(message),
            BackendError::Unavailable(message) => ApiError::Unavailable(message),
            BackendError::Internal(message) => ApiError::Internal(message),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        match error {
            EngineError::InvalidRequest(e) => ApiError::BadRequest(e.to_string()),
            EngineError::UnsupportedLanguage(_) => ApiError::BadRequest(error.to_string()),
            EngineError::Backend(e) => e.into(),
        }
    }
}

impl From<FileError> for ApiError {
    fn from(error: FileError) -> Self {
        match error {
            FileError::NotFound(_) => ApiError::NotFound(error.to_string()),
            FileError::AlreadyExists(_) => ApiError::Conflict(error.to_string()),
            FileError::InvalidPath { .. } | FileError::WrongKind { .. } | FileError::Escapes(_) => {
                ApiError::BadRequest(error.to_string())
            }
            FileError::Removed => ApiError::NotFound("the sandbox is gone".into()),
            FileError::Io { path, source } => ApiError::Internal(format!("{path}: {source}")),
        }
    }
}

impl From<SandboxError> for ApiError {
    fn from(error: SandboxError) -> Self {
        match error {
            SandboxError::NotFound(_) | SandboxError::ContextNotFound(_) => ApiError::NotFound(error.to_string()),
            SandboxError::Invalid(message) => ApiError::BadRequest(message),
            SandboxError::Full(message) => ApiError::Busy(message),
            SandboxError::Interrupted => ApiError::Unavailable(error.to_string()),
            SandboxError::Engine(e) => e.into(),
            SandboxError::File(e) => e.into(),
        }
    }
}
