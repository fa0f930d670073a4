//! Rewound guests: after an execution, a worker sets its Python or JavaScript guest back to a
//! new guest's state instead of making a new one. Each test opens a backend with one worker, so every
//! execution after the first runs in the guest the one before it used.

use soulbox_engine::{Engine, ExecRequest, ExecResult, Language, Limits, Outcome, WorkerPoolConfig};
use soulbox_runtimes_wasm::{WasmBackend, WasmConfig};
use std::time::Duration;

/// A backend whose one worker runs every execution, and an engine over it.
fn one_worker() -> (WasmBackend, Engine) {
    let pool = WorkerPoolConfig { workers: 1, ..WorkerPoolConfig::default() };
    let backend = WasmBackend::open(WasmConfig { pool, ..soulbox_tests::wasm_config() }).expect("runtimes installed");
    backend.prepare().expect("modules compile");
    let engine = Engine::builder().backend(backend.clone()).build();
    (backend, engine)
}

async fn python(engine: &Engine, code: &str) -> ExecResult {
    let result = engine.execute(ExecRequest::new(Language::Python, code)).await.expect("executes");
    assert_eq!(result.outcome, Outcome::Completed, "{code}: {result:?}");
    result
}

/// Waits for the follow-up of the last execution (the rewind runs after the caller has its
/// result): a JavaScript execution queues behind it on the one worker, and its own follow-up
/// rewinds nothing (its output limit stops it), so the rewind count read after it is settled.
async fn settle(engine: &Engine) {
    settle_in(engine, Language::JavaScript, "console.log('x'.repeat(100))").await;
}

/// [`settle`] for tests of JavaScript guests: a Python execution, which leaves the worker's
/// JavaScript guest where it is.
async fn settle_javascript(engine: &Engine) {
    settle_in(engine, Language::Python, "print('x' * 100)").await;
}

async fn settle_in(engine: &Engine, language: Language, overflowing: &str) {
    let limits = Limits { stdout_bytes: 8, ..Limits::default() };
    let result = engine.execute(ExecRequest::new(language, overflowing).with_limits(limits)).await.expect("executes");
    assert_eq!(result.outcome, Outcome::OutputLimitExceeded, "{result:?}");
}

/// Everything an execution can change in its interpreter and its files, changed.
const LEAVE_TRACES: &str = r#"
import builtins, json, os, random, sys, types, gc
import numpy as np
secret = "left behind"
builtins.leaked_builtin = 1
json.leaked_attribute = 1
sys.modules["leaked_module"] = types.ModuleType("leaked_module")
sys.path.append("/leaked")
sys.argv.append("leaked")
os.environ["LEAKED"] = "1"
sys.setrecursionlimit(123)
gc.disable()
os.chdir("/tmp")
open("/tmp/left.txt", "w").write("x")
os.makedirs("/left_dir", exist_ok=True)
open("/left_dir/left.txt", "w").write("x")
open("/usr/left.txt", "w").write("x")
os.chdir("/")
os.rename("/tmp", "/old_tmp")
os.mkdir("/tmp")
open("/tmp/in_a_new_tmp.txt", "w").write("x")
os.chdir("/tmp")
print(random.random(), np.random.rand())
"#;

/// Looks for every trace [`LEAVE_TRACES`] leaves; prints `clean` and the random draws.
const LOOK_FOR_TRACES: &str = r#"
import builtins, json, os, random, sys, gc
import numpy as np
traces = [
    "secret" in globals(),
    hasattr(builtins, "leaked_builtin"),
    hasattr(json, "leaked_attribute"),
    "leaked_module" in sys.modules,
    "/leaked" in sys.path,
    sys.argv != ["-c"],
    "LEAKED" in os.environ,
    sys.getrecursionlimit() == 123,
    not gc.isenabled(),
    os.getcwd() != "/",
    os.path.exists("/tmp/left.txt"),
    os.path.exists("/left_dir"),
    os.path.exists("/usr/left.txt"),
    os.path.exists("/old_tmp"),
    os.listdir("/tmp") != [],
]
print("clean" if not any(traces) else traces, random.random(), np.random.rand())
"#;

/// [`LEAVE_TRACES`] and [`LOOK_FOR_TRACES`] without numpy, so that they run in the plain
/// snapshot's guests.
fn without_numpy(code: &str) -> String {
    code.replace("import numpy as np\n", "").replace(", np.random.rand())", ")")
}

#[tokio::test]
async fn a_rewound_data_science_guest_keeps_nothing_of_the_execution_before() {
    leaves_no_trace(LEAVE_TRACES, LOOK_FOR_TRACES).await;
}

#[tokio::test]
async fn a_rewound_plain_guest_keeps_nothing_of_the_execution_before() {
    leaves_no_trace(&without_numpy(LEAVE_TRACES), &without_numpy(LOOK_FOR_TRACES)).await;
}

async fn leaves_no_trace(leave: &str, look: &str) {
    let (backend, engine) = one_worker();
    let mut draws = std::collections::HashSet::new();
    for round in 0..3 {
        settle(&engine).await;
        let rewound = backend.guests_rewound();
        let left = python(&engine, leave).await;
        assert!(left.files.iter().any(|f| f.path == "left_dir/left.txt"), "{left:?}");
        settle(&engine).await;
        assert_eq!(backend.guests_rewound(), rewound + 1, "round {round}: the guest was rewound, not replaced");
        let looked = python(&engine, look).await;
        let mut fields = looked.stdout.split_whitespace();
        assert_eq!(fields.next(), Some("clean"), "round {round}: {looked:?}");
        assert!(looked.files.is_empty(), "no file of the last execution is collected again: {looked:?}");
        for draw in left.stdout.split_whitespace().chain(fields) {
            assert!(draws.insert(draw.to_owned()), "round {round}: random draw {draw} repeated");
        }
    }
}

#[tokio::test]
async fn a_worker_keeps_one_ready_guest_per_flavour_and_rewinds_each_into_its_own() {
    let (backend, engine) = one_worker();
    // The plain one names pandas only as it runs: any mention would pick data-science.
    let plain = "import sys\nprint('pan' + 'das' in sys.modules)";
    let data_science = "import sys\nprint('pandas' in sys.modules)";
    for round in 0..2 {
        settle(&engine).await;
        let rewound = backend.guests_rewound();
        assert_eq!(python(&engine, plain).await.stdout, "False\n", "round {round}");
        assert_eq!(python(&engine, data_science).await.stdout, "True\n", "round {round}");
        assert_eq!(python(&engine, plain).await.stdout, "False\n", "round {round}");
        settle(&engine).await;
        assert_eq!(backend.guests_rewound(), rewound + 3, "round {round}: each guest went back to its flavour's slot");
    }
}

#[tokio::test]
async fn a_guest_whose_memory_grew_or_that_was_stopped_is_replaced_and_the_next_is_fresh() {
    let (backend, engine) = one_worker();
    settle(&engine).await;
    let before = backend.guests_rewound();
    python(&engine, "grown = bytearray(300 << 20)\nprint(len(grown))").await;
    settle(&engine).await;
    assert_eq!(backend.guests_rewound(), before, "the grown guest was replaced, not rewound");
    let limits = Limits { deadline: Duration::from_millis(200), ..Limits::default() };
    let request = ExecRequest::new(Language::Python, "stopped = 1\nwhile True: pass").with_limits(limits);
    let stopped = engine.execute(request).await.expect("executes");
    assert_eq!(stopped.outcome, Outcome::DeadlineExceeded);
    settle(&engine).await;
    assert_eq!(backend.guests_rewound(), before, "the stopped guest was replaced, not rewound");
    let after = python(&engine, "print('grown' in globals(), 'stopped' in globals())").await;
    assert_eq!(after.stdout, "False False\n", "{after:?}");
}

#[tokio::test]
async fn input_files_and_env_of_one_execution_are_gone_in_the_next() {
    let (_backend, engine) = one_worker();
    let with_inputs =
        ExecRequest::new(Language::Python, "import os\nprint(open('in.txt').read(), os.environ['ONLY_ME'])")
            .with_file("in.txt", "input")
            .with_env("ONLY_ME", "yes")
            .with_args(["arg"]);
    let first = engine.execute(with_inputs).await.expect("executes");
    assert_eq!(first.stdout, "input yes\n", "{first:?}");
    settle(&engine).await;
    let next =
        python(&engine, "import os, sys\nprint(os.path.exists('in.txt'), 'ONLY_ME' in os.environ, sys.argv)").await;
    assert_eq!(next.stdout, "False False ['-c']\n", "{next:?}");
}

/// Everything a JavaScript execution can change in its interpreter, its environment and its
/// files, changed; prints a random draw, its env variable and its argument count.
const LEAVE_JS_TRACES: &str = r#"
const fs = require("fs");
globalThis.secret = "left behind";
Object.prototype.leakedProto = 1;
Math.leaked = 1;
const stringify = JSON.stringify;
JSON.stringify = () => "leaked";
process.env.LEAKED = "1";
fs.writeFileSync("left.txt", "x");
fs.mkdirSync("/left_dir", { recursive: true });
fs.writeFileSync("/left_dir/left.txt", "x");
setTimeout(() => {}, 0);
console.log(Math.random(), process.env.ONLY_ME, process.argv.length);
"#;

/// Looks for every trace [`LEAVE_JS_TRACES`] leaves; prints `clean` and a random draw.
const LOOK_FOR_JS_TRACES: &str = r#"
const fs = require("fs");
const traces = [
  "secret" in globalThis,
  ({}).leakedProto !== undefined,
  "leaked" in Math,
  JSON.stringify(1) !== "1",
  "LEAKED" in process.env,
  "ONLY_ME" in process.env,
  fs.existsSync("left.txt"),
  fs.existsSync("/left_dir"),
  process.argv.length !== 2,
];
console.log(traces.some(Boolean) ? traces.join(",") : "clean", Math.random());
"#;

#[tokio::test]
async fn a_rewound_javascript_guest_keeps_nothing_of_the_execution_before() {
    let (backend, engine) = one_worker();
    let mut draws = std::collections::HashSet::new();
    for round in 0..3 {
        settle_javascript(&engine).await;
        let rewound = backend.guests_rewound();
        let leave =
            ExecRequest::new(Language::JavaScript, LEAVE_JS_TRACES).with_env("ONLY_ME", "yes").with_args(["arg"]);
        let left = engine.execute(leave).await.expect("executes");
        assert_eq!(left.outcome, Outcome::Completed, "round {round}: {left:?}");
        let mut fields = left.stdout.split_whitespace();
        let left_draw = fields.next().expect("a draw").to_owned();
        assert_eq!(fields.collect::<Vec<_>>(), ["yes", "3"], "round {round}: its own env and argument: {left:?}");
        assert!(left.files.iter().any(|f| f.path == "left_dir/left.txt"), "{left:?}");
        settle_javascript(&engine).await;
        assert_eq!(backend.guests_rewound(), rewound + 1, "round {round}: the guest was rewound, not replaced");
        let looked =
            engine.execute(ExecRequest::new(Language::JavaScript, LOOK_FOR_JS_TRACES)).await.expect("executes");
        assert_eq!(looked.outcome, Outcome::Completed, "round {round}: {looked:?}");
        let mut fields = looked.stdout.split_whitespace();
        assert_eq!(fields.next(), Some("clean"), "round {round}: {looked:?}");
        assert!(looked.files.is_empty(), "no file of the last execution is collected again: {looked:?}");
        for draw in std::iter::once(left_draw.as_str()).chain(fields) {
            assert!(draws.insert(draw.to_owned()), "round {round}: random draw {draw} repeated");
        }
    }
}
