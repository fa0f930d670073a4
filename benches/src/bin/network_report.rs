//! `network-report`: a guest's HTTP request to a local server, made by the host under a network
//! policy, from a fresh Python guest (`urllib.request`) and a fresh JavaScript guest (`fetch`),
//! with the same request from native CPython (`python3 -c`) and Node (`node -e`), a new process
//! per run, as the baselines; and what a policy costs a guest that makes no request.
//!
//! The server is a few lines of std on loopback (keep-alive, a fixed 2 KiB body), so the
//! figures are SoulBox's overhead, not a network's.
//!
//! Packages: `requests` installed on demand (from `target/test-wheels`, which `scripts/bench.sh`
//! fills as the test suite does): installing the set the first time (pip's resolution from a
//! wheel directory, the checks, unpacking), and a fresh guest that imports it and makes a
//! request (the set cached: copied into the guest's root, then imported); and the same request
//! with the `requests` and `httpx` bundled with the Python runtime (nothing to install or copy).

use soulbox_benches::{baseline_python, execution_latencies, process_latencies, request_latencies, row};
use soulbox_engine::{Engine, ExecRequest, Language, NetworkPolicy};
use soulbox_runtimes_wasm::packages::{PackageSource, Packages};
use soulbox_runtimes_wasm::{WasmBackend, WasmConfig};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;

const RUNS: usize = 300;
const PROCESS_RUNS: usize = 20;
const BODY_BYTES: usize = 2048;
const INSTALL_RUNS: usize = 5;
const PACKAGE_RUNS: usize = 100;
const REQUESTS: &str = "requests==2.34.2";

/// Serves every request on `127.0.0.1` with a 2 KiB body; returns the port.
fn serve() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone()?);
                let mut writer = stream;
                let body = vec![b'x'; BODY_BYTES];
                loop {
                    let mut line = String::new();
                    // The request head ends with an empty line; requests here have no body.
                    loop {
                        line.clear();
                        if reader.read_line(&mut line)? == 0 {
                            return Ok::<(), std::io::Error>(());
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    write!(
                        writer,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {BODY_BYTES}\r\n\r\n"
                    )?;
                    writer.write_all(&body)?;
                }
            });
        }
    });
    Ok(port)
}

fn main() -> anyhow::Result<()> {
    let port = serve()?;
    let url = format!("http://127.0.0.1:{port}/data");
    let runtime = tokio::runtime::Runtime::new()?;
    let engine = soulbox_benches::engine()?;
    let policy = NetworkPolicy { allow_cidrs: vec!["127.0.0.1/32".into()], ..NetworkPolicy::default() };
    let python = format!("import urllib.request\nprint(len(urllib.request.urlopen({url:?}).read()))");
    let javascript = format!("fetch({url:?}).then((r) => r.text()).then((t) => console.log(t.length))");
    let with_policy = |language, code: &str| {
        let code = code.to_owned();
        let policy = policy.clone();
        move || ExecRequest::new(language, code.clone()).with_network(policy.clone())
    };
    let measure = |request| runtime.block_on(request_latencies(&engine, request, RUNS, None));
    let python_get = measure(Box::new(with_policy(Language::Python, &python)) as Box<dyn Fn() -> ExecRequest>)?;
    let js_get = measure(Box::new(with_policy(Language::JavaScript, &javascript)))?;
    let plain = runtime.block_on(execution_latencies(&engine, Language::Python, "print(1 + 1)", RUNS, None))?;
    let bundled_requests = format!("import requests\nprint(len(requests.get({url:?}).content))");
    let bundled_httpx = format!("import httpx\nprint(len(httpx.get({url:?}).content))");
    let requests_bundled = measure(Box::new(with_policy(Language::Python, &bundled_requests)))?;
    let httpx_bundled = measure(Box::new(with_policy(Language::Python, &bundled_httpx)))?;
    let plain_with_policy = measure(Box::new(with_policy(Language::Python, "print(1 + 1)")))?;

    let wheels = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-wheels");
    anyhow::ensure!(wheels.is_dir(), "{} is missing: run scripts/bench.sh", wheels.display());
    let installs = (0..INSTALL_RUNS)
        .map(|_| {
            let cache = tempfile::tempdir()?;
            let packages =
                Packages::new(cache.path().to_path_buf(), "python3", PackageSource::Directory(wheels.clone()));
            let started = std::time::Instant::now();
            packages.resolve(&[REQUESTS.to_owned()])?;
            Ok(started.elapsed())
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let packaged = Engine::builder()
        .backend(WasmBackend::open(WasmConfig { packages: PackageSource::Directory(wheels), ..WasmConfig::default() })?)
        .build();
    let requests_code = format!("import requests\nprint(len(requests.get({url:?}).content))");
    let requests_get = runtime.block_on(request_latencies(
        &packaged,
        || {
            ExecRequest::new(Language::Python, requests_code.clone())
                .with_packages([REQUESTS])
                .with_network(policy.clone())
        },
        PACKAGE_RUNS,
        None,
    ))?;

    let native_python = baseline_python()?;
    let native = process_latencies(Command::new(&native_python).args(["-c", &python]), PROCESS_RUNS)?;
    let node = process_latencies(Command::new("node").args(["-e", &javascript]), PROCESS_RUNS).ok();
    println!(
        "Baselines: {} -c and node -e, a new process per run; a {BODY_BYTES}-byte body from loopback\n",
        native_python.display()
    );
    println!("| measure | p50 | p99 | native p50 | ratio (native / SoulBox) |");
    println!("|---|---|---|---|---|");
    row("fresh Python `urllib.request.urlopen(url).read()`, back-to-back", &python_get, Some(&native));
    row("fresh JavaScript `fetch(url)` then `text()`, back-to-back", &js_get, node.as_deref());
    row("fresh Python `print(1 + 1)`, no policy", &plain, None);
    row("fresh Python `print(1 + 1)` with a network policy (no request made)", &plain_with_policy, None);
    row("install `requests` and its 4 dependencies the first time (pip from a wheel directory)", &installs, None);
    row(
        "fresh Python with `packages: [requests]` (cached): `import requests`, `requests.get(url)`",
        &requests_get,
        None,
    );
    row("fresh Python, bundled `requests`: `import requests`, `requests.get(url)`", &requests_bundled, None);
    row("fresh Python, bundled `httpx`: `import httpx`, `httpx.get(url)`", &httpx_bundled, None);
    Ok(())
}
