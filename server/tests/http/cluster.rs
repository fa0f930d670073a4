//! Several `soulbox serve` nodes sharing one PostgreSQL database (a schema of its own per
//! test, on `$SOULBOX_TEST_POSTGRES_URL`), behind HAProxy with the shipped
//! `deploy/haproxy/haproxy.cfg`: placement, forwarding (streams included), the operators'
//! listing, a dead node's sandboxes, and a node cut off from its database.

use crate::support::{Moto, Server, create_key};
use sqlx::AnyPool;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Each node's lease in these tests: short, so a dead node's shows soon, yet long enough that
/// renewals delayed by the rest of the suite's load do not let it lapse (`cluster-report` saw a
/// 2 s lease lapse on saturated CPUs).
const LEASE_MS: &str = "6000";
/// The longest a test waits for a condition (a lease to run out, a proxy to see its nodes).
const PATIENCE: Duration = Duration::from_secs(60);

/// A PostgreSQL schema of its own, dropped at the end.
pub(crate) struct Schema {
    admin: AnyPool,
    name: String,
    pub(crate) url: String,
}

impl Schema {
    pub(crate) async fn new() -> Schema {
        let url = std::env::var("SOULBOX_TEST_POSTGRES_URL").expect(
            "SOULBOX_TEST_POSTGRES_URL names a PostgreSQL server (scripts/test.sh starts one with scripts/postgres.sh)",
        );
        install_default_drivers();
        let admin = AnyPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
        let name = format!("cluster_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE SCHEMA {name}")).execute(&admin).await.unwrap();
        let separator = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{separator}options=-c%20search_path%3D{name}");
        Schema { admin, name, url }
    }

    pub(crate) async fn drop_schema(self) {
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.name)).execute(&self.admin).await.unwrap();
    }
}

/// Starts node `name` on `database`, its files under `dir`.
fn start_node(name: &str, database: &str, dir: &Path) -> Server {
    start_node_in_env(name, database, dir, &[])
}

/// [`start_node`] with extra environment variables.
pub(crate) fn start_node_in_env(name: &str, database: &str, dir: &Path, env: &[(&str, &str)]) -> Server {
    let workspaces = format!("storage.workspace_root={}", dir.join(name).display());
    let node = format!("cluster.node_id={name}");
    let lease = format!("cluster.lease_ms={LEASE_MS}");
    let sets = [
        workspaces.as_str(),
        &node,
        &lease,
        "cluster.enabled=true",
        "containers.enabled=false",
        "server.workers=1",
        // The tenant bound the cluster test fills across three nodes (two per node).
        "auth.max_sandboxes_per_tenant=6",
    ];
    let mut args = vec!["--database-url", database];
    for set in sets {
        args.extend(["--set", set]);
    }
    args.extend(["serve", "--addr", "127.0.0.1:0"]);
    Server::start_in_env(&args, env)
}

/// `host:port` of a server's base URL.
fn authority(server: &Server) -> String {
    server.url("").trim_start_matches("http://").to_owned()
}

/// HAProxy with the shipped configuration in front of `nodes`; killed when dropped.
struct Proxy {
    child: Child,
    base: String,
}

impl Proxy {
    async fn start(nodes: &[&Server]) -> Proxy {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy/haproxy.cfg");
        let haproxy = haproxy();
        let mut command = Command::new(&haproxy);
        command.args(["-db", "-f"]).arg(&config).env("SOULBOX_PROXY_BIND", format!("127.0.0.1:{port}"));
        for (i, node) in nodes.iter().enumerate() {
            command.env(format!("SOULBOX_NODE_{}", i + 1), authority(node));
        }
        let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("haproxy starts");
        let proxy = Proxy { child, base: format!("http://127.0.0.1:{port}") };
        let client = reqwest::Client::new();
        wait_for("the proxy to answer", || async {
            client.get(proxy.url("/ready")).send().await.is_ok_and(|r| r.status() == 200)
        })
        .await;
        proxy
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's `haproxy` (`scripts/test.sh` installs it). Without it the test fails.
fn haproxy() -> PathBuf {
    let path = PathBuf::from("/usr/sbin/haproxy");
    assert!(path.exists(), "no HAProxy at {}: `apt-get install haproxy` (scripts/test.sh does)", path.display());
    path
}

/// Polls `condition` until it holds, failing the test after [`PATIENCE`].
pub(crate) async fn wait_for<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let give_up = Instant::now() + PATIENCE;
    while !condition().await {
        assert!(Instant::now() < give_up, "waited too long for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The node a response says served it.
pub(crate) fn served_by(response: &reqwest::Response) -> String {
    response.headers()["x-soulbox-node"].to_str().unwrap().to_owned()
}

/// Runs `code` in sandbox `id` at `base` with `key`; returns the node that served it and the
/// result's text.
async fn cell(client: &reqwest::Client, base: &str, key: &str, id: &str, code: &str) -> (String, String) {
    let response = client
        .post(format!("{base}/v1/sandboxes/{id}/execute"))
        .bearer_auth(key)
        .json(&serde_json::json!({"code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let node = served_by(&response);
    let body: serde_json::Value = response.json().await.unwrap();
    (node, body["results"][0]["text"].as_str().unwrap_or_default().to_owned())
}

/// Starts `code` in sandbox `id` at `base` with `key` as an NDJSON stream; returns the response
/// as its head arrives (the body streams while the cell runs).
pub(crate) async fn stream_cell(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    id: &str,
    code: &str,
) -> reqwest::Response {
    client
        .post(format!("{base}/v1/sandboxes/{id}/execute"))
        .bearer_auth(key)
        .header("accept", "application/x-ndjson")
        .json(&serde_json::json!({"code": code}))
        .send()
        .await
        .unwrap()
}

/// How many nodes `/cluster/nodes` at `url` lists as live.
async fn live_nodes(client: &reqwest::Client, url: &str) -> usize {
    let nodes: serde_json::Value = client.get(url).send().await.unwrap().json().await.unwrap();
    nodes.as_array().unwrap().iter().filter(|n| n["live"] == true).count()
}

#[tokio::test]
async fn three_nodes_behind_haproxy_place_forward_and_stream_sandboxes() {
    let schema = Schema::new().await;
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(&schema.url, "acme");
    let nodes: Vec<Server> =
        ["node-1", "node-2", "node-3"].iter().map(|name| start_node(name, &schema.url, dir.path())).collect();
    let proxy = Proxy::start(&nodes.iter().collect::<Vec<_>>()).await;
    let client = reqwest::Client::new();

    // New sandboxes through the proxy land on every node (the least busy takes each).
    let mut sandboxes = Vec::new();
    for _ in 0..6 {
        let response = client.post(proxy.url("/v1/sandboxes")).bearer_auth(&key).json(&serde_json::json!({})).send();
        let response = response.await.unwrap();
        assert_eq!(response.status(), 201);
        let node = served_by(&response);
        let created: serde_json::Value = response.json().await.unwrap();
        sandboxes.push((created["id"].as_str().unwrap().to_owned(), node));
    }
    let placed: BTreeSet<&str> = sandboxes.iter().map(|(_, node)| node.as_str()).collect();
    assert_eq!(placed.len(), 3, "{sandboxes:?}");

    // Cells through the proxy reach each sandbox's owner, whichever node the id hashes to.
    for (id, owner) in &sandboxes {
        assert_eq!(cell(&client, &proxy.base, &key, id, "x = 41").await.0, *owner);
        assert_eq!(cell(&client, &proxy.base, &key, id, "x + 1").await, (owner.clone(), "42".into()));
    }

    // A cell sent to a node that does not own the sandbox is forwarded, and streams: its
    // first line arrives while it runs (it waits for a file the test writes through a third
    // node once that line is read).
    let (id, owner) = &sandboxes[0];
    let index = |name: &str| name.trim_start_matches("node-").parse::<usize>().unwrap() - 1;
    let (wrong, third) = ((index(owner) + 1) % 3, (index(owner) + 2) % 3);
    let code = "import os, time\nprint('first', flush=True)\nwhile not os.path.exists('/go'):\n    time.sleep(0.005)\nprint('second')\n6 * 7";
    let mut response = stream_cell(&client, &nodes[wrong].url(""), &key, id, code).await;
    assert_eq!((response.status().as_u16(), served_by(&response)), (200, owner.clone()));
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let mut text = String::new();
    let mut released = false;
    while let Some(chunk) = response.chunk().await.unwrap() {
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        if !released && text.contains("first") {
            let go = client.put(nodes[third].url(&format!("/v1/sandboxes/{id}/files?path=/go"))).bearer_auth(&key);
            let go = go.body("").send().await.unwrap();
            assert!(go.status().is_success() && served_by(&go) == *owner);
            released = true;
        }
    }
    let kinds: Vec<String> =
        text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["type"].to_string()).collect();
    assert_eq!(kinds, [r#""stdout""#, r#""stdout""#, r#""result""#, r#""end""#], "{text}");

    // A tool call naming the sandbox in its arguments is forwarded too.
    let call = serde_json::json!({"name": "run_cell", "arguments": {"sandbox_id": id, "code": "x * 2"}});
    let reply = client.post(nodes[wrong].url("/v1/tools/call")).bearer_auth(&key).json(&call).send().await.unwrap();
    assert_eq!((reply.status().as_u16(), served_by(&reply)), (200, owner.clone()));
    let reply: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(reply["is_error"], false, "{reply}");
    assert!(reply.to_string().contains("82"), "{reply}");

    // The tenant's bound (6) holds across the nodes, though each holds fewer.
    let seventh = client.post(proxy.url("/v1/sandboxes")).bearer_auth(&key).json(&serde_json::json!({})).send();
    let seventh = seventh.await.unwrap();
    assert_eq!(seventh.status(), 429);
    let body: serde_json::Value = seventh.json().await.unwrap();
    assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");

    // A client cannot pass for a node (the header without the cluster's token is ignored),
    // nor slip past the routing with an encoded id.
    let forged = client.get(nodes[wrong].url(&format!("/v1/sandboxes/{id}"))).bearer_auth(&key);
    let forged = forged.header("x-soulbox-forwarded-by", "node-9").send().await.unwrap();
    assert_eq!((forged.status().as_u16(), served_by(&forged)), (200, owner.clone()));
    let encoded = client.get(nodes[wrong].url(&format!("/v1/sandboxes/{}", id.replace('-', "%2D")))).bearer_auth(&key);
    let encoded = encoded.send().await.unwrap();
    assert_eq!((encoded.status().as_u16(), served_by(&encoded)), (200, owner.clone()));

    // Another tenant is refused by the owner, forwarded or not.
    let other = create_key(&schema.url, "other");
    let refused = client.get(nodes[wrong].url(&format!("/v1/sandboxes/{id}"))).bearer_auth(&other).send().await;
    assert_eq!(refused.unwrap().status(), 404);

    // The operators' listing: every node live, with the sandboxes it owns.
    let listed: serde_json::Value =
        client.get(nodes[2].url("/cluster/nodes")).send().await.unwrap().json().await.unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 3);
    for node in listed {
        assert_eq!(node["live"], true, "{node}");
        let owned: BTreeSet<&str> = node["sandboxes"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        let expected: BTreeSet<&str> =
            sandboxes.iter().filter(|(_, n)| n == node["id"].as_str().unwrap()).map(|(id, _)| id.as_str()).collect();
        assert_eq!(owned, expected);
    }

    // Each node's metrics carry its name.
    let metrics = client.get(nodes[1].url("/metrics")).send().await.unwrap().text().await.unwrap();
    let on_two = sandboxes.iter().filter(|(_, node)| node == "node-2").count();
    assert!(metrics.contains(&format!(r#"soulbox_sandboxes_open{{node="node-2"}} {on_two}"#)), "{metrics}");

    // New sandboxes asked of one node go to the node holding the fewest (itself among equals).
    let spread = create_key(&schema.url, "spread");
    let mut placed_by_one = BTreeSet::new();
    for _ in 0..3 {
        let made = client.post(nodes[0].url("/v1/sandboxes")).bearer_auth(&spread).json(&serde_json::json!({}));
        let made = made.send().await.unwrap();
        assert_eq!(made.status(), 201);
        placed_by_one.insert(served_by(&made));
    }
    assert_eq!(placed_by_one.len(), 3, "{placed_by_one:?}");

    // A node killed outright: while its lease runs, its sandboxes are refused with the reason
    // (503), never 404.
    let mut nodes = nodes;
    let dead = nodes.remove(index(owner));
    drop(dead); // SIGKILL
    let alive = &nodes[0];
    let answer = client.get(alive.url(&format!("/v1/sandboxes/{id}"))).bearer_auth(&key).send().await.unwrap();
    assert_eq!(answer.status(), 503);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("did not answer"), "{body}");
    wait_for("the dead node's lease to run out", || {
        let (client, url) = (client.clone(), alive.url("/cluster/nodes"));
        async move { live_nodes(&client, &url).await == 2 }
    })
    .await;
    // Once its lease ran out, a sandbox it held without a hand-over (these nodes have no
    // object store) is kept a lease more for its node to come back (503), then lost, and
    // says why.
    let answer = answer_once_settled(&client, &alive.url(&format!("/v1/sandboxes/{id}")), &key).await;
    assert_eq!(answer.status(), 410);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("without a checkpoint"), "{body}");
    // The others' sandboxes still answer through the proxy.
    for (id, node) in sandboxes.iter().filter(|(_, node)| node != owner) {
        assert_eq!(cell(&client, &proxy.base, &key, id, "x + 1").await, (node.clone(), "42".into()));
    }
    drop(proxy);
    drop(nodes);
    schema.drop_schema().await;
}

/// A TCP relay to PostgreSQL that the test can cut (every connection dropped, new ones
/// refused) and restore: a node's database connection dropping.
struct Relay {
    addr: std::net::SocketAddr,
    open: Arc<AtomicBool>,
    cut: Arc<std::sync::Mutex<tokio_util::sync::CancellationToken>>,
}

impl Relay {
    async fn start(target: String) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(std::sync::Mutex::new(tokio_util::sync::CancellationToken::new()));
        let (accepting, cuts) = (open.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accepting.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let token = cuts.lock().unwrap().clone();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        () = token.cancelled() => {}
                    }
                });
            }
        });
        Relay { addr, open, cut }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        let mut token = self.cut.lock().unwrap();
        token.cancel();
        *token = tokio_util::sync::CancellationToken::new();
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

// Multi-threaded: the relay's tasks run while the test blocks on starting the nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_its_database_stops_serving_and_comes_back_when_it_returns() {
    let schema = Schema::new().await;
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(&schema.url, "acme");
    // The node reaches PostgreSQL through the relay; a second node directly.
    let (start, rest) = schema.url.split_once('@').expect("a URL with credentials");
    let (postgres, path) = rest.split_once('/').expect("a URL with a database");
    let relay = Relay::start(postgres.to_owned()).await;
    let relayed = format!("{start}@{}/{path}", relay.addr);
    let cut_off = start_node("node-1", &relayed, dir.path());
    let other = start_node("node-2", &schema.url, dir.path());
    let client = reqwest::Client::new();
    let created = client.post(cut_off.url("/v1/sandboxes")).bearer_auth(&key).json(&serde_json::json!({})).send();
    let created: serde_json::Value = created.await.unwrap().json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(cell(&client, &cut_off.url(""), &key, &id, "x = 41").await.0, "node-1");

    relay.cut();
    wait_for("the cut-off node to stop being ready", || {
        let url = cut_off.url("/ready");
        let client = client.clone();
        async move { client.get(url).send().await.is_ok_and(|r| r.status() == 503) }
    })
    .await;
    // It takes no sandbox and serves none; neither does the other node serve its sandbox:
    // nobody owns it twice.
    let refused = client.post(cut_off.url("/v1/sandboxes")).bearer_auth(&key).json(&serde_json::json!({})).send();
    assert_eq!(refused.await.unwrap().status(), 503);
    let own = client.get(cut_off.url(&format!("/v1/sandboxes/{id}"))).bearer_auth(&key).send().await.unwrap();
    assert_eq!(own.status(), 503);
    let body: serde_json::Value = own.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("lease"), "{body}");
    let elsewhere = client.get(other.url(&format!("/v1/sandboxes/{id}"))).bearer_auth(&key).send().await.unwrap();
    assert_eq!(elsewhere.status(), 503, "the other node neither serves nor forwards to a node without a lease");

    // The database comes back: the node renews (or registers again and adopts its sandbox),
    // and the sandbox answers with its state, here and through the other node.
    relay.restore();
    wait_for("the node to be ready again", || {
        let url = cut_off.url("/ready");
        let client = client.clone();
        async move { client.get(url).send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    assert_eq!(cell(&client, &cut_off.url(""), &key, &id, "x + 1").await, ("node-1".into(), "42".into()));
    assert_eq!(cell(&client, &other.url(""), &key, &id, "x + 2").await, ("node-1".into(), "43".into()));
    drop((cut_off, other));
    schema.drop_schema().await;
}

/// Creates a sandbox on `node` with `spec`; returns its id.
async fn create_on(client: &reqwest::Client, node: &Server, key: &str, spec: serde_json::Value) -> String {
    let created = client.post(node.url("/v1/sandboxes")).bearer_auth(key).json(&spec).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let created: serde_json::Value = created.json().await.unwrap();
    created["id"].as_str().unwrap().to_owned()
}

/// Polls `GET url` until it answers other than 503 (a dead node's sandbox: its lease, then
/// the lease more it is kept for its node to come back, have run out); returns that answer.
async fn answer_once_settled(client: &reqwest::Client, url: &str, key: &str) -> reqwest::Response {
    let give_up = Instant::now() + PATIENCE;
    loop {
        let answer = client.get(url).bearer_auth(key).send().await.unwrap();
        if answer.status() != 503 {
            return answer;
        }
        assert!(Instant::now() < give_up, "waited too long for {url} to settle");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls a cell on `node` until it answers 200 (its sandbox's node is gone: the request waits
/// for the lease to run out, then takes the sandbox over); returns the first 200's node, the
/// node it was taken over from, and the result's text.
async fn cell_once_taken_over(
    client: &reqwest::Client,
    node: &Server,
    key: &str,
    id: &str,
    code: &str,
) -> (String, Option<String>, String) {
    let give_up = Instant::now() + PATIENCE;
    loop {
        let response = client
            .post(node.url(&format!("/v1/sandboxes/{id}/execute")))
            .bearer_auth(key)
            .json(&serde_json::json!({"code": code}))
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            let from = response.headers().get("x-soulbox-taken-over-from").map(|v| v.to_str().unwrap().to_owned());
            let served = served_by(&response);
            let body: serde_json::Value = response.json().await.unwrap();
            let text = body["results"][0]["text"].as_str().map(str::to_owned);
            return (served, from, text.unwrap_or_else(|| body.to_string()));
        }
        assert_eq!(response.status(), 503, "{}", response.text().await.unwrap());
        assert!(Instant::now() < give_up, "waited too long for sandbox {id} to be taken over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// Multi-threaded: moto's and the nodes' start-ups block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_or_drained_nodes_sandboxes_are_taken_over_with_their_variables_and_files() {
    let schema = Schema::new().await;
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(&schema.url, "acme");
    let moto = Moto::start();
    moto.bucket("soulbox-cluster").await;
    let env = [
        ("SOULBOX__STORAGE__OBJECT_STORE__BUCKET", "soulbox-cluster"),
        ("SOULBOX__STORAGE__OBJECT_STORE__ENDPOINT", moto.endpoint.as_str()),
        ("SOULBOX__STORAGE__OBJECT_STORE__ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "moto"),
        ("AWS_SECRET_ACCESS_KEY", "moto"),
    ];
    let node = |name: &str| start_node_in_env(name, &schema.url, dir.path(), &env);
    let client = reqwest::Client::new();
    let (one, two) = (node("node-1"), node("node-2"));

    // Killed (SIGKILL) mid-session: a sandbox checkpointed after every cell comes back on
    // another node with its variables and files.
    let every_cell = create_on(&client, &one, &key, serde_json::json!({"checkpoint": "every_cell"})).await;
    let code = "x = 41\nopen('notes.txt', 'w').write('kept')";
    assert_eq!(cell(&client, &one.url(""), &key, &every_cell, code).await.0, "node-1");
    drop(one);
    let (served, from, text) = cell_once_taken_over(&client, &two, &key, &every_cell, "x + 1").await;
    assert_eq!((served.as_str(), from.as_deref(), text.as_str()), ("node-2", Some("node-1"), "42"));
    let notes = client.get(two.url(&format!("/v1/sandboxes/{every_cell}/files?path=/notes.txt"))).bearer_auth(&key);
    assert_eq!(notes.send().await.unwrap().text().await.unwrap(), "kept");

    // Drained (SIGTERM): its sandboxes are paused on the way out and the next node takes
    // them, no cell lost; this one checkpointed only by that pause.
    let on_pause = create_on(&client, &two, &key, serde_json::json!({})).await;
    assert_eq!(cell(&client, &two.url(""), &key, &on_pause, "y = 1").await.0, "node-2");
    assert!(two.terminate().success());
    let one = node("node-1");
    let (served, from, text) = cell_once_taken_over(&client, &one, &key, &on_pause, "y + 1").await;
    assert_eq!((served.as_str(), from.as_deref(), text.as_str()), ("node-1", Some("node-2"), "2"));
    let (_, _, text) = cell_once_taken_over(&client, &one, &key, &every_cell, "x + 2").await;
    assert_eq!(text, "43", "taken over twice, still whole");

    // A node killed with a sandbox changed since its last checkpoint: the sandbox is lost,
    // and says why, rather than coming back older than it was; whether the change was a cell,
    // or a file written outside one.
    let unsaved = create_on(&client, &one, &key, serde_json::json!({})).await;
    cell(&client, &one.url(""), &key, &unsaved, "z = 1").await;
    let late = client.put(one.url(&format!("/v1/sandboxes/{every_cell}/files?path=/late.txt"))).bearer_auth(&key);
    assert!(late.body("after the last cell").send().await.unwrap().status().is_success());
    drop(one);
    let two = node("node-2");
    let gone = answer_once_settled(&client, &two.url(&format!("/v1/sandboxes/{unsaved}")), &key).await;
    assert_eq!(gone.status(), 410);
    let body: serde_json::Value = gone.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("without a checkpoint"), "{body}");
    let written_late = client.get(two.url(&format!("/v1/sandboxes/{every_cell}"))).bearer_auth(&key).send().await;
    assert_eq!(written_late.unwrap().status(), 410, "its files changed after its last hand-over");
    drop(two);
    schema.drop_schema().await;
}

/// The Kubernetes manifests and the Compose file, checked offline with kubernetes-validate
/// (strict: unknown fields fail) and against each other (`server/tests/python/validate_deploy.py`).
#[test]
fn the_deployment_files_validate_offline() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join("target/deploy-venv/bin/python");
    assert!(
        python.exists(),
        "no deployment validator at {}: run scripts/test.sh, or `python3 -m venv target/deploy-venv && \
         target/deploy-venv/bin/pip install -r server/tests/python/deploy-requirements.txt`",
        python.display()
    );
    let out = Command::new(&python)
        .arg(root.join("server/tests/python/validate_deploy.py"))
        .args(["--deploy", &root.join("deploy").display().to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
