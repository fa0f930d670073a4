//! Capabilities are denied by default: no host files, no host env, no network, no escapes.

use soulbox_engine::{EngineError, ExecRequest, Language, RequestError};
use soulbox_tests::{engine, js, python, run};

#[tokio::test]
async fn host_files_are_invisible() {
    let code = r#"
import os
for path in ["/etc/passwd", "../../../etc/passwd", "/proc/self/environ", "/root"]:
    try:
        open(path).read()
        print("READ", path)
    except OSError as e:
        print("denied", type(e).__name__)
print(sorted(os.listdir("/")))
"#;
    let r = python(code).await;
    assert!(!r.stdout.contains("READ"), "{}", r.stdout);
    assert!(r.stdout.contains("['tmp', 'usr']"), "{}", r.stdout);
}

#[tokio::test]
async fn symlinks_cannot_escape_the_workspace() {
    let code = r#"
import os
for target in ["/etc/passwd", "../../../../etc/passwd"]:
    try:
        os.symlink(target, "link")
        print("READ", open("link").read()[:10])
    except OSError as e:
        print("denied", type(e).__name__)
    if os.path.lexists("link"):
        os.remove("link")
"#;
    let r = python(code).await;
    assert!(!r.stdout.contains("READ"), "{}", r.stdout);
    let r = js("try { os.symlink('/etc/passwd', 'l'); console.log('READ', std.loadFile('l')) } catch (e) { console.log('denied') }").await;
    assert!(!r.stdout.contains("root:"), "{}", r.stdout);
}

#[tokio::test]
async fn the_host_environment_is_not_passed_through() {
    let r = python("import os\nprint(sorted(os.environ))").await;
    assert_eq!(r.stdout, "['HOME', 'MPLBACKEND', 'MPLCONFIGDIR', 'PYTHONTZPATH', 'TMPDIR']\n", "{r:?}");
    let r = js("console.log(JSON.stringify(std.getenviron()))").await;
    assert_eq!(r.stdout, "{}\n");
}

#[tokio::test]
async fn there_is_no_network() {
    let code = "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 9), timeout=1)\n    print('CONNECTED')\nexcept Exception as e:\n    print('refused', type(e).__name__)";
    let r = python(code).await;
    assert!(r.stdout.starts_with("refused") || r.exit_code != 0, "{r:?}");
    assert!(!r.stdout.contains("CONNECTED"));
}

#[tokio::test]
async fn escaping_input_paths_are_refused() {
    for path in ["../evil", "/etc/evil", "a/../../evil"] {
        let request = ExecRequest::new(Language::Python, "1").with_file(path, "x");
        let error = engine().execute(request).await.unwrap_err();
        assert!(matches!(error, EngineError::InvalidRequest(RequestError::FilePath(_))), "{path}: {error}");
    }
    let request = ExecRequest::new(Language::Python, "1").with_file("tmp/x", "x");
    let error = engine().execute(request).await.unwrap_err();
    assert!(error.to_string().contains("reserved"), "{error}");
}

#[tokio::test]
async fn the_stdlib_is_read_only() {
    let r = python(
        "try:\n    open('/usr/local/lib/evil.txt', 'w')\n    print('WROTE')\nexcept OSError as e:\n    print('denied')",
    )
    .await;
    assert_eq!(r.stdout, "denied\n", "{r:?}");
    let again =
        run(ExecRequest::new(Language::Python, "import os; print(os.path.exists('/usr/local/lib/evil.txt'))")).await;
    assert_eq!(again.stdout, "False\n");
}
