//! `wrk`, a real HTTP load generator, on loopback: one run after a warm-up, read back as
//! [`Measured`]. Needs `wrk` (Debian: `apt-get install wrk`); `scripts/bench.sh` installs it.

use anyhow::{Context, bail};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// How long each measured run lasts.
pub const RUN: Duration = Duration::from_secs(10);
/// How long each run warms up first (not counted).
pub const WARM_UP: Duration = Duration::from_secs(2);
/// The pause after each `wrk` run: requests it abandoned when it stopped still hold execution
/// slots until they finish, and would be refused capacity for the next run.
const SETTLE: Duration = Duration::from_secs(1);

/// What `wrk` measured (its Lua `done` hook prints this as JSON).
#[derive(Debug, serde::Deserialize)]
pub struct Measured {
    /// Median latency, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
    /// Requests completed.
    pub requests: u64,
    /// Connection, read, write, status and timeout errors.
    pub errors: u64,
    /// How long the run lasted.
    pub seconds: f64,
}

impl Measured {
    /// Requests completed per second.
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

/// A request `wrk` repeats.
#[derive(Debug)]
pub struct Load<'a> {
    /// The URL requested.
    pub url: String,
    /// A JSON body to POST, or `None` for a GET.
    pub body: Option<&'a str>,
    /// Connections kept open.
    pub connections: u32,
    /// An API key sent as `Authorization: Bearer`.
    pub bearer: Option<&'a str>,
}

/// Runs `wrk` on `load` (warm-up, then the measured run) and reads its summary.
pub fn wrk(dir: &Path, load: &Load<'_>) -> anyhow::Result<Measured> {
    let script = dir.join("load.lua");
    std::fs::write(&script, lua(load.body, load.bearer))?;
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
fn lua(body: Option<&str>, bearer: Option<&str>) -> String {
    let authorization = match bearer {
        Some(key) => format!("wrk.headers[\"Authorization\"] = \"Bearer {key}\"\n"),
        None => String::new(),
    };
    let request = match body {
        Some(body) => format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = [[{body}]]\n"
        ),
        None => String::new(),
    };
    format!(
        "{authorization}{request}
done = function(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  io.write(string.format('{{\"p50_us\": %f, \"p99_us\": %f, \"requests\": %d, \"errors\": %d, \"seconds\": %f}}\\n',
    latency:percentile(50), latency:percentile(99), summary.requests, errors, summary.duration / 1e6))
end
"
    )
}
