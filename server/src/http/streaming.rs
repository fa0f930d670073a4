//! Streaming events to a client: NDJSON (`Accept: application/x-ndjson`, one JSON object per
//! line) or server-sent events (`Accept: text/event-stream`, each named after the event's
//! `type`), for a cell's events and a process's alike. A failure after the stream started is
//! one last `failure` item with the error's code and message.

use super::ApiError;
use axum::body::Body;
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use std::convert::Infallible;

/// How the client wants events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Everything at the end, as one JSON value.
    Json,
    /// JSON lines as they happen.
    Ndjson,
    /// Server-sent events as they happen.
    Sse,
}

impl Delivery {
    /// What the `Accept` header asks for.
    pub fn of(headers: &HeaderMap) -> Self {
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if accept.contains("text/event-stream") {
            Delivery::Sse
        } else if accept.contains("application/x-ndjson") || accept.contains("application/jsonl") {
            Delivery::Ndjson
        } else {
            Delivery::Json
        }
    }
}

/// `items` as a streamed response (`delivery` other than JSON).
pub fn streamed<T, S>(delivery: Delivery, items: S) -> Response
where
    T: Serialize,
    S: Stream<Item = Result<T, ApiError>> + Send + 'static,
{
    match delivery {
        Delivery::Sse => Sse::new(items.map(|item| Ok::<_, Infallible>(sse_event(item)))).into_response(),
        _ => {
            let lines = items.map(|item| Ok::<_, Infallible>(ndjson_line(item)));
            ([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(lines)).into_response()
        }
    }
}

fn ndjson_line<T: Serialize>(item: Result<T, ApiError>) -> String {
    let mut line = match item {
        Ok(event) => serde_json::to_string(&event).unwrap_or_default(),
        Err(error) => failure_json(&error).to_string(),
    };
    line.push('\n');
    line
}

fn sse_event<T: Serialize>(item: Result<T, ApiError>) -> Event {
    match item {
        Ok(event) => {
            let data = serde_json::to_value(&event).unwrap_or_default();
            let kind = data["type"].as_str().unwrap_or("event").to_owned();
            Event::default().event(kind).data(data.to_string())
        }
        Err(error) => Event::default().event("failure").data(failure_json(&error).to_string()),
    }
}

fn failure_json(error: &ApiError) -> serde_json::Value {
    serde_json::json!({"type": "failure", "code": error.code(), "message": error.to_string()})
}
