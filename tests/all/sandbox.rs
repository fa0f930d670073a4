//! Sandboxes with stateful kernels: state across cells, results, errors, charts, tables,
//! streaming, limits, lifetimes and many sandboxes at once.

use base64::Engine as _;
use soulbox_engine::kernel::ExecutionEvent;
use soulbox_engine::{Language, Limits, Outcome, RunOptions, SandboxError, SandboxSpec, Template};
use soulbox_tests::sandboxes;
use std::time::Duration;

fn python() -> RunOptions {
    RunOptions::default()
}

fn js() -> RunOptions {
    RunOptions { language: Some(Language::JavaScript), ..RunOptions::default() }
}

fn spec(template: Template) -> SandboxSpec {
    SandboxSpec { template, ..SandboxSpec::default() }
}

/// Decodes a base64 PNG fully; returns its size.
fn png_size(b64: &str) -> (u32, u32) {
    soulbox_tests::png_size(&base64::engine::general_purpose::STANDARD.decode(b64).expect("base64"))
}

#[tokio::test]
async fn python_keeps_state_and_returns_final_values() {
    let sandboxes = sandboxes();
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    let first = sandbox.run_code("x = 41\ndef bump(v):\n    return v + 1\nimport math", python()).await.unwrap();
    assert_eq!(first.outcome(), Outcome::Completed);
    assert!(first.results.is_empty(), "{first:?}");
    let second = sandbox.run_code("print('hi')\nbump(x)", python()).await.unwrap();
    assert_eq!(second.stdout, "hi\n");
    assert_eq!(second.text(), Some("42"));
    assert_eq!(second.end.execution_count, 2);
    let third = sandbox.run_code("math.sqrt(16)", python()).await.unwrap();
    assert_eq!(third.text(), Some("4.0"));
    let none = sandbox.run_code("y = None\ny", python()).await.unwrap();
    assert!(none.results.is_empty(), "a None value is not a result: {none:?}");
}

#[tokio::test]
async fn python_exceptions_are_errors_and_the_context_survives() {
    let sandboxes = sandboxes();
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    sandbox.run_code("total = 10", python()).await.unwrap();
    let failed = sandbox.run_code("def div(a, b):\n    return a / b\ndiv(total, 0)", python()).await.unwrap();
    let error = failed.error.as_ref().expect("an error");
    assert_eq!(error.name, "ZeroDivisionError");
    assert_eq!(error.value, "division by zero");
    assert!(error.traceback.contains("Traceback"), "{}", error.traceback);
    assert!(error.traceback.contains("in div"), "{}", error.traceback);
    assert!(error.traceback.contains("return a / b"), "source lines shown: {}", error.traceback);
    assert!(!error.traceback.contains("soulbox kernel"), "the kernel's frames are hidden: {}", error.traceback);
    assert_eq!(failed.outcome(), Outcome::Completed);
    assert!(!failed.end.context_restarted);
    let syntax = sandbox.run_code("def broken(:", python()).await.unwrap();
    assert_eq!(syntax.error.as_ref().unwrap().name, "SyntaxError");
    let exit = sandbox.run_code("import sys\nsys.exit(3)", python()).await.unwrap();
    assert_eq!(exit.error.as_ref().unwrap().name, "SystemExit");
    let after = sandbox.run_code("total * 2", python()).await.unwrap();
    assert_eq!(after.text(), Some("20"), "{after:?}");
}

#[tokio::test]
async fn matplotlib_charts_come_back_as_png_and_data() {
    let sandboxes = sandboxes();
    let sandbox = sandboxes.create(spec(Template::DataScience)).await.unwrap();
    let line = sandbox
        .run_code(
            "fig, ax = plt.subplots()\nax.plot([1, 2, 3], [2, 4, 8], label='growth')\n\
             ax.set_title('Growth')\nax.set_xlabel('Day')\nax.set_ylabel('Size (cm)')\nax.legend()\nplt.show()",
            python(),
        )
        .await
        .unwrap();
    assert!(line.error.is_none(), "{line:?}");
    assert_eq!(line.results.len(), 1, "{:?}", line.results);
    let figure = &line.results[0];
    assert!(!figure.is_main_result);
    assert_eq!(png_size(figure.png.as_ref().unwrap()), (640, 480));
    let chart = figure.chart.as_ref().expect("chart data");
    assert_eq!(chart["type"], "line");
    assert_eq!(chart["title"], "Growth");
    assert_eq!(chart["x_label"], "Day");
    assert_eq!(chart["y_unit"], "cm");
    assert_eq!(chart["elements"][0]["label"], "growth");
    assert_eq!(chart["elements"][0]["points"], serde_json::json!([[1.0, 2.0], [2.0, 4.0], [3.0, 8.0]]));

    // A bar chart left open at the end of the cell is sent too.
    let bars = sandbox
        .run_code("plt.figure()\nplt.bar(['apples', 'pears'], [3, 5])\nplt.title('Fruit')", python())
        .await
        .unwrap();
    let figure = bars.results.iter().find(|r| r.png.is_some()).expect("the open figure");
    png_size(figure.png.as_ref().unwrap());
    let chart = figure.chart.as_ref().unwrap();
    assert_eq!(chart["type"], "bar");
    let elements = chart["elements"].as_array().unwrap();
    assert_eq!(elements.len(), 2);
    assert_eq!(elements[0]["label"], "apples");
    assert_eq!(elements[0]["value"], 3.0);
    assert_eq!(elements[1]["label"], "pears");
    assert_eq!(elements[1]["value"], 5.0);

    let more = sandbox
        .run_code(
            "fig, axes = plt.subplots(1, 3)\naxes[0].pie([1, 3], labels=['a', 'b'])\n\
             axes[1].scatter([1, 2], [3, 4])\naxes[2].boxplot([[1, 2, 3, 4, 100]])\nfig",
            python(),
        )
        .await
        .unwrap();
    let figure = more.main_result().expect("the figure as the final value");
    png_size(figure.png.as_ref().unwrap());
    let chart = figure.chart.as_ref().unwrap();
    assert_eq!(chart["type"], "superchart");
    let kinds: Vec<_> = chart["elements"].as_array().unwrap().iter().map(|c| c["type"].clone()).collect();
    assert_eq!(kinds, ["pie", "scatter", "box_and_whisker"]);
    assert_eq!(chart["elements"][0]["elements"][1]["label"], "b");
    assert_eq!(chart["elements"][2]["elements"][0]["median"], 3.0);
    assert_eq!(chart["elements"][2]["elements"][0]["outliers"], serde_json::json!([100.0]));
    assert_eq!(more.results.len(), 1, "the figure is not sent twice: {:?}", more.results);
}

#[tokio::test]
async fn a_plain_context_imports_the_stack_on_demand_and_its_figures_still_come_back() {
    let sandboxes = sandboxes();
    let sandbox = sandboxes.create(spec(Template::Python)).await.unwrap();
    let loaded = "import sys\n[m for m in ('numpy', 'matplotlib.pyplot') if m in sys.modules]";
    let before = sandbox.run_code(loaded, python()).await.unwrap();
    assert_eq!(before.text(), Some("[]"), "the plain snapshot imported neither: {before:?}");
    let chart = sandbox
        .run_code(
            "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [3, 1, 2])\nplt.title('On demand')\nplt.show()",
            python(),
        )
        .await
        .unwrap();
    assert!(chart.error.is_none(), "{chart:?}");
    assert_eq!(chart.results.len(), 1, "plt.show() sent the figure: {:?}", chart.results);
    png_size(chart.results[0].png.as_ref().expect("a PNG"));
    assert_eq!(chart.results[0].chart.as_ref().expect("chart data")["title"], "On demand");
    let open = sandbox.run_code("plt.figure()\nplt.bar(['a'], [1])", python()).await.unwrap();
    assert!(open.results.iter().any(|r| r.png.is_some()), "a figure left open is sent too: {open:?}");
}

#[tokio::test]
async fn dataframes_come_back_as_data_and_html() {
    let sandboxes = sandboxes();
    let sandbox = sandboxes.create(spec(Template::DataScience)).await.unwrap();
    let r = sandbox.run_code("pd.DataFrame({'a': [1, 2], 'b': ['x', None]})", python()).await.unwrap();
    let table = r.main_result().expect("a main result");
    assert!(table.html.as_ref().unwrap().contains("<table"), "{table:?}");
    let data = table.data.as_ref().unwrap();
    assert_eq!(data["columns"], serde_json::json!(["a", "b"]));
    assert_eq!(data["data"], serde_json::json!([[1, "x"], [2, null]]));
    assert!(table.text.as_ref().unwrap().contains('a'));
}

#[tokio::test]
async fn events_stream_while_the_cell_runs() {
    let sandboxes = sandboxes();
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    // Each line after the first waits for a file the test writes only once it has the line
    // before: the cell cannot end unless its output arrives while it runs.
    let code = "import os, time\nfor i in range(3):\n    print('tick', i)\n    while not os.path.exists(f'/go{i}'):\n        time.sleep(0.005)\n1/0";
    let mut stream = sandbox.run_code_stream(code, python()).await.unwrap();
    let mut seen = Vec::new();
    while let Some(event) = stream.next_event().await {
        let event = event.unwrap();
        if let ExecutionEvent::Stdout { text } = &event {
            let tick = text.trim().strip_prefix("tick ").unwrap().to_owned();
            sandbox.files().unwrap().write(&format!("/go{tick}"), b"").await.unwrap();
        }
        seen.push(event);
    }
    let ticks: Vec<_> = seen.iter().filter(|e| matches!(e, ExecutionEvent::Stdout { .. })).collect();
    assert_eq!(ticks.len(), 3, "one event per line: {seen:?}");
    let kinds: Vec<&str> = seen
        .iter()
        .map(|e| match e {
            ExecutionEvent::Stdout { .. } => "stdout",
            ExecutionEvent::Stderr { .. } => "stderr",
            ExecutionEvent::Result(_) => "result",
            ExecutionEvent::Error(_) => "error",
            ExecutionEvent::End(_) => "end",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["stdout", "stdout", "stdout", "error", "end"]);
}

#[tokio::test]
async fn javascript_keeps_state_and_reports_values_and_errors() {
    let sandboxes = sandboxes();
    let sandbox = sandboxes.create(spec(Template::JavaScript)).await.unwrap();
    let first =
        sandbox.run_code("let n = 40; function add(a) { return a + n }\nconsole.log('ready')", js()).await.unwrap();
    assert_eq!(first.stdout, "ready\n", "{first:?}");
    let second = sandbox.run_code("add(2)", js()).await.unwrap();
    assert_eq!(second.text(), Some("42"), "{second:?}");
    let object = sandbox.run_code("({a: [1, 2], b: 'x'})", js()).await.unwrap();
    assert_eq!(object.main_result().unwrap().json, Some(serde_json::json!({"a": [1, 2], "b": "x"})));
    let awaited = sandbox.run_code("const v = await Promise.resolve(n + 1); v", js()).await.unwrap();
    assert_eq!(awaited.text(), Some("41"), "{awaited:?}");
    let failed = sandbox.run_code("null.boom", js()).await.unwrap();
    let error = failed.error.as_ref().expect("an error");
    assert_eq!(error.name, "TypeError");
    assert!(!error.traceback.is_empty());
    let after = sandbox.run_code("n + v", js()).await.unwrap();
    assert_eq!(after.text(), Some("81"));
}

#[tokio::test]
async fn javascript_cells_wait_for_their_timeouts_and_intervals_carry_over() {
    let sandboxes = sandboxes();
    let sandbox = sandboxes.create(spec(Template::JavaScript)).await.unwrap();
    let waited =
        sandbox.run_code("setTimeout(() => console.log('later'), 20); console.log('now')", js()).await.unwrap();
    assert_eq!(waited.stdout, "now\nlater\n", "a cell waits for its timeouts: {waited:?}");
    // An interval fires while a cell waits, but does not keep it waiting on its own: it stays
    // set in the context and goes on firing during later cells.
    let set =
        sandbox.run_code("let fired = 0; const every = setInterval(() => fired++, 1); 'set'", js()).await.unwrap();
    assert_eq!(set.text(), Some("'set'"), "{set:?}");
    let later = "await new Promise(r => setTimeout(r, 30)); clearInterval(every); fired > 0";
    let fired = sandbox.run_code(later, js()).await.unwrap();
    assert_eq!(fired.text(), Some("true"), "{fired:?}");
    let after = sandbox
        .run_code("const before = fired; await new Promise(r => setTimeout(r, 10)); fired === before", js())
        .await
        .unwrap();
    assert_eq!(after.text(), Some("true"), "a cleared interval stays cleared: {after:?}");
}

#[tokio::test]
async fn python_and_javascript_share_the_workspace() {
    let sandboxes = sandboxes();
    let env = [("GREETING".to_owned(), "hello".to_owned())].into();
    let sandbox = sandboxes.create(SandboxSpec { env, ..SandboxSpec::default() }).await.unwrap();
    let wrote = sandbox
        .run_code("import os\nopen('/shared.txt', 'w').write(os.environ['GREETING'] + ' from python')", python())
        .await
        .unwrap();
    assert!(wrote.error.is_none(), "{wrote:?}");
    let read = sandbox.run_code("std.loadFile('/shared.txt') + ' / ' + std.getenv('GREETING')", js()).await.unwrap();
    assert_eq!(read.text(), Some("'hello from python / hello'"), "{read:?}");
    assert_eq!(sandbox.files().unwrap().read("/shared.txt").await.unwrap(), b"hello from python");
    assert_eq!(sandbox.contexts().len(), 2);
}

#[tokio::test]
async fn a_deadline_stops_the_cell_and_restarts_the_context() {
    let sandboxes = sandboxes();
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    sandbox.run_code("kept = 1", python()).await.unwrap();
    let limits = Limits { deadline: Duration::from_millis(300), ..Limits::default() };
    let options = RunOptions { limits, ..RunOptions::default() };
    let spun = sandbox.run_code("print('spinning')\nwhile True: pass", options.clone()).await.unwrap();
    assert_eq!(spun.outcome(), Outcome::DeadlineExceeded);
    assert!(spun.end.context_restarted);
    assert_eq!(spun.stdout, "spinning\n");
    let slept = sandbox.run_code("import time\ntime.sleep(5)", options).await.unwrap();
    assert_eq!(slept.outcome(), Outcome::DeadlineExceeded);
    let after = sandbox.run_code("'kept' in globals()", python()).await.unwrap();
    assert_eq!(after.text(), Some("False"), "state is gone after a restart: {after:?}");
    let output = RunOptions { limits: Limits { stdout_bytes: 1000, ..Limits::default() }, ..RunOptions::default() };
    let flood = sandbox.run_code("while True: print('x' * 100)", output).await.unwrap();
    assert_eq!(flood.outcome(), Outcome::OutputLimitExceeded);
    assert!(flood.stdout.len() <= 1000);
    let fine = sandbox.run_code("6 * 7", python()).await.unwrap();
    assert_eq!(fine.text(), Some("42"));
}

/// A cell answered at its end starts on its caller's task; one still running at the next epoch
/// tick goes on on a worker, which frees the caller's thread: here the only thread of the test's
/// runtime, which makes the file the cell waits for only once the cell has let it go (a cell
/// that kept the thread would spin to its deadline).
#[tokio::test]
async fn a_long_cell_lets_go_of_its_callers_thread_and_ends_on_a_worker() {
    let sandboxes = sandboxes();
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    sandbox.run_code("import os", python()).await.unwrap();
    let go = sandbox.files().unwrap().host_path().join("go");
    let limits = Limits { deadline: Duration::from_secs(120), ..Limits::default() };
    let options = RunOptions { limits, ..RunOptions::default() };
    let waits = sandbox.run_code("while not os.path.exists('/go'): pass\nprint('went')", options);
    let (ran, ()) = tokio::join!(waits, async { std::fs::write(&go, b"").unwrap() });
    let ran = ran.unwrap();
    assert_eq!(ran.outcome(), Outcome::Completed, "{ran:?}");
    assert_eq!(ran.stdout, "went\n");
    let js = sandbox.run_code(
        "let n = 0; while (n < 1e12) { n++; } n",
        RunOptions { limits: Limits { deadline: Duration::from_millis(300), ..Limits::default() }, ..js() },
    );
    assert_eq!(js.await.unwrap().outcome(), Outcome::DeadlineExceeded);
}

/// A caller that goes away while its cell runs does not stop it: the cell ends on a worker and
/// its context keeps what it did, whether the caller left while the cell waited in a `sleep` on
/// the caller's task or after the cell was handed over; the next cell waits for it.
#[tokio::test]
async fn a_cell_whose_caller_went_away_ends_and_keeps_its_state() {
    let sandboxes = sandboxes();
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    sandbox.run_code("import os, time", python()).await.unwrap();
    let long = RunOptions { limits: Limits { deadline: Duration::from_secs(120), ..Limits::default() }, ..python() };
    tokio::select! {
        biased;
        _ = sandbox.run_code("time.sleep(0.2)\nslept = 1", long.clone()) => panic!("the cell sleeps"),
        () = std::future::ready(()) => {}
    }
    assert_eq!(sandbox.run_code("slept", python()).await.unwrap().text(), Some("1"));
    tokio::select! {
        biased;
        _ = sandbox.run_code("while not os.path.exists('/go'): pass\nspun = 2", long) => panic!("the cell spins"),
        () = std::future::ready(()) => {}
    }
    std::fs::write(sandbox.files().unwrap().host_path().join("go"), b"").unwrap();
    let after = sandbox.run_code("(slept, spun)", python()).await.unwrap();
    assert_eq!(after.text(), Some("(1, 2)"), "{after:?}");
    assert!(!after.end.context_restarted);
}

#[tokio::test]
async fn a_refused_allocation_is_a_memory_error_and_the_context_survives() {
    let sandboxes = sandboxes();
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    sandbox.run_code("kept = 'yes'", python()).await.unwrap();
    let small = RunOptions { limits: Limits { memory_bytes: 256 << 20, ..Limits::default() }, ..RunOptions::default() };
    let hog = sandbox.run_code("block = bytearray(600 << 20)", small).await.unwrap();
    assert_eq!(hog.outcome(), Outcome::MemoryExceeded, "{hog:?}");
    assert_eq!(hog.error.as_ref().map(|e| e.name.as_str()), Some("MemoryError"));
    assert!(!hog.end.context_restarted);
    let after = sandbox.run_code("kept", python()).await.unwrap();
    assert_eq!(after.text(), Some("'yes'"));
}

#[tokio::test]
async fn contexts_are_separate_and_can_be_restarted_and_removed() {
    let sandboxes = sandboxes();
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    let default_id = sandbox.contexts()[0].id.clone();
    let other = sandbox.create_context(Language::Python, None).await.unwrap();
    sandbox.run_code("a = 1", python()).await.unwrap();
    let in_other = RunOptions { context: Some(other.id.clone()), ..RunOptions::default() };
    let r = sandbox.run_code("'a' in globals()", in_other.clone()).await.unwrap();
    assert_eq!(r.text(), Some("False"));
    sandbox.restart_context(&default_id).await.unwrap();
    let r = sandbox.run_code("'a' in globals()", python()).await.unwrap();
    assert_eq!(r.text(), Some("False"));
    sandbox.remove_context(&other.id).await.unwrap();
    assert!(matches!(sandbox.run_code("1", in_other).await, Err(SandboxError::ContextNotFound(_))));
    let wrong = RunOptions { context: Some(default_id), language: Some(Language::JavaScript), ..RunOptions::default() };
    assert!(matches!(sandbox.run_code("1", wrong).await, Err(SandboxError::Invalid(_))));
}

#[tokio::test]
async fn killed_and_expired_sandboxes_are_gone() {
    let sandboxes = sandboxes();
    let killed = sandboxes.create(SandboxSpec::default()).await.unwrap();
    let workspace = {
        let files = killed.files().unwrap();
        files.write("/a.txt", b"x").await.unwrap();
        files.host_path().to_path_buf()
    };
    sandboxes.kill(killed.id()).unwrap();
    assert!(!workspace.exists(), "the workspace is deleted");
    assert!(matches!(sandboxes.get(killed.id()), Err(SandboxError::NotFound(_))));
    assert!(matches!(killed.run_code("1", python()).await, Err(SandboxError::NotFound(_))));
    assert!(killed.is_gone());

    let mut closed = sandboxes.subscribe_closed();
    let idle = SandboxSpec { idle_timeout: Some(Duration::from_millis(300)), ..SandboxSpec::default() };
    let short = sandboxes.create(idle).await.unwrap();
    let lifetime = SandboxSpec { lifetime: Some(Duration::from_millis(400)), ..SandboxSpec::default() };
    let brief = sandboxes.create(lifetime).await.unwrap();
    let kept = sandboxes.create(SandboxSpec::default()).await.unwrap();
    kept.set_timeouts(Some(Duration::from_secs(60)), Some(Duration::from_secs(60))).unwrap();
    let mut expired = std::collections::BTreeSet::new();
    while expired.len() < 2 {
        expired.insert(closed.recv().await.unwrap().id);
    }
    assert_eq!(expired, [short.id().to_owned(), brief.id().to_owned()].into());
    assert!(short.is_gone() && brief.is_gone());
    assert!(!kept.is_gone());
    assert_eq!(sandboxes.list(&Default::default()).len(), 1);
    assert!(kept.set_timeouts(Some(Duration::ZERO), None).is_err());
}

#[tokio::test]
async fn fifty_sandboxes_at_once() {
    let sandboxes = sandboxes();
    let mut created = Vec::new();
    for i in 0..50 {
        let metadata = [("n".to_owned(), i.to_string()), ("suite".to_owned(), "fifty".to_owned())].into();
        let template = if i % 2 == 0 { Template::Python } else { Template::JavaScript };
        created.push(sandboxes.create(SandboxSpec { template, metadata, ..SandboxSpec::default() }).await.unwrap());
    }
    let runs = created.iter().enumerate().map(|(i, sandbox)| {
        let sandbox = sandbox.clone();
        tokio::spawn(async move {
            let options = RunOptions { language: Some(sandbox.template().language()), ..RunOptions::default() };
            sandbox.run_code(&format!("{i} * 2"), options).await.unwrap()
        })
    });
    for (i, run) in runs.collect::<Vec<_>>().into_iter().enumerate() {
        let execution = run.await.unwrap();
        assert_eq!(execution.text(), Some((i * 2).to_string().as_str()));
    }
    let filter = [("n".to_owned(), "7".to_owned())].into();
    let found = sandboxes.list(&filter);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].metadata["n"], "7");
    assert_eq!(sandboxes.list(&[("suite".to_owned(), "fifty".to_owned())].into()).len(), 50);
    for sandbox in &created {
        sandboxes.kill(sandbox.id()).unwrap();
    }
    assert!(sandboxes.is_empty());
}

#[tokio::test]
async fn killing_stops_a_running_cell_and_frees_every_context() {
    // A backend of its own, so other tests' contexts do not count.
    let backend = soulbox_runtimes_wasm::WasmBackend::open(soulbox_tests::wasm_config()).unwrap();
    let engine = soulbox_engine::Engine::builder().backend(backend.clone()).build();
    let sandboxes = soulbox_tests::sandboxes_on(&engine);
    let spinning = sandboxes.create(SandboxSpec::default()).await.unwrap();
    let js_box = sandboxes.create(spec(Template::JavaScript)).await.unwrap();
    js_box.create_context(Language::Python, None).await.unwrap();
    let idle = sandboxes.create(spec(Template::DataScience)).await.unwrap();
    assert_eq!(backend.contexts_alive(), 4);
    // Expires once idle for this long (set after the count, which a slow start would race).
    idle.set_timeouts(Some(Duration::from_millis(200)), None).unwrap();

    let long = RunOptions { limits: Limits { deadline: Duration::from_secs(600), ..Limits::default() }, ..python() };
    let mut stream = spinning.run_code_stream("print('going', flush=True)\nwhile True: pass", long).await.unwrap();
    assert!(matches!(stream.next_event().await, Some(Ok(ExecutionEvent::Stdout { .. }))));
    sandboxes.kill(spinning.id()).unwrap();
    // The spinning cell ends (its stream closes) because its sandbox was killed.
    while stream.next_event().await.is_some() {}
    wait_for(|| backend.contexts_alive() == 2).await;
    sandboxes.kill(js_box.id()).unwrap();
    wait_for(|| backend.contexts_alive() == 0).await;
    assert!(sandboxes.is_empty(), "the idle one expired");
}

#[tokio::test]
async fn idle_contexts_give_back_unchanged_pages_and_keep_their_state() {
    // A backend of its own that trims contexts idle for 50 ms, so the count is theirs alone.
    let config = soulbox_runtimes_wasm::WasmConfig {
        trim_idle_after: Some(Duration::from_millis(50)),
        ..soulbox_tests::wasm_config()
    };
    let backend = soulbox_runtimes_wasm::WasmBackend::open(config).unwrap();
    let engine = soulbox_engine::Engine::builder().backend(backend.clone()).build();
    let sandboxes = soulbox_tests::sandboxes_on(&engine);
    let python_box = sandboxes.create(SandboxSpec::default()).await.unwrap();
    let js_box = sandboxes.create(spec(Template::JavaScript)).await.unwrap();
    let setup = "x = 41\ndata = [str(i) * 3 for i in range(20_000)]\ndel data[::2]";
    assert_eq!(python_box.run_code(setup, python()).await.unwrap().outcome(), Outcome::Completed);
    let js_setup = "let n = 40; let junk = Array.from({length: 20000}, (_, i) => 'v' + i); junk = null";
    assert_eq!(js_box.run_code(js_setup, js()).await.unwrap().outcome(), Outcome::Completed);
    wait_for(|| backend.pages_trimmed() > 0).await;
    let first = backend.pages_trimmed();

    // Every byte the guests can read is as it was: their state carries on.
    let python_after = python_box.run_code("x + 1, len(data), data[-1]", python()).await.unwrap();
    assert_eq!(python_after.text(), Some("(42, 10000, '199991999919999')"), "{python_after:?}");
    let js_after = js_box.run_code("n + 2", js()).await.unwrap();
    assert_eq!(js_after.text(), Some("42"), "{js_after:?}");
    // The cells just run made them idle again, and they give back again.
    wait_for(|| backend.pages_trimmed() > first).await;
    let again = python_box.run_code("x", python()).await.unwrap();
    assert_eq!(again.text(), Some("41"), "{again:?}");
}

/// Polls `condition` (a state with no event to wait on), pausing between looks.
async fn wait_for(condition: impl Fn() -> bool) {
    for _ in 0..3000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the condition never held");
}

#[tokio::test]
async fn a_fuel_budget_applies_per_cell() {
    let sandboxes = soulbox_tests::sandboxes_on(soulbox_tests::metered_engine());
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    let budget = |fuel| RunOptions { limits: Limits { fuel: Some(fuel), ..Limits::default() }, ..python() };
    let cheap = sandbox.run_code("x = sum(range(100))", budget(50_000_000)).await.unwrap();
    assert_eq!(cheap.outcome(), Outcome::Completed, "{cheap:?}");
    assert!(cheap.end.fuel_used.unwrap() > 0);
    let spin = sandbox.run_code("while True: pass", budget(5_000_000)).await.unwrap();
    assert_eq!(spin.outcome(), Outcome::FuelExhausted);
    assert!(spin.end.context_restarted);
    let after = sandbox.run_code("1 + 1", python()).await.unwrap();
    assert_eq!(after.text(), Some("2"));
    // Without metering, a fuel budget is refused rather than ignored.
    let plain = soulbox_tests::sandboxes();
    let unmetered = plain.create(SandboxSpec::default()).await.unwrap();
    let err = unmetered.run_code("1", budget(1000)).await.unwrap_err();
    assert!(err.to_string().contains("fuel"), "{err}");
}
