//! [`ApiError`]: every failure the HTTP API reports, as JSON with a stable code.
//!
//! Clients see `{"error": {"code": "...", "message": "..."}}` with a message safe to show;
//! internal details go to the log (with the request's span), never into a response. Refusals
//! a client should retry (429 and 503) carry `Retry-After`.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use soulbox_engine::blobs::BlobError;
use soulbox_engine::sandbox::FileError;
use soulbox_engine::{BackendError, EngineError, SandboxError};
use std::time::Duration;

/// Seconds a client is asked to wait before retrying a refused request, unless the refusal
/// knows better (a rate limit knows when the next request is allowed).
pub const RETRY_AFTER_SECONDS: u64 = 1;

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
    /// The caller's API key is over its rate limit.
    #[error("{message}")]
    RateLimited {
        /// What happened.
        message: String,
        /// When to retry.
        retry_after: Duration,
    },
    /// The caller is over a quota (executions running at once, sandboxes open).
    #[error("{0}")]
    QuotaExceeded(String),
    /// The caller's tenant has spent its daily budget (execution seconds, sandbox hours).
    #[error("{message}")]
    BudgetExhausted {
        /// What is spent.
        message: String,
        /// When the budget renews.
        retry_after: Duration,
    },
    /// The server as a whole is at a limit (requests in flight, execution slots, sandboxes):
    /// retry later.
    #[error("{0}")]
    Busy(String),
    /// Producing the response took longer than the server's request timeout.
    #[error("{0}")]
    Timeout(String),
    /// A backend is not ready (runtimes missing).
    #[error("{0}")]
    Unavailable(String),
    /// The sandbox was lost when its server stopped (it had changed since its last
    /// checkpoint): 410, with why.
    #[error("{0}")]
    Gone(String),
    /// A sandbox's checkpoint failed its check (truncated, altered, from another build) and
    /// was not loaded; the sandbox stays as it was (paused).
    #[error("{0}")]
    CheckpointUnusable(String),
    /// A fault on our side; the details are logged.
    #[error("internal error")]
    Internal(String),
}

/// The code of an error response, kept in the response's extensions for the metrics.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// The message of an error response, kept in its extensions for a surface that words its
/// errors its own way (the E2B surface's `{"code": 404, "message": ...}`).
#[derive(Debug, Clone)]
pub struct ErrorMessage(pub String);

/// What every error response carries.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// An error's code and message.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable: `bad_request`, `unauthorized`, `not_found`, `conflict`,
    /// `payload_too_large`, `rate_limited`, `quota_exceeded`, `busy`, `unavailable`,
    /// `timeout`, `internal`, `budget_exhausted`, `gone`, `checkpoint_unusable`.
    pub code: &'static str,
    /// For people; safe to show.
    pub message: String,
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
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::QuotaExceeded(_) => "quota_exceeded",
            ApiError::BudgetExhausted { .. } => "budget_exhausted",
            ApiError::Busy(_) => "busy",
            ApiError::Timeout(_) => "timeout",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Gone(_) => "gone",
            ApiError::CheckpointUnusable(_) => "checkpoint_unusable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// How long a client should wait before retrying, for refusals worth retrying.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::RateLimited { retry_after, .. } | ApiError::BudgetExhausted { retry_after, .. } => {
                Some(*retry_after)
            }
            ApiError::QuotaExceeded(_) | ApiError::Busy(_) | ApiError::Unavailable(_) => {
                Some(Duration::from_secs(RETRY_AFTER_SECONDS))
            }
            _ => None,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } | ApiError::QuotaExceeded(_) | ApiError::BudgetExhausted { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::CheckpointUnusable(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(detail) => tracing::error!(%detail, "request failed"),
            ApiError::CheckpointUnusable(detail) => tracing::error!(%detail, "a checkpoint was refused"),
            _ => {}
        }
        let status = self.status();
        let body = ErrorBody { error: ErrorDetail { code: self.code(), message: self.to_string() } };
        let mut response = (status, Json(body)).into_response();
        response.extensions_mut().insert(ErrorCode(self.code()));
        response.extensions_mut().insert(ErrorMessage(self.to_string()));
        if let Some(wait) = self.retry_after() {
            // Whole seconds, rounded up.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<crate::database::DatabaseError> for ApiError {
    fn from(error: crate::database::DatabaseError) -> Self {
        if error.is_unreachable() {
            // The details (which host, which error) go to the log, not to the client.
            tracing::warn!(%error, "the database did not answer");
            return ApiError::Unavailable("the database did not answer; retry".into());
        }
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
            BackendError::NotCheckpointable(_) => ApiError::Conflict(error.to_string()),
            BackendError::BadCheckpoint(message) => ApiError::CheckpointUnusable(message),
            _ => ApiError::Internal(error.to_string()),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        match error {
            EngineError::InvalidRequest(e) => ApiError::BadRequest(e.to_string()),
            // A language only containers run, with no container backend: the service lacks it.
            EngineError::UnsupportedLanguage { backend, .. } => {
                if backend == Some(soulbox_engine::BackendKind::Wasm) {
                    ApiError::BadRequest(error.to_string())
                } else {
                    ApiError::Unavailable(error.to_string())
                }
            }
            EngineError::NoContexts { .. } => ApiError::BadRequest(error.to_string()),
            EngineError::NoMachines => ApiError::Unavailable(error.to_string()),
            EngineError::Backend(e) => e.into(),
            _ => ApiError::Internal(error.to_string()),
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
            FileError::NoSpace(_) => ApiError::TooLarge(error.to_string()),
            FileError::Io { path, source } => ApiError::Internal(format!("{path}: {source}")),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<SandboxError> for ApiError {
    fn from(error: SandboxError) -> Self {
        match error {
            SandboxError::NotFound(_)
            | SandboxError::ContextNotFound(_)
            | SandboxError::ProcessNotFound(_)
            | SandboxError::TemplateNotFound(_) => ApiError::NotFound(error.to_string()),
            SandboxError::Invalid(message) => ApiError::BadRequest(message),
            SandboxError::Exists(_) | SandboxError::ProcessEnded(_) | SandboxError::Paused(_) => {
                ApiError::Conflict(error.to_string())
            }
            SandboxError::Full(message) => ApiError::Busy(message),
            SandboxError::QuotaExceeded(message) => ApiError::QuotaExceeded(message),
            SandboxError::LimitReached(message) | SandboxError::Busy(message) => ApiError::Conflict(message),
            SandboxError::Interrupted => ApiError::Unavailable(error.to_string()),
            SandboxError::Engine(e) => e.into(),
            SandboxError::File(e) => e.into(),
            SandboxError::Lost { .. } => ApiError::Gone(error.to_string()),
            SandboxError::Checkpoint(e @ (BlobError::Corrupt { .. } | BlobError::Missing(_))) => {
                ApiError::CheckpointUnusable(e.to_string())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}
