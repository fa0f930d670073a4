//! The Connect protocol (v1) with the JSON codec, as envd speaks it to the E2B SDK: unary
//! calls are one JSON document each way (`application/json`), errors are
//! `{"code": "not_found", "message": ...}` with the status the Connect spec gives the code;
//! server streams are envelopes (a flags byte, a big-endian length, JSON) ending with an
//! end-of-stream envelope (flags `0x02`) that carries the error if the call failed.

use crate::http::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

/// Flags of an envelope that ends a stream.
const END_OF_STREAM: u8 = 0x02;

/// A Connect error.
#[derive(Debug)]
pub struct ConnectError {
    /// The Connect code (`not_found`, `already_exists`, `invalid_argument`, ...).
    pub code: &'static str,
    /// For people.
    pub message: String,
}

impl ConnectError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ConnectError { code, message: message.into() }
    }

    /// `unimplemented`: what SoulBox does not do, said so.
    pub fn unimplemented(what: &str) -> Self {
        ConnectError::new("unimplemented", format!("{what} is not supported by SoulBox"))
    }

    /// The end-of-stream envelope of a stream this error ends.
    pub fn end_of_stream(&self) -> Bytes {
        envelope(END_OF_STREAM, &json!({ "error": { "code": self.code, "message": self.message } }))
    }

    fn status(&self) -> StatusCode {
        match self.code {
            "invalid_argument" | "failed_precondition" | "out_of_range" => StatusCode::BAD_REQUEST,
            "unauthenticated" => StatusCode::UNAUTHORIZED,
            "permission_denied" => StatusCode::FORBIDDEN,
            "not_found" => StatusCode::NOT_FOUND,
            "already_exists" | "aborted" => StatusCode::CONFLICT,
            "resource_exhausted" => StatusCode::TOO_MANY_REQUESTS,
            "canceled" => StatusCode::from_u16(499).expect("a valid status"),
            "unimplemented" => StatusCode::NOT_IMPLEMENTED,
            "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            "deadline_exceeded" => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<ApiError> for ConnectError {
    fn from(error: ApiError) -> Self {
        let code = match &error {
            ApiError::BadRequest(_) => "invalid_argument",
            ApiError::Unauthorized(_) => "unauthenticated",
            ApiError::NotFound(_) | ApiError::Gone(_) => "not_found",
            ApiError::Conflict(_) => "already_exists",
            ApiError::TooLarge(_)
            | ApiError::RateLimited { .. }
            | ApiError::QuotaExceeded(_)
            | ApiError::BudgetExhausted { .. } => "resource_exhausted",
            ApiError::Busy(_) | ApiError::Unavailable(_) => "unavailable",
            ApiError::Timeout(_) => "deadline_exceeded",
            ApiError::CheckpointUnusable(_) | ApiError::Internal(_) => "internal",
        };
        if let ApiError::Internal(detail) = &error {
            tracing::error!(%detail, "an envd call failed");
        }
        ConnectError::new(code, error.to_string())
    }
}

impl From<soulbox_engine::SandboxError> for ConnectError {
    fn from(error: soulbox_engine::SandboxError) -> Self {
        ApiError::from(error).into()
    }
}

impl From<soulbox_engine::sandbox::FileError> for ConnectError {
    fn from(error: soulbox_engine::sandbox::FileError) -> Self {
        ApiError::from(error).into()
    }
}

impl IntoResponse for ConnectError {
    fn into_response(self) -> Response {
        let body = json!({ "code": self.code, "message": self.message }).to_string();
        (self.status(), [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

/// A unary call's request: the JSON document, absent fields at their defaults (proto3).
#[derive(Debug)]
pub struct Unary<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Unary<T> {
    type Rejection = ConnectError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|e| ConnectError::new("invalid_argument", format!("reading the request: {e}")))?;
        let bytes = if bytes.is_empty() { Bytes::from_static(b"{}") } else { bytes };
        serde_json::from_slice(&bytes)
            .map(Unary)
            .map_err(|e| ConnectError::new("invalid_argument", format!("the request message: {e}")))
    }
}

/// A unary call's successful response.
pub fn reply(message: impl Serialize) -> Response {
    match serde_json::to_string(&message) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => ConnectError::new("internal", format!("encoding the response: {e}")).into_response(),
    }
}

/// One envelope: `flags`, the length of `message`'s JSON (big-endian u32), the JSON.
pub fn envelope(flags: u8, message: &impl Serialize) -> Bytes {
    let json = serde_json::to_vec(message).expect("JSON values serialize");
    let mut bytes = Vec::with_capacity(5 + json.len());
    bytes.push(flags);
    bytes.extend_from_slice(&u32::try_from(json.len()).unwrap_or(u32::MAX).to_be_bytes());
    bytes.extend_from_slice(&json);
    Bytes::from(bytes)
}

/// A message envelope.
pub fn message(message: &impl Serialize) -> Bytes {
    envelope(0, message)
}

/// The end of a stream that succeeded.
pub fn end_of_stream() -> Bytes {
    envelope(END_OF_STREAM, &json!({}))
}

/// Reads envelopes out of a request stream's bytes as they arrive.
#[derive(Debug, Default)]
pub struct Envelopes {
    buffer: Vec<u8>,
}

impl Envelopes {
    /// The largest message taken (a stream's input chunk, a start).
    pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

    /// Adds `bytes`; returns the messages now complete (their JSON), in order. A compressed
    /// or oversized message is refused; an end-of-stream envelope is skipped.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Bytes>, ConnectError> {
        self.buffer.extend_from_slice(bytes);
        let mut messages = Vec::new();
        while self.buffer.len() >= 5 {
            let flags = self.buffer[0];
            let length = u32::from_be_bytes([self.buffer[1], self.buffer[2], self.buffer[3], self.buffer[4]]) as usize;
            if flags & 0x01 != 0 {
                return Err(ConnectError::new("invalid_argument", "compressed messages are not accepted"));
            }
            if length > Self::MAX_MESSAGE_BYTES {
                return Err(ConnectError::new("resource_exhausted", "a request message is too large"));
            }
            if self.buffer.len() < 5 + length {
                break;
            }
            let message: Vec<u8> = self.buffer.drain(..5 + length).skip(5).collect();
            if flags & END_OF_STREAM == 0 {
                messages.push(Bytes::from(message));
            }
        }
        Ok(messages)
    }

    /// Whether bytes of an unfinished envelope are left (a request cut short).
    pub fn is_partial(&self) -> bool {
        !self.buffer.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_are_flags_length_and_json() {
        assert_eq!(&message(&json!({"a": 1}))[..], b"\x00\x00\x00\x00\x07{\"a\":1}");
        assert_eq!(&end_of_stream()[..], b"\x02\x00\x00\x00\x02{}");
        let failed = ConnectError::new("not_found", "no such process").end_of_stream();
        assert_eq!(failed[0], END_OF_STREAM);
        assert!(std::str::from_utf8(&failed[5..]).unwrap().contains("\"not_found\""));
    }

    #[test]
    fn envelopes_are_read_as_they_arrive_whatever_the_chunking() {
        let stream = [message(&json!({"a": 1})), message(&json!({"b": 2})), end_of_stream()].concat();
        let mut envelopes = Envelopes::default();
        let mut got = Vec::new();
        for chunk in stream.chunks(3) {
            got.extend(envelopes.push(chunk).unwrap());
        }
        assert_eq!(got, vec![Bytes::from_static(b"{\"a\":1}"), Bytes::from_static(b"{\"b\":2}")]);
        assert!(!envelopes.is_partial());
        assert!(Envelopes::default().push(b"\x01\x00\x00\x00\x02{}").is_err(), "compressed");
        assert!(Envelopes::default().push(b"\x00\xff\xff\xff\xff").is_err(), "oversized");
    }

    #[test]
    fn api_errors_become_connect_codes_with_their_status() {
        let error = ConnectError::from(ApiError::NotFound("no such file".into()));
        assert_eq!((error.code, error.status()), ("not_found", StatusCode::NOT_FOUND));
        let error = ConnectError::from(ApiError::Conflict("exists".into()));
        assert_eq!((error.code, error.status()), ("already_exists", StatusCode::CONFLICT));
    }
}
