//! Criterion benchmarks of sandboxes (medians in criterion's report): a cell in a live
//! context, and creating a sandbox with its first cell. `scripts/bench.sh` runs these and then
//! the `sandbox-report` binary, which prints percentiles, memory and the native baselines.

use criterion::{Criterion, criterion_group, criterion_main};
use soulbox_engine::{Language, RunOptions, SandboxSpec, Sandboxes, SandboxesConfig, Template};

fn sandboxes(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    let engine = soulbox_benches::engine().expect("runtimes installed: run `soulbox runtimes fetch`");
    let root = tempfile::tempdir().expect("a temporary directory");
    let sandboxes = {
        let _inside = runtime.enter();
        let config = SandboxesConfig { workspace_root: root.path().into(), ..SandboxesConfig::default() };
        Sandboxes::new(engine, config).expect("a registry")
    };
    let mut group = c.benchmark_group("sandbox");
    for (name, template, language, start) in [
        ("python_cell_x_plus_1", Template::Python, Language::Python, "x = 0"),
        ("js_cell_x_plus_1", Template::JavaScript, Language::JavaScript, "var x = 0"),
    ] {
        let options = RunOptions { language: Some(language), ..RunOptions::default() };
        let sandbox =
            runtime.block_on(sandboxes.create(SandboxSpec { template, ..SandboxSpec::default() })).expect("a sandbox");
        runtime.block_on(sandbox.run_code(start, options.clone())).expect("runs");
        group.bench_function(name, |b| {
            b.iter(|| {
                let execution = runtime.block_on(sandbox.run_code("x = x + 1", options.clone())).expect("runs");
                assert!(execution.error.is_none());
            })
        });
    }
    group.bench_function("python_create_and_first_cell", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let sandbox = sandboxes.create(SandboxSpec::default()).await.expect("a sandbox");
                let execution = sandbox.run_code("1 + 1", RunOptions::default()).await.expect("runs");
                assert_eq!(execution.text(), Some("2"));
                sandboxes.kill(sandbox.id()).expect("killed");
            })
        })
    });
    group.finish();
}

criterion_group!(benches, sandboxes);
criterion_main!(benches);
