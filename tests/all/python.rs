//! Python: output, exit codes, exceptions, inputs, the scientific stack, freshness.

use soulbox_engine::{ExecRequest, Language, Outcome};
use soulbox_tests::{python, run};

#[tokio::test]
async fn prints_and_exits_zero() {
    let r = python("print(1 + 1)").await;
    assert_eq!(r.stdout, "2\n");
    assert_eq!(r.exit_code, 0);
    assert_eq!(r.outcome, Outcome::Completed);
    assert_eq!(r.backend, "wasm");
    assert!(r.peak_memory_bytes > 0);
}

#[tokio::test]
async fn echoes_a_final_expression() {
    let r = python("x = 20\nx + 22").await;
    assert_eq!(r.stdout, "42\n", "{r:?}");
}

/// A turn whose last line is one simple statement is compiled from its text (SoulBox's
/// `_run_turn` in the snapshot): the last line in CPython's interactive mode, the lines before
/// it as a module; the reactor's own way parses the text into a tree first. Both must give the
/// same output, errors and exit status: `\n#` after a text sends it the long way (its last line
/// is a comment) without moving its line numbers.
#[tokio::test]
async fn a_turn_split_at_its_last_line_behaves_as_the_same_text_taken_the_long_way() {
    let taken = python("import _reactor\nprint(_reactor._run_turn.__defaults__[0].__name__)").await;
    assert_eq!(taken.stdout, "_run_turn\n", "the snapshot's turn is SoulBox's, wrapping the reactor's: {taken:?}");
    let lines = [
        "1 + 1",
        "'a' * 3",
        "None",
        "print(1 + 1)",
        "x = 1 + 1",
        "x = 2\n\n",
        "1; 2",
        "for i in range(2): i",
        "{'a': 1}",
        "[i * i for i in range(3)]",
        "f'{6 * 7}'",
        "\"a docstring\"",
        "# a comment",
        "",
        "1/0",
        "undefined_name",
        "x = = 1",
        "  x = 1",
        "return 1",
        "await f()",
        "print(1",
        "raise SystemExit(4)",
        "__import__('sys').exit(3)",
        "x is 1",
        r"'\d' +",
    ];
    let texts = [
        "x = 20\nx + 22",
        "x = 1\ny = 2",
        "1\n2",
        "print('a')\n'b' * 2",
        "def f(n):\n    return n * 2\nf(21)",
        "def f():\n    return 1\n  \n# a comment\n\nf()\n\n",
        "  \n\nx = 5\nx",
        "# only a comment\n1 + 1",
        "for i in range(3):\n    i\ni",
        "if True:\n    1",
        "class A:\n    def __repr__(self):\n        return 'A!'\nA()",
        "'''a docstring'''\n__doc__",
        "s = '''\nabc\n'''\ns",
        "s = '''\nx'''",
        "x = (1,\n2)\nx",
        "x = (1,\n2)",
        "x = [1,\n2,\n]\nlen(x)",
        "y = 1 + \\\n2\ny",
        "y = 1 + \\\n2",
        "def f():\n    raise ValueError('boom')\nf()",
        "1/0\nprint('not reached')",
        "x = 1\n1/0",
        "print(1\nx = 2",
        "x = 1\nx = = 2",
        "x = 1\nreturn x",
        "x = 1\nglobal x",
        "x = 1\nfrom __future__ import annotations",
        "import sys\nsys.exit(3)",
        "x = 2\nx is 1",
        "x = '\\d'\nx",
        "x = '\\d'\ny = 1 +",
        "x = 1 +\ny = '\\d'",
        "async def f():\n    return 1\nawait f()",
    ];
    for text in lines.iter().chain(&texts) {
        let short = python(text).await;
        let long = python(&format!("{text}\n#")).await;
        assert_eq!(
            (&short.stdout, &short.stderr, short.exit_code),
            (&long.stdout, &long.stderr, long.exit_code),
            "{text:?}: {short:?} against {long:?}"
        );
    }
    let failed = python("1/0").await;
    assert!(failed.stderr.contains("File \"<turn") && failed.stderr.contains("ZeroDivisionError"), "{failed:?}");
    assert!(
        !failed.stderr.contains("reactor") && !failed.stderr.contains("_run_turn"),
        "no frame of SoulBox's: {failed:?}"
    );
}

#[tokio::test]
async fn uncaught_exception_is_exit_one_with_traceback() {
    let r = python("def f():\n    raise ValueError('boom')\nf()").await;
    assert_eq!(r.exit_code, 1);
    assert_eq!(r.outcome, Outcome::Completed);
    assert!(r.stderr.contains("Traceback"), "{}", r.stderr);
    assert!(r.stderr.contains("ValueError: boom"), "{}", r.stderr);
}

#[tokio::test]
async fn sys_exit_status_is_mirrored() {
    assert_eq!(python("import sys; sys.exit(3)").await.exit_code, 3);
    assert_eq!(python("import os; os._exit(5)").await.exit_code, 5);
    assert_eq!(python("raise SystemExit(0)").await.exit_code, 0);
    // A status WASI cannot carry is a typed trap (SoulBox's own `proc_exit`), not a message
    // to match: it stays a clear `crashed` whatever wasmtime-wasi's wording becomes.
    let unreportable = python("import os; os._exit(200)").await;
    assert_eq!(unreportable.outcome, Outcome::Crashed, "{unreportable:?}");
    assert!(unreportable.error.as_deref().unwrap().contains("exited with status 200"), "{unreportable:?}");
}

#[tokio::test]
async fn syntax_error_is_reported() {
    let r = python("def (:").await;
    assert_eq!(r.exit_code, 1);
    assert!(r.stderr.contains("SyntaxError"), "{}", r.stderr);
}

#[tokio::test]
async fn stdin_argv_and_env_reach_the_guest() {
    let code = "import sys, os\nprint(sys.stdin.read().upper(), sys.argv[1:], os.environ['GREETING'])";
    let request =
        ExecRequest::new(Language::Python, code).with_stdin("hello").with_args(["a", "b"]).with_env("GREETING", "hi");
    let r = run(request).await;
    assert_eq!(r.stdout, "HELLO ['a', 'b'] hi\n", "{r:?}");
}

#[tokio::test]
async fn numpy_pandas_and_matplotlib_work() {
    let code = r#"
import numpy as np, pandas as pd
import matplotlib.pyplot as plt
a = np.arange(12).reshape(3, 4)
print(int(a.sum()), a.shape)
df = pd.DataFrame({"x": [1, 2, 3], "y": [10.0, 20.0, 30.0]})
print(df["y"].mean(), len(df))
fig, ax = plt.subplots()
ax.plot(df["x"], df["y"])
fig.savefig("chart.png")
"#;
    let r = python(code).await;
    assert_eq!(r.exit_code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "66 (3, 4)\n20.0 3\n");
    let png = r.files.iter().find(|f| f.path == "chart.png").expect("chart.png returned");
    assert!(png.contents.starts_with(b"\x89PNG\r\n\x1a\n"));
}

#[tokio::test]
async fn asyncio_runs_its_event_loop_without_a_socket_pair() {
    let code = "import asyncio\n\
                async def tick(n):\n    await asyncio.sleep(0.01 * n)\n    return n * n\n\
                async def main():\n    return await asyncio.gather(*(tick(n) for n in range(4)))\n\
                print(asyncio.run(main()))\n\
                loop = asyncio.new_event_loop()\n\
                print(loop.run_until_complete(asyncio.wait_for(tick(1), 5)))\n\
                loop.close()";
    let r = python(code).await;
    assert_eq!((r.exit_code, r.stdout.as_str()), (0, "[0, 1, 4, 9]\n1\n"), "{r:?}");
}

#[tokio::test]
async fn every_execution_is_fresh() {
    let first = python("import random\nsecret = 1\nopen('left.txt', 'w').write('x')\nprint(random.random())").await;
    let second =
        python("import os, random\nprint('secret' in globals(), os.path.exists('left.txt'))\nprint(random.random())")
            .await;
    assert_eq!(second.stdout.lines().next(), Some("False False"), "{second:?}");
    assert_ne!(first.stdout.lines().last(), second.stdout.lines().last(), "random seeds must differ");
    let np1 = python("import numpy as np; print(np.random.rand())").await;
    let np2 = python("import numpy as np; print(np.random.rand())").await;
    assert_ne!(np1.stdout, np2.stdout, "numpy seeds must differ");
}

#[tokio::test]
async fn input_files_are_readable_and_outputs_returned() {
    let code = "import csv\nrows = list(csv.reader(open('data/in.csv')))\nopen('out/sum.txt', 'w') if False else None\nimport os\nos.makedirs('out', exist_ok=True)\nopen('out/sum.txt', 'w').write(str(sum(int(r[0]) for r in rows)))";
    let request = ExecRequest::new(Language::Python, code).with_file("data/in.csv", "1\n2\n3\n");
    let r = run(request).await;
    assert_eq!(r.exit_code, 0, "{}", r.stderr);
    let paths: Vec<_> = r.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["out/sum.txt"], "unchanged inputs are not returned");
    assert_eq!(r.files[0].contents, b"6");
}

#[tokio::test]
async fn a_request_without_env_or_args_sees_the_base_ones() {
    // Such requests skip the prelude turn: the warm-up already applied the same state.
    let r = python("import os, sys\nprint(sys.argv, os.environ['HOME'], 'GREETING' in os.environ)").await;
    assert_eq!(r.stdout, "['-c'] /tmp False\n", "{r:?}");
    let with_env =
        run(ExecRequest::new(Language::Python, "import os\nprint(os.environ['GREETING'])").with_env("GREETING", "x"))
            .await;
    assert_eq!(with_env.stdout, "x\n");
    let again = python("import os\nprint('GREETING' in os.environ)").await;
    assert_eq!(again.stdout, "False\n", "a later request never sees an earlier one's env");
}

/// Which of the scientific stack's modules the guest had imported when its code began (the
/// names are built at run time so that the code itself mentions none of them).
const STACK_LOADED: &str = "import sys\nprint(sorted(m for m in ('num' + 'py', 'pan' + 'das') if m in sys.modules))";

#[tokio::test]
async fn plain_code_starts_from_the_plain_snapshot_and_may_still_import_the_stack() {
    let plain = python(STACK_LOADED).await;
    assert_eq!(plain.stdout, "[]\n", "code that mentions no data-science module: {plain:?}");
    let mentioned = python(&format!("# uses pandas\n{STACK_LOADED}")).await;
    assert_eq!(mentioned.stdout, "['numpy', 'pandas']\n", "a mention picks the data-science snapshot: {mentioned:?}");
    let in_input = run(ExecRequest::new(
        Language::Python,
        format!("import sys\nsys.path.insert(0, '/')\nimport helper\n{STACK_LOADED}"),
    )
    .with_file("helper.py", "import numpy"))
    .await;
    assert_eq!(in_input.stdout, "['numpy', 'pandas']\n", "a `.py` input file counts too: {in_input:?}");
    // Imported at run time from the plain snapshot: slower, same answers, freshly seeded.
    let hidden = "np = __import__('num' + 'py')\nprint(int(np.arange(4).sum()), np.random.rand())";
    let (first, second) = (python(hidden).await, python(hidden).await);
    assert_eq!(first.stdout.split_whitespace().next(), Some("6"), "{first:?}");
    assert_ne!(first.stdout, second.stdout, "numpy imported at run time is seeded afresh");
    let after = python(STACK_LOADED).await;
    assert_eq!(after.stdout, "[]\n", "a plain guest that imported numpy leaves nothing behind: {after:?}");
}

/// The kernel's hooks are in every snapshot but armed only in a context: a one-shot execution
/// gets Python's own display, buffering and pyplot, whose warnings name the caller's line.
#[tokio::test]
async fn a_one_shot_execution_sees_pythons_own_hooks_not_the_kernels() {
    let shown = "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()\nimport sys\nprint(sys.stdout.line_buffering)\n7";
    let r = python(shown).await;
    assert_eq!(r.exit_code, 0, "{r:?}");
    assert_eq!(r.stdout, "False\n7\n", "block-buffered, the final expression echoed by Python's hook: {r:?}");
    assert!(r.stderr.contains("<turn") && r.stderr.contains("cannot be shown"), "matplotlib's own show: {r:?}");
    assert!(!r.stderr.contains("soulbox"), "no frame of the kernel's between the code and matplotlib: {r:?}");
    // From the plain snapshot, pyplot imported at run time (the kernel's import hook patches
    // it as it loads) behaves the same.
    let hidden = "plt = __import__('matplotlib.pyp' + 'lot', fromlist=['x'])\nplt.plot([1])\nplt.show()";
    let r = python(hidden).await;
    assert_eq!(r.exit_code, 0, "{r:?}");
    assert!(r.stderr.contains("<turn") && !r.stderr.contains("soulbox"), "{r:?}");
}
