//! Router tests: the whole app driven with `oneshot`, over the real engine.

use super::*;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use soulbox_runtimes_wasm::{WasmBackend, WasmConfig};
use std::sync::OnceLock;
use tower::ServiceExt;

fn engine() -> Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let backend = WasmBackend::open(WasmConfig::default()).expect("runtimes installed");
            backend.prepare().expect("modules compile");
            Engine::builder().backend(backend).build()
        })
        .clone()
}

async fn test_app() -> Router {
    let root = std::env::temp_dir().join(format!("soulbox-http-test-{}", std::process::id()));
    let config = soulbox_engine::SandboxesConfig { workspace_root: root.clone(), ..Default::default() };
    let sandboxes = Sandboxes::new(engine(), config).expect("a registry");
    let db_path = root.join(format!("db-{}.sqlite", NEXT_DB.fetch_add(1, Ordering::Relaxed)));
    let db = crate::database::Database::open(&format!("sqlite://{}", db_path.display())).await.expect("a database");
    app(AppState { engine: engine(), sandboxes, metrics: Metrics::default(), auth: Auth::dev(db) })
}

static NEXT_DB: AtomicU64 = AtomicU64::new(0);

async fn call(app: &Router, method: Method, uri: &str, body: Body) -> (StatusCode, Vec<u8>) {
    let request = Request::builder().method(method).uri(uri).header("content-type", "application/json").body(body);
    let response = app.clone().oneshot(request.unwrap()).await.unwrap();
    let status = response.status();
    (status, response.into_body().collect().await.unwrap().to_bytes().to_vec())
}

async fn json_call(app: &Router, method: Method, uri: &str, body: Value) -> (StatusCode, Value) {
    let (status, bytes) = call(app, method, uri, Body::from(body.to_string())).await;
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn health_and_unknown_routes() {
    let app = test_app().await;
    let (status, body) = call(&app, Method::GET, "/health", Body::empty()).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, b"ok".as_slice()));
    let (status, body) = json_call(&app, Method::GET, "/v1/nope", Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn stateless_execute_and_clean_errors() {
    let app = test_app().await;
    let (status, body) =
        json_call(&app, Method::POST, "/v1/execute", json!({"language": "python", "code": "print(1 + 1)"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["stdout"], "2\n");
    assert_eq!(body["outcome"], "completed");

    let (status, bytes) = call(&app, Method::POST, "/v1/execute", Body::from("{not json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let error: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(error["error"]["code"], "bad_request");
    let (status, body) =
        json_call(&app, Method::POST, "/v1/execute", json!({"language": "python", "code": "1", "bogus": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"].as_str().unwrap().contains("bogus"), "{body}");
    let (status, _) = json_call(&app, Method::POST, "/v1/execute", json!({"language": "cobol", "code": "1"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = json_call(
        &app,
        Method::POST,
        "/v1/execute",
        json!({"language": "python", "code": "1", "limits": {"deadline_ms": 0}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"].as_str().unwrap().contains("deadline_ms"), "{body}");
    let huge = vec![b' '; JSON_BODY_LIMIT + 1];
    let (status, _) = call(&app, Method::POST, "/v1/execute", Body::from(huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    let (status, text) = call(&app, Method::GET, "/metrics", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains(r#"soulbox_executions_total{kind="stateless",language="python",outcome="completed"} 1"#),
        "{text}"
    );
    assert!(text.contains("soulbox_execution_duration_seconds_bucket"), "{text}");
    assert!(text.contains(r#"soulbox_http_responses_total{class="4xx"} 5"#), "{text}");
    assert!(text.contains("soulbox_worker_pool_capacity"), "{text}");
}

#[tokio::test]
async fn sandbox_lifecycle_contexts_and_cells() {
    let app = test_app().await;
    let spec = json!({"template": "python", "metadata": {"owner": "router-test"}, "env": {"MODE": "test"}});
    let (status, created) = json_call(&app, Method::POST, "/v1/sandboxes", spec).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let base = format!("/v1/sandboxes/{id}");

    let (status, listed) = json_call(&app, Method::GET, "/v1/sandboxes?metadata.owner=router-test", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let (status, _) = json_call(&app, Method::GET, "/v1/sandboxes?owner=x", Value::Null).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let cell = |code: &str| json!({"code": code});
    json_call(&app, Method::POST, &format!("{base}/execute"), cell("import os\nx = 41")).await;
    let (status, done) = json_call(&app, Method::POST, &format!("{base}/execute"), cell("x + 1")).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["results"][0]["text"], "42");
    let (_, env) = json_call(&app, Method::POST, &format!("{base}/execute"), cell("os.environ['MODE']")).await;
    assert_eq!(env["results"][0]["text"], "'test'");
    let (_, failed) = json_call(&app, Method::POST, &format!("{base}/execute"), cell("1/0")).await;
    assert_eq!(failed["error"]["name"], "ZeroDivisionError");

    let (status, context) =
        json_call(&app, Method::POST, &format!("{base}/contexts"), json!({"language": "javascript"})).await;
    assert_eq!(status, StatusCode::CREATED, "{context}");
    let context_id = context["id"].as_str().unwrap().to_owned();
    let in_js = json!({"code": "[1, 2].map(n => n * 2)", "context": context_id});
    let (_, js) = json_call(&app, Method::POST, &format!("{base}/execute"), in_js).await;
    assert_eq!(js["results"][0]["json"], json!([2, 4]));
    let (_, contexts) = json_call(&app, Method::GET, &format!("{base}/contexts"), Value::Null).await;
    assert_eq!(contexts.as_array().unwrap().len(), 2);
    let (status, _) =
        json_call(&app, Method::POST, &format!("{base}/contexts/{context_id}/restart"), Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&app, Method::DELETE, &format!("{base}/contexts/{context_id}"), Body::empty()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (status, info) =
        json_call(&app, Method::POST, &format!("{base}/timeout"), json!({"lifetime_ms": 60_000})).await;
    assert_eq!(status, StatusCode::OK, "{info}");
    let (status, _) = call(&app, Method::DELETE, &base, Body::empty()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, gone) = json_call(&app, Method::GET, &base, Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(gone["error"]["code"], "not_found");
}

#[tokio::test]
async fn files_round_trip() {
    let app = test_app().await;
    let (_, created) = json_call(&app, Method::POST, "/v1/sandboxes", json!({})).await;
    let base = format!("/v1/sandboxes/{}", created["id"].as_str().unwrap());
    let (status, stat) = call(&app, Method::PUT, &format!("{base}/files?path=/in/data.txt"), Body::from("hello")).await;
    assert_eq!(status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&stat));
    let (_, read) =
        json_call(&app, Method::POST, &format!("{base}/execute"), json!({"code": "open('/in/data.txt').read()"})).await;
    assert_eq!(read["results"][0]["text"], "'hello'");
    let (status, bytes) = call(&app, Method::GET, &format!("{base}/files?path=/in/data.txt"), Body::empty()).await;
    assert_eq!((status, bytes.as_slice()), (StatusCode::OK, b"hello".as_slice()));
    let (_, listed) = json_call(&app, Method::GET, &format!("{base}/files/list?path=/in&depth=2"), Value::Null).await;
    assert_eq!(listed[0]["path"], "/in/data.txt");
    let (status, _) = json_call(&app, Method::POST, &format!("{base}/files/mkdir"), json!({"path": "/out"})).await;
    assert_eq!(status, StatusCode::OK);
    let renamed = json!({"from": "/in/data.txt", "to": "/out/data.txt"});
    let (status, _) = json_call(&app, Method::POST, &format!("{base}/files/rename"), renamed).await;
    assert_eq!(status, StatusCode::OK);
    let (status, stat) =
        json_call(&app, Method::GET, &format!("{base}/files/stat?path=/out/data.txt"), Value::Null).await;
    assert_eq!((status, stat["size"].clone()), (StatusCode::OK, json!(5)));
    let (status, _) = call(&app, Method::DELETE, &format!("{base}/files?path=/out"), Body::empty()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = json_call(&app, Method::GET, &format!("{base}/files/stat?path=/out"), Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, escape) =
        json_call(&app, Method::GET, &format!("{base}/files?path=/../../etc/passwd"), Value::Null).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{escape}");
    let (status, _) = json_call(&app, Method::GET, &format!("{base}/files"), Value::Null).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a path is required");
}
