//! Criterion benchmarks of fresh-sandbox executions (medians in criterion's report).
//! `scripts/bench.sh` runs these and then the `report` binary, which prints the percentile
//! table with the native baseline.

use criterion::{Criterion, criterion_group, criterion_main};
use soulbox_engine::{ExecRequest, Language};

fn fresh_executions(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    let engine = soulbox_benches::engine().expect("runtimes installed: run `soulbox runtimes fetch`");
    let mut group = c.benchmark_group("fresh");
    for (name, language, code) in [
        ("python_print", Language::Python, "print(1 + 1)"),
        ("python_numpy_pandas", Language::Python, "import numpy, pandas"),
        ("js_console_log", Language::JavaScript, "console.log(1 + 1)"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let result = runtime.block_on(engine.execute(ExecRequest::new(language, code))).expect("runs");
                assert_eq!(result.exit_code, 0);
            })
        });
    }
    group.finish();
}

/// The baseline: native CPython, a new process per run (the real executable behind `python3`).
fn native_baseline(c: &mut Criterion) {
    let python = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .expect("python3 for the baseline");
    c.bench_function("native/python3_c_print", |b| {
        b.iter(|| {
            let out = std::process::Command::new(&python).args(["-c", "print(1 + 1)"]).output().expect("runs");
            assert!(out.status.success());
        })
    });
}

criterion_group!(benches, fresh_executions, native_baseline);
criterion_main!(benches);
