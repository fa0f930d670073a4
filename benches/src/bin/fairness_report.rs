//! `fairness-report`: how long one tenant's `print(1 + 1)` takes over HTTP while another
//! tenant fills its whole quota of executions, with sleeping cells and then with CPU-bound
//! cells, beside the same request on an idle server, all in one run, printed as a Markdown
//! table.
//!
//! The server is `soulbox serve` (the `soulbox` binary built beside this one) with API keys,
//! its defaults (one worker per CPU, one-shot guests on the worker threads, 16 executions at
//! once per key) and the rate limit raised out of the way. The greedy tenant opens
//! [`GREEDY_CELLS`] sandboxes and runs a cell in each that never ends by itself; the measured
//! tenant sends [`SAMPLES`] requests one after another; then the greedy sandboxes are killed.

use anyhow::{Context, bail};
use soulbox_benches::{percentile, soulbox_command, start_soulbox};
use std::process::Child;
use std::time::{Duration, Instant};

/// The greedy tenant's cells: its whole quota (`auth.max_concurrent_executions`, default 16).
const GREEDY_CELLS: usize = 16;
/// Requests measured per row.
const SAMPLES: usize = 200;

fn main() -> anyhow::Result<()> {
    let state = tempfile::tempdir()?;
    let database = format!("sqlite://{}", state.path().join("soulbox.db").display());
    let (greedy, measured) = (create_key(&database, "greedy")?, create_key(&database, "measured")?);
    let server = Server::start(&database, &state.path().join("workspaces"))?;
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build()?;
    let idle = server.sample(&client, &measured)?;
    let mut rows = vec![("idle server (baseline)", idle.clone())];
    let loads = [
        ("while the other tenant runs 16 sleeping cells", "import time\nwhile True:\n    time.sleep(0.05)"),
        ("while the other tenant runs 16 CPU-bound cells", "while True:\n    pass"),
    ];
    for (name, code) in loads {
        let sandboxes = server.saturate(&client, &greedy, code)?;
        let sampled = server.sample(&client, &measured);
        for id in &sandboxes {
            client.delete(server.url(&format!("/v1/sandboxes/{id}"))).bearer_auth(&greedy).send()?;
        }
        rows.push((name, sampled?));
    }
    println!("| another tenant's `print(1 + 1)` over HTTP | p50 | p99 | p50 vs idle |");
    println!("|---|---|---|---|");
    let base = percentile(&idle, 0.5);
    for (name, samples) in rows {
        let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
        let ratio = p50.as_secs_f64() / base.as_secs_f64();
        println!("| {name} | {:.3} ms | {:.3} ms | {ratio:.1}x |", ms(p50), ms(p99));
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn create_key(database: &str, tenant: &str) -> anyhow::Result<String> {
    let out = soulbox_command()?.args(["--database-url", database, "keys", "create", "--tenant", tenant]).output()?;
    if !out.status.success() {
        bail!("keys create: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(database: &str, workspaces: &std::path::Path) -> anyhow::Result<Server> {
        let root = format!("storage.workspace_root={}", workspaces.display());
        let (child, base) = start_soulbox([
            "--database-url",
            database,
            "--set",
            "auth.requests_per_second=100000",
            "--set",
            "auth.burst=100000",
            "--set",
            &root,
            "serve",
            "--addr",
            "127.0.0.1:0",
        ])?;
        Ok(Server { child, base })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// [`SAMPLES`] round trips of `print(1 + 1)` by `key`, after a few unmeasured ones.
    fn sample(&self, client: &reqwest::blocking::Client, key: &str) -> anyhow::Result<Vec<Duration>> {
        let body = serde_json::json!({"language": "python", "code": "print(1 + 1)"});
        let mut samples = Vec::with_capacity(SAMPLES);
        for i in 0..SAMPLES + 5 {
            let started = Instant::now();
            let answer: serde_json::Value =
                client.post(self.url("/v1/execute")).bearer_auth(key).json(&body).send()?.error_for_status()?.json()?;
            anyhow::ensure!(answer["stdout"] == "2\n", "unexpected answer: {answer}");
            if i >= 5 {
                samples.push(started.elapsed());
            }
        }
        Ok(samples)
    }

    /// Opens [`GREEDY_CELLS`] sandboxes for `key` and starts `code` in each (in the background);
    /// returns once every cell has started (each writes `/started` first).
    fn saturate(&self, client: &reqwest::blocking::Client, key: &str, code: &str) -> anyhow::Result<Vec<String>> {
        let mut sandboxes = Vec::new();
        for _ in 0..GREEDY_CELLS {
            let created: serde_json::Value =
                client.post(self.url("/v1/sandboxes")).bearer_auth(key).json(&serde_json::json!({})).send()?.json()?;
            sandboxes.push(created["id"].as_str().context("a sandbox id")?.to_owned());
        }
        let cell = serde_json::json!({
            "code": format!("open('/started', 'w').close()\n{code}"),
            "limits": {"deadline_ms": 240_000},
        });
        for id in &sandboxes {
            let (client, url, key, cell) =
                (client.clone(), self.url(&format!("/v1/sandboxes/{id}/execute")), key.to_owned(), cell.clone());
            std::thread::spawn(move || client.post(url).bearer_auth(key).json(&cell).send());
        }
        // Every cell the pool runs at once has started: the sleeping ones all, the busy ones
        // up to the workers (the rest queue behind the greedy tenant's own).
        let wanted = if code.contains("sleep") { GREEDY_CELLS } else { 2 };
        loop {
            let started = sandboxes
                .iter()
                .filter(|id| {
                    let stat = client.get(self.url(&format!("/v1/sandboxes/{id}/files/stat?path=/started")));
                    stat.bearer_auth(key).send().is_ok_and(|r| r.status().is_success())
                })
                .count();
            if started >= wanted {
                return Ok(sandboxes);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
