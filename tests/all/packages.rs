//! Pure-Python packages for WebAssembly Python: resolved by the host's pip from a directory of
//! wheels (`target/test-wheels`: `requests` and its dependencies, downloaded by
//! `scripts/test.sh`, plus two wheels this file writes), never from the network.

use crate::network::server_port;
use soulbox_engine::{Engine, ExecRequest, Language, NetworkPolicy, Outcome, RunOptions, SandboxSpec};
use soulbox_runtimes_wasm::{PackageSource, WasmBackend, WasmConfig};
use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

/// `target/test-wheels`, with the wheels this file writes added.
fn wheels_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-wheels");
        assert!(
            dir.join("requests-2.34.2-py3-none-any.whl").is_file(),
            "{} lacks requests: run scripts/test.sh (its `test wheels` step downloads tests/wheels-requirements.txt)",
            dir.display()
        );
        let demo = [
            ("soulbox_demo/__init__.py", "def greet():\n    return 'hello from a package'\n"),
            ("soulbox_demo-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: soulbox-demo\nVersion: 1.0\n"),
            (
                "soulbox_demo-1.0.dist-info/WHEEL",
                "Wheel-Version: 1.0\nGenerator: soulbox-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
            ),
            ("soulbox_demo-1.0.dist-info/RECORD", ""),
        ];
        write_wheel(&dir.join("soulbox_demo-1.0-py3-none-any.whl"), &demo);
        let native = [
            ("fastthing/__init__.py", "from ._speed import *\n"),
            ("fastthing-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: fastthing\nVersion: 1.0\n"),
            (
                "fastthing-1.0.dist-info/WHEEL",
                "Wheel-Version: 1.0\nGenerator: soulbox-tests\nRoot-Is-Purelib: false\nTag: cp315-cp315-linux_x86_64\n",
            ),
            ("fastthing-1.0.dist-info/RECORD", ""),
        ];
        write_wheel(&dir.join("fastthing-1.0-cp315-cp315-linux_x86_64.whl"), &native);
        dir
    })
    .clone()
}

fn write_wheel(path: &std::path::Path, members: &[(&str, &str)]) {
    let partial = path.with_extension("partial");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&partial).unwrap());
    for (name, contents) in members {
        zip.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
        zip.write_all(contents.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
    std::fs::rename(&partial, path).unwrap();
}

/// An engine whose WebAssembly backend resolves packages from [`wheels_dir`] only.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let backend = WasmBackend::open(WasmConfig {
            packages: PackageSource::Directory(wheels_dir()),
            ..soulbox_tests::wasm_config()
        })
        .expect("runtimes installed");
        Engine::builder().backend(backend).build()
    })
}

async fn run(request: ExecRequest) -> soulbox_engine::ExecResult {
    engine().execute(request).await.expect("the engine runs the request")
}

#[tokio::test]
async fn a_pure_python_package_is_installed_once_and_imported_by_the_guests_that_ask() {
    let code = "import soulbox_demo, sys\nprint(soulbox_demo.greet(), sys.path[0])";
    for _ in 0..2 {
        let result = run(ExecRequest::new(Language::Python, code).with_packages(["soulbox-demo==1.0"])).await;
        assert_eq!(result.stdout, "hello from a package /usr/soulbox/site-packages\n", "{result:?}");
        assert!(result.files.is_empty(), "packages are not output files: {:?}", result.files);
    }
    let without = run(ExecRequest::new(Language::Python, "import soulbox_demo")).await;
    assert!(without.stderr.contains("ModuleNotFoundError"), "{without:?}");
}

#[tokio::test]
async fn requests_works_through_the_network_policy() {
    let port = server_port().await;
    let code = format!(
        r#"
import requests
base = "http://localhost:{port}"
r = requests.get(base + "/hello")
print(r.status_code, r.headers["content-type"], r.text)
print(requests.post(base + "/echo", json={{"n": 42}}, headers={{"X-Test": "yes"}}).json())
r = requests.get(base + "/redirect/allowed")
print(r.url, [h.status_code for h in r.history])
print(requests.get(base + "/gzip").text.splitlines()[0])
try:
    requests.get(base + "/status/404").raise_for_status()
except requests.HTTPError as e:
    print("HTTPError", e.response.status_code)
try:
    requests.get("http://denied.test/")
except requests.ConnectionError as e:
    print("refused:", "denied domains" in str(e))
"#
    );
    let policy = NetworkPolicy {
        allow_domains: vec!["localhost".into()],
        deny_domains: vec!["denied.test".into()],
        allow_cidrs: vec!["127.0.0.0/8".into()],
        ..NetworkPolicy::default()
    };
    let request = ExecRequest::new(Language::Python, code).with_packages(["requests==2.34.2"]).with_network(policy);
    let result = run(request).await;
    assert_eq!(result.outcome, Outcome::Completed, "{result:?}");
    assert_eq!(
        result.stdout,
        format!(
            "200 text/plain hello from the test server\n\
             {{'body': {{'n': 42}}, 'content_type': 'application/json', 'x_test': 'yes'}}\n\
             http://localhost:{port}/hello [303]\n\
             hello, compressed\n\
             HTTPError 404\n\
             refused: True\n"
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn the_bundled_packages_import_without_being_asked_for_in_one_shots_and_sandboxes() {
    let code = "import importlib.util, os, sys, requests, httpx, pytz\n\
                print(requests.__version__, httpx.__version__, pytz.timezone('Europe/Paris').zone)\n\
                print(requests.__file__, sys.path[-1])\n\
                print('bytecode:', os.path.exists(importlib.util.cache_from_source(requests.__file__)))";
    let result = soulbox_tests::run(ExecRequest::new(Language::Python, code)).await;
    assert_eq!(
        result.stdout,
        "2.34.2 0.28.1 Europe/Paris\n\
         /usr/local/lib/site-packages/requests/__init__.py /usr/local/lib/site-packages\n\
         bytecode: True\n",
        "{result:?}"
    );
    let sandboxes = soulbox_tests::sandboxes();
    let spec = SandboxSpec { template: soulbox_engine::Template::DataScience, ..Default::default() };
    let sandbox = sandboxes.create(spec).await.expect("a data-science sandbox");
    let cell = sandbox
        .run_code(
            "import requests, pytz, pandas\nprint(requests.__version__, pytz.utc.zone, pandas.__name__)",
            RunOptions::default(),
        )
        .await
        .expect("the cell runs");
    assert_eq!((cell.stdout.as_str(), cell.error.is_none()), ("2.34.2 UTC pandas\n", true), "{cell:?}");
    sandboxes.kill(sandbox.id()).expect("the sandbox is killed");
}

#[tokio::test]
async fn httpx_works_through_the_network_policy_sync_and_async() {
    let port = server_port().await;
    let code = format!(
        r#"
import asyncio, httpx
base = "http://localhost:{port}"
r = httpx.get(base + "/hello")
print(r.status_code, r.headers["content-type"], r.text, r.http_version, r.reason_phrase)
with httpx.Client(base_url=base) as client:
    print(client.post("/echo", json={{"n": 42}}, headers={{"X-Test": "yes"}}).json())
    r = client.get("/redirect/allowed", follow_redirects=True)
    print(r.url, [h.status_code for h in r.history])
    print(client.get("/gzip").text.splitlines()[-1])
    try:
        client.get("/status/404").raise_for_status()
    except httpx.HTTPStatusError as e:
        print("HTTPStatusError", e.response.status_code)
try:
    httpx.get("http://denied.test/")
except httpx.ConnectError as e:
    print("refused:", "denied domains" in str(e))
try:
    httpx.Client(proxy="http://proxy.test:3128")
except ValueError as e:
    print("proxy:", e)

async def main():
    async with httpx.AsyncClient(base_url=base) as client:
        r = await client.get("/hello")
        print("async", r.status_code, r.text)

asyncio.run(main())
"#
    );
    let policy = NetworkPolicy {
        allow_domains: vec!["localhost".into()],
        deny_domains: vec!["denied.test".into()],
        allow_cidrs: vec!["127.0.0.0/8".into()],
        ..NetworkPolicy::default()
    };
    // httpx is bundled with the Python runtime: nothing to ask for.
    let result = soulbox_tests::run(ExecRequest::new(Language::Python, code).with_network(policy)).await;
    assert_eq!(result.outcome, Outcome::Completed, "{result:?}");
    assert_eq!(
        result.stdout,
        format!(
            "200 text/plain hello from the test server HTTP/1.1 OK\n\
             {{'body': {{'n': 42}}, 'content_type': 'application/json', 'x_test': 'yes'}}\n\
             http://localhost:{port}/hello [303]\n\
             hello, compressed\n\
             HTTPStatusError 404\n\
             refused: True\n\
             proxy: httpx's proxy and uds options are not supported: the host makes the request under the network policy\n\
             async 200 hello from the test server\n"
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_package_with_native_code_is_refused_with_a_way_out() {
    let refused = engine()
        .execute(ExecRequest::new(Language::Python, "import fastthing").with_packages(["fastthing"]))
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("pip could not install fastthing"), "{refused}");
    assert!(refused.contains("container backend"), "{refused}");
    let invalid = engine()
        .execute(ExecRequest::new(Language::Python, "1").with_packages(["--index-url=http://evil.test"]))
        .await
        .unwrap_err()
        .to_string();
    assert!(invalid.contains("options, paths and URLs are not accepted"), "{invalid}");
    let javascript = engine()
        .execute(ExecRequest::new(Language::JavaScript, "1").with_packages(["soulbox-demo"]))
        .await
        .unwrap_err()
        .to_string();
    assert!(javascript.contains("Python only"), "{javascript}");
}

#[tokio::test]
async fn a_sandboxs_python_contexts_import_its_packages() {
    let config = soulbox_engine::SandboxesConfig {
        workspace_root: std::env::temp_dir().join(format!("soulbox-test-packages-{}", std::process::id())),
        ..Default::default()
    };
    let sandboxes = soulbox_engine::Sandboxes::new(engine().clone(), config).unwrap();
    let spec = SandboxSpec { packages: vec!["soulbox-demo==1.0".into()], ..SandboxSpec::default() };
    let sandbox = sandboxes.create(spec).await.unwrap();
    let cell = sandbox.run_code("import soulbox_demo\nsoulbox_demo.greet()", RunOptions::default()).await.unwrap();
    assert_eq!(cell.text(), Some("'hello from a package'"), "{cell:?}");
    let second = sandbox.create_context(Language::Python, None).await.unwrap();
    let options = RunOptions { context: Some(second.id), ..RunOptions::default() };
    let cell = sandbox.run_code("__import__('soulbox_demo').greet()", options).await.unwrap();
    assert_eq!(cell.text(), Some("'hello from a package'"), "{cell:?}");
}

#[tokio::test]
async fn pip_install_in_a_cell_adds_to_the_sandboxs_packages() {
    let config = soulbox_engine::SandboxesConfig {
        workspace_root: std::env::temp_dir().join(format!("soulbox-test-pip-{}", std::process::id())),
        ..Default::default()
    };
    let sandboxes = soulbox_engine::Sandboxes::new(engine().clone(), config).unwrap();
    let sandbox = sandboxes.create(SandboxSpec::default()).await.unwrap();
    let python = RunOptions::default();
    let cell = sandbox
        .run_code("%pip install -q soulbox-demo==1.0\nimport soulbox_demo\nsoulbox_demo.greet()", python.clone())
        .await
        .unwrap();
    assert_eq!(cell.stdout, "Successfully installed soulbox_demo-1.0\n", "{cell:?}");
    assert_eq!(cell.text(), Some("'hello from a package'"), "{cell:?}");
    let refused = sandbox.run_code("!pip install fastthing", python.clone()).await.unwrap();
    let error = refused.error.expect("a native package is refused");
    assert_eq!(error.name, "PipError");
    assert!(error.value.contains("container backend"), "{error:?}");
    let cell = sandbox
        .run_code("%pip install requests==2.34.2\nimport requests, soulbox_demo\nrequests.__version__", python)
        .await
        .unwrap();
    assert!(cell.stdout.starts_with("Successfully installed ") && cell.stdout.contains("requests-2.34.2"), "{cell:?}");
    assert!(cell.stdout.contains("soulbox_demo-1.0"), "the earlier package stays: {cell:?}");
    assert_eq!(cell.text(), Some("'2.34.2'"), "{cell:?}");
}
