//! The REST API end to end: streaming, clean errors, keys and tenants.

use crate::support::{Server, create_key, create_sandbox, database_in, start_with_keys};
use std::process::Command;
use std::time::Duration;

#[tokio::test]
async fn cells_stream_as_ndjson_and_sse_while_they_run() {
    let server = Server::start();
    let client = reqwest::Client::new();
    let id = create_sandbox(&client, &server, None).await;
    let execute = server.url(&format!("/v1/sandboxes/{id}/execute"));
    // The cell ends only after the test wrote `/go`, which it does once it has read the first
    // line: the line must arrive while the cell runs.
    let code = "import os, time\nprint('first', flush=True)\nwhile not os.path.exists('/go'):\n    time.sleep(0.005)\nprint('second')\n6 * 7";
    let mut response = client
        .post(&execute)
        .header("accept", "application/x-ndjson")
        .json(&serde_json::json!({"code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let mut text = String::new();
    let mut released = false;
    while let Some(chunk) = response.chunk().await.unwrap() {
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        if !released && text.contains("first") {
            let go = client.put(server.url(&format!("/v1/sandboxes/{id}/files?path=/go"))).body("").send().await;
            assert!(go.unwrap().status().is_success());
            released = true;
        }
    }
    let events: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["stdout", "stdout", "result", "end"], "{text}");
    assert_eq!(events[2]["text"], "42");

    let sse = client
        .post(&execute)
        .header("accept", "text/event-stream")
        .json(&serde_json::json!({"code": "print('hi')\n1/0"}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(sse.contains("event: stdout"), "{sse}");
    assert!(sse.contains("event: error") && sse.contains("ZeroDivisionError"), "{sse}");
    assert!(sse.contains("event: end"), "{sse}");
    assert!(server.terminate().success(), "a graceful shutdown exits 0");
}

#[tokio::test]
async fn bad_requests_get_clean_json_errors() {
    let server = Server::start();
    let client = reqwest::Client::new();
    let response = client
        .post(server.url("/v1/execute"))
        .header("content-type", "application/json")
        .body(r#"{"language": "python", "code": 5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");
    let missing = client.get(server.url("/v1/sandboxes/sbx-nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("sbx-nope"));
}

#[test]
fn dev_mode_refuses_a_public_address() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_soulbox")).args(["serve", "--dev", "--addr", "0.0.0.0:0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}

#[tokio::test]
async fn api_keys_separate_tenants_and_record_usage() {
    let dir = tempfile::tempdir().unwrap();
    let database = database_in(dir.path());
    let (alice, bob) = (create_key(&database, "alice"), create_key(&database, "bob"));
    let server = Server::start_with(&["--database-url", &database, "serve", "--addr", "127.0.0.1:0"]);
    let client = reqwest::Client::new();

    let anonymous = client.get(server.url("/v1/sandboxes")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let body: serde_json::Value = anonymous.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let forged = client.get(server.url("/v1/sandboxes")).bearer_auth("sbk_0000").send().await.unwrap();
    assert_eq!(forged.status(), 401);

    let id = create_sandbox(&client, &server, Some(&alice)).await;
    let cell = serde_json::json!({"code": "6 * 7"});
    let mine = client.post(server.url(&format!("/v1/sandboxes/{id}/execute"))).bearer_auth(&alice).json(&cell);
    let done: serde_json::Value = mine.send().await.unwrap().json().await.unwrap();
    assert_eq!(done["results"][0]["text"], "42");
    let theirs = client.get(server.url(&format!("/v1/sandboxes/{id}"))).header("x-api-key", &bob).send().await.unwrap();
    assert_eq!(theirs.status(), 404, "another tenant's sandbox does not exist for bob");
    let run_theirs = client
        .post(server.url(&format!("/v1/sandboxes/{id}/execute")))
        .bearer_auth(&bob)
        .json(&cell)
        .send()
        .await
        .unwrap();
    assert_eq!(run_theirs.status(), 404);
    let bobs: serde_json::Value =
        client.get(server.url("/v1/sandboxes")).bearer_auth(&bob).send().await.unwrap().json().await.unwrap();
    assert_eq!(bobs, serde_json::json!([]));
    let stateless = serde_json::json!({"language": "python", "code": "print(1)"});
    client.post(server.url("/v1/execute")).bearer_auth(&alice).json(&stateless).send().await.unwrap();

    // Usage is recorded in the background: poll (for up to 10 s, on a loaded machine).
    let mut usage = serde_json::Value::Null;
    for _ in 0..200 {
        usage = client.get(server.url("/v1/usage")).bearer_auth(&alice).send().await.unwrap().json().await.unwrap();
        if usage.as_array().is_some_and(|rows| rows.len() == 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let kinds: Vec<&str> = usage.as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["cell", "stateless"], "{usage}");
    let bob_usage: serde_json::Value =
        client.get(server.url("/v1/usage")).bearer_auth(&bob).send().await.unwrap().json().await.unwrap();
    assert_eq!(bob_usage, serde_json::json!([]));

    let listed = Command::new(env!("CARGO_BIN_EXE_soulbox"))
        .args(["--database-url", &database, "keys", "list"])
        .output()
        .unwrap();
    let listing = String::from_utf8(listed.stdout).unwrap();
    assert!(listing.contains("alice") && !listing.contains(&alice), "{listing}");
    let alice_id = listing.lines().find(|l| l.contains("alice")).unwrap().split_whitespace().next().unwrap().to_owned();
    // The server keeps the keys it has looked up: a revocation reaches it however the command
    // line names the database (here through a link to its file).
    let linked = dir.path().join("linked.db");
    std::os::unix::fs::symlink(database.strip_prefix("sqlite://").unwrap(), &linked).unwrap();
    let revoked = Command::new(env!("CARGO_BIN_EXE_soulbox"))
        .args(["--database-url", &format!("sqlite://{}", linked.display()), "keys", "revoke", &alice_id])
        .status()
        .unwrap();
    assert!(revoked.success());
    let after = client.get(server.url("/v1/sandboxes")).bearer_auth(&alice).send().await.unwrap();
    assert_eq!(after.status(), 401, "a revoked key stops working at once");
    let others = client.get(server.url("/v1/sandboxes")).bearer_auth(&bob).send().await.unwrap();
    assert_eq!(others.status(), 200, "the other keys go on working");
}

/// A request's network policy is refused unless the server allows network access; allowed, the
/// guest reaches what its policy allows and the result counts it.
#[tokio::test]
async fn network_policies_need_the_servers_permission() {
    let target = loopback_http_server();
    let request = serde_json::json!({
        "language": "python",
        "code": format!("import urllib.request\nprint(urllib.request.urlopen('http://127.0.0.1:{target}/').read().decode())"),
        "network": {"allow_cidrs": ["127.0.0.1/32"]},
    });
    let client = reqwest::Client::new();
    let closed = Server::start();
    let refused = client.post(closed.url("/v1/execute")).json(&request).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("network.allow_internet"), "{body}");
    let bad = serde_json::json!({"language": "python", "code": "1", "network": {"deny_cidrs": ["nope"]}});
    let set = ["--set", "network.allow_internet=true"];
    let guarded = Server::start_with(&["serve", "--dev", "--addr", "127.0.0.1:0", set[0], set[1]]);
    let response = client.post(guarded.url("/v1/execute")).json(&request).send().await.unwrap();
    let result: serde_json::Value = response.json().await.unwrap();
    assert!(
        result["stdout"].as_str().unwrap().is_empty()
            && result["stderr"].as_str().unwrap().contains("denied address ranges"),
        "a tenant's policy cannot open the host's loopback unless the server allows it: {result}"
    );
    let metadata = serde_json::json!({
        "language": "python",
        "code": "import urllib.request\nurllib.request.urlopen('http://169.254.169.254/latest/meta-data/')",
        "network": {"allow_cidrs": ["169.254.0.0/16"]},
    });
    let response = client.post(guarded.url("/v1/execute")).json(&metadata).send().await.unwrap();
    let result: serde_json::Value = response.json().await.unwrap();
    assert!(result["stderr"].as_str().unwrap().contains("denied address ranges"), "{result}");
    let packages = serde_json::json!({"language": "python", "code": "1", "packages": ["requests"]});
    let response = client.post(guarded.url("/v1/execute")).json(&packages).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("packages.enabled"), "{body}");
    // Nor can a cell install them by itself.
    let id = create_sandbox(&client, &guarded, None).await;
    let cell = client
        .post(guarded.url(&format!("/v1/sandboxes/{id}/execute")))
        .json(&serde_json::json!({"code": "%pip install requests"}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(cell.contains("PipError") && cell.contains("not enabled"), "{cell}");
    // Its own database and tenant, so the usage below is this test's alone.
    let dir = tempfile::tempdir().unwrap();
    let (open, keys) =
        start_with_keys(dir.path(), &["netco"], &["network.allow_internet=true", "network.allow_localhost=true"]);
    let key = &keys[0];
    let response = client.post(open.url("/v1/execute")).bearer_auth(key).json(&bad).send().await.unwrap();
    assert_eq!(response.status(), 400, "an invalid policy is a bad request");
    let response = client.post(open.url("/v1/execute")).bearer_auth(key).json(&request).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let result: serde_json::Value = response.json().await.unwrap();
    assert_eq!(result["stdout"], "served on loopback\n", "{result}");
    assert_eq!(result["network"]["requests"], 1, "{result}");
    // The tenant's usage counts the request once the recorder has written it.
    let mut usage = serde_json::Value::Null;
    for _ in 0..200 {
        usage = client.get(open.url("/v1/usage")).bearer_auth(key).send().await.unwrap().json().await.unwrap();
        if usage.as_array().is_some_and(|rows| rows.iter().any(|r| r["http_requests"] == 1)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let row = usage.as_array().and_then(|rows| rows.iter().find(|r| r["http_requests"] == 1)).cloned();
    let row = row.unwrap_or_else(|| panic!("the usage records the request: {usage}"));
    assert_eq!(row["http_bytes_received"], 18, "{row}");
}

/// A one-response-per-connection HTTP server on loopback; its port.
fn loopback_http_server() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let body = "served on loopback";
            let _ =
                write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    port
}
