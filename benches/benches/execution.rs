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

criterion_group!(benches, fresh_executions);
criterion_main!(benches);
