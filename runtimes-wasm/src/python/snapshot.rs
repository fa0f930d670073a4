//! Builds SoulBox's pre-initialized Python modules with Wizer, once per machine, one per
//! [`Flavour`].
//!
//! `Wizer::instrument` the package's `python-snapshot.wasm`, instantiate the instrumented module
//! with exactly the guest layout every execution uses ([`super::layout`]), run [`first_turn`] (the
//! warm-up, the flavour's imports, the kernel module, a rehearsal of what each instance's first
//! turn does) as the first `turn`, then `Wizer::snapshot` the instance's memory and globals into
//! a new module. The instrumented module is compiled without optimization (it runs once). The
//! result is cached by `snapshot_cache`, keyed by the inputs' hashes and [`first_turn`].
//!
//! What a snapshot holds is shared by every instance; what an instance writes becomes its own
//! copy of the page. So the first turn does here whatever each instance would otherwise do
//! first (and can leave done): measured on a data-science context (written pages after its
//! start and first cell, `/proc/self/pagemap`), the kernel's hooks installed here instead of by
//! each context's start and the [`REHEARSAL`] took it from 367 pages to 293-299.

use super::{Flavour, layout};
use crate::engine_config::EngineSettings;
use crate::error::RuntimeError;
use crate::verify::sha256_bytes;
use indicatif::{ProgressBar, ProgressStyle};
use soulbox_host_api::{GuestConfig, GuestRoot, GuestState};
use std::path::Path;
use std::time::Duration;
use wasmtime_wizer::WasmtimeWizer;

/// The first turn's start, frozen into both snapshots. It defines the hidden `_soulbox` module
/// (`warm` reseeds `random`, and `numpy.random` when numpy is imported (a data-science snapshot,
/// or a context that imported it: a fork reseeds), from fresh WASI entropy for each instance:
/// numpy's from 128 bits, since `numpy.random.seed()` would draw its own through
/// `SeedSequence`, which takes 1.5 ms in the guest, twenty times as long; `begin` is a new
/// guest's warm-up, `warm` then `enter` for the base environment, `BASE_ENV`, which
/// [`first_turn`] sets; `enter` applies a request's environment and `sys.argv`), imports the
/// stdlib's common modules, and leaves `__main__` clean. [`DATA_SCIENCE_IMPORTS`] follows it in
/// the data-science snapshot.
pub const WARM_UP: &str = r#"
import sys, types
_soulbox = types.ModuleType("_soulbox")
exec('''
import os, sys, io, re, json, math, random, datetime, collections, itertools, functools
import base64, csv, decimal, fractions, statistics, string, textwrap, time, traceback

def warm():
    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(numpy.frombuffer(os.urandom(16), dtype=numpy.uint32))

def enter(env, argv):
    os.environ.clear()
    os.environ.update(env)
    sys.argv[:] = argv

def begin():
    warm()
    enter(BASE_ENV, ["-c"])
''', _soulbox.__dict__)
sys.modules["_soulbox"] = _soulbox
del _soulbox, types, sys
"#;
/// What the data-science snapshot imports besides [`WARM_UP`]'s (into `sys.modules` only).
pub const DATA_SCIENCE_IMPORTS: &str = "import numpy, pandas, matplotlib, matplotlib.pyplot\n\
                                        del numpy, pandas, matplotlib\n";
/// SoulBox's `_run_turn` for the reactor, run in the reactor's module at snapshot time: a turn
/// whose last line is one simple statement is compiled from its text (that line in CPython's
/// interactive mode, the lines before it as a module) rather than parsed into a syntax tree of
/// Python objects and compiled from that (see the file).
pub const TURN_SOURCE: &str = include_str!("turn.py");
/// SoulBox's Python kernel for stateful contexts, built into the snapshot as `_soulbox_kernel`.
pub const KERNEL_SOURCE: &str = include_str!("kernel.py");
/// SoulBox's HTTP for guests (`http.client` and `urllib` over the door), built into the
/// snapshot as `_soulbox_net` and installed.
pub const NET_SOURCE: &str = include_str!("net.py");
/// What every instance's first turn does, done once here before the freeze: the reseed and
/// base environment of `begin`, the line buffering a context's `start` turns on (undone), and
/// turns through both of [`TURN_SOURCE`]'s paths (a line, and a line after another: an
/// expression and a statement that leave nothing behind), whose code the interpreter
/// specializes as it runs it.
/// Lazy initialization, the interpreter's specialization of the code these run, and the
/// caches their lookups fill are then in the snapshot, shared by every instance, rather than
/// written into each instance's private copy of the pages.
pub const REHEARSAL: &str = "__import__(\"_soulbox\").begin()\nimport sys as _s\nfor _o in (_s.stdout, _s.stderr):\n    \
                         _b = _o.line_buffering\n    _o.reconfigure(line_buffering=True)\n    \
                         _o.reconfigure(line_buffering=_b)\nfor _o in range(8):\n    \
                         _s.modules[\"_reactor\"]._run_turn(\"None\", \"<rehearsal>\")\n    \
                         _s.modules[\"_reactor\"]._run_turn(\"pass\", \"<rehearsal>\")\n    \
                         _s.modules[\"_reactor\"]._run_turn(\"pass\\nNone\", \"<rehearsal>\")\ndel _s, _o, _b\n";
/// The end of the first turn: everything imported so far is frozen out of the collector's way.
const FREEZE: &str = "import gc\ngc.collect()\ngc.freeze()\ndel gc\n";

/// The whole first turn of `flavour`'s snapshot: [`WARM_UP`] (and, for data-science,
/// [`DATA_SCIENCE_IMPORTS`]) and the base environment, then [`TURN_SOURCE`] (compiled under the
/// reactor's file name, `<reactor>`, which the reactor's tracebacks leave out), the kernel module
/// ([`KERNEL_SOURCE`], compiled under the file name `<soulbox kernel>` so tracebacks can leave
/// its frames out; its hooks installed, disarmed), the network module ([`NET_SOURCE`],
/// installed), the bundled packages last on `sys.path`, the [`REHEARSAL`], then the freeze.
pub fn first_turn(flavour: Flavour) -> String {
    let source = serde_json::to_string(KERNEL_SOURCE).unwrap_or_default();
    let net = serde_json::to_string(NET_SOURCE).unwrap_or_default();
    let turn = serde_json::to_string(TURN_SOURCE).unwrap_or_default();
    let base_env: serde_json::Map<String, serde_json::Value> =
        layout::BASE_ENV.iter().map(|(k, v)| ((*k).to_owned(), serde_json::Value::String((*v).to_owned()))).collect();
    let base_env = serde_json::Value::Object(base_env);
    let imports = match flavour {
        Flavour::Plain => "",
        Flavour::DataScience => DATA_SCIENCE_IMPORTS,
    };
    format!(
        "{WARM_UP}\n{imports}__import__(\"_soulbox\").BASE_ENV = {base_env}\nimport sys as _s, types as _t\n\
         exec(compile({turn}, \"<reactor>\", \"exec\"), _s.modules[\"_reactor\"].__dict__)\n\
         _k = _t.ModuleType(\"_soulbox_kernel\")\n\
         exec(compile({source}, \"<soulbox kernel>\", \"exec\"), _k.__dict__)\n\
         _s.modules[\"_soulbox_kernel\"] = _k\n_k.install()\n\
         _n = _t.ModuleType(\"_soulbox_net\")\nexec(compile({net}, \"<soulbox net>\", \"exec\"), _n.__dict__)\n\
         _s.modules[\"_soulbox_net\"] = _n\n_n.install()\n_s.path.append({bundled:?})\ndel _s, _t, _k, _n\n{REHEARSAL}{FREEZE}",
        bundled = super::bundled::GUEST_DIR,
    )
}
/// Bumped whenever the guest layout or the build recipe changes.
const RECIPE_VERSION: u32 = 2;

impl super::Python {
    /// Identifies the snapshot module: inputs, flavour, warm-up code and recipe.
    pub fn content_key(&self) -> String {
        let warm_up = blake3::hash(first_turn(self.flavour).as_bytes());
        let (wasm, stdlib, flavour) = (&self.wasm_sha256, &self.stdlib_sha256, self.flavour);
        format!("python:{wasm}:{stdlib}:{flavour}:{warm_up}:v{RECIPE_VERSION}")
    }

    /// The snapshot module's bytes: read from `cache_dir` if built before, else built and stored.
    pub fn snapshot_wasm(
        &self,
        cache_dir: &Path,
        scratch: &Path,
        settings: &EngineSettings,
        progress: bool,
    ) -> Result<Vec<u8>, RuntimeError> {
        let (this, scratch, settings) = (self.clone(), scratch.to_path_buf(), *settings);
        crate::snapshot_cache::load_or_build(cache_dir, self.flavour.module_name(), &self.content_key(), move || {
            let spinner = spinner(progress, this.flavour);
            let built = this.build_snapshot(&scratch, &settings);
            spinner.finish_and_clear();
            built
        })
    }

    fn verified_wasm(&self) -> Result<Vec<u8>, RuntimeError> {
        let path = self.dir.join("python-snapshot.wasm");
        let bytes = std::fs::read(&path).map_err(|e| RuntimeError::io(&path, e))?;
        let got = sha256_bytes(&bytes);
        if got != self.wasm_sha256 {
            return Err(RuntimeError::Tampered { path, expected: self.wasm_sha256.clone(), got });
        }
        Ok(bytes)
    }

    fn build_snapshot(&self, scratch: &Path, settings: &EngineSettings) -> Result<Vec<u8>, RuntimeError> {
        let runtime = self.flavour.module_name();
        let fail = |message: String| RuntimeError::Snapshot { runtime: runtime.into(), message };
        let wasm = self.verified_wasm()?;
        let crate::snapshot_cache::Instrumented { wizer, context, engine, module, linker } =
            crate::snapshot_cache::instrument(runtime, &wasm, settings)?;

        std::fs::create_dir_all(scratch).map_err(|e| RuntimeError::io(scratch, e))?;
        let root = GuestRoot::create_in(scratch, &layout::MOUNT_POINTS)?;
        let root_path = root.host_path();
        let env: Vec<(String, String)> = layout::BASE_ENV.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        let mounts = self.mounts();
        let args = Self::wasi_argv();
        let state = GuestState::new(GuestConfig {
            args: &args,
            env: &env,
            mounts: &mounts,
            root: &root_path,
            limits: crate::snapshot_cache::BUILD_LIMITS,
        })?;
        let mut store = crate::snapshot_cache::build_store(&engine, state, settings)?;
        crate::snapshot_cache::build_runtime(scratch)?.block_on(async {
            let instance = linker.instantiate_async(&mut store, &module).await.map_err(|e| RuntimeError::wasm(&e))?;
            let reactor = super::Reactor::of(&mut store, &instance).map_err(|e| fail(format!("{e:#}")))?;
            let status = super::turn(&mut store, &reactor, &first_turn(self.flavour))
                .await
                .map_err(|e| fail(format!("{e:#}")))?;
            if status != 0 {
                let stderr = String::from_utf8_lossy(&store.data().stderr.take()).into_owned();
                return Err(fail(format!("warm-up turn exited with {status}: {stderr}")));
            }
            wizer
                .snapshot(&context, &mut WasmtimeWizer { store: &mut store, instance })
                .await
                .map_err(|e| fail(format!("{e:#}")))
        })
    }
}

fn spinner(progress: bool, flavour: Flavour) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    spinner.set_message(match flavour {
        Flavour::Plain => "building the pre-initialized Python snapshot (plain; once)",
        Flavour::DataScience => "building the pre-initialized Python snapshot (numpy, pandas, matplotlib; once)",
    });
    spinner.enable_steady_tick(Duration::from_millis(200));
    spinner
}
