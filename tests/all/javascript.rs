//! JavaScript: output, exit codes, exceptions, promises, timers, inputs.

use soulbox_engine::{ExecRequest, Language, Limits, Outcome};
use soulbox_tests::{js, run};

#[tokio::test]
async fn prints_and_exits_zero() {
    let r = js("console.log(1 + 1)").await;
    assert_eq!(r.stdout, "2\n");
    assert_eq!(r.exit_code, 0);
    assert_eq!(r.outcome, Outcome::Completed);
}

#[tokio::test]
async fn uncaught_exception_is_exit_one() {
    let r = js("function f() { throw new TypeError('boom') }\nf()").await;
    assert_eq!(r.exit_code, 1);
    assert!(r.stderr.contains("TypeError: boom"), "{}", r.stderr);
}

#[tokio::test]
async fn std_exit_status_is_mirrored() {
    assert_eq!(js("std.exit(4)").await.exit_code, 4);
}

#[tokio::test]
async fn promises_and_async_functions_complete() {
    let r = js("(async () => { await null; console.log('awaited') })();\nPromise.resolve(2).then(v => console.log('then', v));\nconsole.log('sync')").await;
    assert_eq!(r.stdout, "sync\nawaited\nthen 2\n", "{r:?}");
    let caught = js("(async () => { throw new Error('later') })().catch(e => console.log('caught', e.message))").await;
    assert_eq!(caught.stdout, "caught later\n", "{caught:?}");
}

#[tokio::test]
async fn buffered_std_out_is_flushed() {
    let r = js("std.out.puts('buffered\\n')").await;
    assert_eq!(r.stdout, "buffered\n");
}

#[tokio::test]
async fn stdin_args_env_and_files() {
    let code = "const input = std.in.readAsString();\nconst data = std.loadFile('in.txt');\nconst f = std.open('out.txt', 'w'); f.puts(data.toUpperCase()); f.close();\nconsole.log(input, JSON.stringify(scriptArgs), std.getenv('MODE'))";
    let request = ExecRequest::new(Language::JavaScript, code)
        .with_stdin("piped")
        .with_args(["x"])
        .with_env("MODE", "test")
        .with_file("in.txt", "abc");
    let r = run(request).await;
    assert_eq!(r.stdout, "piped [\"x\"] test\n", "{r:?}");
    assert_eq!(r.files.len(), 1);
    assert_eq!((r.files[0].path.as_str(), r.files[0].contents.as_slice()), ("out.txt", b"ABC".as_slice()));
}

#[tokio::test]
async fn timers_fire_in_order_with_promise_jobs_between_them() {
    let code = r#"
const seen = [];
setTimeout(() => { seen.push("t200"); Promise.resolve().then(() => seen.push("t200-job")); }, 200);
setTimeout(() => seen.push("t0"), 0);
setImmediate((a, b) => seen.push("immediate " + a + b), 1, 2);
const cancelled = setTimeout(() => seen.push("never"), 5);
clearTimeout(cancelled);
let ticks = 0;
const every = setInterval(() => { seen.push("tick" + ++ticks); if (ticks === 3) clearInterval(every); }, 1);
queueMicrotask(() => seen.push("microtask"));
(async () => { await new Promise(r => setTimeout(r, 300)); console.log(seen.join(",")); })();
"#;
    let r = js(code).await;
    assert_eq!(r.exit_code, 0, "{r:?}");
    let order: Vec<&str> = r.stdout.trim().split(',').collect();
    assert_eq!(order[0], "microtask", "{order:?}");
    assert!(!order.contains(&"never"), "{order:?}");
    let at = |name: &str| order.iter().position(|&s| s == name).unwrap_or_else(|| panic!("{name} in {order:?}"));
    assert!(at("t200") + 1 == at("t200-job"), "a timer's promise jobs run before the next timer: {order:?}");
    assert!(at("tick1") < at("tick2") && at("tick2") < at("tick3") && !order.contains(&"tick4"), "{order:?}");
    // The interval's three 1 ms ticks come before a 200 ms timer (a worker stalled for longer
    // than the gap between them, on a loaded machine, would let the later timer overtake one).
    assert!(at("t0") < at("t200") && at("tick3") < at("t200"), "{order:?}");
    assert!(order.contains(&"immediate 12"), "{order:?}");
}

#[tokio::test]
async fn output_before_a_throw_is_kept_and_a_throwing_timer_is_exit_one() {
    let r = js("std.out.puts('before\\n'); throw new Error('boom')").await;
    assert_eq!(r.exit_code, 1, "{r:?}");
    assert_eq!(r.stdout, "before\n", "buffered output printed before the throw is not lost");
    assert!(r.stderr.contains("boom"), "{r:?}");
    let timer = js(
        "setTimeout(() => { throw new TypeError('in a timer') }, 1); setTimeout(() => console.log('not reached'), 50)",
    )
    .await;
    assert_eq!(timer.exit_code, 1, "{timer:?}");
    assert!(timer.stderr.contains("in a timer") && !timer.stdout.contains("not reached"), "{timer:?}");
    let unref = js("setTimeout(() => console.log('never'), 10_000).unref(); console.log('done')").await;
    assert_eq!((unref.exit_code, unref.stdout.as_str()), (0, "done\n"), "an unreferenced timer keeps nothing alive");
}

#[tokio::test]
async fn a_program_naming_its_own_os_or_std_keeps_the_timers_and_globals_working() {
    let r = js("const os = require('os');\nconst std = null;\n\
                setTimeout(() => console.log(os.platform(), performance.now() >= 0, typeof process.hrtime()), 1)")
    .await;
    assert_eq!((r.exit_code, r.stdout.as_str()), (0, "linux true object\n"), "{r:?}");
}

#[tokio::test]
async fn an_es_module_that_fails_after_a_top_level_await_keeps_its_output_and_its_lines() {
    let code = "import { readFile } from 'fs/promises';\n\
                \n\
                console.log('before');\n\
                const text = await readFile('/missing.json', 'utf8').catch((e) => e.code);\n\
                console.log(text);\n\
                await new Promise((resolve) => setTimeout(resolve, 1));\n\
                JSON.parse('{not json');\n\
                console.log('never');";
    let r = js(code).await;
    assert_eq!((r.exit_code, r.stdout.as_str()), (1, "before\nENOENT\n"), "{r:?}");
    assert!(r.stderr.contains("SyntaxError") && r.stderr.contains("<cmdline>:7"), "the user's line: {r:?}");
    let unknown = js("import { parse } from './lib.js';\nparse()").await;
    assert_eq!(unknown.exit_code, 1, "{unknown:?}");
    assert!(unknown.stderr.contains("Cannot find module './lib.js'"), "{unknown:?}");
    let refused = js("const { spawn } = await import('child_process');").await;
    assert_eq!(refused.exit_code, 1, "{refused:?}");
    assert!(refused.stderr.contains("child_process") && refused.stderr.contains("container backend"), "{refused:?}");
}

#[tokio::test]
async fn an_unhandled_rejection_is_reported_and_ends_a_script_with_status_one() {
    let r = js("setTimeout(() => console.log('not reached'), 20);\n\
                Promise.reject(new RangeError('nobody caught me'));\nconsole.log('after')")
    .await;
    assert_eq!((r.exit_code, r.stdout.as_str()), (1, "after\n"), "as Node: the script ends at the check: {r:?}");
    assert!(r.stderr.starts_with("Uncaught (in promise) RangeError: nobody caught me\n"), "{r:?}");
    assert!(r.stderr.contains("<cmdline>:2"), "the stack says where: {r:?}");
    let thrown = js("async function load() { await null; throw new Error('from async') }\nload()").await;
    assert_eq!(thrown.exit_code, 1, "{thrown:?}");
    assert!(thrown.stderr.contains("Uncaught (in promise) Error: from async"), "{thrown:?}");
    let value = js("Promise.reject(42)").await;
    assert_eq!((value.exit_code, value.stderr.as_str()), (1, "Uncaught (in promise) 42\n"), "{value:?}");
    // Handled in the same turn, or caught by await: nothing to report.
    let handled = js("const p = Promise.reject(new Error('x'));\nPromise.resolve().then(() => p.catch(() => console.log('handled')))\n\
                      ;(async () => { try { await Promise.reject(1) } catch { console.log('caught') } })()")
    .await;
    assert_eq!((handled.exit_code, handled.stderr.as_str()), (0, ""), "{handled:?}");
    assert_eq!(handled.stdout, "caught\nhandled\n", "{handled:?}");
    // Many at once: the first ones and a count.
    let many = js("for (let i = 0; i < 40; i++) Promise.reject(new Error('n' + i))").await;
    assert_eq!(many.exit_code, 1);
    assert_eq!(many.stderr.matches("Uncaught (in promise)").count(), 16, "{many:?}");
    assert!(many.stderr.ends_with("... and 24 more unhandled rejections\n"), "{many:?}");
}

#[tokio::test]
async fn an_unhandled_rejection_in_a_cell_is_reported_and_the_context_goes_on() {
    let sandboxes = soulbox_tests::sandboxes();
    let spec = soulbox_engine::SandboxSpec { template: soulbox_engine::Template::JavaScript, ..Default::default() };
    let sandbox = sandboxes.create(spec).await.expect("a JavaScript sandbox");
    let options = soulbox_engine::RunOptions { language: Some(Language::JavaScript), ..Default::default() };
    let first = sandbox
        .run_code("globalThis.kept = 41; Promise.reject(new Error('in a cell')); 'done'", options.clone())
        .await
        .unwrap();
    assert!(first.stderr.contains("Uncaught (in promise) Error: in a cell"), "{first:?}");
    let second = sandbox.run_code("kept + 1", options).await.unwrap();
    assert_eq!(
        (second.text(), second.stderr.as_str()),
        (Some("42"), ""),
        "reported once, the context kept: {second:?}"
    );
    sandboxes.kill(sandbox.id()).expect("the sandbox is killed");
}

#[tokio::test]
async fn an_endless_interval_is_stopped_by_the_deadline() {
    let request = ExecRequest::new(Language::JavaScript, "setInterval(() => {}, 5)")
        .with_limits(Limits { deadline: std::time::Duration::from_millis(300), ..Limits::default() });
    let r = run(request).await;
    assert_eq!(r.outcome, Outcome::DeadlineExceeded, "{r:?}");
}

#[tokio::test]
async fn every_script_has_the_timers_and_the_node_globals() {
    // Reached only by computed names: they are defined in every guest, not looked for in the text.
    let code = "console.log(['set' + 'Timeout', 'Buffer', 'process', 'require', 'URL', 'TextEncoder', 'structuredClone', 'crypto'].map(n => typeof globalThis[n]).join(' '))";
    let r = js(code).await;
    assert_eq!(r.stdout, "function function object function function function function object\n", "{r:?}");
}

#[tokio::test]
async fn each_guest_gets_its_own_entropy_arguments_and_environment() {
    let code = "console.log(JSON.stringify([process.argv.slice(2), process.env.MODE, scriptArgs, crypto.randomUUID(), Math.random()]))";
    let request = || ExecRequest::new(Language::JavaScript, code).with_args(["x", "y z"]).with_env("MODE", "test");
    let (a, b) = (run(request()).await, run(request()).await);
    let parse =
        |r: &soulbox_engine::ExecResult| -> serde_json::Value { serde_json::from_str(&r.stdout).expect(&r.stdout) };
    let (a, b) = (parse(&a), parse(&b));
    assert_eq!(a[0], serde_json::json!(["x", "y z"]));
    assert_eq!((a[1].as_str(), &a[2]), (Some("test"), &serde_json::json!(["x", "y z"])));
    assert_ne!(a[3], b[3], "every guest draws fresh entropy (the snapshot's state is never reused)");
    assert_ne!(a[4], b[4]);
    let bare = js("console.log(JSON.stringify([process.argv.length, process.env.MODE ?? null]))").await;
    assert_eq!(bare.stdout, "[2,null]\n", "nothing carries over from the previous guest: {bare:?}");
}

#[tokio::test]
async fn process_exit_flushes_and_sets_the_status() {
    let r =
        js("process.on('exit', c => console.log('bye', c)); console.log('out'); process.exit(5); console.log('never')")
            .await;
    assert_eq!((r.exit_code, r.stdout.as_str()), (5, "out\nbye 5\n"), "{r:?}");
}

/// One program of a corpus (`corpus/javascript/`, `corpus/typescript/`): programs of the kind
/// models write, each beside its expected output (`NAME.out`: for JavaScript, what Node 20
/// printed for it, the few whose output is SoulBox's own saying so in their first comment).
/// `NAME.context.out`, where present, is what the program prints as a context's cell instead
/// (a cell waits for its timeouts but not its intervals, and is not a process that exits). A
/// first line `// exit code: N` gives a one-shot exit status.
struct Program {
    name: String,
    code: String,
    stdout: String,
    context_stdout: String,
    exit_code: i32,
}

fn corpus(language: Language) -> Vec<Program> {
    let (dir, extension) = match language {
        Language::TypeScript => ("typescript", "ts"),
        _ => ("javascript", "js"),
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("all/corpus").join(dir);
    let mut programs: Vec<Program> = std::fs::read_dir(&dir)
        .expect("the corpus")
        .map(|entry| entry.expect("a corpus entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == extension))
        .map(|path| {
            let read = |ext: &str| std::fs::read_to_string(path.with_extension(ext));
            let code = read(extension).expect("the program");
            let stdout = read("out").expect("every program has its expected output");
            let exit_code = code
                .lines()
                .next()
                .and_then(|line| line.strip_prefix("// exit code: "))
                .map_or(0, |n| n.trim().parse().expect("an exit code"));
            let context_stdout = read("context.out").unwrap_or_else(|_| stdout.clone());
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            Program { name, code, stdout, context_stdout, exit_code }
        })
        .collect();
    programs.sort_by(|a, b| a.name.cmp(&b.name));
    programs
}

/// Runs every program of `language`'s corpus one-shot; the mismatches.
async fn corpus_one_shot(language: Language) -> Vec<String> {
    let mut failures = Vec::new();
    for program in corpus(language) {
        let r = run(ExecRequest::new(language, &program.code)).await;
        if r.stdout != program.stdout || r.exit_code != program.exit_code {
            failures.push(format!(
                "{}: exit {} (expected {}), stderr {:?}\n--- got\n{}--- expected\n{}",
                program.name, r.exit_code, program.exit_code, r.stderr, r.stdout, program.stdout
            ));
        }
    }
    failures
}

/// Runs every program of `language`'s corpus as the first cell of a new sandbox's context of
/// that language; the mismatches.
async fn corpus_in_contexts(language: Language) -> Vec<String> {
    let sandboxes = soulbox_tests::sandboxes();
    let options = soulbox_engine::RunOptions { language: Some(language), ..Default::default() };
    let mut failures = Vec::new();
    for program in corpus(language) {
        let spec = soulbox_engine::SandboxSpec { template: soulbox_engine::Template::JavaScript, ..Default::default() };
        let sandbox = sandboxes.create(spec).await.expect("a JavaScript sandbox");
        let r = sandbox.run_code(&program.code, options.clone()).await.expect("the cell runs");
        if r.stdout != program.context_stdout || r.error.is_some() {
            failures.push(format!(
                "{}: error {:?}\n--- got\n{}--- expected\n{}",
                program.name, r.error, r.stdout, program.context_stdout
            ));
        }
        sandboxes.kill(sandbox.id()).expect("the sandbox is killed");
    }
    failures
}

#[tokio::test]
async fn the_corpus_prints_what_node_prints() {
    assert!(corpus(Language::JavaScript).len() >= 30);
    let failures = corpus_one_shot(Language::JavaScript).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn the_corpus_runs_as_context_cells() {
    let failures = corpus_in_contexts(Language::JavaScript).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn the_typescript_corpus_runs_one_shot_and_in_contexts() {
    assert!(corpus(Language::TypeScript).len() >= 8);
    let mut failures = corpus_one_shot(Language::TypeScript).await;
    failures.extend(corpus_in_contexts(Language::TypeScript).await);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn typescript_errors_point_at_the_users_lines() {
    let code = "const limit: number = 3;\ninterface Item { name: string }\nfunction check(item: Item): never {\n  throw new Error(`bad ${item.name}`);\n}\ncheck({ name: 'x' } as Item);\n";
    let r = run(ExecRequest::new(Language::TypeScript, code)).await;
    assert_eq!(r.exit_code, 1, "{r:?}");
    assert!(r.stderr.contains("Error: bad x") && r.stderr.contains("<cmdline>:4:"), "the throw is on line 4: {r:?}");
    let bad = run(ExecRequest::new(Language::TypeScript, "const ok: number = 1;\nlet broken: = 2;\n")).await;
    assert_eq!(bad.exit_code, 1, "{bad:?}");
    assert!(bad.stderr.contains("SyntaxError: TypeScript: 2:"), "a syntax error names its line: {bad:?}");
}
