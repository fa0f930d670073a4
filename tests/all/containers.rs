//! One-shot executions in containers on the real Docker engine: every language, routing,
//! confinement, runaway programs, and a dead engine.

use soulbox_engine::{BackendKind, EngineError, ExecRequest, Language, Limits, Outcome};
use soulbox_fallback::ContainerConfig;
use soulbox_tests::containers::Containers;
use std::time::Duration;

fn with_deadline(request: ExecRequest, deadline: Duration) -> ExecRequest {
    request.with_limits(Limits { deadline, ..Limits::default() })
}

#[tokio::test]
async fn each_language_says_hello_and_a_compile_error_is_reported() {
    let containers = Containers::default_pool().await;
    let programs = [
        (Language::Bash, "echo hello from bash"),
        (Language::C, "#include <stdio.h>\nint main(void) { printf(\"hello from c\\n\"); return 0; }"),
        (Language::Cpp, "#include <iostream>\nint main() { std::cout << \"hello from cpp\" << std::endl; }"),
        (Language::Go, "package main\nimport \"fmt\"\nfunc main() { fmt.Println(\"hello from go\") }"),
        (
            Language::Java,
            "public class Main { public static void main(String[] a) { System.out.println(\"hello from java\"); } }",
        ),
        (Language::Ruby, "puts 'hello from ruby'"),
        (Language::Php, "<?php echo \"hello from php\\n\";"),
    ];
    for (language, code) in programs {
        let result = containers.engine.execute(ExecRequest::new(language, code)).await.unwrap();
        assert_eq!(result.stdout, format!("hello from {language}\n"), "{language}: {result:?}");
        assert_eq!((result.exit_code, result.outcome, result.backend.as_str()), (0, Outcome::Completed, "container"));
    }
    let native_python =
        ExecRequest::new(Language::Python, "import sys; print(sys.implementation.name, sys.version_info[0])")
            .with_backend(BackendKind::Container);
    let result = containers.engine.execute(native_python).await.unwrap();
    assert_eq!((result.stdout.as_str(), result.backend.as_str()), ("cpython 3\n", "container"));
    let node = ExecRequest::new(Language::JavaScript, "console.log(process.version.startsWith('v'))")
        .with_backend(BackendKind::Container);
    assert_eq!(containers.engine.execute(node).await.unwrap().stdout, "true\n");
    let wasm = containers.engine.execute(ExecRequest::new(Language::Python, "print(1)")).await.unwrap();
    assert_eq!(wasm.backend, "wasm", "Python goes to WebAssembly unless asked otherwise");

    let broken = ExecRequest::new(Language::C, "int main(void) { return missing; }");
    let result = containers.engine.execute(broken).await.unwrap();
    assert_eq!(result.outcome, Outcome::Completed);
    assert_ne!(result.exit_code, 0);
    assert!(result.stderr.contains("missing") && result.stderr.contains("error"), "{}", result.stderr);
    containers.finish().await;
}

#[tokio::test]
async fn shell_pipelines_stdin_arguments_and_files() {
    let containers = Containers::default_pool().await;
    let pipeline = "seq 1 100 | awk '{s += $1} END {print s}' | tr -d '\\n'; echo; tr a-z A-Z; echo \"$1|$2\"";
    let request = ExecRequest::new(Language::Bash, pipeline)
        .with_stdin("piped in\n")
        .with_args(["one", "two words"])
        .with_env("GREETING", "hi")
        .with_file("data/in.csv", "a,b\n1,2\n");
    let result = containers.engine.execute(request).await.unwrap();
    assert_eq!(result.stdout, "5050\nPIPED IN\none|two words\n", "{result:?}");
    let files = ExecRequest::new(Language::Bash, "wc -l < data/in.csv > count.txt; echo \"$GREETING\" > env.txt")
        .with_file("data/in.csv", "a,b\n1,2\n")
        .with_env("GREETING", "hi");
    let result = containers.engine.execute(files).await.unwrap();
    let names: Vec<&str> = result.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(names, ["count.txt", "env.txt"], "unchanged inputs and the code are not returned");
    assert_eq!(result.files[0].contents, b"2\n");
    assert_eq!(result.files[1].contents, b"hi\n");
    containers.finish().await;
}

#[tokio::test]
async fn containers_are_confined_by_default() {
    let containers = Containers::default_pool().await;
    let probe = r#"
id -u
touch /usr/local/x 2>/dev/null && echo root-writable || echo root-read-only
grep CapEff /proc/self/status | awk '{print $2}'
ls /sys/class/net
python3 -c "import socket; socket.create_connection(('1.1.1.1', 53), 2)" 2>/dev/null && echo online || echo offline
cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max
grep NoNewPrivs /proc/self/status | awk '{print $2}'
"#;
    let result = containers.engine.execute(ExecRequest::new(Language::Bash, probe)).await.unwrap();
    let lines: Vec<&str> = result.stdout.lines().collect();
    let uid = soulbox_fallback::confinement::container_user().0.to_string();
    assert_eq!(lines, [uid.as_str(), "root-read-only", "0000000000000000", "lo", "offline", "1024", "1"], "{result:?}");
    containers.finish().await;
}

#[tokio::test]
async fn runaway_programs_are_stopped_and_the_host_stays_fine() {
    let containers = Containers::start(ContainerConfig { pool_size: 2, ..ContainerConfig::default() }).await;
    let spin = with_deadline(ExecRequest::new(Language::Bash, "while :; do :; done"), Duration::from_secs(1));
    let result = containers.engine.execute(spin).await.unwrap();
    assert_eq!(result.outcome, Outcome::DeadlineExceeded, "{result:?}");

    let bomb = with_deadline(
        ExecRequest::new(Language::Bash, "bomb() { bomb | bomb & }; bomb; sleep 30"),
        Duration::from_secs(3),
    );
    let result = containers.engine.execute(bomb).await.unwrap();
    assert_eq!(
        result.outcome,
        Outcome::DeadlineExceeded,
        "a fork bomb is held by the pids limit, then stopped: {result:?}"
    );

    let hog = ExecRequest::new(Language::Python, "x = bytearray(2 << 30)\nprint('allocated')")
        .with_backend(BackendKind::Container)
        .with_limits(Limits { memory_bytes: 256 << 20, ..Limits::default() });
    let result = containers.engine.execute(hog).await.unwrap();
    assert_ne!(result.stdout, "allocated\n", "{result:?}");
    assert!(
        result.outcome == Outcome::MemoryExceeded || result.stderr.contains("MemoryError"),
        "the memory cap holds: {result:?}"
    );

    // The verdict on a SIGKILL is the cgroup's OOM count, not a guess from the exit status.
    let small = Limits { memory_bytes: 64 << 20, ..Limits::default() };
    let hoard = ExecRequest::new(Language::Bash, "head -c 1G /dev/zero | tail > /dev/null").with_limits(small.clone());
    let result = containers.engine.execute(hoard).await.unwrap();
    assert_eq!(result.outcome, Outcome::MemoryExceeded, "the OOM killer's kill: {result:?}");
    let suicide = ExecRequest::new(Language::Bash, "echo before; kill -9 $$").with_limits(small);
    let result = containers.engine.execute(suicide).await.unwrap();
    assert_eq!(
        (result.outcome, result.exit_code, result.stdout.as_str()),
        (Outcome::Completed, 137, "before\n"),
        "a SIGKILL the program sent itself is not a memory verdict: {result:?}"
    );

    let chatty =
        ExecRequest::new(Language::Bash, "yes").with_limits(Limits { stdout_bytes: 10_000, ..Limits::default() });
    let result = containers.engine.execute(chatty).await.unwrap();
    assert_eq!((result.outcome, result.stdout.len()), (Outcome::OutputLimitExceeded, 10_000));

    let after = containers.engine.execute(ExecRequest::new(Language::Bash, "echo still fine")).await.unwrap();
    assert_eq!(after.stdout, "still fine\n");
    soulbox_tests::assert_host_healthy().await;
    containers.finish().await;
}

#[tokio::test]
async fn a_dead_engine_fails_container_requests_fast_and_webassembly_keeps_working() {
    let dead = ContainerConfig {
        docker_host: Some("unix:///nonexistent/docker.sock".into()),
        pool_size: 0,
        ..ContainerConfig::default()
    };
    let containers = Containers::start(dead).await;
    let error = containers.engine.execute(ExecRequest::new(Language::Bash, "echo hi")).await.unwrap_err();
    assert!(error.to_string().contains("container backend unavailable"), "{error}");
    assert!(matches!(error, EngineError::Backend(soulbox_engine::BackendError::Unavailable(_))), "{error:?}");
    // The breaker is open now: the next calls fail at once with its message instead of retrying.
    for _ in 0..3 {
        let error = containers.engine.execute(ExecRequest::new(Language::Go, "package main")).await.unwrap_err();
        assert!(error.to_string().contains("not answering"), "{error}");
    }
    let wasm = containers.engine.execute(ExecRequest::new(Language::Python, "print(2 + 2)")).await.unwrap();
    assert_eq!(wasm.stdout, "4\n");
    let missing = soulbox_engine::Engine::builder().backend(soulbox_tests::wasm_backend().clone()).build();
    let error = missing.execute(ExecRequest::new(Language::Ruby, "puts 1")).await.unwrap_err();
    assert!(error.to_string().contains("container backend unavailable"), "{error}");
}

#[tokio::test]
async fn leftovers_of_a_dead_soulbox_process_are_removed_at_start() {
    let host = soulbox_fallback::confinement::hostname();
    let out = std::process::Command::new("docker")
        .args(["create", "--label", "soulbox.managed=true", "--label"])
        .arg(format!("soulbox.owner={host}:999999999"))
        .args(["--label", "soulbox.instance=orphan-test", soulbox_fallback::config::DEFAULT_IMAGE, "true"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let containers = Containers::default_pool().await;
    assert!(soulbox_tests::containers::leftovers("orphan-test").is_empty(), "the janitor removed the orphan");
    containers.finish().await;
}

#[tokio::test]
async fn nothing_outlives_a_run_and_outputs_stay_within_their_caps() {
    let containers = Containers::default_pool().await;
    // A loop that left the program's process group swaps `out.bin` between a small file and a
    // sparse 256 MiB one while the outputs are collected; a FIFO sits beside it.
    let program = r#"
mkfifo pipe
truncate -s 256M big.tmp
setsid bash -c 'while :; do cp --sparse=always big.tmp b2; mv b2 out.bin; echo s > s2; mv s2 out.bin; done' \
  >/dev/null 2>&1 </dev/null &
while [ ! -e out.bin ]; do :; done
echo started
"#;
    for _ in 0..5 {
        let result = containers.engine.execute(ExecRequest::new(Language::Bash, program)).await.unwrap();
        assert_eq!((result.outcome, result.stdout.as_str()), (Outcome::Completed, "started\n"), "{result:?}");
        let total: usize = result.files.iter().map(|f| f.contents.len()).sum();
        assert!(total as u64 <= soulbox_engine::result::MAX_OUTPUT_FILE_BYTES, "{total} bytes returned");
        assert!(result.files.iter().all(|f| f.path != "pipe"), "a FIFO is never read");
        let out = result.files.iter().find(|f| f.path == "out.bin").map(|f| f.contents.len());
        assert!(out.is_none_or(|len| len == 2 || len == 256 << 20), "out.bin is one of the two, whole: {out:?}");
    }
    containers.finish().await;
}
