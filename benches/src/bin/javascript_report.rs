//! `javascript-report`: fresh JavaScript and TypeScript executions with the Node globals and the
//! event loop, measured in process, with Node itself (`node -e`, a new process per run) beside
//! them as the baseline when `node` is on the PATH; and the host's cost of removing the types
//! from a 200-line TypeScript file (stripped, and transformed for one with enums), and of
//! rewriting the module syntax of a 200-line ES module (`esm::to_script`).
//!
//! "10 ms gaps" rows leave a gap before each request, as LLM tool calls do; "back-to-back" rows
//! send the next request the moment the last one is answered.

use soulbox_benches::{execution_latencies, process_latencies, row};
use soulbox_engine::Language;
use soulbox_runtimes_wasm::javascript::esm::to_script;
use soulbox_runtimes_wasm::javascript::typescript::to_javascript;
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

/// The same program as an ES module, as models write it for Node 22: imports, an export, a
/// top-level `await`.
const ES_MODULE: &str = r#"import fs from 'fs';
import { join } from 'path';
export const file = join('.', 'data.json');
fs.writeFileSync(file, JSON.stringify({ items: [1, 2, 3] }));
const data = JSON.parse(await fs.promises.readFile(file, 'utf8'));
console.log(data, Buffer.from('hi').toString('hex'));"#;

/// A 200-line ES module: imports, then 20 blocks of an exported function, an exported class and
/// a call, then a top-level `await`.
fn es_module_file() -> String {
    let mut file = String::from(
        "import fs from 'fs';\nimport { join, basename as base } from 'path';\nimport * as util from 'util';\n",
    );
    for i in 0..20 {
        file.push_str(&format!(
            "export function pick{i}(items, id) {{\n  return items.find((item) => item.id === id);\n}}\n\
             export class Store{i} {{\n  items = [];\n  add(item) {{ this.items.push(item); }}\n}}\n\
             const store{i} = new Store{i}();\nstore{i}.add({{ id: {i} }});\nconsole.log(pick{i}(store{i}.items, {i}));\n\n"
        ));
    }
    file.push_str(
        "await new Promise((resolve) => setTimeout(resolve, 0));\nexport default { fs, join, base, util };\n",
    );
    file
}

/// A 200-line TypeScript file: 20 blocks of an interface, a generic function and a class; with
/// `enums`, each block also has an enum (which makes swc transform rather than strip).
fn typescript_file(enums: bool) -> String {
    let mut file = String::new();
    for i in 0..20 {
        file.push_str(&format!(
            "interface Item{i} {{\n  id: number;\n  name: string;\n}}\nfunction pick{i}<T extends Item{i}>(items: T[], id: number): T | undefined {{\n  return items.find((item: T) => item.id === id);\n}}\n{}class Store{i} {{ private items: Item{i}[] = []; add(item: Item{i}): void {{ this.items.push(item); }} }}\nconsole.log(pick{i}<Item{i}>([{{ id: {i}, name: 'n' }}], {i})?.name);\n",
            if enums { format!("enum Kind{i} {{ A, B }}\n") } else { "const kind: string = 'a';\n".replace("kind", &format!("kind{i}")) }
        ));
    }
    file
}

/// `runs` timings of `convert(code)` on the host, after `runs / 10` unmeasured.
fn host_latencies<T>(convert: impl Fn(&str) -> T, code: &str, runs: usize) -> Vec<Duration> {
    for _ in 0..runs / 10 {
        std::hint::black_box(convert(code));
    }
    (0..runs)
        .map(|_| {
            let started = std::time::Instant::now();
            std::hint::black_box(convert(code));
            started.elapsed()
        })
        .collect()
}

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
    let module = es_module_file();
    let (stripped, transformed) = (typescript_file(false), typescript_file(true));
    let ts_runs = [
        ("strip the types of a 200-line TypeScript file (on the host)", host_latencies(to_javascript, &stripped, RUNS)),
        (
            "transform a 200-line TypeScript file with enums (on the host)",
            host_latencies(to_javascript, &transformed, RUNS),
        ),
        ("rewrite the module syntax of a 200-line ES module (on the host)", host_latencies(to_script, &module, RUNS)),
        (
            "fresh ES module (imports, an export, top-level await; fs, JSON, Buffer), back-to-back",
            measure(ES_MODULE, None)?,
        ),
        (
            "fresh TypeScript, the 200-line file, back-to-back",
            runtime.block_on(execution_latencies(&engine, Language::TypeScript, &stripped, RUNS, None))?,
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
    for (name, samples) in ts_runs {
        row(name, &samples, None);
    }
    Ok(())
}

/// `node` from the PATH, if any.
fn which_node() -> Option<String> {
    let output = Command::new("node").args(["-e", "console.log(process.execPath)"]).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
