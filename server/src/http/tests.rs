//! Router tests: the whole app driven with `oneshot`, over the real engine.

use super::*;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use soulbox_runtimes_wasm::{EngineSettings, WasmBackend, WasmConfig};
use std::sync::OnceLock;
use tower::ServiceExt;

fn engine() -> Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            // A pool of its own size: this binary's other tests open backends beside it, and
            // every pool reserves its slots' address space up front.
            let settings = EngineSettings { pool_slots: 1024, ..EngineSettings::default() };
            let backend =
                WasmBackend::open(WasmConfig { settings, ..WasmConfig::default() }).expect("runtimes installed");
            backend.prepare().expect("modules compile");
            Engine::builder().backend(backend).build()
        })
        .clone()
}

/// The app in development mode over the shared engine, with `settings` and `guard`.
async fn app_with(settings: Settings, guard: Guard) -> Router {
    let root = std::env::temp_dir().join(format!("soulbox-http-test-{}", std::process::id()));
    let config = soulbox_engine::SandboxesConfig { workspace_root: root.clone(), ..Default::default() };
    let sandboxes = Sandboxes::new(engine(), config).expect("a registry");
    let db_path = root.join(format!("db-{}.sqlite", NEXT_DB.fetch_add(1, Ordering::Relaxed)));
    let db = crate::database::Database::open(&format!("sqlite://{}", db_path.display())).await.expect("a database");
    app(AppState::new(super::SharedState {
        engine: engine(),
        sandboxes,
        metrics: Metrics::default(),
        auth: Auth::dev(db.clone()),
        usage: crate::database::UsageRecorder::start(db.clone()),
        audit: super::Audit::start(db),
        budgets: super::Budgets::default(),
        settings: std::sync::Arc::new(settings),
        guard,
        lifecycle: Lifecycle::default(),
        e2b: super::E2b::new(super::SandboxTokens::random()),
        cluster: None,
    }))
}

async fn test_app() -> Router {
    app_with(Settings::default(), Guard::new(10_000, 10_000, 64)).await
}

static NEXT_DB: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

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
    let huge = vec![b' '; Settings::default().json_body_limit + 1];
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
    assert!(text.contains(r#"soulbox_http_errors_total{code="bad_request"} 4"#), "{text}");
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

    // Wire bodies that flatten an engine type still name a stray field.
    let (status, stray) =
        json_call(&app, Method::POST, &format!("{base}/execute"), json!({"code": "1", "contxt": "x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(stray["error"]["message"].as_str().unwrap().contains("unknown field `contxt`"), "{stray}");
    let (status, stray) =
        json_call(&app, Method::POST, &format!("{base}/commands"), json!({"command": "ls", "backgrnd": true})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(stray["error"]["message"].as_str().unwrap().contains("unknown field `backgrnd`"), "{stray}");
    let limited = json!({"code": "print(1)", "limits": {"deadline_ms": 86_400_000}});
    let (status, refused) = json_call(&app, Method::POST, &format!("{base}/execute"), limited).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(refused["error"]["message"].as_str().unwrap().contains("on this server"), "the policy applies: {refused}");

    // Pause and resume: the state comes back; a cell resumes a paused sandbox by itself.
    let (status, paused) = json_call(&app, Method::POST, &format!("{base}/pause"), Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!((paused["contexts"].as_u64(), paused["processes_restored"].as_bool()), (Some(1), Some(false)));
    let (_, info) = json_call(&app, Method::GET, &base, Value::Null).await;
    assert_eq!(info["state"], "paused");
    let (status, _) = json_call(&app, Method::POST, &format!("{base}/resume"), Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let (_, done) = json_call(&app, Method::POST, &format!("{base}/execute"), cell("x + 1")).await;
    assert_eq!(done["results"][0]["text"], "42");
    json_call(&app, Method::POST, &format!("{base}/pause"), Value::Null).await;
    let (_, done) = json_call(&app, Method::POST, &format!("{base}/execute"), cell("x + 2")).await;
    assert_eq!(done["results"][0]["text"], "43");
    let (_, info) = json_call(&app, Method::GET, &base, Value::Null).await;
    assert_eq!(info["state"], "running");

    // Forks start from the sandbox's state and are sandboxes of their own.
    let (status, forks) = json_call(&app, Method::POST, &format!("{base}/fork"), json!({"count": 2})).await;
    assert_eq!(status, StatusCode::CREATED, "{forks}");
    let forks = forks.as_array().unwrap().clone();
    assert_eq!(forks.len(), 2);
    for fork in &forks {
        let fork_base = format!("/v1/sandboxes/{}", fork["id"].as_str().unwrap());
        let (_, seen) = json_call(&app, Method::POST, &format!("{fork_base}/execute"), cell("x + 3")).await;
        assert_eq!(seen["results"][0]["text"], "44", "{seen}");
        let (status, _) = call(&app, Method::DELETE, &fork_base, Body::empty()).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let (status, refused) = json_call(&app, Method::POST, &format!("{base}/fork"), json!({"count": 101})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let (status, refused) = json_call(&app, Method::POST, &format!("{base}/fork"), json!({"cuont": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");

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

/// Sends `body` to `uri` with a request id; returns the status, headers and JSON body.
/// A cell that makes `/started`, then waits until the test makes `/go`.
const HELD_CELL: &str =
    "import os, time\nopen('/started', 'w').close()\nwhile not os.path.exists('/go'):\n    time.sleep(0.005)";

/// Waits until `path` exists in sandbox `id`: how a test knows a cell it sent is running
/// before it sends the next, without sleeping to order them.
async fn wait_for_file(app: &Router, id: &str, path: &str) {
    let stat = format!("/v1/sandboxes/{id}/files/stat?path={path}");
    for _ in 0..12_000 {
        if call(app, Method::GET, &stat, Body::empty()).await.0 == StatusCode::OK {
            return;
        }
        // A pause between looks, not to order anything.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("{path} never appeared");
}

async fn full_call(app: &Router, uri: &str, body: Value) -> (StatusCode, axum::http::HeaderMap, Value) {
    let request = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header("content-type", "application/json")
        .header("x-request-id", "req-42")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// The first answer of up to ten `call`s that is not a success (the last one if all are).
async fn first_refused<F, Fut>(call: F) -> (StatusCode, axum::http::HeaderMap, Value)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = (StatusCode, axum::http::HeaderMap, Value)>,
{
    let mut answer = call().await;
    for _ in 1..10 {
        if !answer.0.is_success() {
            break;
        }
        answer = call().await;
    }
    answer
}

#[tokio::test]
async fn a_key_over_its_rate_is_told_when_to_retry() {
    let app = app_with(Settings::default(), Guard::new(1, 2, 64)).await;
    let code = json!({"language": "javascript", "code": "1"});
    for _ in 0..2 {
        let (status, headers, _) = full_call(&app, "/v1/execute", code.clone()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["x-request-id"], "req-42", "the client's request id comes back");
    }
    // Past the burst, back-to-back requests outrun the refill (one a second): one is refused,
    // the next unless the machine took a second over the two before it.
    let (status, headers, body) = first_refused(|| full_call(&app, "/v1/execute", code.clone())).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    let (status, _) = call(&app, Method::GET, "/health", Body::empty()).await;
    assert_eq!(status, StatusCode::OK, "operators' routes are not rate limited");
}

#[tokio::test]
async fn executions_past_the_key_quota_are_refused_at_once() {
    let app = app_with(Settings::default(), Guard::new(1000, 1000, 1)).await;
    let (_, created) = json_call(&app, Method::POST, "/v1/sandboxes", json!({})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    // The first cell holds the key's one execution slot until the test lets it go.
    let held = json!({"code": HELD_CELL});
    let first = tokio::spawn({
        let (app, cells) = (app.clone(), format!("/v1/sandboxes/{id}/execute"));
        async move { full_call(&app, &cells, held).await }
    });
    wait_for_file(&app, &id, "/started").await;
    // Refused, not queued: a queued request would have answered 200 once the first ended.
    let (status, headers, body) = full_call(&app, "/v1/execute", json!({"language": "python", "code": "1"})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded");
    assert!(headers.contains_key("retry-after"));
    let (status, _) = call(&app, Method::PUT, &format!("/v1/sandboxes/{id}/files?path=/go"), Body::empty()).await;
    assert!(status.is_success());
    assert_eq!(first.await.unwrap().0, StatusCode::OK);
    let (status, _, _) = full_call(&app, "/v1/execute", json!({"language": "python", "code": "1"})).await;
    assert_eq!(status, StatusCode::OK, "the slot is free again");
}

#[tokio::test]
async fn slow_responses_time_out_and_limits_follow_the_configuration() {
    let mut config = crate::config::Config::default();
    config.server.request_timeout_ms = 3000;
    config.resources.memory_mb = Some(256);
    let settings = Settings::from_config(&config, crate::config::Environment::default(), "http://x".into());
    let app = app_with(settings, Guard::new(1000, 1000, 64)).await;
    // Two slow cells queue on one context: the second cannot answer within the timeout.
    let (_, created) = json_call(&app, Method::POST, "/v1/sandboxes", json!({})).await;
    let cells = format!("/v1/sandboxes/{}/execute", created["id"].as_str().unwrap());
    let id = created["id"].as_str().unwrap().to_owned();
    // The first ends at its deadline (1.5 s), well inside the request timeout (3 s); the
    // second, sent once the first has started and queued behind it, then needs its own 2.7 s
    // (the most allowed, 90% of the timeout): it cannot answer in time unless the first
    // started more than 1.2 s before the second was sent. At least 1.2 s of margin both ways,
    // for a loaded machine (other tests share its two cores).
    let first_cell =
        json!({"code": "open('/started', 'w').close()\nimport time; time.sleep(5)", "limits": {"deadline_ms": 1500}});
    let slow = json!({"code": "import time; time.sleep(5)", "limits": {"deadline_ms": 2700}});
    let first = tokio::spawn({
        let (app, cells) = (app.clone(), cells.clone());
        async move { full_call(&app, &cells, first_cell).await }
    });
    wait_for_file(&app, &id, "/started").await;
    let (status, _, body) = full_call(&app, &cells, slow).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["error"]["code"], "timeout");
    let (status, _, body) = first.await.unwrap();
    assert_eq!((status, body["end"].clone()), (StatusCode::OK, Value::Null), "{body}");
    assert_eq!(body["outcome"], "deadline_exceeded");
    let too_long = json!({"language": "python", "code": "1", "limits": {"deadline_ms": 5000}});
    let (status, _, body) = full_call(&app, "/v1/execute", too_long).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"].as_str().unwrap().contains("deadline_ms"), "{body}");
    let probe =
        json!({"language": "python", "code": "import resource; print(1)", "limits": {"memory_bytes": 512 << 20}});
    let (status, _, body) = full_call(&app, "/v1/execute", probe).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "above the configured memory: {body}");
}

#[tokio::test]
async fn the_openapi_document_and_docs_page_are_served() {
    let app = test_app().await;
    let (status, bytes) = call(&app, Method::GET, "/openapi.json", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    assert!(doc["paths"]["/v1/sandboxes/{id}/files"]["put"].is_object());
    let (status, page) = call(&app, Method::GET, "/docs/", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&page).contains("swagger"), "the Swagger UI page");
}

#[tokio::test]
async fn tools_are_defined_for_each_vendor_and_callable() {
    let app = test_app().await;
    let (status, all) = json_call(&app, Method::GET, "/v1/tools", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let openai = all["openai"].as_array().unwrap();
    let run_code = openai.iter().find(|t| t["function"]["name"] == "run_code").expect("run_code");
    assert_eq!(run_code["type"], "function");
    assert_eq!(run_code["function"]["parameters"]["type"], "object");
    assert!(run_code["function"]["parameters"]["required"].as_array().unwrap().contains(&json!("code")));
    let anthropic = all["anthropic"].as_array().unwrap();
    assert!(anthropic.iter().all(|t| t["input_schema"]["type"] == "object" && t["name"].is_string()));
    assert_eq!(anthropic.len(), openai.len());
    let (status, only) = json_call(&app, Method::GET, "/v1/tools?format=anthropic", Value::Null).await;
    assert_eq!((status, only.as_array().unwrap().len()), (StatusCode::OK, anthropic.len()));
    let (status, _) = json_call(&app, Method::GET, "/v1/tools?format=cohere", Value::Null).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // OpenAI hands arguments over as a JSON string.
    let arguments = json!({"language": "python", "code": "print(6 * 7)"}).to_string();
    let (status, reply) =
        json_call(&app, Method::POST, "/v1/tools/call", json!({"name": "run_code", "arguments": arguments})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["content"]["stdout"], "42\n");
    let (_, created) = json_call(
        &app,
        Method::POST,
        "/v1/tools/call",
        json!({"name": "create_sandbox", "arguments": {"template": "data-science"}}),
    )
    .await;
    let sandbox = created["content"]["sandbox_id"].as_str().expect("a sandbox id").to_owned();
    let plot = json!({"sandbox_id": sandbox, "code": "plt.plot([1, 2, 3])\nplt.show()\n'drawn'"});
    let (_, cell) =
        json_call(&app, Method::POST, "/v1/tools/call", json!({"name": "run_cell", "arguments": plot})).await;
    assert_eq!(cell["images"].as_array().unwrap().len(), 1, "{cell}");
    assert_eq!(cell["images"][0]["mime_type"], "image/png");
    assert!(cell["content"]["results"].to_string().contains("drawn"), "{cell}");
    let (status, missing) = json_call(
        &app,
        Method::POST,
        "/v1/tools/call",
        json!({"name": "read_file", "arguments": {"sandbox_id": sandbox, "path": "/nope.txt"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "a tool's failure is for the model to read");
    assert_eq!((missing["is_error"].clone(), missing["content"]["error"].clone()), (json!(true), json!("not_found")));
    let (status, _) = json_call(&app, Method::POST, "/v1/tools/call", json!({"name": "rm_rf", "arguments": {}})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
