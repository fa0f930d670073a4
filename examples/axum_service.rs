//! An axum service that embeds SoulBox to offer a code tool: `POST /run` with
//! `{"language": "python", "code": "..."}` runs the code in a fresh WebAssembly sandbox and
//! answers with its output, outcome and duration.
//!
//! ```sh
//! cargo run --release -p soulbox-examples --example axum-service -- 127.0.0.1:8080
//! curl -s localhost:8080/run -H 'content-type: application/json' \
//!      -d '{"language": "python", "code": "print(sum(range(10)))"}'
//! ```
//!
//! The engine is the only SoulBox type the service holds: it is cheap to clone, validates each
//! request, and bounds concurrent work itself (a full pool is a clean 503 here, never a queue
//! without end).

#![forbid(unsafe_code)]

mod common;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use soulbox_engine::{Engine, EngineError, ExecRequest, Language, Limits};
use std::time::Duration;

/// What a client sends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Run {
    language: Language,
    code: String,
}

/// The service's routes over an engine.
fn app(engine: Engine) -> Router {
    Router::new().route("/run", post(run)).with_state(engine)
}

async fn run(State(engine): State<Engine>, Json(run): Json<Run>) -> (StatusCode, Json<Value>) {
    // This service's own policy: two seconds and 256 MiB per run.
    let limits = Limits { deadline: Duration::from_secs(2), memory_bytes: 256 << 20, ..Limits::default() };
    let request = ExecRequest::new(run.language, run.code).with_limits(limits);
    match engine.execute(request).await {
        Ok(result) => (
            StatusCode::OK,
            Json(json!({
                "stdout": result.stdout,
                "stderr": result.stderr,
                "outcome": result.outcome,
                "duration_ms": result.duration.as_secs_f64() * 1e3,
            })),
        ),
        Err(error) => {
            let status = match &error {
                _ if error.is_busy() => StatusCode::SERVICE_UNAVAILABLE,
                EngineError::InvalidRequest(_) | EngineError::UnsupportedLanguage { .. } => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (status, Json(json!({"error": error.to_string()})))
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let address = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8080".into());
    let engine = common::wasm_engine().await?;
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(engine)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn post(app: &Router, body: Value) -> (StatusCode, Value) {
        let request = axum::http::Request::post("/run")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn the_service_runs_code_and_refuses_what_it_cannot() {
        let app = app(common::wasm_engine().await.expect("runtimes installed"));
        let (status, body) = post(&app, json!({"language": "python", "code": "print(sum(range(10)))"})).await;
        assert_eq!(
            (status, body["stdout"].as_str(), body["outcome"].as_str()),
            (StatusCode::OK, Some("45\n"), Some("completed"))
        );
        let (status, body) = post(&app, json!({"language": "js", "code": "while (true) {}"})).await;
        assert_eq!((status, body["outcome"].as_str()), (StatusCode::OK, Some("deadline_exceeded")), "{body}");
        let (status, body) = post(&app, json!({"language": "go", "code": "package main"})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "no backend here runs Go: {body}");
    }
}
