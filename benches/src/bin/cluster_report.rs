//! `cluster-report`: SoulBox as a cluster on this machine, through HAProxy with the shipped
//! `deploy/haproxy/haproxy.cfg`: stateless executions per second with 1, 2 and 3 nodes
//! (against one server that is not a cluster node, the baseline: no lease, and each key's
//! running executions counted in memory rather than in the database), the
//! cost of a request sent to the wrong node (forwarded to its sandbox's owner), and how long a
//! killed node's sandbox takes to come back on another.
//!
//! The nodes are `soulbox serve` processes (the `soulbox` binary built beside this one) sharing
//! one PostgreSQL database (`$SOULBOX_BENCH_POSTGRES_URL`, else the server
//! `scripts/postgres.sh` starts; a schema of its own per run) and one S3-compatible object
//! store (moto on loopback, from `target/moto-venv`). Each node is pinned to one CPU with
//! `taskset` (its worker processes inherit it), node N to CPU `(N - 1) % CPUs`, so the scaling
//! shows on a small machine: with 2 CPUs, the third node shares the first's, and the proxy,
//! `wrk` and PostgreSQL share both. For 1 and 2 nodes the proxy's configuration is the shipped
//! one without the absent nodes' `server` lines.
//!
//! Needs `wrk` and `haproxy` (Debian: `apt-get install wrk haproxy`), `psql` (PostgreSQL's
//! client), and `target/moto-venv` (`scripts/bench.sh` makes it).

use anyhow::{Context, bail};
use soulbox_benches::moto::Moto;
use soulbox_benches::wrk::{Load, Measured, RUN, WARM_UP, wrk};
use soulbox_benches::{percentile, soulbox_command};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Nodes started.
const NODES: usize = 3;
/// Each node's lease (the default): a killed node's sandboxes wait this long at most. A
/// 2 s lease was too short for nodes pinned to a saturated CPU: renewals that waited behind
/// the load let leases lapse, and the proxy took the nodes out.
const LEASE_MS: u64 = 10_000;
/// Sequential cells per forwarding row.
const CELLS: usize = 300;
/// Nodes killed, one after the other, for the takeover rows.
const TAKEOVERS: usize = 5;

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir()?;
    let database = Schema::create(&postgres_url(&root)?)?;
    let key = create_key(&database.url)?;
    let moto = Moto::start("bench")?;
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let body = r#"{"language": "python", "code": "print(1 + 1)"}"#;
    let load =
        |proxy: &Proxy| Load { url: proxy.url("/v1/execute"), body: Some(body), connections: 32, bearer: Some(&key) };
    let baseline = {
        let plain = Node::start(1, 0, &database.url, &moto, dir.path(), false)?;
        let proxy = Proxy::start(&root, dir.path(), std::slice::from_ref(&plain))?;
        wrk(dir.path(), &load(&proxy))?
    };
    let mut nodes: Vec<Node> = (1..=NODES)
        .map(|n| Node::start(n, (n - 1) % cpus, &database.url, &moto, dir.path(), true))
        .collect::<Result<_, _>>()?;

    println!(
        "Nodes pinned to one CPU each (of {cpus}), lease {LEASE_MS} ms; wrk on loopback, {} s per row after {} s of warm-up.\n",
        RUN.as_secs(),
        WARM_UP.as_secs()
    );
    println!(
        "| nodes behind the proxy | Python `print(1 + 1)`/s, 32 connections | p50 | p99 | errors | vs one plain server |"
    );
    println!("|---|---|---|---|---|---|");
    throughput_row("1, not a cluster (baseline)", &baseline, baseline.per_second());
    for count in 1..=NODES {
        let proxy = Proxy::start(&root, dir.path(), &nodes[..count])?;
        let measured = wrk(dir.path(), &load(&proxy))?;
        throughput_row(&count.to_string(), &measured, baseline.per_second());
    }

    // A sandbox on node 1; cells sent to it, and to node 2, which forwards them.
    let client = reqwest::blocking::Client::new();
    let sandbox = create_sandbox(&client, &nodes[0], &key, serde_json::json!({}))?;
    let direct = cell_latencies(&client, &nodes[0], &key, &sandbox)?;
    let forwarded = cell_latencies(&client, &nodes[1], &key, &sandbox)?;
    println!("\n| cell `x = 1`, {CELLS} sequential requests | p50 | p99 |");
    println!("|---|---|---|");
    println!("| sent to its sandbox's node | {} | {} |", ms(percentile(&direct, 0.5)), ms(percentile(&direct, 0.99)));
    println!(
        "| sent to another node (forwarded) | {} | {} |",
        ms(percentile(&forwarded, 0.5)),
        ms(percentile(&forwarded, 0.99))
    );
    let overhead = percentile(&forwarded, 0.5).saturating_sub(percentile(&direct, 0.5));
    println!("| forwarding overhead (p50 difference) | {} | |", ms(overhead));

    // Takeovers: a sandbox checkpointed after every cell on the last node; the node is
    // killed; a cell for it on the first node waits for the lease, then takes it over.
    let (mut until_back, mut takeover) = (Vec::new(), Vec::new());
    for round in 0..TAKEOVERS {
        let victim = nodes.len() - 1;
        let id = create_sandbox(&client, &nodes[victim], &key, serde_json::json!({"checkpoint": "every_cell"}))?;
        cell(&client, &nodes[victim], &key, &id, "x = 41\nopen('notes.txt', 'w').write('kept')")?;
        let killed = Instant::now();
        nodes.pop(); // SIGKILL
        wait_until_dead(&client, &nodes[0], NODES - 1)?;
        let lease_out = Instant::now();
        let (status, text) = cell(&client, &nodes[0], &key, &id, "x + 1")?;
        let done = Instant::now();
        anyhow::ensure!(
            status == 200 && text == "42",
            "round {round}: the taken-over sandbox answered {status} {text}"
        );
        until_back.push(done - killed);
        takeover.push(done - lease_out);
        nodes.push(Node::start(NODES, (NODES - 1) % cpus, &database.url, &moto, dir.path(), true)?);
    }
    println!("\n| a killed node's sandbox (checkpointed after every cell), {TAKEOVERS} kills | p50 | max |");
    println!("|---|---|---|");
    let max = |samples: &[Duration]| samples.iter().max().copied().unwrap_or_default();
    println!(
        "| from SIGKILL to its next cell answered by another node | {} | {} |",
        ms(percentile(&until_back, 0.5)),
        ms(max(&until_back))
    );
    println!(
        "| the takeover request itself (after the lease ran out) | {} | {} |",
        ms(percentile(&takeover, 0.5)),
        ms(max(&takeover))
    );
    drop(nodes);
    database.drop_schema()?;
    Ok(())
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

fn throughput_row(nodes: &str, m: &Measured, baseline: f64) {
    println!(
        "| {nodes} | {:.0} | {:.2} ms | {:.2} ms | {} | {:.2}x |",
        m.per_second(),
        m.p50_us / 1000.0,
        m.p99_us / 1000.0,
        m.errors,
        m.per_second() / baseline
    );
}

/// `$SOULBOX_BENCH_POSTGRES_URL`, else the server `scripts/postgres.sh` starts (installing
/// Debian's package if needed).
fn postgres_url(root: &Path) -> anyhow::Result<String> {
    if let Ok(url) = std::env::var("SOULBOX_BENCH_POSTGRES_URL") {
        return Ok(url);
    }
    let output = Command::new("bash").arg(root.join("scripts/postgres.sh")).stderr(Stdio::inherit()).output()?;
    anyhow::ensure!(output.status.success(), "scripts/postgres.sh failed");
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// A schema of its own in the PostgreSQL database, dropped at the end (through `psql`).
struct Schema {
    admin: String,
    name: String,
    url: String,
}

impl Schema {
    fn create(admin: &str) -> anyhow::Result<Schema> {
        let name = format!("bench_{}", std::process::id());
        psql(admin, &format!("CREATE SCHEMA {name}"))?;
        let separator = if admin.contains('?') { '&' } else { '?' };
        let url = format!("{admin}{separator}options=-c%20search_path%3D{name}");
        Ok(Schema { admin: admin.to_owned(), name, url })
    }

    fn drop_schema(&self) -> anyhow::Result<()> {
        psql(&self.admin, &format!("DROP SCHEMA {} CASCADE", self.name))
    }
}

fn psql(url: &str, statement: &str) -> anyhow::Result<()> {
    let output = Command::new("psql").args([url, "-q", "-c", statement]).output().context("running psql")?;
    anyhow::ensure!(output.status.success(), "psql: {}", String::from_utf8_lossy(&output.stderr));
    Ok(())
}

/// An API key of the tenant `bench`.
fn create_key(database: &str) -> anyhow::Result<String> {
    let output =
        soulbox_command()?.args(["--database-url", database, "keys", "create", "--tenant", "bench"]).output()?;
    anyhow::ensure!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// One node, pinned to a CPU; killed (SIGKILL) when dropped.
struct Node {
    child: Child,
    base: String,
}

impl Node {
    /// Node `number` pinned to `cpu`; a cluster node when `clustered`, else a plain server on
    /// the same database and object store.
    fn start(
        number: usize,
        cpu: usize,
        database: &str,
        moto: &Moto,
        dir: &Path,
        clustered: bool,
    ) -> anyhow::Result<Node> {
        let soulbox = soulbox_command()?;
        let name = format!("node-{number}");
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let start = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let home = dir.join(format!("{name}-{start}"));
        let sets = vec![
            format!("cluster.node_id={name}"),
            format!("cluster.lease_ms={LEASE_MS}"),
            format!("cluster.enabled={clustered}"),
            "containers.enabled=false".into(),
            "server.workers=1".into(),
            // Room for every connection of the load (one worker's default queue is 16).
            "server.queue=128".into(),
            "auth.requests_per_second=1000000".into(),
            "auth.burst=1000000".into(),
            "auth.max_concurrent_executions=1024".into(),
            format!("storage.workspace_root={}", home.join("workspaces").display()),
            format!("storage.snapshot_dir={}", home.join("checkpoints").display()),
            "storage.object_store.bucket=bench".into(),
            format!("storage.object_store.endpoint={}", moto.endpoint),
            "storage.object_store.allow_http=true".into(),
        ];
        let mut command = Command::new("taskset");
        command.args(["-c", &cpu.to_string()]).arg(soulbox.get_program()).args(["--database-url", database]);
        for set in &sets {
            command.args(["--set", set]);
        }
        let mut child = command
            .args(["serve", "--addr", "127.0.0.1:0"])
            .env("SOULBOX_LOG", "warn")
            .env("AWS_ACCESS_KEY_ID", "moto")
            .env("AWS_SECRET_ACCESS_KEY", "moto")
            .stderr(Stdio::piped())
            .spawn()
            .context("starting a node under taskset")?;
        let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
        let base = loop {
            let line = lines.next().context("a node exited before listening")??;
            if line.contains("listening on")
                && let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://"))
            {
                break url.to_owned();
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Node { child, base })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// HAProxy with the shipped configuration, without the `server` lines of nodes beyond
/// `nodes`; killed when dropped.
struct Proxy {
    child: Child,
    base: String,
}

impl Proxy {
    fn start(root: &Path, dir: &Path, nodes: &[Node]) -> anyhow::Result<Proxy> {
        let shipped = std::fs::read_to_string(root.join("deploy/haproxy/haproxy.cfg"))?;
        let absent = |line: &str| (nodes.len() + 1..=NODES).any(|n| line.contains(&format!("SOULBOX_NODE_{n}")));
        let config: String = shipped.lines().filter(|line| !absent(line)).map(|line| format!("{line}\n")).collect();
        let path = dir.join(format!("haproxy-{}.cfg", nodes.len()));
        std::fs::write(&path, config)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut command = Command::new("haproxy");
        command.args(["-db", "-f"]).arg(&path).env("SOULBOX_PROXY_BIND", format!("127.0.0.1:{port}"));
        for (i, node) in nodes.iter().enumerate() {
            command.env(format!("SOULBOX_NODE_{}", i + 1), node.base.trim_start_matches("http://"));
        }
        let child =
            command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().context("haproxy (apt-get install haproxy)")?;
        let proxy = Proxy { child, base: format!("http://127.0.0.1:{port}") };
        let client = reqwest::blocking::Client::new();
        let give_up = Instant::now() + Duration::from_secs(30);
        while !client.get(proxy.url("/ready")).send().is_ok_and(|r| r.status() == 200) {
            anyhow::ensure!(Instant::now() < give_up, "haproxy did not answer");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(proxy)
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

fn create_sandbox(
    client: &reqwest::blocking::Client,
    node: &Node,
    key: &str,
    spec: serde_json::Value,
) -> anyhow::Result<String> {
    let created: serde_json::Value =
        client.post(node.url("/v1/sandboxes")).bearer_auth(key).json(&spec).send()?.error_for_status()?.json()?;
    Ok(created["id"].as_str().context("a sandbox id")?.to_owned())
}

/// Runs `code` in sandbox `id` through `node`: the status and the result's text.
fn cell(
    client: &reqwest::blocking::Client,
    node: &Node,
    key: &str,
    id: &str,
    code: &str,
) -> anyhow::Result<(u16, String)> {
    let response = client
        .post(node.url(&format!("/v1/sandboxes/{id}/execute")))
        .bearer_auth(key)
        .json(&serde_json::json!({"code": code}))
        .send()?;
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json()?;
    Ok((status, body["results"][0]["text"].as_str().unwrap_or_default().to_owned()))
}

/// [`CELLS`] cells `x = 1`, one after the other, through `node`: each one's wall time.
fn cell_latencies(
    client: &reqwest::blocking::Client,
    node: &Node,
    key: &str,
    id: &str,
) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(CELLS);
    for i in 0..=CELLS {
        let started = Instant::now();
        let (status, _) = cell(client, node, key, id, "x = 1")?;
        if status != 200 {
            bail!("a cell answered {status}");
        }
        if i > 0 {
            samples.push(started.elapsed());
        }
    }
    Ok(samples)
}

/// Waits until `node` lists `live` live nodes (a killed node's lease ran out).
fn wait_until_dead(client: &reqwest::blocking::Client, node: &Node, live: usize) -> anyhow::Result<()> {
    let give_up = Instant::now() + Duration::from_millis(LEASE_MS * 10);
    loop {
        let nodes: serde_json::Value = client.get(node.url("/cluster/nodes")).send()?.json()?;
        let count = nodes.as_array().map_or(0, |n| n.iter().filter(|n| n["live"] == true).count());
        if count == live {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < give_up, "a killed node's lease did not run out");
        std::thread::sleep(Duration::from_millis(5));
    }
}
