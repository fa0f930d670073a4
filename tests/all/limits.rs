//! Every limit trips with the right outcome, and the host stays healthy afterwards.

use soulbox_engine::{ExecRequest, Language, Limits, Outcome};
use soulbox_tests::{assert_host_healthy, engine, metered_engine, run};
use std::time::Duration;

/// Within how long of its admission a guest stopped at a deadline of a few hundred ms has
/// answered: its duration counts from admission, so it includes any wait for a worker behind
/// the other tests' jobs; far below the 30 s sleep and the endless loops it stops.
const STOPPED_WITHIN: Duration = Duration::from_secs(10);

fn with(language: Language, code: &str, limits: Limits) -> ExecRequest {
    ExecRequest::new(language, code).with_limits(limits)
}

fn deadline(ms: u64) -> Limits {
    Limits { deadline: Duration::from_millis(ms), ..Limits::default() }
}

#[tokio::test]
async fn deadline_stops_busy_loops() {
    for (language, code) in [(Language::Python, "while True:\n    pass"), (Language::JavaScript, "for (;;) {}")] {
        let r = run(with(language, code, deadline(200))).await;
        assert_eq!(r.outcome, Outcome::DeadlineExceeded, "{language}: {r:?}");
        assert_eq!(r.exit_code, soulbox_runtimes_wasm::EXIT_DEADLINE);
        assert!(r.duration < STOPPED_WITHIN, "{language}: took {:?}", r.duration);
    }
    assert_host_healthy().await;
}

#[tokio::test]
async fn deadline_stops_a_sleeping_guest() {
    let r = run(with(Language::Python, "import time\ntime.sleep(30)", deadline(300))).await;
    assert_eq!(r.outcome, Outcome::DeadlineExceeded, "{r:?}");
    assert!(r.duration < STOPPED_WITHIN, "took {:?}", r.duration);
    assert_host_healthy().await;
}

#[tokio::test]
async fn output_cap_keeps_the_prefix_and_stops_the_guest() {
    let limits = Limits { stdout_bytes: 10_000, ..deadline(10_000) };
    let r = run(with(Language::Python, "while True:\n    print('x' * 99)", limits.clone())).await;
    assert_eq!(r.outcome, Outcome::OutputLimitExceeded, "{:?}", r.error);
    assert_eq!(r.stdout.len(), 10_000);
    let r = run(with(Language::JavaScript, "for (;;) console.log('y'.repeat(99))", limits)).await;
    assert_eq!(r.outcome, Outcome::OutputLimitExceeded, "{:?}", r.error);
    assert!(r.stdout.len() <= 10_000 && r.stdout.starts_with("yyy"));
    assert_host_healthy().await;
}

#[tokio::test]
async fn memory_cap_is_enforced() {
    let limits = Limits { memory_bytes: 256 << 20, ..Limits::default() };
    let r =
        run(with(Language::Python, "blocks = []\nwhile True:\n    blocks.append(bytearray(16 << 20))", limits.clone()))
            .await;
    assert_eq!(r.outcome, Outcome::MemoryExceeded, "{r:?}");
    assert!(r.peak_memory_bytes <= 256 << 20);
    let r = run(with(Language::JavaScript, "const a = []; for (;;) a.push(new Uint8Array(16 << 20))", limits)).await;
    assert_eq!(r.outcome, Outcome::MemoryExceeded, "{r:?}");
    assert_host_healthy().await;
}

#[tokio::test]
async fn a_cap_below_the_interpreters_own_memory_is_reported_not_run() {
    let r = run(with(Language::Python, "print('ran')", Limits { memory_bytes: 16 << 20, ..Limits::default() })).await;
    assert_eq!(r.outcome, Outcome::MemoryExceeded, "{r:?}");
    assert!(r.stdout.is_empty());
    assert_host_healthy().await;
}

#[tokio::test]
async fn fuel_budget_is_enforced_and_reported() {
    let spin =
        with(Language::Python, "n = 0\nwhile True:\n    n += 1", Limits { fuel: Some(5_000_000), ..Limits::default() });
    let r = metered_engine().execute(spin).await.unwrap();
    assert_eq!(r.outcome, Outcome::FuelExhausted, "{r:?}");
    assert_eq!(r.fuel_used, Some(5_000_000));
    // The budget covers the request's code only, not SoulBox's own prelude.
    let tight = with(Language::Python, "print(1)", Limits { fuel: Some(2_000_000), ..Limits::default() });
    let r = metered_engine().execute(tight).await.unwrap();
    assert_eq!((r.outcome, r.stdout.as_str()), (Outcome::Completed, "1\n"), "{r:?}");
    assert!(r.fuel_used.unwrap() < 2_000_000);
    let small = with(Language::JavaScript, "console.log(1)", Limits { fuel: Some(1 << 40), ..Limits::default() });
    let r = metered_engine().execute(small).await.unwrap();
    assert_eq!(r.outcome, Outcome::Completed);
    assert!(r.fuel_used.unwrap() > 0);
}

#[tokio::test]
async fn fuel_without_metering_is_refused_clearly() {
    let request = with(Language::Python, "1", Limits { fuel: Some(10), ..Limits::default() });
    let error = engine().execute(request).await.unwrap_err();
    assert!(error.to_string().contains("fuel metering"), "{error}");
}

#[tokio::test]
async fn runaway_recursion_does_not_take_the_host_down() {
    let code = "import sys\nsys.setrecursionlimit(10**7)\ndef f(n):\n    return f(n + 1)\nf(0)";
    let r = run(with(Language::Python, code, deadline(10_000))).await;
    assert_ne!((r.outcome, r.exit_code), (Outcome::Completed, 0), "{r:?}");
    let r = run(with(Language::JavaScript, "function f() { return f() + 1 }\nf()", deadline(10_000))).await;
    assert_ne!((r.outcome, r.exit_code), (Outcome::Completed, 0), "{r:?}");
    assert_host_healthy().await;
}

#[tokio::test]
async fn open_file_cap_is_enforced() {
    let code = "held = []\nfor i in range(100):\n    held.append(open(f'f{i}.txt', 'w'))\nprint('opened all')";
    let r = run(with(Language::Python, code, Limits { open_files: 16, ..Limits::default() })).await;
    assert_eq!(r.outcome, Outcome::OpenFileLimitExceeded, "{r:?}");
    assert!(!r.stdout.contains("opened all"), "{r:?}");
    let fine = run(with(
        Language::Python,
        "held = [open(f'f{i}.txt', 'w') for i in range(10)]\nprint('ok')",
        Limits { open_files: 16, ..Limits::default() },
    ))
    .await;
    assert_eq!(fine.stdout, "ok\n", "{fine:?}");
    assert_host_healthy().await;
}

#[tokio::test]
async fn out_of_range_limits_are_rejected_before_running() {
    let request = with(Language::Python, "1", Limits { memory_bytes: 0, ..Limits::default() });
    let error = engine().execute(request).await.unwrap_err();
    assert!(error.to_string().contains("memory_bytes"), "{error}");
}

/// A backend whose pool holds 4 instances: when live contexts hold them all, another sandbox
/// is refused with a clear, retryable error (not an internal one), and once a slot is free a
/// new one starts and runs.
#[tokio::test]
async fn a_full_instance_pool_refuses_clearly_and_recovers_when_a_slot_is_free() {
    use soulbox_engine::{RunOptions, SandboxSpec};
    use soulbox_runtimes_wasm::{EngineSettings, WasmBackend, WasmConfig};
    let settings = EngineSettings { pool_slots: 4, ..EngineSettings::default() };
    let backend = WasmBackend::open(WasmConfig { settings, prewarm: false, ..WasmConfig::default() }).unwrap();
    backend.prepare().unwrap();
    let engine = soulbox_engine::Engine::builder().backend(backend.clone()).build();
    let sandboxes = soulbox_tests::sandboxes_on(&engine);
    let mut running = Vec::new();
    let error = loop {
        assert!(running.len() < 4, "a 4-slot pool cannot hold more contexts");
        let sandbox = match sandboxes.create(SandboxSpec::default()).await {
            Ok(sandbox) => sandbox,
            Err(error) => break error,
        };
        match sandbox.run_code("x = 1", RunOptions::default()).await {
            Ok(ran) => assert!(ran.error.is_none(), "{ran:?}"),
            Err(error) => break error,
        }
        running.push(sandbox);
    };
    let message = error.to_string();
    assert!(message.contains("every instance slot") && !message.contains("internal"), "{message}");
    assert!(!running.is_empty(), "{message}");
    for sandbox in &running {
        sandboxes.kill(sandbox.id()).unwrap().await;
    }
    let again = sandboxes.create(SandboxSpec::default()).await.unwrap();
    let ran = again.run_code("x = 2\nprint(x)", RunOptions::default()).await.unwrap();
    assert_eq!(ran.stdout, "2\n", "{ran:?}");
}
