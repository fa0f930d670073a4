//! [`WasmBackend`]: the engine's [`Backend`] for Python and JavaScript in wasmtime.

use crate::checkpoint::exports::export_state;
use crate::engine_config::{EngineRole, EngineSettings};
use crate::error::RuntimeError;
use crate::execution::{Interpreter, Prepared, execute, follow_up};
use crate::fetch::INSTALLED_MARKER;
use crate::home::SoulboxHome;
use crate::hot_first::{HotFunctions, hot_first};
use crate::javascript::JavaScript;
use crate::kernel::WasmKernel;
use crate::kernel::idle::IdleTrimmer;
use crate::language::GuestModule;
use crate::module_cache::{ModuleCache, ModuleKey};
use crate::names::without_names;
use crate::packages::PackageSource;
use crate::python::Python;
use crate::ticker::EpochTicker;
use crate::worker_process::Workers;
use async_trait::async_trait;
use soulbox_engine::kernel::{Kernel, KernelImage, KernelSpec};
use soulbox_engine::{
    Backend, BackendError, BackendKind, BackendLoad, Capabilities, ExecRequest, ExecResult, Language, WorkerPool,
    WorkerPoolConfig,
};
use soulbox_host_api::{GuestState, add_to_linker};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::{Engine, Linker};

/// How to open a [`WasmBackend`].
#[derive(Debug, Clone)]
pub struct WasmConfig {
    /// Where runtimes and caches live. Default: [`SoulboxHome::from_env`].
    pub home: SoulboxHome,
    /// wasmtime settings. Default: [`EngineSettings::default`] (no fuel metering).
    pub settings: EngineSettings,
    /// Worker threads and queue. Default: one worker per CPU, 16 queued per worker.
    pub pool: WorkerPoolConfig,
    /// Show progress on stderr while compiling or building snapshots. Default: false.
    pub progress: bool,
    /// After each job, have the worker make its next Python guest ready (the spent one rewound
    /// to a new guest's state, or a new one instantiated; warmed, not yet given any request),
    /// so the next Python request skips that work. Costs an idle instance per worker and
    /// snapshot it ran (two at most: plain and data-science; the snapshot's pages are shared
    /// copy-on-write, only what its warm-up dirtied is private).
    /// Off, every Python execution instantiates a new guest. Default: true.
    pub prewarm: bool,
    /// Where guests run: worker threads in this process, or one child process per worker
    /// thread. Default: [`Workers::Threads`].
    pub workers: Workers,
    /// When the engine restores one checkpoint into several contexts (a fork of many), map
    /// one shared copy of its pages into all of them, copy-on-write, instead of copying the
    /// pages into each (Linux 6.11 or later with 4 KiB pages; elsewhere, or where it cannot be done safely,
    /// they are copied). Measured (`checkpoint-report`, forks of 10): 37-52% less memory per
    /// Python fork, for 0.6 ms more per fork. Default: true.
    pub share_fork_pages: bool,
    /// Where Python packages (a request's or sandbox's `packages`, a context's `%pip
    /// install`) come from, or [`PackageSource::Disabled`] to refuse them. Default:
    /// [`PackageSource::Pip`].
    pub packages: PackageSource,
    /// How long a context (a sandbox's Python or JavaScript interpreter) runs no cell before
    /// it gives back the memory pages its cells left exactly as they were, or `None` to keep
    /// them (a page given back costs the next cell that writes it a page fault: about half a
    /// millisecond for a Python session's next cell). Measured in `peers-report`: an idle
    /// Python session holds a fifth less, a data-science one a third less. Default:
    /// [`TRIM_IDLE_AFTER`](crate::TRIM_IDLE_AFTER) (30 s).
    pub trim_idle_after: Option<std::time::Duration>,
    /// Leave each spent guest (its instance, memory and guest root) as it is rather than tear
    /// it down after its job, for a process that exits after one execution (`soulbox run`):
    /// the exit reclaims the memory without the teardown running beside it (and holding the
    /// exit until its system calls return), and the guest root stays whole for the next
    /// process, which adopts it if the program left nothing in it and removes it otherwise
    /// (see [`crate::home`]); the request's input files and outputs stay on disk until then.
    /// Every spent guest is then kept until the process exits: leave it off in a process that
    /// runs more than a few executions. Default: false.
    pub leave_spent_guests: bool,
}

impl Default for WasmConfig {
    fn default() -> Self {
        WasmConfig {
            home: SoulboxHome::from_env(),
            settings: EngineSettings::default(),
            pool: WorkerPoolConfig::default(),
            progress: false,
            prewarm: true,
            workers: Workers::Threads,
            share_fork_pages: true,
            packages: PackageSource::Pip,
            trim_idle_after: Some(crate::TRIM_IDLE_AFTER),
            leave_spent_guests: false,
        }
    }
}

/// Python and JavaScript in wasmtime. Cheap to clone.
#[derive(Clone)]
pub struct WasmBackend {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for WasmBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmBackend").field("home", &self.inner.config.home).finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) config: WasmConfig,
    pub(crate) engine: Engine,
    cache: ModuleCache,
    prepared: moka::sync::Cache<GuestModule, Arc<Prepared>>,
    pub(crate) pool: WorkerPool,
    /// Live context instances (sandbox kernels), for callers' gauges and tests.
    pub(crate) contexts_alive: Arc<std::sync::atomic::AtomicUsize>,
    /// Guests rewound for another execution instead of replaced, for gauges and tests.
    pub(crate) guests_rewound: std::sync::atomic::AtomicU64,
    /// Contexts restored by mapping a shared copy of their checkpoint's pages, for tests.
    pub(crate) contexts_mapped: std::sync::atomic::AtomicU64,
    /// Page files of images being restored into several kernels ([`crate::checkpoint::cow`]).
    pub(crate) shared_pages: crate::checkpoint::cow::SharedPages,
    /// Pure-Python packages, installed once per set in the home's cache.
    pub(crate) packages: crate::packages::Packages,
    /// Set once the bundled packages' bytecode is known to be in place (`execution.rs`).
    pub(crate) bundled_compiled: std::sync::OnceLock<()>,
    /// Trims idle contexts' memory, unless [`WasmConfig::trim_idle_after`] is `None`.
    pub(crate) idle_trimmer: Option<IdleTrimmer>,
    _ticker: EpochTicker,
    /// This process's scratch folder, where guest roots are made (or adopted).
    pub(crate) scratch_claim: Arc<crate::home::ScratchClaim>,
    /// The start-up sweep of dead processes' guest folders.
    sweep: crate::home::Sweep,
}

impl WasmBackend {
    /// Opens the backend: checks that the runtimes are installed, builds the engine and starts
    /// the worker threads. Modules are loaded (or compiled, the first time) on first use, or
    /// up front with [`WasmBackend::prepare`].
    pub fn open(config: WasmConfig) -> Result<Self, RuntimeError> {
        check_home(&config.home)?;
        for package in crate::manifest::runtimes() {
            let dir = config.home.runtime_dir(&package.dir_name());
            let bundled = package.id != "python" || crate::python::bundled::is_installed(&dir);
            if !dir.join(INSTALLED_MARKER).exists() || !bundled {
                return Err(RuntimeError::NotInstalled {
                    runtime: package.id.clone(),
                    home: config.home.root().to_path_buf(),
                });
            }
        }
        let scratch_claim = config.home.claim_scratch().map_err(|e| RuntimeError::io(&config.home.scratch_dir(), e))?;
        // After the claim, so the sweep passes over this process's own folder.
        let sweep = config.home.sweep_in_background();
        let engine = config.settings.engine(EngineRole::Run)?;
        let cache = ModuleCache::new(config.home.module_dir(), &engine, config.progress);
        let pool = WorkerPool::new(&config.pool).map_err(|e| RuntimeError::io(config.home.root(), e))?;
        let ticker = EpochTicker::start(&engine).map_err(|e| RuntimeError::io(config.home.root(), e))?;
        let idle_trimmer = config
            .trim_idle_after
            .map(IdleTrimmer::start)
            .transpose()
            .map_err(|e| RuntimeError::io(config.home.root(), e))?;
        let prepared = moka::sync::Cache::builder().max_capacity(GuestModule::ALL.len() as u64).build();
        let packages = crate::packages::Packages::new(config.home.packages_dir(), "python3", config.packages.clone());
        Ok(WasmBackend {
            inner: Arc::new(Inner {
                config,
                engine,
                cache,
                prepared,
                pool,
                contexts_alive: Arc::default(),
                packages,
                bundled_compiled: std::sync::OnceLock::new(),
                idle_trimmer,
                guests_rewound: Default::default(),
                contexts_mapped: Default::default(),
                shared_pages: Default::default(),
                _ticker: ticker,
                scratch_claim,
                sweep,
            }),
        })
    }

    /// Loads or compiles every module now (both Python snapshots, plain and data-science, and
    /// JavaScript's), so the first execution is fast.
    pub fn prepare(&self) -> Result<(), RuntimeError> {
        for module in GuestModule::ALL {
            self.inner.prepared(module)?;
        }
        Ok(())
    }

    /// Waits for the sweep of dead processes' guest folders that opening the backend started
    /// (on a thread of its own, see [`crate::home`]); returns how many it removed.
    pub fn wait_for_sweep(&self) -> usize {
        self.inner.sweep.wait()
    }

    /// Context instances (sandbox kernels) alive right now: each holds a pool slot and its
    /// memory until its sandbox is killed or the context removed.
    pub fn contexts_alive(&self) -> usize {
        self.inner.contexts_alive.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Contexts restored, since the backend opened, by mapping one shared copy of their
    /// checkpoint's pages (a fork of several) rather than copying the pages into each.
    pub fn contexts_mapped(&self) -> u64 {
        self.inner.contexts_mapped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Guests (Python and JavaScript) rewound to a new guest's state for another execution,
    /// instead of dropped and replaced by a new instance, since the backend opened.
    pub fn guests_rewound(&self) -> u64 {
        self.inner.guests_rewound.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Memory pages idle contexts gave back (see [`WasmConfig::trim_idle_after`]) since the
    /// backend opened.
    pub fn pages_trimmed(&self) -> u64 {
        self.inner.idle_trimmer.as_ref().map_or(0, IdleTrimmer::pages_trimmed)
    }

    /// Jobs admitted right now (running plus queued) and the most admitted at once.
    pub fn load(&self) -> (usize, usize) {
        (self.inner.pool.in_use(), self.inner.pool.capacity())
    }
}

impl Inner {
    /// Refuses a fuel budget when this backend does not meter fuel (rather than ignoring it).
    pub(crate) fn require_metering(&self, limits: &soulbox_engine::Limits) -> Result<(), BackendError> {
        if limits.fuel.is_some() && !self.config.settings.fuel {
            return Err(BackendError::Rejected(
                "this backend was started without fuel metering; drop the fuel limit or enable metering (`--fuel-metering`)".into(),
            ));
        }
        Ok(())
    }

    /// The ready-to-instantiate `module`, built at most once per process.
    pub(crate) fn prepared(&self, module: GuestModule) -> Result<Arc<Prepared>, RuntimeError> {
        self.prepared.try_get_with(module, || self.prepare(module).map(Arc::new)).map_err(|e| {
            match Arc::try_unwrap(e) {
                Ok(error) => error,
                Err(shared) => RuntimeError::Wasm(shared.to_string()),
            }
        })
    }

    fn prepare(&self, which: GuestModule) -> Result<Prepared, RuntimeError> {
        let started = Instant::now();
        let home = &self.config.home;
        let (interpreter, key, state, module) = match which {
            GuestModule::Python(flavour) => {
                let python = Python::new(&home.runtime_dir(&crate::manifest::runtime("python").dir_name()), flavour);
                let state = stateful(python.content_key());
                let key =
                    ModuleKey { name: flavour.module_name().into(), content: compiled(&state, HotFunctions::PYTHON) };
                let module = self.cache.load_or_compile(&self.engine, &key, || {
                    let snapshot = python.snapshot_wasm(
                        &home.snapshot_dir(),
                        &home.scratch_dir(),
                        &self.config.settings,
                        self.config.progress,
                    )?;
                    compiled_form(&snapshot, HotFunctions::PYTHON)
                })?;
                (Interpreter::Python(python), key, state, module)
            }
            GuestModule::JavaScript => {
                let js = JavaScript::new(&home.runtime_dir(&crate::manifest::runtime("javascript").dir_name()));
                let state = stateful(js.content_key());
                let key = ModuleKey { name: "javascript".into(), content: compiled(&state, HotFunctions::NONE) };
                let module = self.cache.load_or_compile(&self.engine, &key, || {
                    compiled_form(
                        &js.snapshot_wasm(&home.snapshot_dir(), &home.scratch_dir(), &self.config.settings)?,
                        HotFunctions::NONE,
                    )
                })?;
                (Interpreter::JavaScript, key, state, module)
            }
        };
        let mut linker = Linker::<GuestState>::new(&self.engine);
        add_to_linker(&mut linker).map_err(|e| RuntimeError::wasm(&e))?;
        let instance_pre = linker.instantiate_pre(&module).map_err(|e| RuntimeError::wasm(&e))?;
        tracing::info!(module = %which, file = %key.name, elapsed_ms = started.elapsed().as_millis() as u64, "module ready");
        Ok(Prepared { interpreter, instance_pre, module: state, pristine: std::sync::OnceLock::new() })
    }
}

/// The identity of a module's state (its memory and globals) as checkpoints name it: the module
/// rewritten by [`export_state`] (bumped when the rewrite changes).
fn stateful(content_key: String) -> String {
    format!("{content_key}:state-v1")
}

/// The identity of what is compiled: the module of `state` with `hot`'s functions laid out
/// first ([`hot_first`]) and its function names dropped ([`without_names`]). Neither changes
/// state, so checkpoints taken before either still name the same module.
fn compiled(state: &str, hot: HotFunctions) -> String {
    match hot.digest() {
        None => format!("{state}:nameless"),
        Some(layout) => format!("{state}:nameless:hot-{layout}"),
    }
}

/// What is compiled of an interpreter's snapshot `wasm`: `hot`'s functions first, its state
/// exported, its names dropped.
fn compiled_form(wasm: &[u8], hot: HotFunctions) -> Result<Vec<u8>, RuntimeError> {
    without_names(&export_state(&hot_first(wasm, hot)?)?)
}

/// Refuses a home (or its module cache) that another user owns or may write: compiled modules
/// there are loaded as native code, so whoever can write them runs code as SoulBox.
fn check_home(home: &SoulboxHome) -> Result<(), RuntimeError> {
    for dir in [home.root().to_path_buf(), home.module_dir()] {
        match std::fs::metadata(&dir) {
            Ok(meta) => {
                soulbox_engine::sandbox::check_private_dir(&dir, &meta).map_err(|e| RuntimeError::io(&dir, e))?
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(RuntimeError::io(&dir, error)),
        }
    }
    Ok(())
}

#[async_trait]
impl Backend for WasmBackend {
    fn name(&self) -> &'static str {
        "wasm"
    }

    fn capabilities(&self) -> Capabilities {
        let languages = [Language::Python, Language::JavaScript, Language::TypeScript];
        Capabilities::new(BackendKind::Wasm).languages(languages).kernels(languages)
    }

    async fn execute(&self, request: ExecRequest) -> Result<ExecResult, BackendError> {
        self.inner.require_metering(&request.limits)?;
        if let Workers::Processes { program, args } = &self.inner.config.workers {
            let spec = crate::worker_process::ChildSpec {
                program: program.clone(),
                args: args.clone(),
                home: self.inner.config.home.root().to_path_buf(),
                fuel: self.inner.config.settings.fuel,
            };
            let (owner, inner) = (request.owner.clone(), Arc::clone(&self.inner));
            return self
                .inner
                .pool
                .run_as(owner.as_deref(), move || {
                    // The set is installed here, by this process's configuration: the child
                    // finds it in the home's cache.
                    if !request.packages.is_empty() {
                        inner.packages.resolve(&request.packages).map_err(RuntimeError::from)?;
                    }
                    crate::worker_process::execute(&spec, &request)
                })
                .await?;
        }
        let admitted = Instant::now();
        let (inner, after) = (Arc::clone(&self.inner), Arc::clone(&self.inner));
        let owner = request.owner.clone();
        let result = self
            .inner
            .pool
            .run_then_as(
                owner.as_deref(),
                move || execute(&inner, request, admitted),
                move || follow_up(&after, after.pool.is_backlogged()),
            )
            .await?;
        Ok(result?)
    }

    fn expect_job(&self) {
        self.inner.pool.rouse();
    }

    fn load(&self) -> Option<BackendLoad> {
        let (in_use, capacity) = WasmBackend::load(self);
        Some(BackendLoad::new(in_use, capacity, self.contexts_alive()))
    }

    async fn start_kernel(&self, spec: KernelSpec) -> Result<Box<dyn Kernel>, BackendError> {
        Ok(Box::new(WasmKernel::start(Arc::clone(&self.inner), spec).await?))
    }

    async fn restore_kernel(&self, spec: KernelSpec, image: KernelImage) -> Result<Box<dyn Kernel>, BackendError> {
        Ok(Box::new(WasmKernel::restore(Arc::clone(&self.inner), spec, image).await?))
    }
}
