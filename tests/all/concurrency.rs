//! Many executions at once: all correct; past capacity, a clear "busy" refusal.

use soulbox_engine::{Engine, ExecRequest, Language, WorkerPoolConfig};
use soulbox_runtimes_wasm::{WasmBackend, WasmConfig};
use soulbox_tests::engine;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_concurrent_executions_are_all_correct() {
    let mut tasks = Vec::new();
    for i in 0..32 {
        let request = if i % 2 == 0 {
            ExecRequest::new(Language::Python, format!("import numpy as np\nprint({i} * 2, int(np.int64({i})))"))
        } else {
            ExecRequest::new(Language::JavaScript, format!("console.log({i} * 2, {i})"))
        };
        tasks.push(tokio::spawn(async move { (i, engine().execute(request).await) }));
    }
    for task in tasks {
        let (i, result) = task.await.unwrap();
        let result = result.unwrap();
        assert_eq!(result.stdout, format!("{} {i}\n", i * 2), "execution {i}: {result:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_backend_refuses_with_busy() {
    let config = WasmConfig {
        pool: WorkerPoolConfig { workers: 1, queue: 0, ..WorkerPoolConfig::default() },
        ..soulbox_tests::wasm_config()
    };
    let backend = WasmBackend::open(config).unwrap();
    backend.prepare().unwrap();
    let small = Engine::builder().backend(backend.clone()).build();
    let slow = {
        let small = small.clone();
        tokio::spawn(async move {
            small
                .execute(ExecRequest::new(
                    Language::JavaScript,
                    "const t = Date.now(); while (Date.now() - t < 1500) {}",
                ))
                .await
        })
    };
    while backend.load().0 == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let refused = small.execute(ExecRequest::new(Language::JavaScript, "1")).await.unwrap_err();
    assert!(refused.is_busy(), "{refused}");
    assert!(refused.to_string().contains("busy"));
    assert_eq!(slow.await.unwrap().unwrap().exit_code, 0);
    assert_eq!(
        small.execute(ExecRequest::new(Language::JavaScript, "console.log('free')")).await.unwrap().stdout,
        "free\n"
    );
}
