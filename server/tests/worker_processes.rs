//! Guests in worker processes (`Workers::Processes` with this crate's `soulbox __worker`): same
//! results as in-process, limits enforced in the child. (A killed child being replaced is in
//! `worker_process_crash.rs`, its own test process, since it kills every worker child.)

mod common;

use soulbox_engine::{ExecRequest, Language, Limits, Outcome};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_python_and_js_with_inputs_and_limits() {
    let engine = common::process_engine();
    let request = ExecRequest::new(
        Language::Python,
        "import sys\nprint(sys.stdin.read(), open('in.txt').read())\nn = open('out.txt', 'w').write('w')",
    )
    .with_stdin("piped")
    .with_file("in.txt", "file");
    let r = engine.execute(request).await.unwrap();
    assert_eq!(r.stdout, "piped file\n", "{r:?}");
    assert_eq!(r.files.len(), 1);
    assert_eq!(r.files[0].contents, b"w");
    let r = engine.execute(ExecRequest::new(Language::JavaScript, "console.log(6 * 7)")).await.unwrap();
    assert_eq!(r.stdout, "42\n");
    let spin = ExecRequest::new(Language::Python, "while True: pass")
        .with_limits(Limits { deadline: Duration::from_millis(200), ..Limits::default() });
    assert_eq!(engine.execute(spin).await.unwrap().outcome, Outcome::DeadlineExceeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_executions_are_all_correct() {
    let engine = common::process_engine();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let engine = engine.clone();
            tokio::spawn(async move {
                (i, engine.execute(ExecRequest::new(Language::Python, format!("print({i} * 3)"))).await)
            })
        })
        .collect();
    for task in tasks {
        let (i, result) = task.await.unwrap();
        assert_eq!(result.unwrap().stdout, format!("{}\n", i * 3));
    }
}
