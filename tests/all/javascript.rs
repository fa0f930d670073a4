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
setTimeout(() => { seen.push("t20"); Promise.resolve().then(() => seen.push("t20-job")); }, 20);
setTimeout(() => seen.push("t0"), 0);
setImmediate((a, b) => seen.push("immediate " + a + b), 1, 2);
const cancelled = setTimeout(() => seen.push("never"), 5);
clearTimeout(cancelled);
let ticks = 0;
const every = setInterval(() => { seen.push("tick" + ++ticks); if (ticks === 3) clearInterval(every); }, 1);
queueMicrotask(() => seen.push("microtask"));
(async () => { await new Promise(r => setTimeout(r, 30)); console.log(seen.join(",")); })();
"#;
    let r = js(code).await;
    assert_eq!(r.exit_code, 0, "{r:?}");
    let order: Vec<&str> = r.stdout.trim().split(',').collect();
    assert_eq!(order[0], "microtask", "{order:?}");
    assert!(!order.contains(&"never"), "{order:?}");
    let at = |name: &str| order.iter().position(|&s| s == name).unwrap_or_else(|| panic!("{name} in {order:?}"));
    assert!(at("t20") + 1 == at("t20-job"), "a timer's promise jobs run before the next timer: {order:?}");
    assert!(at("tick1") < at("tick2") && at("tick2") < at("tick3") && !order.contains(&"tick4"), "{order:?}");
    assert!(at("t0") < at("t20") && at("tick3") < at("t20"), "{order:?}");
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
async fn an_endless_interval_is_stopped_by_the_deadline() {
    let request = ExecRequest::new(Language::JavaScript, "setInterval(() => {}, 5)")
        .with_limits(Limits { deadline: std::time::Duration::from_millis(300), ..Limits::default() });
    let r = run(request).await;
    assert_eq!(r.outcome, Outcome::DeadlineExceeded, "{r:?}");
}

#[tokio::test]
async fn a_script_gets_the_timers_when_it_names_one() {
    let named = js("console.log(typeof setTimeout, typeof clearInterval)").await;
    assert_eq!(named.stdout, "function function\n", "{named:?}");
    // Computed names only: no timers are installed (their set-up costs as much as the script).
    let computed = js("console.log(typeof globalThis['set' + 'Time' + 'out'])").await;
    assert_eq!(computed.stdout, "undefined\n", "{computed:?}");
}
