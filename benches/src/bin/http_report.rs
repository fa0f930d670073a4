//! `http-report`: the HTTP server under load from a real load generator (`wrk`) on loopback,
//! with a baseline measured the same way in the same run, printed as a Markdown table.
//!
//! The server is `soulbox serve --dev` (the `soulbox` binary built beside this one, with its
//! defaults: one-shot guests on the worker threads) with the per-key rate limit and quota raised
//! out of the way. The baseline is `benches/baseline/subprocess_server.py`: a minimal HTTP
//! server running each request's code in a new native CPython process. `GET /health` under the
//! same load shows the HTTP stack's own floor. Every row runs [`RUN`] after [`WARM_UP`].
//!
//! Needs `wrk` (Debian: `apt-get install wrk`); `scripts/bench.sh` installs it.

use anyhow::Context;
use soulbox_benches::baseline_python;
use soulbox_benches::wrk::{Load, Measured, RUN, WARM_UP, wrk};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

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
        wrk(scripts.path(), &Load { url: url.to_owned(), body, connections, bearer: None })
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

/// A server process for the run, killed at the end.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    /// `soulbox serve --dev` with the per-key limits out of the way.
    fn soulbox() -> anyhow::Result<Server> {
        let (child, base) = soulbox_benches::start_soulbox(soulbox_benches::UNLIMITED_DEV_SERVER)?;
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
