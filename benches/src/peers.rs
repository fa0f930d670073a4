//! SoulBox's peers as `peers-report` drives them: `benches/peers/peers.py`, run with the
//! peers' own Python (`$SOULBOX_PEERS_PYTHON`, default `target/peers-venv/bin/python`, which
//! `scripts/bench.sh` makes), either once for a system's figures ([`figures`]) or kept running
//! to time blocks of gapped runs on request ([`PeerServer`]), so that `peers-report` can
//! alternate them with SoulBox's own blocks.

use anyhow::Context;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

/// `peers.py` run by the peers' Python.
fn peers_py() -> Command {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/peers.py");
    let interpreter = std::env::var_os("SOULBOX_PEERS_PYTHON").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/peers-venv/bin/python"),
        PathBuf::from,
    );
    let mut command = Command::new(interpreter);
    command.arg(script);
    command
}

fn running(command: &Command) -> String {
    format!("running {} (scripts/bench.sh makes the peers' venv)", command.get_program().to_string_lossy())
}

/// One system's figures (`eryx`, `monty` or `native`, the last run with `baseline_python`),
/// keyed as `peers.py` prints them: milliseconds, executions/s, MiB.
pub fn figures(system: &str, baseline_python: &Path) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut command = peers_py();
    command.arg(system).arg("--baseline-python").arg(baseline_python);
    let output = command.output().with_context(|| running(&command))?;
    anyhow::ensure!(output.status.success(), "peers.py {system}: {}", String::from_utf8_lossy(&output.stderr));
    let line = String::from_utf8(output.stdout)?;
    let mut parsed: BTreeMap<String, serde_json::Value> = serde_json::from_str(line.trim())?;
    parsed.remove("system");
    Ok(parsed.into_iter().filter_map(|(k, v)| Some((k, v.as_f64()?))).collect())
}

/// What a peer times on request: its fresh `print(1+1)` or its session cell `x = x + 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    /// A fresh execution of `print(1+1)`.
    Fresh,
    /// A cell `x = x + 1` of a session.
    Cell,
}

impl Workload {
    /// Its name in `peers.py`'s requests and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Fresh => "fresh",
            Workload::Cell => "cell",
        }
    }
}

/// A peer (`eryx` or `monty`) set up and warmed in its own process, timing blocks of runs 10 ms
/// apart when asked (`peers.py SYSTEM --serve`). Killed when dropped.
#[derive(Debug)]
pub struct PeerServer {
    system: String,
    child: Child,
    requests: ChildStdin,
    answers: BufReader<ChildStdout>,
}

impl PeerServer {
    /// Starts `system` and waits until it is warm.
    pub fn start(system: &str) -> anyhow::Result<Self> {
        let mut command = peers_py();
        command.arg(system).arg("--serve").stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = command.spawn().with_context(|| running(&command))?;
        let requests = child.stdin.take().context("the peer's stdin")?;
        let answers = BufReader::new(child.stdout.take().context("the peer's stdout")?);
        let mut server = PeerServer { system: system.to_owned(), child, requests, answers };
        let ready = server.answer()?;
        anyhow::ensure!(ready["ready"] == true, "peers.py {system} --serve: {ready}");
        Ok(server)
    }

    /// `runs` runs of `workload`, each after 10 ms without work, timed in the peer.
    pub fn gapped(&mut self, workload: Workload, runs: usize) -> anyhow::Result<Vec<Duration>> {
        writeln!(self.requests, "{} {runs}", workload.name())?;
        self.requests.flush()?;
        let answer = self.answer()?;
        let samples = answer["samples_ms"].as_array().with_context(|| format!("{}: {answer}", self.system))?;
        samples
            .iter()
            .map(|ms| ms.as_f64().map(|ms| Duration::from_secs_f64(ms / 1e3)).context("a sample in ms"))
            .collect()
    }

    fn answer(&mut self) -> anyhow::Result<serde_json::Value> {
        let mut line = String::new();
        self.answers.read_line(&mut line)?;
        anyhow::ensure!(!line.is_empty(), "peers.py {} --serve ended early (its stderr says why)", self.system);
        Ok(serde_json::from_str(&line)?)
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
