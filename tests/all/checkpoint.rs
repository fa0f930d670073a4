//! Checkpoints of real contexts: a paused sandbox comes back with its Python variables,
//! imports, DataFrames, figures and JavaScript closures; what a checkpoint cannot carry is
//! refused by name; the shipped interpreters never change their tables (which checkpoints do
//! not save).

use soulbox_engine::sandbox::SandboxState;
use soulbox_engine::{Execution, Language, RunOptions, SandboxError, SandboxSpec, Template};
use soulbox_tests::sandboxes;

fn js() -> RunOptions {
    RunOptions { language: Some(Language::JavaScript), ..RunOptions::default() }
}

fn text(execution: &Execution) -> String {
    assert!(execution.error.is_none(), "the cell failed: {:?}\n{}", execution.error, execution.stderr);
    execution.results.iter().find_map(|r| r.text.clone()).unwrap_or_default() + &execution.stdout
}

#[tokio::test]
async fn a_paused_sandbox_resumes_with_its_python_and_javascript_state() {
    let sandboxes = sandboxes();
    let spec = SandboxSpec { template: Template::DataScience, ..SandboxSpec::default() };
    let sandbox = sandboxes.create(spec).await.unwrap();
    let setup = r#"
import random, numpy as np, pandas as pd
import matplotlib.pyplot as plt
counter = 41
df = pd.DataFrame({"x": np.arange(10_000), "y": np.arange(10_000) * 2})
fig, ax = plt.subplots()
ax.plot([1, 2, 3])
with open("notes.txt", "w") as f:
    f.write("kept")
"#;
    text(&sandbox.run_code(setup, RunOptions::default()).await.unwrap());
    text(&sandbox.run_code("let n = 0; const next = () => ++n; next(); next()", js()).await.unwrap());

    let report = sandbox.pause().await.unwrap();
    assert_eq!(report.contexts, 2);
    assert!(!report.processes_restored);
    assert_eq!(sandbox.info().state, SandboxState::Paused);

    let info = sandbox.resume().await.unwrap();
    assert_eq!(info.state, SandboxState::Running);
    let python = "counter += 1\nprint(counter, int(df.y.sum()), len(fig.axes[0].lines), open('notes.txt').read())";
    assert_eq!(text(&sandbox.run_code(python, RunOptions::default()).await.unwrap()).trim(), "42 99990000 1 kept");
    assert_eq!(text(&sandbox.run_code("next()", js()).await.unwrap()).trim(), "3");

    // The figure in progress can still be drawn on and saved after the pause.
    let drawn = "ax.set_title('after'); fig.savefig('fig.png'); import os; print(ax.get_title(), len(ax.lines), os.path.getsize('fig.png') > 0)";
    assert_eq!(text(&sandbox.run_code(drawn, RunOptions::default()).await.unwrap()).trim(), "after 1 True");
    // Time goes on: the guest's monotonic clock never goes back across a restore.
    sandbox.run_code("import time; t0 = time.monotonic()", RunOptions::default()).await.unwrap();
    sandbox.pause().await.unwrap();
    let later = sandbox.run_code("print(time.monotonic() >= t0)", RunOptions::default()).await.unwrap();
    assert_eq!(text(&later).trim(), "True", "a cell resumes its context by itself");
}

#[tokio::test]
async fn a_context_holding_an_open_file_is_refused_by_name_and_keeps_running() {
    let sandboxes = sandboxes();
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    text(&sandbox.run_code("f = open('held.txt', 'w'); x = 7", RunOptions::default()).await.unwrap());
    let refused = sandbox.pause().await.unwrap_err();
    let message = refused.to_string();
    assert!(matches!(refused, SandboxError::Engine(_)), "{refused:?}");
    assert!(message.contains("1 open file"), "{message}");
    assert_eq!(sandbox.info().state, SandboxState::Running);
    text(&sandbox.run_code("f.close()", RunOptions::default()).await.unwrap());
    sandbox.pause().await.unwrap();
    assert_eq!(text(&sandbox.run_code("print(x)", RunOptions::default()).await.unwrap()).trim(), "7");
}

#[tokio::test]
async fn a_cell_that_fails_after_a_resume_reports_like_any_other() {
    let sandboxes = sandboxes();
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    sandbox.pause().await.unwrap();
    let failed = sandbox.run_code("1/0", RunOptions::default()).await.unwrap();
    let error = failed.error.expect("an exception");
    assert_eq!(error.name, "ZeroDivisionError");
    assert!(failed.results.is_empty());
    assert!(!failed.end.context_restarted, "restored, not restarted");
}

#[test]
fn the_shipped_interpreters_never_change_their_tables() {
    use soulbox_runtimes_wasm::checkpoint::exports::table_mutations;
    use soulbox_runtimes_wasm::{SoulboxHome, javascript::JavaScript, manifest};
    let home = SoulboxHome::from_env();
    let js = JavaScript::new(&home.runtime_dir(&manifest::runtime("javascript").dir_name())).wasm().unwrap();
    assert_eq!(table_mutations(&js).unwrap(), 0, "QuickJS");
    let python_dir = home.runtime_dir(&manifest::runtime("python").dir_name());
    let python = std::fs::read(python_dir.join("python-snapshot.wasm")).unwrap();
    assert_eq!(table_mutations(&python).unwrap(), 0, "CPython (the snapshot keeps its code as is)");
}

#[tokio::test]
async fn forks_carry_the_state_over_then_diverge() {
    let sandboxes = sandboxes();
    let spec = SandboxSpec { template: Template::DataScience, ..SandboxSpec::default() };
    let source = sandboxes.create(spec).await.unwrap();
    let setup =
        "import random\ndf = pd.DataFrame({'x': np.arange(1000)})\ntotal = 5\nopen('shared.txt', 'w').write('base')";
    text(&source.run_code(setup, RunOptions::default()).await.unwrap());
    text(&source.run_code("let hits = 1; const bump = () => ++hits;", js()).await.unwrap());

    let forks = sandboxes.fork(&source, 3).await.unwrap();
    let draw = "print(random.random(), np.random.random())";
    let mut draws = vec![text(&source.run_code(draw, RunOptions::default()).await.unwrap())];
    let mut js_draws = vec![text(&source.run_code("Math.random()", js()).await.unwrap())];
    for (i, fork) in forks.iter().enumerate() {
        let seen = "total += 1\nprint(total, int(df.x.sum()), open('shared.txt').read())";
        assert_eq!(text(&fork.run_code(seen, RunOptions::default()).await.unwrap()).trim(), "6 499500 base");
        assert_eq!(text(&fork.run_code("bump()", js()).await.unwrap()).trim(), "2");
        draws.push(text(&fork.run_code(draw, RunOptions::default()).await.unwrap()));
        js_draws.push(text(&fork.run_code("Math.random()", js()).await.unwrap()));
        fork.files().unwrap().write("/shared.txt", format!("fork {i}").as_bytes()).await.unwrap();
    }
    let distinct = |values: &[String]| values.iter().collect::<std::collections::HashSet<_>>().len();
    assert_eq!(distinct(&draws), 4, "every fork draws its own random numbers: {draws:?}");
    assert_eq!(distinct(&js_draws), 4, "JavaScript too: {js_draws:?}");
    let base = text(&source.run_code("print(total, open('shared.txt').read())", RunOptions::default()).await.unwrap());
    assert_eq!(base.trim(), "5 base", "the source saw none of its forks' changes");
    let seeded = "random.seed(7); print(random.random())";
    let (a, b) = (
        text(&forks[0].run_code(seeded, RunOptions::default()).await.unwrap()),
        text(&forks[1].run_code(seeded, RunOptions::default()).await.unwrap()),
    );
    assert_eq!(a, b, "a seed the code sets is the code's");
}

/// A plain context (the plain snapshot) that imported numpy in a cell: its checkpoint restores
/// into the plain module, and its forks reseed the numpy it imported.
#[tokio::test]
async fn a_plain_context_that_imported_numpy_resumes_and_forks_with_it() {
    let sandboxes = sandboxes();
    let source = sandboxes.create(SandboxSpec { template: Template::Python, ..SandboxSpec::default() }).await.unwrap();
    text(&source.run_code("import numpy as np\nsquares = np.arange(5) ** 2", RunOptions::default()).await.unwrap());
    source.pause().await.unwrap();
    let resumed = source.run_code("print(int(squares.sum()))", RunOptions::default()).await.unwrap();
    assert_eq!(text(&resumed).trim(), "30");
    let forks = sandboxes.fork(&source, 2).await.unwrap();
    let draw = "print(np.random.random())";
    let mut draws = vec![text(&source.run_code(draw, RunOptions::default()).await.unwrap())];
    for fork in &forks {
        assert_eq!(
            text(&fork.run_code("print(int(squares.sum()))", RunOptions::default()).await.unwrap()).trim(),
            "30"
        );
        draws.push(text(&fork.run_code(draw, RunOptions::default()).await.unwrap()));
    }
    let distinct: std::collections::HashSet<_> = draws.iter().collect();
    assert_eq!(distinct.len(), 3, "each fork reseeded numpy: {draws:?}");
}

/// Forks of several share one copy of their checkpoint's pages (mapped copy-on-write), and the
/// pool slots they used come back clean: a dedicated backend small enough that what runs
/// after the forks runs in their slots.
#[tokio::test]
async fn forks_of_several_share_their_pages_and_leave_their_slots_clean() {
    use soulbox_runtimes_wasm::{EngineSettings, WasmBackend, WasmConfig};
    let settings = EngineSettings { pool_slots: 24, ..EngineSettings::default() };
    let config = WasmConfig { settings, prewarm: false, share_fork_pages: true, ..WasmConfig::default() };
    let backend = WasmBackend::open(config).unwrap();
    backend.prepare().unwrap();
    let engine = soulbox_engine::Engine::builder().backend(backend.clone()).build();
    let sandboxes = soulbox_tests::sandboxes_on(&engine);
    let source = sandboxes.create(SandboxSpec::default()).await.unwrap();
    let setup = "secret = 'from the source ' * 100\nitems = list(range(50_000))\nprint(len(items))";
    text(&source.run_code(setup, RunOptions::default()).await.unwrap());
    text(&source.run_code("let kept = 'js ' + 'x'.repeat(100000); kept.length", js()).await.unwrap());

    let forks = sandboxes.fork(&source, 4).await.unwrap();
    assert_eq!(backend.contexts_mapped(), 8, "every fork's two contexts map the shared pages");
    for (i, fork) in forks.iter().enumerate() {
        let seen = format!("items.append({i}); print(len(items), items[-1], secret[:15])");
        assert_eq!(
            text(&fork.run_code(&seen, RunOptions::default()).await.unwrap()).trim(),
            format!("50001 {i} from the source")
        );
        assert_eq!(text(&fork.run_code("kept.length", js()).await.unwrap()).trim(), "100003");
    }
    // A fork's checkpoint holds the pages it shares and never wrote: paused and resumed, it
    // still has its source's state, and its own.
    forks[1].pause().await.unwrap();
    let after =
        text(&forks[1].run_code("print(len(items), items[-1], secret[:15])", RunOptions::default()).await.unwrap());
    assert_eq!(after.trim(), "50001 1 from the source");
    assert_eq!(text(&forks[1].run_code("kept.length", js()).await.unwrap()).trim(), "100003");
    let source_view = text(&source.run_code("print(len(items))", RunOptions::default()).await.unwrap());
    assert_eq!(source_view.trim(), "50000", "the source saw none of its forks' writes");

    for fork in &forks {
        sandboxes.kill(fork.id()).unwrap().await;
    }
    sandboxes.kill(source.id()).unwrap().await;
    assert_eq!(backend.contexts_alive(), 0, "every context is gone, its slot back in the pool");
    // Fill every slot again: new contexts and one-shot executions start from the module's
    // pages, not from a fork's.
    let fresh = sandboxes.create(SandboxSpec::default()).await.unwrap();
    let clean = "print('secret' in globals(), 'items' in globals())";
    assert_eq!(text(&fresh.run_code(clean, RunOptions::default()).await.unwrap()).trim(), "False False");
    assert_eq!(text(&fresh.run_code("typeof kept", js()).await.unwrap()).trim(), "'undefined'");
    for _ in 0..24 {
        let result = engine.execute(soulbox_engine::ExecRequest::new(Language::Python, clean)).await.unwrap();
        assert_eq!(result.stdout.trim(), "False False", "{result:?}");
    }
}
