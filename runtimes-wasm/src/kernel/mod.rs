//! Stateful contexts: [`WasmKernel`], the engine's [`Kernel`] for Python and JavaScript.
//!
//! A kernel is one long-lived instance (store + instance) whose guest root is the sandbox's
//! workspace. It lives in a slot shared with the jobs that drive it: every operation (start,
//! cell, checkpoint) runs on a worker-pool thread, the one async boundary, and takes the live
//! instance out of the slot for the job's duration, holding the slot's lock; a cell answered at
//! its end starts on its caller's task instead and goes to a worker only if it runs long
//! ([`in_place`]). A job the pool refuses (busy) never touched the slot, so the kernel survives
//! it; a job that loses the instance (a panic) leaves the slot empty and the next cell starts
//! afresh.
//!
//! A cell streams as it runs: taps on stdout/stderr send each write as an event, and rich
//! results and errors come from the guest's own driver ([`python`]: the `_soulbox_kernel`
//! module in the snapshot, through the `host.call` door; [`javascript`]: `kernel.js`, whose
//! report the host captures from stdout after the cell). A cell stopped by a limit (a trap)
//! leaves the interpreter's state undefined, so the kernel is replaced by a fresh one from the
//! same spec and the report says `restarted`.

mod checkpoint;
pub(crate) mod idle;
mod in_place;
mod javascript;
mod python;
mod utf8;

use crate::backend::Inner;
use crate::egress::GuestNetwork;
use crate::error::RuntimeError;
use crate::execution::{self, Ended, HOST_CALL_GRACE, WARM_LIMITS};
use crate::language::WasmLanguage;
use crate::ticker::EpochTicker;
use async_trait::async_trait;
use soulbox_engine::kernel::{
    Cell, CellError, CellReport, EventSender, ExecutionEvent, Kernel, KernelImage, KernelSpec, RichResult,
};
use soulbox_engine::{BackendError, Language, Outcome};
use soulbox_host_api::{GuestConfig, GuestLimits, GuestState, ReadOnlyMount, prepare_root};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use wasmtime::{Instance, Store, Trap, UpdateDeadline};

/// Epoch ticks between two checks of a running cell's deadline and stop signal (50 ms).
const STOP_CHECK_TICKS: u64 = 10;

/// One live interpreter instance.
pub(crate) struct Live {
    /// A checkpoint's pages mapped over its memory, for a context restored copy-on-write.
    /// Declared before `store`, so dropped first: it maps the slot's own pages back before
    /// wasmtime frees the slot (see [`crate::checkpoint::cow`]).
    overlay: Option<crate::checkpoint::cow::Overlay>,
    store: Store<GuestState>,
    instance: Instance,
    /// The reactor's exports, for a Python instance.
    reactor: Option<crate::python::Reactor>,
    /// Its checkpoints so far (empty until the first; a restored context starts a new one).
    log: crate::checkpoint::CaptureLog,
    /// Its outbound HTTP, under the spec's network policy (each cell's usage counted afresh).
    network: Arc<GuestNetwork>,
    /// When its last cell ended (or it started), for [`idle`].
    idle_since: Instant,
    /// Whether [`idle`]'s thread will look at it.
    trim_queued: bool,
    _alive: AliveCount,
}

impl Live {
    /// A live `language` instance (its exports looked up once, for a Python one).
    fn new(
        inner: &Inner,
        language: WasmLanguage,
        mut store: Store<GuestState>,
        instance: Instance,
        overlay: Option<crate::checkpoint::cow::Overlay>,
        network: Arc<GuestNetwork>,
    ) -> Result<Self, RuntimeError> {
        let reactor = match language {
            WasmLanguage::Python => {
                Some(crate::python::Reactor::of(&mut store, &instance).map_err(|e| RuntimeError::wasm(&e))?)
            }
            WasmLanguage::JavaScript => None,
        };
        Ok(Live {
            overlay,
            store,
            instance,
            reactor,
            log: crate::checkpoint::CaptureLog::default(),
            network,
            idle_since: Instant::now(),
            trim_queued: false,
            _alive: AliveCount::new(inner),
        })
    }

    /// Its reactor's exports: it must be a Python instance.
    fn reactor(&self) -> wasmtime::Result<crate::python::Reactor> {
        self.reactor.clone().ok_or_else(|| wasmtime::format_err!("not a Python instance"))
    }
}

/// Counts a live instance in [`Inner::contexts_alive`] from creation to drop.
struct AliveCount(Arc<AtomicUsize>);

impl AliveCount {
    fn new(inner: &Inner) -> Self {
        inner.contexts_alive.fetch_add(1, Ordering::Relaxed);
        AliveCount(Arc::clone(&inner.contexts_alive))
    }
}

impl Drop for AliveCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A kernel's live instance, when it has one. A cell holds the lock for its whole run, wherever
/// it runs (an async lock: a cell that starts on its caller's task holds it across awaits, and
/// may carry it to a worker thread, [`in_place`]).
type Slot = Arc<tokio::sync::Mutex<Option<Live>>>;

/// A slot's lock, held by a cell from start to end.
type HeldSlot = tokio::sync::OwnedMutexGuard<Option<Live>>;

/// A stateful Python or JavaScript context in wasmtime.
pub(crate) struct WasmKernel {
    inner: Arc<Inner>,
    spec: Arc<KernelSpec>,
    slot: Slot,
}

impl std::fmt::Debug for WasmKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmKernel").field("language", &self.spec.language).finish_non_exhaustive()
    }
}

impl WasmKernel {
    /// Starts a kernel for `spec` on a worker thread.
    pub(crate) async fn start(inner: Arc<Inner>, spec: KernelSpec) -> Result<Self, BackendError> {
        let spec = Arc::new(spec);
        let (job_inner, job_spec) = (Arc::clone(&inner), Arc::clone(&spec));
        let live = inner.pool.run_as(spec.owner.as_deref(), move || start_live(&job_inner, &job_spec)).await??;
        Ok(WasmKernel { inner, spec, slot: Arc::new(tokio::sync::Mutex::new(Some(live))) })
    }

    /// Rebuilds a kernel for `spec` from `image` on a worker thread.
    pub(crate) async fn restore(inner: Arc<Inner>, spec: KernelSpec, image: KernelImage) -> Result<Self, BackendError> {
        let spec = Arc::new(spec);
        let (job_inner, job_spec) = (Arc::clone(&inner), Arc::clone(&spec));
        let restore = move || checkpoint::restore(&job_inner, &job_spec, &image);
        let live = inner.pool.run_as(spec.owner.as_deref(), restore).await??;
        Ok(WasmKernel { inner, spec, slot: Arc::new(tokio::sync::Mutex::new(Some(live))) })
    }
}

#[async_trait]
impl Kernel for WasmKernel {
    fn language(&self) -> Language {
        self.spec.language
    }

    async fn run(&mut self, cell: Cell, events: EventSender) -> Result<CellReport, BackendError> {
        self.inner.require_metering(&cell.limits)?;
        let cell = match in_place::run(&self.inner, &self.spec, &self.slot, cell, &events).await? {
            in_place::Placed::Ran(report) => return Ok(report),
            in_place::Placed::Declined(cell) => cell,
        };
        let (inner, spec, slot) = (Arc::clone(&self.inner), Arc::clone(&self.spec), Arc::clone(&self.slot));
        let owner = self.spec.owner.as_deref();
        self.inner.pool.run_as(owner, move || run_cell(&inner, &spec, &slot, cell, events)).await?
    }

    async fn checkpoint(&mut self) -> Result<KernelImage, BackendError> {
        let (inner, spec, slot) = (Arc::clone(&self.inner), Arc::clone(&self.spec), Arc::clone(&self.slot));
        let owner = self.spec.owner.as_deref();
        self.inner.pool.run_as(owner, move || checkpoint::capture(&inner, &spec, &slot)).await?
    }

    async fn diverge(&mut self) -> Result<(), BackendError> {
        let (spec, slot) = (Arc::clone(&self.spec), Arc::clone(&self.slot));
        let owner = self.spec.owner.as_deref();
        self.inner.pool.run_as(owner, move || checkpoint::diverge(&spec, &slot)).await?
    }
}

/// Instantiates and prepares a kernel (blocking; on a worker thread).
fn start_live(inner: &Inner, spec: &KernelSpec) -> Result<Live, RuntimeError> {
    let language = WasmLanguage::of(spec.language)?;
    let (store, instance) = match language {
        WasmLanguage::Python => python::start(inner, spec)?,
        WasmLanguage::JavaScript => javascript::start(inner, spec)?,
    };
    Live::new(inner, language, store, instance, None, GuestNetwork::new(spec.network.as_ref()))
}

/// A store for a context: its guest sees the sandbox's workspace as `/` (reserved directories
/// and `mount_points` made in it), with `args`, `env` and `mounts`, under the warm-up limits.
fn context_store(
    inner: &Inner,
    workspace: &Path,
    mount_points: &[&str],
    args: &[String],
    env: &[(String, String)],
    mounts: &[ReadOnlyMount],
) -> Result<Store<GuestState>, RuntimeError> {
    prepare_root(workspace, mount_points)?;
    let state = GuestState::new(GuestConfig { args, env, mounts, root: workspace, limits: WARM_LIMITS })?;
    execution::new_store(inner, state)
}

/// The error for a context that did not start, with what its guest printed on stderr.
fn start_failed(language: WasmLanguage, error: &wasmtime::Error, store: &Store<GuestState>) -> RuntimeError {
    if let full @ RuntimeError::PoolFull(_) = RuntimeError::wasm(error) {
        return full;
    }
    let stderr = String::from_utf8_lossy(&store.data().stderr.take()).into_owned();
    RuntimeError::Wasm(format!("the {language} context did not start: {error:#} {stderr}"))
}

/// Runs one cell (blocking; on a worker thread).
fn run_cell(
    inner: &Arc<Inner>,
    spec: &Arc<KernelSpec>,
    slot: &Slot,
    cell: Cell,
    events: EventSender,
) -> Result<CellReport, BackendError> {
    let held = Arc::clone(slot).blocking_lock_owned();
    let run = cell_run(Arc::clone(inner), Arc::clone(spec), Arc::clone(slot), held, cell, events, None)?;
    Ok(finish_on_worker(run, inner, spec))
}

/// A cell from the moment it holds its instance to its report: its guest's run (armed already)
/// and what follows it, as one future that owns all it needs, so that it can start on one
/// thread and end on another.
type CellRun = std::pin::Pin<Box<dyn Future<Output = Settled> + Send>>;

/// Takes the instance in `held` (or starts one, when a trap or a panic lost it), arms it for
/// `cell` and returns the cell's run. `in_place`: the flag the run sets when it has used its
/// slice of its caller's thread ([`in_place`]); `None` on a worker thread.
fn cell_run(
    inner: Arc<Inner>,
    spec: Arc<KernelSpec>,
    slot: Slot,
    mut held: HeldSlot,
    cell: Cell,
    events: EventSender,
    in_place: Option<Arc<std::sync::atomic::AtomicBool>>,
) -> Result<CellRun, BackendError> {
    let language = WasmLanguage::of(spec.language)?;
    if spec.stop.is_stopped() {
        return Err(BackendError::Rejected("the sandbox was killed".into()));
    }
    let (mut live, restarted) = match held.take() {
        Some(live) => (live, false),
        None => (start_live(&inner, &spec)?, true),
    };
    arm(&inner, &spec, &mut live, &cell, &events, in_place)?;
    Ok(Box::pin(async move {
        let finished = drive(&inner, &spec, language, &mut live, &cell, &events).await;
        settle(&inner, &spec, &slot, held, live, finished, restarted, &cell)
    }))
}

/// Runs the armed cell in `live` to its end, its deadline, or the sandbox's kill.
async fn drive(
    inner: &Inner,
    spec: &KernelSpec,
    language: WasmLanguage,
    live: &mut Live,
    cell: &Cell,
    events: &EventSender,
) -> Finished {
    live.log.touch();
    let grace_deadline = cell.limits.deadline + HOST_CALL_GRACE;
    let ends = Instant::now() + cell.limits.deadline;
    let run = async {
        match language {
            WasmLanguage::Python => python::run_cell(inner, spec, live, &cell.code, events).await,
            WasmLanguage::JavaScript if spec.language == Language::TypeScript => {
                let code = crate::javascript::typescript::to_javascript(&cell.code);
                javascript::run(live, &code, events, ends).await
            }
            WasmLanguage::JavaScript => javascript::run(live, &cell.code, events, ends).await,
        }
    };
    tokio::select! {
        ran = tokio::time::timeout(grace_deadline, run) => ran.map_or(Finished::TimedOut, Finished::Ran),
        () = spec.stop.stopped() => Finished::Stopped,
    }
}

/// A cell's report, and its slot when the cell lost the instance (left it mid-flight: a trap,
/// a kill) and a fresh one is to be started in it ([`Settled::restart`]).
struct Settled {
    report: CellReport,
    emptied: Option<HeldSlot>,
}

impl Settled {
    /// The report, once the instance the cell lost is replaced ([`refill`]). Blocking: on a
    /// worker thread.
    fn restart(self, inner: &Inner, spec: &KernelSpec) -> CellReport {
        if let Some(emptied) = self.emptied {
            refill(emptied, inner, spec);
        }
        self.report
    }
}

/// Starts a fresh instance in the slot a cell emptied, unless the sandbox is gone, so that the
/// next cell finds it ready; if this fails, the next cell tries again. Blocking: on a worker
/// thread.
fn refill(mut emptied: HeldSlot, inner: &Inner, spec: &KernelSpec) {
    if spec.stop.is_stopped() {
        return;
    }
    match start_live(inner, spec) {
        Ok(fresh) => *emptied = Some(fresh),
        Err(error) => tracing::warn!(%error, "could not restart a context"),
    }
}

/// Runs `run` to its end on this worker thread, then restarts what it lost.
fn finish_on_worker(run: CellRun, inner: &Inner, spec: &KernelSpec) -> CellReport {
    execution::block_on(run).restart(inner, spec)
}

/// The cell's report; the instance back in its slot if it is intact.
#[allow(clippy::too_many_arguments)]
fn settle(
    inner: &Inner,
    spec: &KernelSpec,
    slot: &Slot,
    mut held: HeldSlot,
    mut live: Live,
    finished: Finished,
    restarted: bool,
    cell: &Cell,
) -> Settled {
    // Only a cell that returned normally leaves the interpreter in a known state.
    let intact = matches!(finished, Finished::Ran(Ok(())));
    let ended = conclude(finished, &live.store);
    disarm(&mut live);
    let report = CellReport {
        outcome: ended.outcome,
        message: ended.error,
        restarted: restarted || !intact,
        fuel_used: execution::fuel_used(&live.store, &cell.limits),
        peak_memory_bytes: live.store.data().limiter.peak_bytes(),
        network: live.network.usage(),
    };
    if !intact {
        // The trap left the interpreter mid-flight: it is replaced ([`Settled::restart`]).
        drop(live);
        let emptied = (!spec.stop.is_stopped()).then_some(held);
        return Settled { report, emptied };
    }
    if let Some(trimmer) = &inner.idle_trimmer {
        trimmer.went_idle(slot, &mut live);
    }
    *held = Some(live);
    Settled { report, emptied: None }
}

/// How the cell ended, as its report says it.
fn conclude(finished: Finished, store: &Store<GuestState>) -> Ended {
    match finished {
        // The guest got its allocation refused and raised (Python's `MemoryError`) by itself.
        Finished::Ran(Ok(())) if store.data().limiter.hit_cap() => Ended::stopped(
            Outcome::MemoryExceeded,
            "memory limit exceeded: the code's allocation was refused; the context is intact",
        ),
        Finished::Ran(Ok(())) => Ended::completed(0),
        Finished::Ran(Err(error)) => execution::classify(Ok(Err(error)), store),
        Finished::TimedOut => {
            Ended::stopped(Outcome::DeadlineExceeded, "deadline exceeded while blocked in a host call")
        }
        Finished::Stopped => Ended::stopped(Outcome::Crashed, "the sandbox was killed"),
    }
}

/// How a cell's run ended, before classification.
enum Finished {
    /// The guest returned or trapped.
    Ran(wasmtime::Result<()>),
    /// The guest sat in a host call (a sleep) past the deadline.
    TimedOut,
    /// The sandbox was killed.
    Stopped,
}

/// Gives the kernel the cell's limits and connects its output to `events`. The deadline is
/// checked by an epoch callback every [`STOP_CHECK_TICKS`] at most, which also stops the cell
/// when the sandbox is killed. A cell `in_place` is checked at the next tick first, and yields
/// there once, setting the flag, to be handed to a worker ([`in_place`]).
fn arm(
    inner: &Inner,
    spec: &KernelSpec,
    live: &mut Live,
    cell: &Cell,
    events: &EventSender,
    in_place: Option<Arc<std::sync::atomic::AtomicBool>>,
) -> Result<(), RuntimeError> {
    let limits = &cell.limits;
    let state = live.store.data_mut();
    // Leftovers of SoulBox's own turns are not the cell's output.
    state.stdout.take();
    state.stderr.take();
    state.set_limits(GuestLimits {
        stdout_cap: usize::try_from(limits.stdout_bytes).unwrap_or(usize::MAX),
        stderr_cap: usize::try_from(limits.stderr_bytes).unwrap_or(usize::MAX),
        memory_cap: limits.memory_bytes,
        open_files: limits.open_files,
    });
    state.stdout.set_tap(Some(utf8::tap(events.clone(), |text| ExecutionEvent::Stdout { text })));
    state.stderr.set_tap(Some(utf8::tap(events.clone(), |text| ExecutionEvent::Stderr { text })));
    live.network.begin_cell();
    state.egress = Some(Arc::clone(&live.network) as Arc<dyn soulbox_host_api::Egress>);
    if inner.config.settings.fuel {
        live.store.set_fuel(limits.fuel.unwrap_or(u64::MAX)).map_err(|e| RuntimeError::wasm(&e))?;
    }
    let (stop, ends) = (spec.stop.clone(), Instant::now() + limits.deadline);
    let first_check = match &in_place {
        // Its slice of the caller's thread ends at the next tick.
        Some(_) => 1,
        None => EpochTicker::ticks_for(limits.deadline).min(STOP_CHECK_TICKS),
    };
    live.store.epoch_deadline_callback(move |_| {
        let now = Instant::now();
        if stop.is_stopped() || now >= ends {
            return Err(Trap::Interrupt.into());
        }
        let next = EpochTicker::ticks_for(ends - now).min(STOP_CHECK_TICKS);
        if in_place.as_ref().is_some_and(|used| !used.swap(true, Ordering::Relaxed)) {
            // The slice is used: the guest yields, and its run goes on on a worker.
            return Ok(UpdateDeadline::Yield(next));
        }
        Ok(UpdateDeadline::Continue(next))
    });
    live.store.set_epoch_deadline(first_check);
    Ok(())
}

/// A frame a guest's kernel driver sends through the door.
#[derive(Debug, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum GuestFrame {
    /// A rich result.
    Result(RichResult),
    /// An exception.
    Error(CellError),
    /// A pyplot figure was made during the cell (Python: the host finishes the cell with a
    /// turn that sends the figures still open).
    FiguresOpen,
}

/// Reads a frame from the guest's kernel driver. A malformed frame is dropped with a
/// rate-limited warning: guest code can reach the door too, so nothing it sends is trusted
/// beyond these shapes (it can never forge output or the end of a cell).
pub(crate) fn read_guest_frame(frame: &[u8]) -> Option<GuestFrame> {
    let read = serde_json::from_slice::<GuestFrame>(frame);
    if read.is_err() {
        warn_rate_limited("a guest sent an unreadable frame through the door; dropped");
    }
    read.ok()
}

/// Logs `message` at most once per [`GUEST_LOG_INTERVAL`] across the process.
fn warn_rate_limited(message: &'static str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let last = LAST.load(Ordering::Relaxed);
    if now >= last + GUEST_LOG_INTERVAL.as_secs()
        && LAST.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    {
        tracing::warn!("{message}");
    }
}

/// The shortest interval between two guest-triggered warnings.
const GUEST_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Disconnects the kernel from the cell's events (so the stream can end) and clears its output.
fn disarm(live: &mut Live) {
    let state = live.store.data_mut();
    state.stdout.set_tap(None);
    state.stderr.set_tap(None);
    state.door = None;
    state.stdout.take();
    state.stderr.take();
}
