//! `javascript-report`: fresh JavaScript executions with the Node globals and the event loop,
//! measured in process, with Node itself (`node -e`, a new process per run) beside them as the
//! baseline when `node` is on the PATH.
//!
//! "10 ms gaps" rows leave a gap before each request, as LLM tool calls do; "back-to-back" rows
//! send the next request the moment the last one is answered.

use soulbox_benches::{execution_latencies, process_latencies, row};
use soulbox_engine::Language;
use std::process::Command;
use std::time::Duration;

const RUNS: usize = 300;
const PROCESS_RUNS: usize = 20;
const GAP: Duration = Duration::from_millis(10);

/// A program of the kind models write: the Node globals, `fs` on the workspace, a timer.
const NODE_STYLE: &str = r#"const fs = require('fs');
fs.writeFileSync('data.json', JSON.stringify({ items: [1, 2, 3] }));
const data = JSON.parse(fs.readFileSync('data.json', 'utf8'));
const url = new URL('https://example.com/api?limit=10');
console.log(data, Buffer.from('hi').toString('hex'), url.searchParams.get('limit'));
setTimeout(() => console.log('done'), 0);"#;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let engine = soulbox_benches::engine()?;
    let measure =
        |code: &str, gap| runtime.block_on(execution_latencies(&engine, Language::JavaScript, code, RUNS, gap));
    let trivial = "console.log(1 + 1)";
    let timer = "setTimeout(() => console.log('done'), 0)";
    let rows = [
        ("fresh `console.log(1 + 1)`, 10 ms gaps", measure(trivial, Some(GAP))?, trivial),
        ("fresh `console.log(1 + 1)`, back-to-back", measure(trivial, None)?, trivial),
        ("fresh `setTimeout(..., 0)`, back-to-back", measure(timer, None)?, timer),
        (
            "fresh Node-style program (fs, JSON, Buffer, URL, a timer), back-to-back",
            measure(NODE_STYLE, None)?,
            NODE_STYLE,
        ),
    ];
    let node = which_node();
    println!("Baseline: {} (a new process per run)\n", node.as_deref().unwrap_or("node not found"));
    println!("| measure | p50 | p99 | node -e p50 | ratio (node / SoulBox) |");
    println!("|---|---|---|---|---|");
    for (name, samples, code) in rows {
        let baseline = match &node {
            Some(node) => Some(process_latencies(
                Command::new(node).args(["-e", code]).current_dir(std::env::temp_dir()),
                PROCESS_RUNS,
            )?),
            None => None,
        };
        row(name, &samples, baseline.as_deref());
    }
    Ok(())
}

/// `node` from the PATH, if any.
fn which_node() -> Option<String> {
    let output = Command::new("node").args(["-e", "console.log(process.execPath)"]).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
