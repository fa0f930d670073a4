//! `http-report`: the HTTP server under load from a real load generator (`wrk`) on loopback,
//! with a baseline measured the same way in the same run, printed as a Markdown table.
//!
//! The server is `soulbox serve --dev` (the `soulbox` binary built beside this one, with its
//! defaults: one-shot guests in worker processes) with the per-key rate limit and quota raised
//! out of the way. The baseline is `benches/baseline/subprocess_server.py`: a minimal HTTP
//! server running each request's code in a new native CPython process. `GET /health` under the
//! same load shows the HTTP stack's own floor. Every row runs [`RUN`] after [`WARM_UP`].
//!
//! Needs `wrk` (Debian: `apt-get install wrk`); `scripts/bench.sh` installs it.

use anyhow::{Context, bail};
use soulbox_benches::baseline_python;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long each measured row runs.
const RUN: Duration = Duration::from_secs(10);
/// How long each row warms up first (not counted).
const WARM_UP: Duration = Duration::from_secs(2);
/// The pause after each `wrk` run: requests it abandoned when it stopped still hold execution
/// slots until they finish, and would be refused capacity for the next run.
const SETTLE: Duration = Duration::from_secs(1);

/// What `wrk` measured (its Lua `done` hook prints this as JSON).
#[derive(Debug, serde::Deserialize)]
struct Measured {
    p50_us: f64,
    p99_us: f64,
    requests: u64,
    errors: u64,
    seconds: f64,
}

impl Measured {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

/// A request `wrk` repeats.
struct Load<'a> {
    url: String,
    body: Option<&'a str>,
    connections: u32,
}

fn main() -> anyhow::Result<()> {
    let scripts = tempfile::tempdir()?;
    let soulbox = Server::soulbox()?;
    let baseline = Server::baseline()?;
    let execute = soulbox.url("/v1/execute");
    let python = r#"{"language": "python", "code": "print(1 + 1)"}"#;
    let javascript = r#"{"language": "javascript", "code": "console.log(1 + 1)"}"#;
    let native = r#"{"code": "print(1 + 1)"}"#;
    let cell_url = soulbox.sandbox_cell_url()?;
    let cell = r#"{"code": "x = 1"}"#;

    let run = |url: &str, body: Option<&str>, connections: u32| {
        wrk(scripts.path(), &Load { url: url.to_owned(), body, connections })
    };
    let health_1 = run(&soulbox.url("/health"), None, 1)?;
    let py_1 = run(&execute, Some(python), 1)?;
    let js_1 = run(&execute, Some(javascript), 1)?;
    let cell_1 = run(&cell_url, Some(cell), 1)?;
    let native_1 = run(&baseline.url("/"), Some(native), 1)?;
    let health_32 = run(&soulbox.url("/health"), None, 32)?;
    let py_32 = run(&execute, Some(python), 32)?;
    let native_32 = run(&baseline.url("/"), Some(native), 32)?;

    println!("Load generator: wrk on loopback, {} s per row after {} s of warm-up.", RUN.as_secs(), WARM_UP.as_secs());
    println!("Baseline: a minimal HTTP server running each request in a new native `python3 -c` process.\n");
    println!("| load | p50 | p99 | requests/s | errors | baseline p50 | baseline requests/s | ratio |");
    println!("|---|---|---|---|---|---|---|---|");
    latency_row("`GET /health` (HTTP floor), 1 connection", &health_1, None);
    latency_row("Python `print(1 + 1)`, 1 connection", &py_1, Some(&native_1));
    latency_row("JavaScript `console.log(1 + 1)`, 1 connection", &js_1, Some(&native_1));
    latency_row("session cell `x = 1` (Python context), 1 connection", &cell_1, None);
    latency_row("`GET /health` (HTTP floor), 32 connections", &health_32, None);
    throughput_row("Python `print(1 + 1)`, 32 connections", &py_32, &native_32);
    Ok(())
}

fn ms(us: f64) -> String {
    format!("{:.3} ms", us / 1000.0)
}

fn latency_row(name: &str, m: &Measured, baseline: Option<&Measured>) {
    let (base_p50, base_rate, ratio) = match baseline {
        Some(b) => (ms(b.p50_us), format!("{:.0}", b.per_second()), format!("{:.1}x faster", b.p50_us / m.p50_us)),
        None => ("n/a".into(), "n/a".into(), "n/a".into()),
    };
    let rate = m.per_second();
    println!(
        "| {name} | {} | {} | {rate:.0} | {} | {base_p50} | {base_rate} | {ratio} |",
        ms(m.p50_us),
        ms(m.p99_us),
        m.errors
    );
}

fn throughput_row(name: &str, m: &Measured, baseline: &Measured) {
    let ratio = format!("{:.1}x the throughput", m.per_second() / baseline.per_second());
    println!(
        "| {name} | {} | {} | {:.0} | {} | {} | {:.0} | {ratio} |",
        ms(m.p50_us),
        ms(m.p99_us),
        m.per_second(),
        m.errors,
        ms(baseline.p50_us),
        baseline.per_second()
    );
}

/// Runs `wrk` on `load` (warm-up, then the measured run) and reads its summary.
fn wrk(dir: &Path, load: &Load<'_>) -> anyhow::Result<Measured> {
    let script = dir.join("load.lua");
    std::fs::write(&script, lua(load.body))?;
    // One wrk thread drives 32 connections at these rates and leaves the second core to the
    // server.
    let threads = "1";
    let connections = load.connections.to_string();
    for (duration, measured) in [(WARM_UP, false), (RUN, true)] {
        let seconds = format!("{}s", duration.as_secs());
        let output = Command::new("wrk")
            .args(["-t", threads, "-c", &connections, "-d", &seconds, "--timeout", "10s", "-s"])
            .arg(&script)
            .arg(&load.url)
            .output()
            .context("running wrk (apt-get install wrk)")?;
        if !output.status.success() {
            bail!("wrk failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        std::thread::sleep(SETTLE);
        if measured {
            let text = String::from_utf8(output.stdout)?;
            let json = text.lines().find(|l| l.starts_with("{\"p50_us\"")).context("wrk printed no summary")?;
            return Ok(serde_json::from_str(json)?);
        }
    }
    unreachable!("the loop returns on the measured run")
}

/// The `wrk` script: the request, and a summary as one JSON line.
fn lua(body: Option<&str>) -> String {
    let request = match body {
        Some(body) => format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = [[{body}]]\n"
        ),
        None => String::new(),
    };
    format!(
        "{request}
done = function(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  io.write(string.format('{{\"p50_us\": %f, \"p99_us\": %f, \"requests\": %d, \"errors\": %d, \"seconds\": %f}}\\n',
    latency:percentile(50), latency:percentile(99), summary.requests, errors, summary.duration / 1e6))
end
"
    )
}

/// A server process for the run, killed at the end.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    /// `soulbox serve --dev` with the per-key limits out of the way.
    fn soulbox() -> anyhow::Result<Server> {
        let (child, base) = soulbox_benches::start_soulbox([
            "serve",
            "--dev",
            "--addr",
            "127.0.0.1:0",
            "--set",
            "auth.requests_per_second=1000000",
            "--set",
            "auth.burst=1000000",
            "--set",
            "auth.max_concurrent_executions=1024",
        ])?;
        Ok(Server { child, base })
    }

    /// The baseline server.
    fn baseline() -> anyhow::Result<Server> {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("baseline/subprocess_server.py");
        let mut child = Command::new(baseline_python()?)
            .arg(script)
            .stdout(Stdio::piped())
            .spawn()
            .context("the baseline server")?;
        let mut port = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut port)?;
        Ok(Server { child, base: format!("http://127.0.0.1:{}", port.trim()) })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Opens a Python sandbox and returns its cell URL.
    fn sandbox_cell_url(&self) -> anyhow::Result<String> {
        let response =
            reqwest::blocking::Client::new().post(self.url("/v1/sandboxes")).json(&serde_json::json!({})).send()?;
        let created: serde_json::Value = response.error_for_status()?.json()?;
        let id = created["id"].as_str().context("a sandbox id")?;
        Ok(self.url(&format!("/v1/sandboxes/{id}/execute")))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
