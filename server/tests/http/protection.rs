//! What keeps callers from overwhelming the server, against a real process: the in-flight
//! bound, per-key rate limits, body limits, and a graceful drain on SIGTERM.

use crate::support::{Server, create_key, create_sandbox, database_in, wait_for_file};
use serde_json::{Value, json};

#[tokio::test]
async fn past_the_in_flight_bound_requests_get_503_at_once() {
    let server =
        Server::start_with(&["serve", "--dev", "--addr", "127.0.0.1:0", "--set", "server.max_in_flight_requests=1"]);
    let client = reqwest::Client::new();
    let send_slow = || {
        let slow = client
            .post(server.url("/v1/execute"))
            .json(&json!({"language": "python", "code": "import time; time.sleep(2); print('done')"}))
            .send();
        tokio::spawn(slow)
    };
    let mut slow = send_slow();
    // Until the slow request is in flight other requests pass; from then on they are refused
    // at once, not queued behind it (which would answer 200 once it ended). Should a probe be
    // in flight when the slow one arrives, the slow one is the refused one: it is sent again.
    let (mut refused, mut slow_refused) = (None, 0);
    for _ in 0..12_000 {
        if slow.is_finished() {
            let first = (&mut slow).await.unwrap().unwrap();
            assert_eq!(first.status(), 503, "the slow request was refused by a probe, or nothing was");
            slow_refused += 1;
            slow = send_slow();
        }
        let response = client.get(server.url("/v1/sandboxes")).send().await.unwrap();
        if response.status() != 200 && !slow.is_finished() {
            refused = Some(response);
            break;
        }
        // A pause between looks, not to order anything.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let refused = refused.expect("a request refused while the slow one ran");
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "busy");
    let health = client.get(server.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200, "operators can still look in");
    let done: Value = slow.await.unwrap().unwrap().json().await.unwrap();
    assert_eq!(done["stdout"], "done\n");
    let metrics = client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    // Each refusal counts once: the probe's, and the slow request's own when a probe beat it.
    let busy = format!(r#"soulbox_http_errors_total{{code="busy"}} {}"#, 1 + slow_refused);
    assert!(metrics.contains(&busy), "{busy} in {metrics}");
}

#[tokio::test]
async fn each_key_has_its_own_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let database = database_in(dir.path());
    let (fast, other) = (create_key(&database, "fast"), create_key(&database, "calm"));
    let server = Server::start_with(&[
        "--database-url",
        &database,
        "--set",
        "auth.requests_per_second=1",
        "--set",
        "auth.burst=2",
        "serve",
        "--addr",
        "127.0.0.1:0",
    ]);
    let client = reqwest::Client::new();
    let list = |key: &str| client.get(server.url("/v1/sandboxes")).bearer_auth(key).send();
    assert_eq!(list(&fast).await.unwrap().status(), 200);
    assert_eq!(list(&fast).await.unwrap().status(), 200);
    // Past the burst, back-to-back requests outrun the refill (one a second): one is refused,
    // the next unless the machine took a second over the two before it.
    let mut limited = list(&fast).await.unwrap();
    for _ in 1..10 {
        if !limited.status().is_success() {
            break;
        }
        limited = list(&fast).await.unwrap();
    }
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(list(&other).await.unwrap().status(), 200, "another key is not slowed");
}

#[tokio::test]
async fn bodies_over_the_limits_are_refused_cleanly() {
    let server = Server::start_with(&[
        "serve",
        "--dev",
        "--addr",
        "127.0.0.1:0",
        "--set",
        "server.json_body_limit_bytes=4096",
        "--set",
        "server.upload_limit_bytes=1000",
    ]);
    let client = reqwest::Client::new();
    let code = format!("print('{}')", "x".repeat(8000));
    let huge = client.post(server.url("/v1/execute")).json(&json!({"language": "python", "code": code})).send();
    let huge = huge.await.unwrap();
    assert_eq!(huge.status(), 413);
    let body: Value = huge.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");
    let id = create_sandbox(&client, &server, None).await;
    let upload = client.put(server.url(&format!("/v1/sandboxes/{id}/files?path=/big.bin"))).body(vec![7u8; 2000]);
    let upload = upload.send().await.unwrap();
    assert_eq!(upload.status(), 413);
    let small = client.put(server.url(&format!("/v1/sandboxes/{id}/files?path=/small.bin"))).body(vec![7u8; 500]);
    assert_eq!(small.send().await.unwrap().status(), 201);
    for (body, needle) in [
        (r#"{"language": "python"}"#, "code"),
        (r#"{"language": "python", "code": "1", "limits": {"deadline_ms": "soon"}}"#, "deadline_ms"),
        (r#"{"language": "python", "code": "1", "extra": true}"#, "extra"),
        (r#"[1, 2"#, ""),
    ] {
        let response = client
            .post(server.url("/v1/execute"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(error["error"]["message"].as_str().unwrap().contains(needle), "{body}: {error}");
    }
}

#[tokio::test]
async fn sigterm_drains_in_flight_work_then_exits() {
    let server = Server::start();
    let client = reqwest::Client::new();
    let id = create_sandbox(&client, &server, None).await;
    let cell = client
        .post(server.url(&format!("/v1/sandboxes/{id}/execute")))
        .json(&json!({"code": "open('/started', 'w').close()\nimport time\ntime.sleep(1.2)\n'finished'"}))
        .send();
    let cell = tokio::spawn(cell);
    wait_for_file(&client, &server, &id, "/started").await;
    server.signal_terminate();
    // The listener closes as the drain starts, while the cell still runs.
    let mut refused = false;
    // Polls (with a short pause between looks, not to order anything) for up to a minute.
    for _ in 0..12_000 {
        if reqwest::Client::new().get(server.url("/health")).send().await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(refused, "no new connections while draining");
    let done: Value = cell.await.unwrap().expect("the in-flight cell answers").json().await.unwrap();
    assert_eq!(done["results"][0]["text"], "'finished'");
    let log = server.log();
    let status = server.wait();
    assert!(status.success(), "{log}");
}

#[tokio::test]
async fn a_drain_longer_than_the_shutdown_timeout_is_cut_short() {
    let server =
        Server::start_with(&["serve", "--dev", "--addr", "127.0.0.1:0", "--set", "server.shutdown_timeout_ms=300"]);
    let client = reqwest::Client::new();
    let id = create_sandbox(&client, &server, None).await;
    let slow = client
        .post(server.url(&format!("/v1/sandboxes/{id}/execute")))
        .json(&json!({"code": "open('/started', 'w').close()\nimport time; time.sleep(10)"}))
        .send();
    let slow = tokio::spawn(slow);
    wait_for_file(&client, &server, &id, "/started").await;
    server.signal_terminate();
    let (status, log) = tokio::task::spawn_blocking(move || {
        let log = server.log();
        (server.wait(), log)
    })
    .await
    .unwrap();
    assert!(status.success(), "{status:?}\n{log}");
    // Had the server waited for the guest (10 s), the request would have had its answer.
    assert!(slow.await.unwrap().is_err(), "the cut request ends without an answer");
}
