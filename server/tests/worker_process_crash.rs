//! A worker process that dies is replaced, and its caller gets an error, never a hang. In its
//! own test binary: it kills every `soulbox __worker` child of this test process.

use soulbox_engine::{ExecRequest, Language};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_process_is_replaced() {
    // One worker thread, so the job after the kill lands on the thread whose child died.
    let engine = worker_engine(env!("CARGO_BIN_EXE_soulbox"), &[]);
    assert_eq!(engine.execute(ExecRequest::new(Language::Python, "print(1)")).await.unwrap().stdout, "1\n");
    let killed = kill_worker_children();
    assert!(killed > 0, "a worker process was running");
    // Each worker thread notices its dead child on its next job (an internal error, never a
    // hang) and starts a new one; within a few requests every answer is right again.
    let mut answers = Vec::new();
    for _ in 0..6 {
        answers.push(engine.execute(ExecRequest::new(Language::Python, "print(2)")).await.map(|r| r.stdout));
    }
    assert!(answers.iter().any(|a| a.is_err()), "the dead child's job reports an error: {answers:?}");
    assert_eq!(answers.last().unwrap().as_deref().unwrap(), "2\n", "{answers:?}");
}

/// Kills this test process's `soulbox __worker` children; returns how many.
fn kill_worker_children() -> usize {
    let me = std::process::id().to_string();
    let mut killed = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let parent = stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().nth(1));
        let cmdline = std::fs::read_to_string(entry.path().join("cmdline")).unwrap_or_default();
        if parent == Some(me.as_str()) && cmdline.contains("__worker") {
            std::process::Command::new("kill").args(["-9", &pid]).status().unwrap();
            killed += 1;
        }
    }
    killed
}

fn fake_worker_engine(script: &str) -> soulbox_engine::Engine {
    worker_engine("/bin/sh", &["-c", script, "sh"])
}

/// An engine with one worker thread whose guests run in `program args... __worker` children.
fn worker_engine(program: &str, args: &[&str]) -> soulbox_engine::Engine {
    use soulbox_runtimes_wasm::{EngineSettings, WasmBackend, WasmConfig, Workers};
    let args = args.iter().map(|a| (*a).to_owned()).collect();
    let workers = Workers::Processes { program: program.into(), args };
    let pool = soulbox_engine::WorkerPoolConfig { workers: 1, queue: 4, ..Default::default() };
    // A small pool: each test opens its own backend, and every pool reserves its slots'
    // address space up front.
    let settings = EngineSettings { pool_slots: 64, ..EngineSettings::default() };
    soulbox_engine::Engine::builder()
        .backend(WasmBackend::open(WasmConfig { workers, pool, settings, ..WasmConfig::default() }).unwrap())
        .build()
}

#[tokio::test]
async fn a_worker_that_never_answers_is_killed_by_the_watchdog() {
    let engine = fake_worker_engine("echo '\"ready\"'; read line; exec sleep 600");
    let request = ExecRequest::new(Language::Python, "1")
        .with_limits(soulbox_engine::Limits { deadline: std::time::Duration::from_millis(100), ..Default::default() });
    let started = std::time::Instant::now();
    let error = engine.execute(request).await.unwrap_err();
    assert!(error.to_string().contains("worker process failed"), "{error}");
    let waited = started.elapsed();
    assert!(waited < std::time::Duration::from_secs(60), "the watchdog fired after {waited:?}");
}

#[tokio::test]
async fn a_worker_that_cannot_start_is_an_error_not_a_hang() {
    let engine = fake_worker_engine("exit 3");
    let error = engine.execute(ExecRequest::new(Language::Python, "1")).await.unwrap_err();
    assert!(error.to_string().contains("did not start"), "{error}");
}
