//! A real `soulbox serve` process on loopback, and helpers to drive it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

/// A running server. Killed when dropped; [`Server::terminate`] stops it gracefully.
pub struct Server {
    child: Child,
    base: String,
    log: Arc<Mutex<String>>,
    /// Its snapshot directory, unless the test named one: a server holds its directory alone,
    /// and the tests run many servers on one home at once.
    snapshots: Option<tempfile::TempDir>,
}

/// The environment variable naming a server's snapshot directory.
const SNAPSHOT_DIR_VAR: &str = "SOULBOX__STORAGE__SNAPSHOT_DIR";

impl Server {
    /// A development-mode server (no keys) on a free loopback port.
    pub fn start() -> Server {
        Server::start_with(&["serve", "--dev", "--addr", "127.0.0.1:0"])
    }

    /// `soulbox ARGS...`, waiting until it listens.
    pub fn start_with(args: &[&str]) -> Server {
        Server::start_in_env(args, &[])
    }

    /// `soulbox ARGS...` with extra environment variables, waiting until it listens.
    pub fn start_in_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let snapshots = match env.iter().any(|(name, _)| *name == SNAPSHOT_DIR_VAR) {
            true => None,
            false => Some(tempfile::tempdir().expect("a snapshot directory")),
        };
        let mut command = soulbox();
        if let Some(dir) = &snapshots {
            command.env(SNAPSHOT_DIR_VAR, dir.path());
        }
        let mut child =
            command.args(args).envs(env.iter().copied()).stderr(Stdio::piped()).spawn().expect("soulbox serve starts");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        let base = loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.kill();
                panic!("soulbox serve exited before listening:\n{seen}");
            }
            if line.contains("listening on") {
                break line.split_whitespace().find(|w| w.starts_with("http://")).expect("the address").to_owned();
            }
            seen.push_str(&line);
        };
        // Keep draining stderr (so the server never blocks on a full pipe), and keep it.
        let log = Arc::new(Mutex::new(seen));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Server { child, base, log, snapshots }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server has written on stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        self.signal_terminate();
        let status = self.child.wait().unwrap();
        drop(self.snapshots.take());
        std::mem::forget(self);
        status
    }

    /// Sends SIGTERM without waiting.
    pub fn signal_terminate(&self) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
    }

    /// Waits for the exit.
    pub fn wait(mut self) -> ExitStatus {
        let status = self.child.wait().unwrap();
        drop(self.snapshots.take());
        std::mem::forget(self);
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `soulbox` binary under test.
pub fn soulbox() -> Command {
    Command::new(env!("CARGO_BIN_EXE_soulbox"))
}

/// A SQLite database URL in `dir`.
pub fn database_in(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("soulbox.db").display())
}

/// Makes an API key for `tenant` with `soulbox keys create`; returns the secret.
pub fn create_key(database: &str, tenant: &str) -> String {
    let out = soulbox().args(["--database-url", database, "keys", "create", "--tenant", tenant]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A server with API keys, its database and workspaces in `dir`, a key for each of `tenants`
/// (returned in order), and `sets` (`section.key=value`) on top.
pub fn start_with_keys(dir: &Path, tenants: &[&str], sets: &[&str]) -> (Server, Vec<String>) {
    let database = database_in(dir);
    let keys = tenants.iter().map(|tenant| create_key(&database, tenant)).collect();
    let workspaces = format!("storage.workspace_root={}", dir.join("workspaces").display());
    let mut args = vec!["--database-url", database.as_str()];
    for set in std::iter::once(workspaces.as_str()).chain(sets.iter().copied()) {
        args.extend(["--set", set]);
    }
    args.extend(["serve", "--addr", "127.0.0.1:0"]);
    (Server::start_with(&args), keys)
}

/// Creates a default sandbox (with `key`, when given); returns its id.
pub async fn create_sandbox(client: &reqwest::Client, server: &Server, key: Option<&str>) -> String {
    let mut request = client.post(server.url("/v1/sandboxes")).json(&serde_json::json!({}));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let created: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
    created["id"].as_str().expect("a sandbox id").to_owned()
}

/// The Python with the test requirements (`server/tests/python/requirements.txt`):
/// `$SOULBOX_TEST_PYTHON`, else `target/test-venv` (which `scripts/test.sh` makes).
pub fn test_python() -> PathBuf {
    if let Some(python) = std::env::var_os("SOULBOX_TEST_PYTHON") {
        return python.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-venv/bin/python");
    assert!(
        venv.exists(),
        "no test Python at {}: run scripts/test.sh, or `python3 -m venv target/test-venv && \
         target/test-venv/bin/pip install -r server/tests/python/requirements.txt`",
        venv.display()
    );
    venv
}

/// The Python with the official E2B SDKs (`server/tests/python/e2b-requirements.txt`):
/// `target/e2b-venv`, which `scripts/test.sh` makes.
pub fn e2b_python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/e2b-venv/bin/python");
    assert!(
        venv.exists(),
        "no E2B SDK Python at {}: run scripts/test.sh, or `python3 -m venv target/e2b-venv && \
         target/e2b-venv/bin/pip install -r server/tests/python/e2b-requirements.txt`",
        venv.display()
    );
    venv
}

/// Runs `server/tests/python/<script>` with `python` and `args`, and asserts it ended well and
/// printed "all checks passed" (else the failure shows its output and `server`'s log).
pub fn run_python_checks(python: &Path, script: &str, args: &[&str], server: &Server) {
    let out = Command::new(python).arg(python_script(script)).args(args).output().expect("the test Python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "{}\nstdout:\n{stdout}\nstderr:\n{}\nserver log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
}

/// A file in `server/tests/python`.
pub fn python_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(name)
}

/// Waits until `path` exists in sandbox `id` (a cell made it): how a test knows the cell runs.
pub async fn wait_for_file(client: &reqwest::Client, server: &Server, id: &str, path: &str) {
    let stat = server.url(&format!("/v1/sandboxes/{id}/files/stat?path={path}"));
    for _ in 0..12_000 {
        if client.get(&stat).send().await.unwrap().status() == 200 {
            return;
        }
        // A pause between looks, not to order anything.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("{path} never appeared");
}

/// moto's S3-compatible server on a free loopback port (from `target/moto-venv`, which
/// `scripts/test.sh` makes), killed when dropped. Without it the test fails: it never passes
/// by skipping.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Moto {
    /// Starts it and waits until it serves.
    pub fn start() -> Moto {
        let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/moto-venv/bin/moto_server");
        assert!(
            bin.exists(),
            "no moto server at {}: run scripts/test.sh, or `python3 -m venv target/moto-venv && \
             target/moto-venv/bin/pip install -r server/tests/python/moto-requirements.txt`",
            bin.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("moto_server starts");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.kill();
                panic!("moto_server exited before serving:\n{seen}");
            }
            if line.contains("Running on") {
                break;
            }
            seen.push_str(&line);
        }
        std::thread::spawn(move || for _ in stderr.lines().map_while(Result::ok) {});
        Moto { child, endpoint: format!("http://127.0.0.1:{port}") }
    }

    /// Makes bucket `name`.
    pub async fn bucket(&self, name: &str) {
        let made = reqwest::Client::new().put(format!("{}/{name}", self.endpoint)).send().await.unwrap();
        assert!(made.status().is_success(), "{}", made.status());
    }

    /// The keys in bucket `name`.
    pub async fn keys(&self, name: &str) -> Vec<String> {
        let url = format!("{}/{name}?list-type=2", self.endpoint);
        let listing = reqwest::get(url).await.unwrap().text().await.unwrap();
        listing.split("<Key>").skip(1).filter_map(|rest| rest.split("</Key>").next()).map(str::to_owned).collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
