//! The container backend through the server: other languages, sandbox commands, background
//! processes, terminals, the browser, a dead Docker engine, and no container left behind.

use crate::support::{Server, create_sandbox};
use serde_json::{Value, json};
use std::process::Command;

/// Containers (running or not) whose owner label is `pid` on this host.
fn containers_of(pid: u32) -> Vec<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_owned();
    let filter = format!("label=soulbox.owner={host}:{pid}");
    let out = Command::new("docker").args(["ps", "-aq", "--filter", &filter]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let response = client.post(url).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn languages_commands_processes_terminals_and_pages_over_http() {
    let server = Server::start();
    let client = reqwest::Client::new();
    let (status, go) = post(
        &client,
        server.url("/v1/execute"),
        json!({"language": "go", "code": "package main\nimport \"fmt\"\nfunc main() { fmt.Println(6 * 7) }"}),
    )
    .await;
    assert_eq!((status, go["stdout"].as_str(), go["backend"].as_str()), (200, Some("42\n"), Some("container")), "{go}");
    let (_, native) = post(
        &client,
        server.url("/v1/execute"),
        json!({"language": "python", "code": "print(2)", "backend": "container"}),
    )
    .await;
    assert_eq!(native["backend"], "container");

    let id = create_sandbox(&client, &server, None).await;
    let base = server.url(&format!("/v1/sandboxes/{id}"));
    post(&client, format!("{base}/execute"), json!({"code": "open('notes.txt', 'w').write('from a cell')"})).await;
    let (status, listed) =
        post(&client, format!("{base}/commands"), json!({"command": "cat notes.txt; echo; ls"})).await;
    assert_eq!(status, 200, "{listed}");
    let stdout = listed["stdout"].as_str().unwrap();
    assert!(stdout.starts_with("from a cell\n") && stdout.lines().any(|l| l == "notes.txt"), "{listed}");
    assert_eq!((listed["exit_code"].clone(), listed["outcome"].clone()), (json!(0), json!("completed")));

    let streamed = client
        .post(format!("{base}/commands"))
        .header("accept", "application/x-ndjson")
        .json(&json!({"command": "echo one; sleep 1; echo two >&2"}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let kinds: Vec<String> = streamed
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["stdout", "stderr", "exit"], "{streamed}");

    let (status, cat) = post(&client, format!("{base}/commands"), json!({"command": "cat", "background": true})).await;
    assert_eq!(status, 201, "{cat}");
    let pid = cat["pid"].as_u64().unwrap();
    let stdin = client.post(format!("{base}/processes/{pid}/stdin")).body("echoed back\n").send().await.unwrap();
    assert_eq!(stdin.status(), 204);
    client.post(format!("{base}/processes/{pid}/stdin/close")).send().await.unwrap();
    let (status, exit) = post(&client, format!("{base}/processes/{pid}/wait"), json!(null)).await;
    assert_eq!((status, exit["exit_code"].clone()), (200, json!(0)), "{exit}");
    let output = client.get(format!("{base}/processes/{pid}/output")).send().await.unwrap().text().await.unwrap();
    assert!(output.contains("echoed back") && output.contains("\"exit\""), "{output}");

    let (status, pty) = post(&client, format!("{base}/commands"), json!({"pty": {"cols": 100, "rows": 30}})).await;
    assert_eq!((status, pty["pty"].clone()), (201, json!(true)), "{pty}");
    let pty_pid = pty["pid"].as_u64().unwrap();
    let resized =
        client.post(format!("{base}/processes/{pty_pid}/resize")).json(&json!({"cols": 90, "rows": 20})).send();
    assert_eq!(resized.await.unwrap().status(), 204);
    client.post(format!("{base}/processes/{pty_pid}/stdin")).body("stty size; exit\n").send().await.unwrap();
    let terminal = client.get(format!("{base}/processes/{pty_pid}/output")).send().await.unwrap().text().await.unwrap();
    assert!(terminal.contains("20 90"), "{terminal}");
    let listed: Value = client.get(format!("{base}/processes")).send().await.unwrap().json().await.unwrap();
    assert!(listed.as_array().unwrap().len() >= 2, "{listed}");
    let (status, _) = post(&client, format!("{base}/processes/999/wait"), json!(null)).await;
    assert_eq!(status, 404);

    let page = json!({"source": {"html": "<title>T</title><p>Page text</p>"}, "width": 300, "height": 200});
    let (status, rendered) = post(&client, server.url("/v1/render"), page).await;
    assert_eq!(status, 200, "{rendered}");
    assert_eq!((rendered["title"].as_str(), rendered["text"].as_str()), (Some("T"), Some("Page text")));
    let png = base64_decode(rendered["png"].as_str().unwrap());
    assert_eq!(&png[..4], b"\x89PNG");

    // Background processes and renders are accounted like every other execution (usage is
    // written in the background, up to 100 ms late: poll).
    let mut kinds = Vec::new();
    for _ in 0..1000 {
        let usage: Value = client.get(server.url("/v1/usage")).send().await.unwrap().json().await.unwrap();
        kinds = usage.as_array().unwrap().iter().map(|r| format!("{}/{}", r["kind"], r["language"])).collect();
        if ["process", "render"].iter().all(|k| kinds.iter().any(|seen| seen.starts_with(&format!("\"{k}\"")))) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(kinds.contains(&r#""process"/"bash""#.to_owned()), "{kinds:?}");
    assert!(kinds.contains(&r#""render"/"browser""#.to_owned()), "{kinds:?}");
    let metrics = client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"kind="process""#) && metrics.contains(r#"kind="render""#), "{metrics}");

    let pid = server_pid(&server);
    assert!(!containers_of(pid).is_empty(), "the server made containers");
    assert!(server.terminate().success());
    assert_eq!(containers_of(pid), Vec::<String>::new(), "no container outlives the server");
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}

fn server_pid(server: &Server) -> u32 {
    server.pid()
}

#[tokio::test]
async fn without_docker_webassembly_still_answers_and_containers_say_why() {
    let server = Server::start_with(&[
        "serve",
        "--dev",
        "--addr",
        "127.0.0.1:0",
        "--set",
        "containers.docker_host=unix:///nonexistent/docker.sock",
    ]);
    let client = reqwest::Client::new();
    let (status, python) =
        post(&client, server.url("/v1/execute"), json!({"language": "python", "code": "print(1)"})).await;
    assert_eq!((status, python["stdout"].as_str()), (200, Some("1\n")));
    let (status, ruby) = post(&client, server.url("/v1/execute"), json!({"language": "ruby", "code": "puts 1"})).await;
    assert_eq!(status, 503, "{ruby}");
    assert_eq!(ruby["error"]["code"], "unavailable");
    assert!(ruby["error"]["message"].as_str().unwrap().contains("container backend unavailable"), "{ruby}");
    let id = create_sandbox(&client, &server, None).await;
    let (status, command) =
        post(&client, server.url(&format!("/v1/sandboxes/{id}/commands")), json!({"command": "ls"})).await;
    assert_eq!(status, 503, "{command}");
}
