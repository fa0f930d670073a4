//! Hostile tenants, against a real server: each finding of the abuse review as a regression
//! test (a FIFO in a workspace, unbounded rich results, idle and half-sent connections, quota
//! races, unbounded env, workspace permissions, and the smaller ones). Each waits on events
//! (an answer, an end of file), never on a sleep.

use crate::support::{Server, start_with_keys};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A development-mode server whose workspaces are under `root`, with extra `--set`s.
fn server_in(root: &Path, sets: &[&str]) -> Server {
    let mut args = vec!["serve", "--dev", "--addr", "127.0.0.1:0"];
    let workspace_root = format!("storage.workspace_root={}", root.display());
    for set in std::iter::once(workspace_root.as_str()).chain(sets.iter().copied()) {
        args.extend(["--set", set]);
    }
    Server::start_with(&args)
}

/// A client whose requests fail rather than hang (the code before these fixes hung on some).
fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap()
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let response = client.post(url).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The host directory of the only sandbox under `root`.
fn only_workspace(root: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.retain(|d| d.file_name().unwrap().to_string_lossy().starts_with("sandbox-"));
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.pop().unwrap()
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn a_fifo_in_a_workspace_wedges_nothing() {
    let root = tempfile::tempdir().unwrap();
    let server = server_in(root.path(), &["server.workers=2"]);
    let client = client();
    let (status, created) = post(&client, server.url("/v1/sandboxes"), json!({})).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    // What a container's `mkfifo` leaves in the shared workspace.
    mkfifo(&only_workspace(root.path()).join("f1"));
    // More cells than workers: with a blocking open, the first two would hold both for good.
    for _ in 0..3 {
        let cell = json!({"code": "try:\n    open('/f1').read()\nexcept OSError as e:\n    print(type(e).__name__)",
                          "limits": {"deadline_ms": 2000}});
        let (status, ran) = post(&client, server.url(&format!("/v1/sandboxes/{id}/execute")), cell).await;
        assert_eq!(status, 200, "{ran}");
        assert_eq!(ran["outcome"], "completed", "{ran}");
        assert_eq!(ran["stdout"], "PermissionError\n", "refused at the open, not waited on: {ran}");
    }
    // The file API, and the tool an LLM would use, refuse it too.
    for _ in 0..3 {
        let read = client.get(server.url(&format!("/v1/sandboxes/{id}/files?path=/f1"))).send().await.unwrap();
        assert_eq!(read.status(), 400);
        let body: Value = read.json().await.unwrap();
        assert!(body["error"]["message"].as_str().unwrap().contains("not a regular file"), "{body}");
    }
    let (status, tool) = post(
        &client,
        server.url("/v1/tools/call"),
        json!({"name": "read_file", "arguments": {"sandbox_id": id, "path": "/f1"}}),
    )
    .await;
    assert_eq!(status, 200, "{tool}");
    assert_eq!(tool["is_error"], true, "{tool}");
    // Every worker is still free.
    let (status, ran) =
        post(&client, server.url("/v1/execute"), json!({"language": "python", "code": "print(1 + 1)"})).await;
    assert_eq!((status, ran["stdout"].as_str()), (200, Some("2\n")), "{ran}");
}

#[tokio::test]
async fn rich_results_are_bounded_on_the_host() {
    let root = tempfile::tempdir().unwrap();
    let server = server_in(root.path(), &[]);
    let client = client();
    let (_, created) = post(&client, server.url("/v1/sandboxes"), json!({})).await;
    let id = created["id"].as_str().unwrap();
    let before = rss_mib(server.pid());
    let flood = "import sys\ns = 'x' * (50 << 20)\nfor _ in range(20):\n    sys.displayhook(s)";
    let (status, ran) = post(&client, server.url(&format!("/v1/sandboxes/{id}/execute")), json!({"code": flood})).await;
    assert_eq!(status, 200, "{ran}");
    assert_eq!(ran["outcome"], "output_limit_exceeded", "{ran}");
    assert!(ran["message"].as_str().unwrap().contains("rich results"), "{ran}");
    assert!(ran["results"].as_array().unwrap().is_empty(), "nothing over the budget is kept");
    let after = rss_mib(server.pid());
    assert!(after < before + 512, "the server held {} MiB more (was 2 GiB before the budget)", after - before);
    // The context was restarted and works.
    let (_, next) = post(&client, server.url(&format!("/v1/sandboxes/{id}/execute")), json!({"code": "1 + 1"})).await;
    assert_eq!(next["results"][0]["text"], "2", "{next}");
}

/// A process's resident memory in MiB.
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
}

/// Reads from `stream` until the server closes it; returns what it said.
fn read_to_close(mut stream: TcpStream) -> String {
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut said = Vec::new();
    stream.read_to_end(&mut said).expect("the server closes the connection");
    String::from_utf8_lossy(&said).into_owned()
}

#[tokio::test]
async fn idle_silent_and_half_sent_connections_are_closed_and_health_answers() {
    let root = tempfile::tempdir().unwrap();
    let server = server_in(root.path(), &["server.header_read_timeout_ms=500", "server.keep_alive_timeout_ms=500"]);
    let address = server.url("").trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for i in 0..300 {
        let mut stream = TcpStream::connect(&address).unwrap();
        if i % 3 == 1 {
            stream.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nx-slow: ").unwrap();
        }
        if i % 3 == 2 {
            stream.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        }
        held.push(stream);
    }
    let health = reqwest::get(server.url("/health")).await.unwrap();
    assert_eq!(health.status(), 200, "operators still get in");
    let closed = tokio::task::spawn_blocking(move || held.into_iter().map(read_to_close).collect::<Vec<_>>());
    let said = closed.await.unwrap();
    assert_eq!(said.len(), 300, "every connection was closed by the server");
    assert!(said.iter().filter(|s| s.starts_with("HTTP/1.1 200")).count() >= 100, "the full requests were answered");
}

/// Asks for `/health` on a kept-alive connection and reads the whole answer.
fn health_over(stream: &mut TcpStream) -> String {
    stream.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).expect("the server answers on the kept-alive connection");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let length = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_owned));
    let mut body = vec![0u8; length.expect("a content-length").trim().parse().unwrap()];
    stream.read_exact(&mut body).unwrap();
    head + &String::from_utf8(body).unwrap()
}

/// Clients' pools keep idle connections for minutes (the E2B SDK 300 s): a kept-alive
/// connection outlives the header timeout, while a request begun and left unfinished does not.
#[tokio::test]
async fn a_kept_alive_connection_may_idle_past_the_header_timeout_but_a_begun_request_may_not() {
    let root = tempfile::tempdir().unwrap();
    let server = server_in(root.path(), &["server.header_read_timeout_ms=300", "server.keep_alive_timeout_ms=600000"]);
    let address = server.url("").trim_start_matches("http://").to_owned();
    tokio::task::spawn_blocking(move || {
        let mut kept = TcpStream::connect(&address).unwrap();
        let mut stalled = TcpStream::connect(&address).unwrap();
        assert!(health_over(&mut kept).starts_with("HTTP/1.1 200"));
        assert!(health_over(&mut stalled).starts_with("HTTP/1.1 200"));
        stalled.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n").unwrap();
        let said = read_to_close(stalled);
        assert!(!said.contains("200"), "the unfinished request is not answered: {said}");
        // `kept` has now been idle for longer than the header timeout (the stalled request's
        // headers were sent after its last answer, and were cut off at that timeout).
        assert!(health_over(&mut kept).starts_with("HTTP/1.1 200"), "the idle connection still serves");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn past_the_connection_cap_a_connection_is_told_and_closed() {
    let root = tempfile::tempdir().unwrap();
    let server = server_in(root.path(), &["server.max_connections=20"]);
    let address = server.url("").trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(&address).unwrap();
        stream.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        let mut answer = [0u8; 12];
        stream.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"HTTP/1.1 200");
        held.push(stream);
    }
    let refused = TcpStream::connect(&address).unwrap();
    let said = tokio::task::spawn_blocking(move || read_to_close(refused)).await.unwrap();
    assert!(said.starts_with("HTTP/1.1 503"), "{said}");
    assert!(said.contains("\"busy\""), "{said}");
    drop(held);
}

#[tokio::test]
async fn concurrent_creations_cannot_pass_the_tenant_quota() {
    let root = tempfile::tempdir().unwrap();
    let server = server_in(root.path(), &["auth.max_sandboxes_per_tenant=5", "auth.max_concurrent_executions=64"]);
    let client = client();
    let creations: Vec<_> = (0..20)
        .map(|_| {
            let (client, url) = (client.clone(), server.url("/v1/sandboxes"));
            tokio::spawn(async move { client.post(url).json(&json!({"template": "javascript"})).send().await })
        })
        .collect();
    let mut statuses = Vec::new();
    for creation in creations {
        statuses.push(creation.await.unwrap().unwrap().status().as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 15, "{statuses:?}");
    let open: Value = client.get(server.url("/v1/sandboxes")).send().await.unwrap().json().await.unwrap();
    assert_eq!(open.as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn sandbox_env_is_bounded() {
    let root = tempfile::tempdir().unwrap();
    let server = server_in(root.path(), &[]);
    let client = client();
    let big = json!({"env": {"BIG": "x".repeat(1 << 20)}});
    let (status, body) = post(&client, server.url("/v1/sandboxes"), big).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("env is too large"), "{body}");
    let many: serde_json::Map<String, Value> = (0..300).map(|i| (format!("V{i}"), json!("1"))).collect();
    let (status, _) = post(&client, server.url("/v1/sandboxes"), json!({"env": many})).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn workspaces_are_private_and_a_foreign_root_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let workspaces = root.path().join("workspaces");
    let server = server_in(&workspaces, &[]);
    let client = client();
    let (status, _) = post(&client, server.url("/v1/sandboxes"), json!({})).await;
    assert_eq!(status, 201);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&workspaces), 0o700);
    assert_eq!(mode(&only_workspace(&workspaces)), 0o700);
    drop(server);

    let shared = root.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let refused = crate::support::soulbox()
        .args(["serve", "--dev", "--addr", "127.0.0.1:0", "--set"])
        .arg(format!("storage.workspace_root={}", shared.display()))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("may be written by other users"), "{said}");
}

#[test]
fn a_home_others_may_write_is_refused() {
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = crate::support::soulbox()
        .args(["--home", home.path().to_str().unwrap(), "run", "-e", "print(1)"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("may be written by other users"), "{said}");
}

#[tokio::test]
async fn the_smaller_findings_are_fixed() {
    let root = tempfile::tempdir().unwrap();
    let server = server_in(root.path(), &[]);
    let client = client();
    // The template named in the docs.
    let (status, js) = post(&client, server.url("/v1/sandboxes"), json!({"template": "javascript"})).await;
    assert_eq!(status, 201, "{js}");
    assert_eq!(js["template"], "javascript");
    let id = js["id"].as_str().unwrap().to_owned();
    // The 17th context is a 409 (retrying will not help), not a 503.
    let contexts = server.url(&format!("/v1/sandboxes/{id}/contexts"));
    for _ in 0..15 {
        let (status, body) = post(&client, contexts.clone(), json!({"language": "javascript"})).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = post(&client, contexts, json!({"language": "javascript"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "{body}");
    // Over-long names and control characters are 400s, not 500s or forged log lines.
    let files = |path: &str| server.url(&format!("/v1/sandboxes/{id}/files?path={}", urlencode(path)));
    let long = format!("/{}", "n".repeat(300));
    let upload = client.put(files(&long)).body("x").send().await.unwrap();
    assert_eq!(upload.status(), 400);
    let forged = client.put(files("/a\nINFO forged line")).body("x").send().await.unwrap();
    assert_eq!(forged.status(), 400);
    assert!(!server.log().contains("INFO forged line"));
    // An upload under a link that leads out names the link.
    std::os::unix::fs::symlink("/etc", only_workspace(root.path()).join("out")).unwrap();
    let escaping = client.put(files("/out/x/y.txt")).body("x").send().await.unwrap();
    assert_eq!(escaping.status(), 400);
    let body: Value = escaping.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("`/out` is outside"), "{body}");
    // Concurrent uploads to one path never mix: the file is one of them, whole.
    let uploads: Vec<_> = (0..8u8)
        .map(|i| {
            let (client, url) = (client.clone(), files("/same.bin"));
            tokio::spawn(async move { client.put(url).body(vec![b'a' + i; 4 << 20]).send().await.unwrap().status() })
        })
        .collect();
    for upload in uploads {
        assert_eq!(upload.await.unwrap(), 201);
    }
    let got = client.get(files("/same.bin")).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(got.len(), 4 << 20);
    assert!(got.iter().all(|b| *b == got[0]), "one upload, whole");
    let listed: Value = client
        .get(server.url(&format!("/v1/sandboxes/{id}/files/list?path=/")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert!(!names.iter().any(|n| n.contains("soulbox-upload")), "no temporary file left: {names:?}");
}

#[tokio::test]
async fn a_refusal_before_the_body_is_read_closes_the_connection_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = start_with_keys(dir.path(), &["t"], &[]);
    let client = client();
    let refused = client
        .post(server.url("/v1/execute"))
        .bearer_auth("sbk_not_a_key")
        .json(&json!({"language": "python", "code": "print(1)"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["connection"], "close");
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Posts `body` to `url` with `key`.
async fn post_as(client: &reqwest::Client, key: &str, url: String, body: Value) -> (u16, Value) {
    let response = client.post(url).bearer_auth(key).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn one_tenant_filling_the_workers_with_sleeping_and_busy_cells_does_not_hold_up_another() {
    let dir = tempfile::tempdir().unwrap();
    // The request rate limit raised out of the way: the test polls the greedy tenant's
    // sandboxes as fast as the server answers, which would spend that tenant's burst (a 429 for
    // its own requests, not the fairness between tenants this test is about).
    let settings = ["server.workers=2", "auth.requests_per_second=1000000", "auth.burst=1000000"];
    let (server, keys) = start_with_keys(dir.path(), &["greedy", "other"], &settings);
    let (greedy, other) = (keys[0].clone(), keys[1].clone());
    let client = client();
    // The greedy tenant: eight cells that run until told to stop, half sleeping in a host call,
    // half spinning on the CPU; more than the pool's two workers.
    let waits = [
        "import os, time\nopen('/started', 'w').close()\nwhile not os.path.exists('/go'):\n    time.sleep(0.01)",
        "import os\nopen('/started', 'w').close()\nwhile not os.path.exists('/go'):\n    pass",
    ];
    let mut sandboxes = Vec::new();
    for _ in 0..8 {
        let (status, created) = post_as(&client, &greedy, server.url("/v1/sandboxes"), json!({})).await;
        assert_eq!(status, 201, "{created}");
        sandboxes.push(created["id"].as_str().unwrap().to_owned());
    }
    let mut cells = Vec::new();
    for (i, id) in sandboxes.iter().enumerate() {
        let cell = json!({"code": waits[i % 2], "limits": {"deadline_ms": 240000}});
        let (client, key, url) = (client.clone(), greedy.clone(), server.url(&format!("/v1/sandboxes/{id}/execute")));
        cells.push(tokio::spawn(async move { post_as(&client, &key, url, cell).await }));
    }
    // Wait (on the server's word, not on a clock) until two busy cells fill the two workers
    // (sleeping ones that came first run beside them: they wait in a host call; the rest
    // queue behind the greedy tenant's own work).
    let mut polls = 0;
    loop {
        polls += 1;
        assert!(polls < 20_000, "the greedy tenant's busy cells never started");
        let mut busy_started = 0;
        for id in sandboxes.iter().skip(1).step_by(2) {
            let stat = client.get(server.url(&format!("/v1/sandboxes/{id}/files/stat?path=/started")));
            busy_started += usize::from(stat.bearer_auth(&greedy).send().await.unwrap().status() == 200);
        }
        if busy_started >= 2 {
            break;
        }
        tokio::task::yield_now().await;
    }
    // The other tenant's work runs while every one of those is still going.
    let (status, ran) =
        post_as(&client, &other, server.url("/v1/execute"), json!({"language": "python", "code": "print(1 + 1)"}))
            .await;
    assert_eq!((status, ran["stdout"].as_str()), (200, Some("2\n")), "{ran}");
    let (_, created) = post_as(&client, &other, server.url("/v1/sandboxes"), json!({})).await;
    let id = created["id"].as_str().unwrap();
    let (_, cell) =
        post_as(&client, &other, server.url(&format!("/v1/sandboxes/{id}/execute")), json!({"code": "1 + 1"})).await;
    assert_eq!(cell["results"][0]["text"], "2", "{cell}");
    assert!(cells.iter().all(|c| !c.is_finished()), "the greedy tenant's cells were all still running");
    for id in &sandboxes {
        let go = client.put(server.url(&format!("/v1/sandboxes/{id}/files?path=/go"))).bearer_auth(&greedy).body("");
        assert_eq!(go.send().await.unwrap().status(), 201);
    }
    for cell in cells {
        let (status, ran) = cell.await.unwrap();
        assert_eq!((status, ran["outcome"].as_str()), (200, Some("completed")), "{ran}");
    }
}

#[tokio::test]
async fn the_audit_log_records_what_matters_and_daily_budgets_refuse_once_spent() {
    let dir = tempfile::tempdir().unwrap();
    let budgets = ["auth.execution_seconds_per_day=1", "auth.sandbox_hours_per_day=0.0002"];
    let (server, keys) = start_with_keys(dir.path(), &["audited"], &budgets);
    let key = keys[0].clone();
    let client = client();
    let (status, created) = post_as(&client, &key, server.url("/v1/sandboxes"), json!({})).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    // The budget is checked before work: this cell runs, and spends more than the 1 s.
    let cell = json!({"code": "import time\ntime.sleep(1.2)\n'slept'"});
    let (status, ran) = post_as(&client, &key, server.url(&format!("/v1/sandboxes/{id}/execute")), cell).await;
    assert_eq!((status, ran["outcome"].as_str()), (200, Some("completed")), "{ran}");
    let refused =
        client.post(server.url("/v1/execute")).bearer_auth(&key).json(&json!({"language": "python", "code": "1"}));
    let refused = refused.send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "budget_exhausted", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("renews at 00:00 UTC"));
    // The open sandbox has lived past the 0.72 s of sandbox time.
    let (status, body) = post_as(&client, &key, server.url("/v1/sandboxes"), json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("budget_exhausted")), "{body}");
    let killed = client.delete(server.url(&format!("/v1/sandboxes/{id}"))).bearer_auth(&key).send().await.unwrap();
    assert_eq!(killed.status(), 204);
    let stranger = client.get(server.url("/v1/sandboxes")).bearer_auth("sbk_nobody").send().await.unwrap();
    assert_eq!(stranger.status(), 401);
    // Events are written in batches, up to 100 ms late: look until the last one is in (a
    // bounded number of looks, paced under the key's rate limit).
    let mut events = Vec::new();
    for _ in 0..400 {
        let listed = client.get(server.url("/v1/audit?since_ms=0")).bearer_auth(&key).send().await.unwrap();
        assert_eq!(listed.status(), 200);
        let listed: Value = listed.json().await.unwrap();
        events = listed.as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap().to_owned()).collect();
        if events.iter().any(|e| e == "sandbox.killed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for wanted in ["key.created", "key.used", "sandbox.created", "limit.tripped", "sandbox.killed"] {
        assert!(events.iter().any(|e| e == wanted), "{wanted} in {events:?}");
    }
    assert!(!events.iter().any(|e| e == "access.refused"), "another caller's refusal is not this tenant's");
}

#[tokio::test]
async fn a_workspace_holds_no_more_than_its_disk_quota() {
    let root = tempfile::tempdir().unwrap();
    let server = server_in(root.path(), &["resources.disk_mb=4"]);
    let client = client();
    let (_, created) = post(&client, server.url("/v1/sandboxes"), json!({})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let workspace = only_workspace(root.path());
    let mounted = || std::fs::read_to_string("/proc/mounts").unwrap().contains(&workspace.display().to_string());
    assert!(mounted(), "the workspace is a quota file system of its own");
    let flood = "import errno\ntry:\n    open('/big', 'wb').write(b'x' * (8 << 20))\nexcept OSError as e:\n    print(errno.errorcode[e.errno])";
    let (_, ran) = post(&client, server.url(&format!("/v1/sandboxes/{id}/execute")), json!({"code": flood})).await;
    assert_eq!(ran["stdout"], "ENOSPC\n", "the quota, not the host's disk: {ran}");
    let (_, ran) = post(
        &client,
        server.url(&format!("/v1/sandboxes/{id}/execute")),
        json!({"code": "import os; os.remove('/big')"}),
    )
    .await;
    assert_eq!(ran["outcome"], "completed", "{ran}");
    let upload = client.put(server.url(&format!("/v1/sandboxes/{id}/files?path=/up.bin"))).body(vec![0u8; 6 << 20]);
    let upload = upload.send().await.unwrap();
    assert_eq!(upload.status(), 413);
    let body: Value = upload.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("workspace is full"), "{body}");
    let small = client.put(server.url(&format!("/v1/sandboxes/{id}/files?path=/ok.txt"))).body("fits");
    assert_eq!(small.send().await.unwrap().status(), 201, "what fits still goes in");
    let killed = client.delete(server.url(&format!("/v1/sandboxes/{id}"))).send().await.unwrap();
    assert_eq!(killed.status(), 204);
    assert!(!mounted() && !workspace.exists(), "killing the sandbox unmounts and removes its workspace");
}

#[tokio::test]
async fn a_cell_whose_caller_leaves_still_holds_its_slot_and_is_accounted() {
    let dir = tempfile::tempdir().unwrap();
    let (server, keys) = start_with_keys(dir.path(), &["leaver"], &[]);
    let client = reqwest::Client::new();
    let id = crate::support::create_sandbox(&client, &server, Some(&keys[0])).await;
    let code = "print('started', flush=True)\nimport time\ntime.sleep(0.5)\n'done'";
    let mut response = client
        .post(server.url(&format!("/v1/sandboxes/{id}/execute")))
        .bearer_auth(&keys[0])
        .header("accept", "application/x-ndjson")
        .json(&json!({"code": code}))
        .send()
        .await
        .unwrap();
    let first = response.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("started"));
    drop(response); // the caller leaves while its cell runs
    // Usage is written in the background, up to 100 ms late: poll (pausing between looks, under
    // the key's rate limit).
    let mut cells = Value::Null;
    for _ in 0..1200 {
        let usage = client.get(server.url("/v1/usage")).bearer_auth(&keys[0]).send().await.unwrap();
        assert_eq!(usage.status(), 200);
        let usage: Value = usage.json().await.unwrap();
        cells = usage.as_array().unwrap().iter().find(|row| row["kind"] == "cell").cloned().unwrap_or(Value::Null);
        if !cells.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(cells["executions"], 1, "the abandoned cell ran to its end and was recorded: {cells}");
}
