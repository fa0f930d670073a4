//! Two nodes of a cluster (`cluster.rs`'s set-up) with traces exported to an OTLP receiver on
//! loopback: a forwarded request's spans on both nodes form one trace; MCP and tool calls are
//! routed to their sandbox's node and their new sandboxes placed; an API key's bound on
//! running executions holds across the nodes; a sandbox lost with its node is reported as
//! lost by every node.

use crate::cluster::{Schema, served_by, start_node_in_env, stream_cell, wait_for};
use crate::support::create_key;
use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;
use std::sync::{Arc, Mutex};

/// One span a node exported.
#[derive(Debug, Clone)]
struct Received {
    node: String,
    name: String,
    trace: String,
    id: String,
    parent: String,
}

/// An OTLP/HTTP receiver (protobuf) on loopback that keeps every span sent to it.
struct Receiver {
    base: String,
    spans: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
        let kept = spans.clone();
        let traces = move |body: Bytes| async move {
            let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
            let mut kept = kept.lock().unwrap();
            for resource in request.resource_spans {
                let attributes = resource.resource.map(|r| r.attributes).unwrap_or_default();
                let node = attributes
                    .iter()
                    .find(|a| a.key == "service.instance.id")
                    .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                        Value::StringValue(text) => Some(text.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                for span in resource.scope_spans.into_iter().flat_map(|scope| scope.spans) {
                    kept.push(Received {
                        node: node.clone(),
                        name: span.name,
                        trace: hex(&span.trace_id),
                        id: hex(&span.span_id),
                        parent: hex(&span.parent_span_id),
                    });
                }
            }
            ([("content-type", "application/x-protobuf")], ExportTraceServiceResponse::default().encode_to_vec())
        };
        let app = axum::Router::new().route("/v1/traces", axum::routing::post(traces));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { base, spans }
    }

    /// The spans of trace `trace` received so far.
    fn trace(&self, trace: &str) -> Vec<Received> {
        self.spans.lock().unwrap().iter().filter(|span| span.trace == trace).cloned().collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The one span named `name` that node `node` exported in `spans`.
fn span<'a>(spans: &'a [Received], node: &str, name: &str) -> &'a Received {
    let found: Vec<&Received> = spans.iter().filter(|s| s.node == node && s.name == name).collect();
    assert_eq!(found.len(), 1, "one `{name}` span from {node} in {spans:#?}");
    found[0]
}

/// Sends a JSON-RPC request to `/mcp` at `base`; returns the node that served it and the reply.
async fn mcp(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    tool: &str,
    arguments: serde_json::Value,
) -> (String, serde_json::Value) {
    let call = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments},
    });
    let response = client
        .post(format!("{base}/mcp"))
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&call)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let node = served_by(&response);
    (node, response.json().await.unwrap())
}

/// The text of an MCP tool result's first content block.
fn mcp_text(reply: &serde_json::Value) -> String {
    assert!(reply["error"].is_null() && reply["result"]["isError"] != true, "{reply}");
    reply["result"]["content"][0]["text"].as_str().unwrap().to_owned()
}

// Multi-threaded: the receiver answers while the test blocks on starting the nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_requests_trace_across_nodes_mcp_is_routed_and_key_bounds_hold_cluster_wide() {
    let schema = Schema::new().await;
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(&schema.url, "acme");
    let receiver = Receiver::start().await;
    let env = [
        ("SOULBOX__MONITORING__OTLP_ENDPOINT", receiver.base.as_str()),
        // Spans leave each node within a tenth of a second.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("SOULBOX__AUTH__MAX_CONCURRENT_EXECUTIONS", "1"),
    ];
    let one = start_node_in_env("node-1", &schema.url, dir.path(), &env);
    let two = start_node_in_env("node-2", &schema.url, dir.path(), &env);
    let client = reqwest::Client::new();
    let created = client.post(one.url("/v1/sandboxes")).bearer_auth(&key).json(&serde_json::json!({})).send();
    let created = created.await.unwrap();
    assert_eq!((created.status().as_u16(), served_by(&created)), (201, "node-1".to_owned()));
    let created: serde_json::Value = created.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();

    // A cell sent to node-2 with the caller's trace context runs on node-1; both nodes' spans
    // are in the caller's trace, each hop the child of the one before.
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let caller_span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    let response = client
        .post(two.url(&format!("/v1/sandboxes/{id}/execute")))
        .bearer_auth(&key)
        .header("traceparent", format!("00-{trace}-{caller_span}-01"))
        .json(&serde_json::json!({"code": "x = 41"}))
        .send()
        .await
        .unwrap();
    assert_eq!((response.status().as_u16(), served_by(&response)), (200, "node-1".to_owned()));
    let names = ["node-2/request", "node-2/forward", "node-1/request", "node-1/run_cell"];
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let spans = loop {
        let spans = receiver.trace(&trace);
        if names.iter().all(|n| spans.iter().any(|s| format!("{}/{}", s.node, s.name) == *n)) {
            break spans;
        }
        let all = receiver.spans.lock().unwrap().clone();
        assert!(std::time::Instant::now() < give_up, "no {names:?} in trace {trace}: {spans:#?}\nof all: {all:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let received = span(&spans, "node-2", "request");
    assert_eq!(received.parent, caller_span, "the first node's request span continues the caller's");
    let forward = span(&spans, "node-2", "forward");
    assert_eq!(forward.parent, received.id);
    let served = span(&spans, "node-1", "request");
    assert_eq!(served.parent, forward.id, "the owner's request span is the forwarding span's child");
    let cell = span(&spans, "node-1", "run_cell");
    let mut ancestor = cell.parent.clone();
    while ancestor != served.id {
        let up =
            spans.iter().find(|s| s.id == ancestor).unwrap_or_else(|| panic!("run_cell under request: {spans:#?}"));
        ancestor = up.parent.clone();
    }

    // MCP tool calls go to their sandbox's node too, and a new sandbox made through MCP or a
    // tool call goes to the node holding fewer.
    let (node, reply) =
        mcp(&client, &two.url(""), &key, "run_cell", serde_json::json!({"sandbox_id": id, "code": "x + 1"})).await;
    assert_eq!(node, "node-1");
    assert!(mcp_text(&reply).contains("42"), "{reply}");
    let call = serde_json::json!({"name": "create_sandbox", "arguments": {}});
    let made = client.post(one.url("/v1/tools/call")).bearer_auth(&key).json(&call).send().await.unwrap();
    assert_eq!((made.status().as_u16(), served_by(&made)), (200, "node-2".to_owned()), "node-2 held none");
    let made = client.post(two.url("/v1/sandboxes")).bearer_auth(&key).json(&serde_json::json!({})).send();
    assert_eq!(served_by(&made.await.unwrap()), "node-2", "made where it lands among equals");
    let (node, reply) = mcp(&client, &two.url(""), &key, "create_sandbox", serde_json::json!({})).await;
    assert_eq!(node, "node-1", "node-2 holds more now: {reply}");
    assert!(mcp_text(&reply).contains("sandbox_id"), "{reply}");

    // The key may run one execution at a time (`auth.max_concurrent_executions = 1`), across
    // the cluster: while a cell runs on node-1, node-2 refuses the key's stateless run.
    let code =
        "import os, time\nprint('started', flush=True)\nwhile not os.path.exists('/go'):\n    time.sleep(0.005)\n1";
    let mut running = stream_cell(&client, &one.url(""), &key, &id, code).await;
    assert_eq!(running.status(), 200);
    let mut text = String::new();
    while !text.contains("started") {
        let chunk = running.chunk().await.unwrap().expect("the cell's first line");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let run = serde_json::json!({"language": "python", "code": "print(1)"});
    let refused = client.post(two.url("/v1/execute")).bearer_auth(&key).json(&run).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
    let other = create_key(&schema.url, "other");
    let elsewhere = client.post(two.url("/v1/execute")).bearer_auth(&other).json(&run).send().await.unwrap();
    assert_eq!(elsewhere.status(), 200, "another key has its own bound");
    let go = client.put(two.url(&format!("/v1/sandboxes/{id}/files?path=/go"))).bearer_auth(&key).body("");
    assert!(go.send().await.unwrap().status().is_success());
    while running.chunk().await.unwrap().is_some() {}
    // Once the cell ended (its slot is given back just after its response), node-2 runs it.
    wait_for("the key's slot to be free", || {
        let request = client.post(two.url("/v1/execute")).bearer_auth(&key).json(&run).send();
        async move { request.await.unwrap().status() == 200 }
    })
    .await;

    // Node-1 killed, then started again: the sandbox it held, never checkpointed, is lost, and
    // any node tells its tenant so, with why; to anyone else it does not exist.
    drop(one); // SIGKILL
    let one = start_node_in_env("node-1", &schema.url, dir.path(), &env);
    let lost = client.get(two.url(&format!("/v1/sandboxes/{id}"))).bearer_auth(&key).send().await.unwrap();
    assert_eq!(lost.status(), 410);
    let body: serde_json::Value = lost.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("was lost"), "{body}");
    let hidden = client.get(two.url(&format!("/v1/sandboxes/{id}"))).bearer_auth(&other).send().await.unwrap();
    assert_eq!(hidden.status(), 404);
    drop((one, two));
    schema.drop_schema().await;
}
