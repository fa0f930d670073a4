//! One execution, start to finish, on a worker thread.
//!
//! A [`Guest`] is an instance with its own guest root and store, in a new guest's state:
//! instantiated from the `InstancePre` (pooling allocator, copy-on-write memory image) or
//! rewound in place from an earlier execution's ([`crate::rewind`]); Python guests are then
//! warmed by request-independent turns. An execution takes a guest, applies the request
//! (limits, stdin, input files, then the epoch deadline and fuel), runs the interpreter's entry
//! point, classifies how it ended, and collects the output files. A guest serves exactly one
//! execution: afterwards it is rewound or dropped, so nothing leaks between executions.
//!
//! A Python execution's module is the snapshot [`GuestModule::for_request`] picks for its code
//! (plain, or data-science when it mentions the scientific stack).
//!
//! The follow-up work happens after the caller has its result ([`follow_up`]): the worker
//! rewinds the spent guest, or drops it (and, for Python, starts a new one), and keeps it in a
//! thread-local slot of its module, so the next request for that module finds its guest ready
//! (a worker holds at most one ready guest per module: a data-science or JavaScript one only
//! once it ran one; after a JavaScript job, a plain Python one if it holds no Python guest).
//! JavaScript guests take their argv and env from the WASI context when they begin (wasi-libc
//! reads them on first use), so a rewound one, whose memory has never run, gets its request's
//! WASI world when it is taken; a new one is started with it.

use crate::backend::Inner;
use crate::checkpoint::Pristine;
use crate::egress::GuestNetwork;
use crate::error::RuntimeError;
use crate::javascript::JavaScript;
use crate::language::{GuestModule, WasmLanguage};
use crate::python::{self, Flavour, Python, layout};
use crate::rewind::NotRewound;
use crate::rewind::tracker::WriteTracker;
use crate::ticker::EpochTicker;
use soulbox_engine::{ExecRequest, ExecResult, Language, Limits, NetworkUsage, Outcome, OutputFile};
use soulbox_host_api::{
    CollectLimits, DoorRefused, GuestConfig, GuestLimits, GuestRoot, GuestState, ReadOnlyMount, UnreportableExit,
};
use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::{Instance, InstancePre, Store, Trap};
use wasmtime_wasi::{I32Exit, ResourceTableError};

/// Exit status reported when the deadline stopped the guest (as `timeout(1)` does).
pub const EXIT_DEADLINE: i32 = 124;
/// Exit status reported when another limit stopped the guest (as for SIGKILL).
pub const EXIT_LIMIT: i32 = 137;
/// Exit status reported when the guest faulted (as for SIGABRT).
pub const EXIT_CRASH: i32 = 134;
pub use soulbox_engine::result::{MAX_OUTPUT_FILE_BYTES, MAX_OUTPUT_FILES};
/// Extra wall time allowed past the deadline before a guest blocked in a host call (a
/// `sleep`, say) is abandoned; running guest code is stopped by the epoch at the deadline.
pub(crate) const HOST_CALL_GRACE: Duration = Duration::from_millis(50);
/// Deadline for SoulBox's own warm-up turn.
pub(crate) const WARM_DEADLINE: Duration = Duration::from_secs(30);
/// Limits while a guest warms up, before a request's apply.
pub(crate) const WARM_LIMITS: GuestLimits = GuestLimits {
    stdout_cap: 64 << 10,
    stderr_cap: 64 << 10,
    memory_cap: soulbox_engine::limits::MAX_MEMORY_BYTES,
    open_files: 64,
};

/// Which interpreter a module runs.
#[derive(Debug)]
pub(crate) enum Interpreter {
    Python(Python),
    JavaScript,
}

/// A module ready to instantiate, with what it needs to run.
pub(crate) struct Prepared {
    pub(crate) interpreter: Interpreter,
    pub(crate) instance_pre: InstancePre<GuestState>,
    /// The module's identity (its cache key's content): a context checkpoint names it, and
    /// restores only into it.
    pub(crate) module: String,
    /// A never-run instance, made at the first checkpoint or rewind: what captures compare
    /// against and rewinds copy back from.
    pub(crate) pristine: std::sync::OnceLock<Pristine>,
}

impl Prepared {
    /// The module's never-run instance, made on first use: what checkpoints compare against
    /// and rewinds copy back from.
    pub(crate) fn pristine(&self, inner: &Inner) -> Result<&Pristine, RuntimeError> {
        if let Some(pristine) = self.pristine.get() {
            return Ok(pristine);
        }
        let root = tempfile::tempdir().map_err(|e| RuntimeError::io(&std::env::temp_dir(), e))?;
        let config = GuestConfig { args: &[], env: &[], mounts: &[], root: root.path(), limits: WARM_LIMITS };
        let mut store = new_store(inner, GuestState::new(config)?)?;
        let instance = block_on(self.instance_pre.instantiate_async(&mut store)).map_err(|e| RuntimeError::wasm(&e))?;
        let made = Pristine::new(store, &instance).map_err(|e| RuntimeError::Wasm(e.to_string()))?;
        // Another thread may have made one meanwhile: either serves.
        let _ = self.pristine.set(made);
        drop(root); // the instance never runs, so it never opens its root again
        Ok(self.pristine.get().expect("set just now"))
    }
}

/// An instance in a new guest's state, its store and its guest root: used by exactly one
/// execution.
struct Guest {
    /// Which of its memory's pages it writes, from its first rewind on, where the kernel can
    /// tell ([`WriteTracker`]). Dropped before the store (see `Drop`).
    tracker: Option<WriteTracker>,
    store: Store<GuestState>,
    instance: Instance,
    /// The reactor's exports, for a Python guest.
    reactor: Option<python::Reactor>,
    root: GuestRoot,
    /// The module it is an instance of (a rewind copies from its pristine instance).
    prepared: std::sync::Arc<Prepared>,
    /// The backend that started it (worker threads belong to one backend; checked anyway).
    owner: *const Inner,
}

impl Drop for Guest {
    fn drop(&mut self) {
        // The tracking ends (its protection taken off the memory) before the store gives the
        // memory's slot back to the pool, for whichever instance gets it next.
        self.tracker.take();
    }
}

impl Guest {
    /// Its reactor's exports: it must be a Python guest.
    fn reactor(&self) -> wasmtime::Result<python::Reactor> {
        self.reactor.clone().ok_or_else(|| wasmtime::format_err!("not a Python guest"))
    }

    /// The module it is an instance of.
    fn module(&self) -> GuestModule {
        match &self.prepared.interpreter {
            Interpreter::Python(python) => GuestModule::Python(python.flavour()),
            Interpreter::JavaScript => GuestModule::JavaScript,
        }
    }
}

/// A worker's guests kept for their next requests, one slot per module: Python ones started or
/// rewound and warmed ahead, a JavaScript one rewound (its WASI world is its request's).
struct Ready {
    plain: Option<Guest>,
    data_science: Option<Guest>,
    javascript: Option<Guest>,
}

impl Ready {
    fn slot(&mut self, module: GuestModule) -> &mut Option<Guest> {
        match module {
            GuestModule::Python(Flavour::Plain) => &mut self.plain,
            GuestModule::Python(Flavour::DataScience) => &mut self.data_science,
            GuestModule::JavaScript => &mut self.javascript,
        }
    }
}

/// A guest after its execution, and whether it may be rewound for another.
struct Spent {
    guest: Guest,
    /// The execution ended normally (it returned, raised or exited).
    rewindable: bool,
}

thread_local! {
    /// Each worker thread drives its guests on its own single-threaded runtime.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread tokio runtime");
    /// This worker's next guests, kept for their requests.
    static READY: RefCell<Ready> = const { RefCell::new(Ready { plain: None, data_science: None, javascript: None }) };
    /// The guest of the job just answered, rewound or dropped in the follow-up (work the
    /// caller need not wait for).
    static SPENT: RefCell<Option<Spent>> = const { RefCell::new(None) };
}

/// Runs `request` to completion. Blocks: call it on a worker thread.
pub(crate) fn execute(inner: &Inner, mut request: ExecRequest, admitted: Instant) -> Result<ExecResult, RuntimeError> {
    if request.language == Language::TypeScript {
        request.code = crate::javascript::typescript::to_javascript(&request.code);
    }
    let module = GuestModule::for_request(&request)?;
    // The module that compiles package bytecode is the one this request loads anyway.
    let flavour = match module {
        GuestModule::Python(flavour) => flavour,
        GuestModule::JavaScript => Flavour::Plain,
    };
    // Packages are resolved (or found in the cache) before a guest is taken: a refusal costs
    // no guest.
    let packages = match request.packages.is_empty() {
        true => None,
        false => Some(installed_and_compiled(inner, &request.packages, flavour)?),
    };
    let mut guest = match module {
        GuestModule::Python(flavour) => {
            bundled_compiled(inner, flavour);
            match take_ready(inner, module) {
                Some(guest) => guest,
                None => start_guest(inner, module, None)?,
            }
        }
        GuestModule::JavaScript => match take_ready(inner, module) {
            Some(mut guest) => {
                enter_javascript_world(inner, &mut guest, &request)?;
                guest
            }
            None => start_guest(inner, module, Some(&request))?,
        },
    };
    // Stdin is moved, not copied, into the guest: it may be tens of megabytes.
    guest.store.data().stdin.set(std::mem::take(&mut request.stdin));
    if let Some(installed) = &packages {
        crate::packages::place(installed, &guest.root.host_path())?;
    }
    let network = apply(inner, &mut guest, &request)?;
    let ended = if guest.store.data().limiter.peak_bytes() > request.limits.memory_bytes {
        Ended::stopped(Outcome::MemoryExceeded, "the interpreter alone needs more memory than the limit")
    } else {
        let deadline = request.limits.deadline + HOST_CALL_GRACE;
        let ran = block_on(async {
            tokio::time::timeout(deadline, run_entry(&mut guest, &request, inner.config.settings.fuel, &network)).await
        });
        classify(ran, &guest.store)
    };
    finish(guest, ended, &request.limits, admitted, network.usage())
}

/// The package set `requirements` names, from the cache or installed now, with its bytecode
/// (compiled once, the first time, by a fresh guest of `flavour`, the snapshot the caller
/// loads anyway, running only SoulBox's own turn).
pub(crate) fn installed_and_compiled(
    inner: &Inner,
    requirements: &[String],
    flavour: Flavour,
) -> Result<std::sync::Arc<crate::packages::Installed>, RuntimeError> {
    let installed = inner.packages.resolve(requirements)?;
    compile(inner, &installed, flavour)?;
    Ok(installed)
}

/// Compiles the Python runtime's bundled packages (`python/bundled.rs`) to bytecode unless a
/// backend did before: once per process, before its first Python guest (of `flavour`) runs code.
pub(crate) fn bundled_compiled(inner: &Inner, flavour: Flavour) {
    inner.bundled_compiled.get_or_init(|| {
        let runtime = inner.config.home.runtime_dir(&crate::manifest::runtime("python").dir_name());
        let set = crate::packages::Installed {
            requirements: Vec::new(),
            key: crate::python::bundled::key(),
            site: crate::python::bundled::site(&runtime),
            wheels: Vec::new(),
        };
        if let Err(error) = compile(inner, &set, flavour) {
            // They still work: guests compile what they import.
            tracing::warn!(error = format!("{error:#}"), "could not compile the bundled Python packages");
        }
    });
}

/// Puts `set`'s bytecode beside its sources unless it is there: a fresh guest of `flavour`
/// compiles a copy of the set, running only SoulBox's own turn, and the bytecode is taken back.
fn compile(inner: &Inner, set: &crate::packages::Installed, flavour: Flavour) -> Result<(), RuntimeError> {
    if crate::packages::is_compiled(set) {
        return Ok(());
    }
    let mut guest = start_guest(inner, GuestModule::Python(flavour), None)?;
    crate::packages::place(set, &guest.root.host_path())?;
    let reactor = guest.reactor().map_err(|e| RuntimeError::wasm(&e))?;
    let compiled = block_on(Python::run_internal(&mut guest.store, &reactor, crate::packages::COMPILE_TURN));
    match compiled {
        Ok(()) => crate::packages::adopt_bytecode(set, &guest.root.host_path())?,
        // The set still works: guests compile what they import.
        Err(error) => tracing::warn!(error = format!("{error:#}"), "could not compile a package set to bytecode"),
    }
    Ok(())
}

/// The work after each job, once the caller has its result: the spent guest is rewound to
/// become this worker's next one of its module, or dropped (and, unless the pool has a
/// backlog, a new Python one started ahead of time). Failures are logged: the next request
/// starts its guest itself.
pub(crate) fn follow_up(inner: &Inner, backlogged: bool) {
    let spent = SPENT.with(|spent| spent.borrow_mut().take());
    let module = spent.as_ref().map(|spent| spent.guest.module());
    if let (Some(Spent { guest, rewindable }), Some(module)) = (spent, module) {
        match rewindable && inner.config.prewarm && !is_ready(module) {
            // Kept, untouched, until the process exits (see `WasmConfig::leave_spent_guests`).
            _ if inner.config.leave_spent_guests => std::mem::forget(guest),
            true => match rewind(inner, guest) {
                Ok(guest) => {
                    inner.guests_rewound.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    READY.with(|ready| *ready.borrow_mut().slot(module) = Some(guest));
                }
                Err(why) => tracing::debug!(%why, ?module, "dropped the spent guest instead of rewinding it"),
            },
            // Dropped before a new one starts: its pool slot and memory go back first.
            false => drop(guest),
        }
    }
    if !backlogged {
        refill(inner, module);
    }
}

/// Starts this worker's next Python guest of the spent guest's flavour if it has none; after a
/// job that spent no Python guest, a plain one if it has no Python guest ready at all.
fn refill(inner: &Inner, spent: Option<GuestModule>) {
    let flavour = match spent {
        Some(GuestModule::Python(flavour)) => flavour,
        _ if Flavour::ALL.into_iter().any(|flavour| is_ready(GuestModule::Python(flavour))) => return,
        _ => Flavour::Plain,
    };
    let module = GuestModule::Python(flavour);
    if !inner.config.prewarm || is_ready(module) {
        return;
    }
    match start_guest(inner, module, None) {
        Ok(guest) => READY.with(|ready| *ready.borrow_mut().slot(module) = Some(guest)),
        Err(error) => tracing::warn!(%error, %flavour, "could not start the next Python guest ahead of time"),
    }
}

/// Whether this worker has a guest of `module` ready.
fn is_ready(module: GuestModule) -> bool {
    READY.with(|ready| ready.borrow_mut().slot(module).is_some())
}

/// Sets a spent guest back to a new guest's state ([`crate::rewind`]): a Python guest gets its
/// new WASI world and is warmed; a JavaScript guest gets its world when it is taken
/// ([`enter_javascript_world`]).
fn rewind(inner: &Inner, mut guest: Guest) -> Result<Guest, NotRewound> {
    let pristine = guest.prepared.pristine(inner).map_err(|e| NotRewound::Failed(e.to_string()))?;
    crate::rewind::rewind_instance(&mut guest.store, &guest.instance, pristine, &mut guest.tracker)?;
    guest.root.reset().map_err(|e| NotRewound::Failed(e.to_string()))?;
    if let Interpreter::Python(python) = &guest.prepared.interpreter {
        let state = python_state(python, &guest.root).map_err(|e| NotRewound::Failed(e.to_string()))?;
        let memory_bytes = pristine.image().len();
        enter_world(inner, &mut guest.store, state, memory_bytes).map_err(|e| NotRewound::Failed(e.to_string()))?;
        let reactor = guest.reactor().map_err(|e| NotRewound::Failed(e.to_string()))?;
        block_on(warm_python(&mut guest.store, &reactor)).map_err(|e| NotRewound::Failed(format!("{e:#}")))?;
    }
    Ok(guest)
}

/// Gives a rewound JavaScript guest `request`'s argv and env in a new WASI world over its
/// (emptied) guest root, as [`start_guest`] gives a new one.
fn enter_javascript_world(inner: &Inner, guest: &mut Guest, request: &ExecRequest) -> Result<(), RuntimeError> {
    let (argv, env) = javascript_argv_and_env(request);
    let root = guest.root.host_path();
    let state = GuestState::new(GuestConfig { args: &argv, env: &env, mounts: &[], root: &root, limits: WARM_LIMITS })?;
    let memory_bytes = guest.prepared.pristine(inner)?.image().len();
    enter_world(inner, &mut guest.store, state, memory_bytes)
}

/// What a JavaScript guest's WASI world gives it for `request`: its argv and its env.
fn javascript_argv_and_env(request: &ExecRequest) -> (Vec<String>, Vec<(String, String)>) {
    (JavaScript::argv(request), request.env.clone().into_iter().collect())
}

/// Replaces a rewound guest's host state with `state`: its memory is back to the pristine
/// instance's `memory_bytes`, and SoulBox's own deadline is armed until the request's.
fn enter_world(
    inner: &Inner,
    store: &mut Store<GuestState>,
    state: GuestState,
    memory_bytes: usize,
) -> Result<(), RuntimeError> {
    *store.data_mut() = state;
    store.data_mut().limiter.record_existing(memory_bytes);
    arm_warm_up(inner, store)
}

fn take_ready(inner: &Inner, module: GuestModule) -> Option<Guest> {
    READY.with(|ready| ready.borrow_mut().slot(module).take()).filter(|guest| std::ptr::eq(guest.owner, inner))
}

/// Drives `future` on this worker's runtime. While the future waits (a guest in a host call:
/// a `sleep`, a timer), the worker pool is told ([`soulbox_engine::job_waiting`]), so it can
/// run another job on another thread meanwhile.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let watched = std::future::poll_fn(|cx| {
        soulbox_engine::job_waiting(false);
        let polled = future.as_mut().poll(cx);
        if polled.is_pending() {
            soulbox_engine::job_waiting(true);
        }
        polled
    });
    let output = RUNTIME.with(|runtime| runtime.block_on(watched));
    soulbox_engine::job_waiting(false);
    output
}

/// A new guest, instantiated. Python guests also run the warm-up turns; JavaScript guests get
/// `request`'s argv and env in their WASI context.
fn start_guest(inner: &Inner, module: GuestModule, request: Option<&ExecRequest>) -> Result<Guest, RuntimeError> {
    let prepared = inner.prepared(module)?;
    let (root, state) = match &prepared.interpreter {
        Interpreter::Python(python) => python_world(inner, python)?,
        Interpreter::JavaScript => {
            let request = request.ok_or_else(|| RuntimeError::Wasm("a JavaScript guest needs its request".into()))?;
            let (argv, env) = javascript_argv_and_env(request);
            world(inner, &argv, &env, &[], &[])?
        }
    };
    let mut store = new_store(inner, state)?;
    let (instance, reactor) = block_on(async {
        let instance = prepared.instance_pre.instantiate_async(&mut store).await?;
        let mut reactor = None;
        if let Interpreter::Python(_) = prepared.interpreter {
            let exports = python::Reactor::of(&mut store, &instance)?;
            warm_python(&mut store, &exports).await?;
            reactor = Some(exports);
        }
        wasmtime::Result::<_>::Ok((instance, reactor))
    })
    .map_err(|e| RuntimeError::wasm(&e))?;
    Ok(Guest { tracker: None, store, instance, reactor, root, prepared, owner: inner })
}

/// A new Python guest's world: a new guest root with the runtime's mounts, the fixed argv and
/// the base environment (the snapshot already read them).
fn python_world(inner: &Inner, python: &Python) -> Result<(GuestRoot, GuestState), RuntimeError> {
    world(inner, &Python::wasi_argv(), &Python::base_env(), &python.mounts(), &layout::MOUNT_POINTS)
}

/// A Python guest's state over an existing (emptied) guest root.
fn python_state(python: &Python, root: &GuestRoot) -> Result<GuestState, RuntimeError> {
    let (args, env, mounts) = (Python::wasi_argv(), Python::base_env(), python.mounts());
    let config = GuestConfig { args: &args, env: &env, mounts: &mounts, root: &root.host_path(), limits: WARM_LIMITS };
    Ok(GuestState::new(config)?)
}

/// A new guest root in this process's scratch folder (one a gone process left there, if it
/// is exactly a new one: [`crate::home::ScratchClaim::guest_root`]) and a guest state over it.
fn world(
    inner: &Inner,
    args: &[String],
    env: &[(String, String)],
    mounts: &[ReadOnlyMount],
    mount_points: &[&str],
) -> Result<(GuestRoot, GuestState), RuntimeError> {
    let root = inner.scratch_claim.guest_root(mount_points)?;
    let state = GuestState::new(GuestConfig { args, env, mounts, root: &root.host_path(), limits: WARM_LIMITS })?;
    Ok((root, state))
}

/// The warm-up turn every Python guest runs before its request ([`Python::BEGIN`]: the reseed,
/// then the prelude for the base environment and no arguments). Its output is discarded.
async fn warm_python(store: &mut Store<GuestState>, reactor: &python::Reactor) -> wasmtime::Result<()> {
    Python::run_internal(&mut *store, reactor, Python::BEGIN).await?;
    store.data().stdout.take();
    store.data().stderr.take();
    Ok(())
}

/// A store for `state` with the memory limiter, an epoch deadline of [`WARM_DEADLINE`] and, when
/// metering, unlimited fuel (each request or cell arms its own).
pub(crate) fn new_store(inner: &Inner, state: GuestState) -> Result<Store<GuestState>, RuntimeError> {
    let mut store = Store::new(&inner.engine, state);
    store.limiter(|state| &mut state.limiter);
    arm_warm_up(inner, &mut store)?;
    Ok(store)
}

/// Arms SoulBox's own turns: the epoch deadline [`WARM_DEADLINE`] and, when metering, unlimited
/// fuel.
fn arm_warm_up(inner: &Inner, store: &mut Store<GuestState>) -> Result<(), RuntimeError> {
    store.epoch_deadline_trap();
    store.set_epoch_deadline(EpochTicker::ticks_for(WARM_DEADLINE));
    if inner.config.settings.fuel {
        store.set_fuel(u64::MAX).map_err(|e| RuntimeError::wasm(&e))?;
    }
    Ok(())
}

/// Gives `guest` the request's limits, input files and network (the door answers its HTTP
/// requests under the request's policy, or refuses them without one), and arms its deadline
/// and fuel.
fn apply(inner: &Inner, guest: &mut Guest, request: &ExecRequest) -> Result<Arc<GuestNetwork>, RuntimeError> {
    for file in &request.files {
        guest.root.place(&file.path, &file.contents)?;
    }
    let limits = &request.limits;
    let state = guest.store.data_mut();
    state.set_limits(GuestLimits {
        stdout_cap: usize::try_from(limits.stdout_bytes).unwrap_or(usize::MAX),
        stderr_cap: usize::try_from(limits.stderr_bytes).unwrap_or(usize::MAX),
        memory_cap: limits.memory_bytes,
        open_files: limits.open_files,
    });
    if inner.config.settings.fuel {
        // Python's budget is armed after its prelude (in `run_entry`); JS runs only request code.
        let budget = match WasmLanguage::of(request.language)? {
            WasmLanguage::Python => u64::MAX,
            WasmLanguage::JavaScript => limits.fuel.unwrap_or(u64::MAX),
        };
        guest.store.set_fuel(budget).map_err(|e| RuntimeError::wasm(&e))?;
    }
    guest.store.set_epoch_deadline(EpochTicker::ticks_for(limits.deadline));
    let network = GuestNetwork::new(request.network.as_ref());
    guest.store.data_mut().egress = Some(Arc::clone(&network) as Arc<dyn soulbox_host_api::Egress>);
    Ok(network)
}

async fn run_entry(
    guest: &mut Guest,
    request: &ExecRequest,
    metering: bool,
    network: &Arc<GuestNetwork>,
) -> wasmtime::Result<i32> {
    match WasmLanguage::of(request.language)? {
        WasmLanguage::Python => {
            let (reactor, store) = (guest.reactor()?, &mut guest.store);
            // Every guest already ran the prelude for the base environment and no arguments
            // while warming up, so only a request with its own env or args needs another.
            if !request.env.is_empty() || !request.args.is_empty() {
                let prelude = Python::prelude(&request.args, &Python::env(request));
                Python::run_internal(store, &reactor, &prelude).await?;
            }
            if !request.packages.is_empty() {
                Python::run_internal(store, &reactor, &crate::packages::import_path_turn()).await?;
            }
            if metering {
                // The budget is for the request's code, not SoulBox's prelude.
                store.set_fuel(request.limits.fuel.unwrap_or(u64::MAX))?;
            }
            Python::run_code(store, &reactor, &request.code).await
        }
        WasmLanguage::JavaScript => {
            JavaScript::run(&mut guest.store, &guest.instance, &request.args, &request.code, network).await
        }
    }
}

fn finish(
    mut guest: Guest,
    ended: Ended,
    limits: &Limits,
    admitted: Instant,
    network: Option<NetworkUsage>,
) -> Result<ExecResult, RuntimeError> {
    let collected =
        guest.root.collect(CollectLimits { max_files: MAX_OUTPUT_FILES, max_total_bytes: MAX_OUTPUT_FILE_BYTES })?;
    let state = guest.store.data();
    let result = ExecResult {
        stdout: String::from_utf8_lossy(&state.stdout.take()).into_owned(),
        stderr: String::from_utf8_lossy(&state.stderr.take()).into_owned(),
        exit_code: ended.exit_code,
        outcome: ended.outcome,
        error: ended.error,
        duration: admitted.elapsed(),
        fuel_used: fuel_used(&guest.store, limits),
        peak_memory_bytes: state.limiter.peak_bytes(),
        files: collected.files.into_iter().map(|(path, contents)| OutputFile { path, contents }).collect(),
        files_truncated: collected.truncated,
        backend: "wasm".into(),
        network,
    };
    let rewindable = result.outcome == Outcome::Completed;
    SPENT.with(|spent| *spent.borrow_mut() = Some(Spent { guest, rewindable }));
    Ok(result)
}

/// How a guest ended, as the result reports it.
#[derive(Debug)]
pub(crate) struct Ended {
    pub(crate) outcome: Outcome,
    pub(crate) exit_code: i32,
    pub(crate) error: Option<String>,
}

impl Ended {
    pub(crate) fn completed(exit_code: i32) -> Self {
        Ended { outcome: Outcome::Completed, exit_code, error: None }
    }

    pub(crate) fn stopped(outcome: Outcome, error: impl Into<String>) -> Self {
        let exit_code = match outcome {
            Outcome::DeadlineExceeded => EXIT_DEADLINE,
            Outcome::Crashed => EXIT_CRASH,
            _ => EXIT_LIMIT,
        };
        Ended { outcome, exit_code, error: Some(error.into()) }
    }
}

pub(crate) fn classify(
    ran: Result<wasmtime::Result<i32>, tokio::time::error::Elapsed>,
    store: &Store<GuestState>,
) -> Ended {
    let state = store.data();
    let memory_hit = state.limiter.hit_cap();
    let output_hit = state.stdout.overflowed() || state.stderr.overflowed();
    let error = match ran {
        Err(_) => return Ended::stopped(Outcome::DeadlineExceeded, "deadline exceeded while blocked in a host call"),
        Ok(Ok(status)) if memory_hit && status != 0 => {
            return Ended::stopped(Outcome::MemoryExceeded, "memory limit exceeded");
        }
        Ok(Ok(status)) => return Ended::completed(status),
        Ok(Err(error)) => error,
    };
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return Ended::completed(exit.0);
    }
    if output_hit {
        return Ended::stopped(Outcome::OutputLimitExceeded, "output limit exceeded");
    }
    if let Some(refused) = error.downcast_ref::<DoorRefused>() {
        return Ended::stopped(Outcome::OutputLimitExceeded, refused.to_string());
    }
    if error.downcast_ref::<ResourceTableError>().is_some() {
        return Ended::stopped(Outcome::OpenFileLimitExceeded, "open-file limit exceeded");
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Ended::stopped(Outcome::DeadlineExceeded, "deadline exceeded"),
        Some(Trap::OutOfFuel) => Ended::stopped(Outcome::FuelExhausted, "fuel exhausted"),
        _ if memory_hit => Ended::stopped(Outcome::MemoryExceeded, "memory limit exceeded"),
        Some(Trap::StackOverflow) => Ended::stopped(Outcome::Crashed, "stack overflow"),
        Some(trap) => Ended::stopped(Outcome::Crashed, format!("guest trapped: {trap}")),
        None => match error.downcast_ref::<UnreportableExit>() {
            Some(exit) => Ended::stopped(Outcome::Crashed, exit.to_string()),
            None => {
                tracing::debug!(error = format!("{error:#}"), "guest failed");
                Ended::stopped(Outcome::Crashed, format!("guest failed: {}", error.root_cause()))
            }
        },
    }
}

pub(crate) fn fuel_used(store: &Store<GuestState>, limits: &Limits) -> Option<u64> {
    let budget = limits.fuel?;
    store.get_fuel().ok().map(|left| budget.saturating_sub(left))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticker::EPOCH_TICK;

    #[test]
    fn deadline_ticks_round_up() {
        assert_eq!(EpochTicker::ticks_for(Duration::from_millis(1)), 1);
        assert_eq!(EpochTicker::ticks_for(EPOCH_TICK * 3), 3);
        assert_eq!(EpochTicker::ticks_for(EPOCH_TICK * 3 + Duration::from_nanos(1)), 4);
    }
}
