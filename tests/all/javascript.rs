//! JavaScript: output, exit codes, exceptions, promises, inputs.

use soulbox_engine::{ExecRequest, Language, Outcome};
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
