//! [`WorkerPool`]: SoulBox's one async boundary, fair between tenants.
//!
//! Guest code is CPU-bound and blocking, and interpreters want deep native stacks. So a backend
//! hands each job to this pool, whose dedicated threads (with [`DEFAULT_STACK_BYTES`] stacks)
//! run it while the caller's future waits. The one exception is bounded: a backend may start a
//! job on its caller's task when the job is a future that yields within a few milliseconds (a
//! WebAssembly guest on a fiber, with an epoch deadline), holding an admission of its own
//! ([`WorkerPool::admit`]), and hand the rest over if it runs longer ([`WorkerPool::take_over`]).
//!
//! Admission is bounded: at most `workers + queue` jobs are admitted at once (running or
//! waiting, wherever they run). Past that, [`WorkerPool::run`] refuses at once with
//! [`BackendError::Busy`] instead of queueing without bound. A job that panics is reported as
//! an internal error; the worker thread survives.
//!
//! Fairness. Each job has an owner (a service's tenant; `None` for the library's own use), and
//! waiting jobs queue per owner:
//! - The next job a thread takes is the oldest of an owner with nothing running, if one waits,
//!   else of the next owner in round-robin order: one owner's backlog never delays another's
//!   first job by more than the jobs already running.
//! - The pool runs `workers` jobs at once (one per CPU by default), plus extra threads (up to
//!   the admission bound, each leaving after [`EXTRA_THREAD_IDLE`] without work) when a job
//!   waits and either fewer than `workers` jobs are really running (the others wait in a host
//!   call, say a guest's `sleep`, which a backend reports with [`job_waiting`]) or the waiting
//!   job's owner has nothing running at all. So a tenant's sleeping cells hold no CPU that
//!   another needs, and a tenant whose quota fills every worker with CPU-bound cells cannot
//!   keep another tenant's `1 + 1` from running: it gets a thread of its own, and the
//!   operating system shares the cores.
//!
//! A job whose caller has gone away before a thread takes it (its future dropped: a client
//! that disconnected or timed out) is not run, and its admission slot is freed then; a job
//! already running runs to its end. So callers that give up under load do not leave work
//! behind them for the workers.
//!
//! Rousing. A parked worker takes tens of microseconds to run again on a small VM (its virtual
//! CPU halted), which a job that arrives after a pause waits for. A caller that knows a job is
//! coming ([`WorkerPool::rouse`]: a server that has just received a request) wakes one early,
//! when no thread is looking for work; it spins for [`SPIN_BEFORE_PARKING`] and parks again if
//! nothing came. At most one rouse is in flight, and a pool with work queued is not roused.
//!
//! Waking. A queued job wakes a parked thread only when more jobs wait than threads look for
//! work: those spinning, and those already woken (by a rouse or for a job) and not yet back from
//! their wait, which the pool counts (`notified`) so that it never counts a woken thread as
//! one still parked. That count can only fall short (a wait that returns without a wake-up, a
//! timed-out or spurious one, takes one off too), which costs at most a wake-up that finds
//! nothing; it never leaves a job without a thread.
//!
//! Handing back. A worker sends the job's value, then yields its CPU once before any
//! follow-up work ([`WorkerPool::run_then`]) or its next job. On a small VM the scheduler
//! often wakes a worker on the CPU of the runtime thread that handed it the job, though the
//! other CPU is idle, and the runtime thread then waits there, runnable, behind the worker:
//! `perf sched timehist` showed it waiting 1.5 ms, through the whole job and the rewinding of
//! the spent guest that follows it, before it could write the response. Measured over HTTP,
//! `print(1+1)` with 10 ms between requests, 500 paired requests: 2.19 against 1.64 ms p50
//! (paired -0.30 ms). The yield costs one system call when nothing else waits.

use crate::backend::BackendError;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// Native stack for each worker thread: interpreters recurse deeply and wasmtime runs the guest
/// on the calling thread's stack.
pub const DEFAULT_STACK_BYTES: usize = 16 * 1024 * 1024;
/// Jobs that may wait for a worker, per worker, when the configuration names no queue length.
pub const DEFAULT_QUEUE_PER_WORKER: usize = 16;
/// How long a thread started beyond `workers` stays without work before it exits.
pub const EXTRA_THREAD_IDLE: Duration = Duration::from_secs(30);
/// How long an idle worker polls for its next job before parking.
const SPIN_BEFORE_PARKING: Duration = Duration::from_micros(100);

/// Sizes of a [`WorkerPool`].
#[derive(Debug, Clone)]
pub struct WorkerPoolConfig {
    /// Jobs running at once (threads kept), not counting those waiting in a host call. Default:
    /// the number of CPUs.
    pub workers: usize,
    /// Jobs that may wait for a free worker. Default: [`DEFAULT_QUEUE_PER_WORKER`] per worker.
    pub queue: usize,
    /// Each worker's native stack. Default: [`DEFAULT_STACK_BYTES`].
    pub stack_bytes: usize,
    /// Thread name prefix. Default: `soulbox-worker`.
    pub name: String,
}

impl Default for WorkerPoolConfig {
    fn default() -> Self {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        WorkerPoolConfig {
            workers,
            queue: workers * DEFAULT_QUEUE_PER_WORKER,
            stack_bytes: DEFAULT_STACK_BYTES,
            name: "soulbox-worker".into(),
        }
    }
}

type Job = Box<dyn FnOnce() + Send + 'static>;
/// Who a job runs for.
type Owner = Option<Arc<str>>;

/// A fixed set of big-stack threads (and extra ones while jobs wait in host calls or an owner
/// would otherwise wait behind another's), with bounded admission and per-owner queues.
/// Dropping the pool lets its threads finish the admitted jobs and exit.
#[derive(Debug)]
pub struct WorkerPool {
    shared: Arc<Shared>,
    admission: Arc<Semaphore>,
    capacity: usize,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    work: Condvar,
    workers: usize,
    max_threads: usize,
    stack_bytes: usize,
    name: String,
}

#[derive(Default)]
struct State {
    queued: FairQueue,
    threads: usize,
    idle: usize,
    /// Threads polling for their next job before they park (see [`SPIN_BEFORE_PARKING`]).
    spinning: usize,
    /// Parked threads woken (by [`WorkerPool::rouse`] or for a queued job) and not yet back
    /// from their wait; they are still counted `idle`. Never more than the truth (see "Waking"
    /// in the module docs).
    notified: usize,
    /// Rouses that woke a thread, since the pool started.
    roused: u64,
    /// Parked threads woken for a queued job, since the pool started.
    woken: u64,
    /// Jobs whose backend said they wait in a host call.
    waiting: usize,
    /// Jobs running (waiting ones included), per owner.
    running: HashMap<Owner, usize>,
    next_thread: usize,
    closed: bool,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("threads", &self.threads).field("waiting", &self.waiting).finish_non_exhaustive()
    }
}

impl State {
    /// Threads looking for work: spinning, or woken and not yet running (each takes a queued
    /// job before it parks).
    fn looking(&self) -> usize {
        self.spinning + self.notified
    }

    /// Parked threads nobody has woken yet.
    fn parked(&self) -> usize {
        self.idle.saturating_sub(self.notified)
    }
}

/// Waiting jobs, one FIFO per owner, owners in round-robin order.
#[derive(Default)]
struct FairQueue {
    by_owner: HashMap<Owner, VecDeque<Job>>,
    turns: VecDeque<Owner>,
    /// Jobs waiting, of every owner.
    len: usize,
}

impl FairQueue {
    fn push(&mut self, owner: Owner, job: Job) {
        self.len += 1;
        let jobs = self.by_owner.entry(owner.clone()).or_default();
        if jobs.is_empty() {
            self.turns.push_back(owner);
        }
        jobs.push_back(job);
    }

    fn is_empty(&self) -> bool {
        self.turns.is_empty()
    }

    /// Whether a waiting job's owner has nothing running.
    fn has_starved(&self, running: &HashMap<Owner, usize>) -> bool {
        self.turns.iter().any(|owner| running.get(owner).copied().unwrap_or(0) == 0)
    }

    /// The next job: the oldest of the first owner in turn with nothing running, else of the
    /// owner whose turn it is.
    fn pop(&mut self, running: &HashMap<Owner, usize>) -> Option<(Owner, Job)> {
        let at = self.turns.iter().position(|owner| running.get(owner).copied().unwrap_or(0) == 0).unwrap_or(0);
        let owner = self.turns.remove(at)?;
        let jobs = self.by_owner.get_mut(&owner)?;
        let job = jobs.pop_front()?;
        self.len -= 1;
        if jobs.is_empty() {
            self.by_owner.remove(&owner);
        } else {
            self.turns.push_back(owner.clone());
        }
        Some((owner, job))
    }
}

thread_local! {
    /// The pool the current thread works for, while it runs a job.
    static CURRENT: RefCell<Option<Seat>> = const { RefCell::new(None) };
}

/// A running job's place in its pool, for [`job_waiting`].
struct Seat {
    shared: Arc<Shared>,
    waiting: bool,
}

/// Tells the pool whose job runs on this thread that the job now waits in a host call (`true`:
/// a guest's `sleep`, a timer) or runs again (`false`), so the pool may start another thread
/// meanwhile. A no-op off the pool's threads and when nothing changes; cheap enough to call on
/// every poll of a guest's future.
pub fn job_waiting(waiting: bool) {
    CURRENT.with(|current| {
        let mut current = current.borrow_mut();
        let Some(seat) = current.as_mut() else { return };
        if seat.waiting == waiting {
            return;
        }
        seat.waiting = waiting;
        let mut state = seat.shared.lock();
        if waiting {
            state.waiting += 1;
            seat.shared.grow(state);
        } else {
            state.waiting -= 1;
        }
    });
}

impl WorkerPool {
    /// Starts the pool's threads.
    pub fn new(config: &WorkerPoolConfig) -> std::io::Result<Self> {
        let workers = config.workers.max(1);
        let capacity = workers + config.queue;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            workers,
            max_threads: capacity.max(workers),
            stack_bytes: config.stack_bytes,
            name: config.name.clone(),
        });
        for _ in 0..workers {
            let mut state = shared.lock();
            shared.spawn(&mut state)?;
        }
        Ok(WorkerPool { shared, admission: Arc::new(Semaphore::new(capacity)), capacity })
    }

    /// Jobs admitted at once, running plus waiting.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether jobs are queued for a thread.
    pub fn is_backlogged(&self) -> bool {
        !self.shared.lock().queued.is_empty()
    }

    /// Jobs admitted right now, running plus waiting.
    pub fn in_use(&self) -> usize {
        self.capacity - self.admission.available_permits()
    }

    /// Threads the pool has now (the workers, plus extra ones started while jobs wait).
    pub fn threads(&self) -> usize {
        self.shared.lock().threads
    }

    /// Runs `job` on a worker thread and waits for its value, or refuses at once with
    /// [`BackendError::Busy`] when the pool is full.
    pub async fn run<F, R>(&self, job: F) -> Result<R, BackendError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.run_then_as(None, job, || ()).await
    }

    /// [`WorkerPool::run`] for `owner` (queued and scheduled fairly among owners).
    pub async fn run_as<F, R>(&self, owner: Option<&str>, job: F) -> Result<R, BackendError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.run_then_as(owner, job, || ()).await
    }

    /// Like [`WorkerPool::run`], and then, on the same worker thread after the value has been
    /// handed back and the job's admission slot released, runs `then`: optional follow-up work
    /// (preparing for the next job) that should not delay this caller. `then` should check
    /// [`WorkerPool::is_backlogged`] and skip its work when jobs are waiting.
    pub async fn run_then<F, R, T>(&self, job: F, then: T) -> Result<R, BackendError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
        T: FnOnce() + Send + 'static,
    {
        self.run_then_as(None, job, then).await
    }

    /// [`WorkerPool::run_then`] for `owner`.
    pub async fn run_then_as<F, R, T>(&self, owner: Option<&str>, job: F, then: T) -> Result<R, BackendError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
        T: FnOnce() + Send + 'static,
    {
        let admitted = self.admit()?;
        self.queue(owner, admitted, job, then, Unwanted::Skip)?.await
    }

    /// Admits one job now, or refuses at once with [`BackendError::Busy`] when the pool is
    /// full: for work a caller begins on its own thread ([`Admitted`]) and may hand over later
    /// ([`WorkerPool::take_over`]).
    pub fn admit(&self) -> Result<Admitted, BackendError> {
        let permit = Arc::clone(&self.admission).try_acquire_owned();
        permit.map(|place| Admitted { _place: place }).map_err(|_| BackendError::Busy { capacity: self.capacity })
    }

    /// Runs `job`, admitted already, on a worker thread, and returns its answer to await. Unlike
    /// [`WorkerPool::run_as`], the job runs even if nobody awaits the answer: it finishes work
    /// its caller began elsewhere (a cell started on the caller's thread), which must not be
    /// left half done. The admission is released when the job ends.
    pub fn take_over<F, R>(&self, owner: Option<&str>, admitted: Admitted, job: F) -> Result<JobAnswer<R>, BackendError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.queue(owner, admitted, job, || (), Unwanted::RunAnyway)
    }

    /// Queues `job` (then `then`) for `owner` and gets it a thread.
    fn queue<F, R, T>(
        &self,
        owner: Option<&str>,
        admitted: Admitted,
        job: F,
        then: T,
        unwanted: Unwanted,
    ) -> Result<JobAnswer<R>, BackendError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
        T: FnOnce() + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let boxed: Job = Box::new(move || {
            if reply.is_closed() && unwanted == Unwanted::Skip {
                // Its caller went away while it waited (a client that disconnected or timed
                // out): nobody wants its value, so it is not run.
                return;
            }
            let value = catch_unwind(AssertUnwindSafe(job));
            drop::<Admitted>(admitted);
            // The caller may have gone away; then nobody wants the value.
            let _ = reply.send(value);
            // The reply woke the caller's runtime thread: let it take this CPU before the
            // follow-up if it waits here (see "Handing back" in the module docs).
            std::thread::yield_now();
            if let Err(panic) = catch_unwind(AssertUnwindSafe(then)) {
                tracing::error!(panic = panic_message(&*panic), "worker follow-up panicked");
            }
        });
        let mut state = self.shared.lock();
        if state.closed {
            return Err(BackendError::Internal("worker pool has stopped".into()));
        }
        state.queued.push(owner.map(Arc::from), boxed);
        self.shared.grow(state);
        Ok(JobAnswer(answer))
    }

    /// A job is likely to be handed over shortly: wakes a parked thread to spin for it, unless
    /// a thread is spinning already, a rouse is under way, or jobs are queued (see "Rousing" in
    /// the module docs). Never blocks for long: one lock and, at most, one wake-up.
    pub fn rouse(&self) {
        let mut state = self.shared.lock();
        if state.looking() > 0 || state.parked() == 0 || !state.queued.is_empty() {
            return;
        }
        state.notified += 1;
        state.roused += 1;
        drop(state);
        self.shared.work.notify_one();
    }
}

/// One job's place within the pool's admission bound, held from [`WorkerPool::admit`] until
/// the job ends (dropped then), wherever it runs.
#[derive(Debug)]
pub struct Admitted {
    _place: OwnedSemaphorePermit,
}

/// What a job handed to the pool returns: its value, or why there is none.
#[derive(Debug)]
pub struct JobAnswer<R>(oneshot::Receiver<std::thread::Result<R>>);

impl<R> Future for JobAnswer<R> {
    type Output = Result<R, BackendError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|answer| match answer {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(panic)) => Err(BackendError::Internal(format!("job panicked: {}", panic_message(&*panic)))),
            Err(_) => Err(BackendError::Internal("worker dropped the job".into())),
        })
    }
}

/// What a queued job does when its caller has gone away before a thread takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unwanted {
    /// Nothing: nobody wants its value.
    Skip,
    /// Runs: it finishes work begun elsewhere.
    RunAnyway,
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gets a waiting job a thread: one already looking for work (spinning, or woken and on
    /// its way), else a parked one, woken, else a new one when fewer than `workers` jobs
    /// really run, or when the job's owner has nothing running. Takes the lock's guard: a
    /// parked thread is woken after the lock is released, so that it does not wake only to
    /// wait for the lock (one wake-up and one context switch less per job).
    fn grow(self: &Arc<Self>, mut state: MutexGuard<'_, State>) {
        let looking = state.looking();
        if state.queued.len <= looking {
            // Each waiting job has a thread about to find it (a spinning thread checks the
            // queue before it parks, in the critical section that parks it): waking another
            // would only have it spin on an idle CPU beside the one running the job.
            return;
        }
        if state.parked() > 0 {
            state.notified += 1;
            state.woken += 1;
            drop(state);
            self.work.notify_one();
            return;
        }
        // Jobs running soon: those running now (not waiting in a host call), and one for each
        // thread looking for work.
        let busy = state.threads - state.idle - state.spinning;
        let running_soon = busy.saturating_sub(state.waiting) + looking;
        let wanted = running_soon < self.workers || state.queued.has_starved(&state.running);
        if wanted
            && state.threads < self.max_threads
            && let Err(error) = self.spawn(&mut state)
        {
            tracing::warn!(%error, "could not start another worker thread");
        }
    }

    fn spawn(self: &Arc<Self>, state: &mut State) -> std::io::Result<()> {
        let shared = Arc::clone(self);
        let index = state.next_thread;
        std::thread::Builder::new()
            .name(format!("{}-{index}", self.name))
            .stack_size(self.stack_bytes)
            .spawn(move || worker_loop(&shared))?;
        state.next_thread += 1;
        state.threads += 1;
        // Counted as spinning from now: it looks for a job as soon as it runs.
        state.spinning += 1;
        Ok(())
    }
}

fn worker_loop(shared: &Arc<Shared>) {
    // Counted as spinning from its start (see `Shared::spawn`), and again from the moment its
    // last job is no longer counted as running, in one critical section: so a job queued
    // meanwhile is never taken for one nobody will pick up.
    let mut spinning = true;
    loop {
        let Some((owner, job)) = next_job(shared, spinning) else { return };
        CURRENT.with(|current| *current.borrow_mut() = Some(Seat { shared: Arc::clone(shared), waiting: false }));
        job();
        let seat = CURRENT.with(|current| current.borrow_mut().take());
        let mut state = shared.lock();
        if seat.is_some_and(|seat| seat.waiting) {
            state.waiting -= 1;
        }
        if let Some(count) = state.running.get_mut(&owner) {
            *count -= 1;
            if *count == 0 {
                state.running.remove(&owner);
            }
        }
        state.spinning += 1;
        spinning = true;
    }
}

/// The next job for this thread (`spinning`: the thread is already counted as spinning),
/// counted as running for its owner; `None` when the thread
/// should exit (the pool was dropped, or it is an extra thread that stayed idle). Polls for
/// [`SPIN_BEFORE_PARKING`] first (a caller driving a session sends its next cell right after
/// the last answer, and waking a parked thread costs more than the cell itself on small VMs).
fn next_job(shared: &Shared, mut spinning: bool) -> Option<(Owner, Job)> {
    let mut started = Instant::now();
    loop {
        let mut guard = shared.lock();
        let state = &mut *guard;
        if let Some((owner, job)) = state.queued.pop(&state.running) {
            state.spinning -= usize::from(spinning);
            *state.running.entry(owner.clone()).or_default() += 1;
            return Some((owner, job));
        }
        if state.closed {
            state.spinning -= usize::from(spinning);
            state.threads -= 1;
            return None;
        }
        if started.elapsed() < SPIN_BEFORE_PARKING {
            state.spinning += usize::from(!spinning);
            spinning = true;
            drop(guard);
            std::thread::yield_now();
            continue;
        }
        state.spinning -= usize::from(spinning);
        state.idle += 1;
        let extra = state.threads > shared.workers;
        let (mut state, timed_out) = if extra {
            let (state, wait) = shared.work.wait_timeout(guard, EXTRA_THREAD_IDLE).unwrap_or_else(|e| e.into_inner());
            (state, wait.timed_out())
        } else {
            (shared.work.wait(guard).unwrap_or_else(|e| e.into_inner()), false)
        };
        state.idle -= 1;
        // Back from its wait, woken or not (see "Waking" in the module docs).
        state.notified = state.notified.saturating_sub(1);
        if timed_out && state.queued.is_empty() && state.threads > shared.workers {
            state.threads -= 1;
            return None;
        }
        // Woken, for a job or by a rouse: spinning from here, in this critical section, so a
        // job queued before it looks finds it counted (and starts no thread for itself); it
        // spins again before it parks.
        state.spinning += 1;
        spinning = true;
        started = Instant::now();
        drop(state);
    }
}

/// What a caught panic says (its message, when it has one), for an error that reports it.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;

    fn pool(workers: usize, queue: usize) -> Arc<WorkerPool> {
        let config = WorkerPoolConfig { workers, queue, ..WorkerPoolConfig::default() };
        Arc::new(WorkerPool::new(&config).unwrap())
    }

    type Started = tokio::sync::mpsc::UnboundedSender<()>;

    /// A job that holds its thread until `gate` says so, telling `started` when it runs.
    fn held(started: Started, gate: Arc<Mutex<mpsc::Receiver<()>>>) -> impl FnOnce() + Send + 'static {
        move || {
            started.send(()).unwrap();
            let _ = gate.lock().unwrap().recv();
        }
    }

    #[tokio::test]
    async fn a_job_whose_caller_left_before_it_started_is_not_run() {
        let pool = pool(1, 4);
        let (release, gate) = mpsc::channel::<()>();
        let (started, mut running) = tokio::sync::mpsc::unbounded_channel();
        let first = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move { pool.run(held(started, Arc::new(Mutex::new(gate)))).await }
        });
        running.recv().await.unwrap();
        // Queued behind the running job, then abandoned.
        let ran = Arc::new(AtomicBool::new(false));
        let mut abandoned = Box::pin(pool.run({
            let ran = Arc::clone(&ran);
            move || ran.store(true, Ordering::SeqCst)
        }));
        assert!(futures_util::poll!(abandoned.as_mut()).is_pending());
        drop(abandoned);
        release.send(()).unwrap();
        first.await.unwrap().unwrap();
        // The one worker takes jobs in order: by the time this one runs, the abandoned one
        // has been taken, and skipped.
        pool.run(|| ()).await.unwrap();
        assert!(!ran.load(Ordering::SeqCst), "the abandoned job ran");
        assert_eq!(pool.in_use(), 0, "its admission slot was freed");
    }

    #[tokio::test]
    async fn a_job_taken_over_runs_though_nobody_awaits_it_and_holds_its_admission_until_it_ends() {
        let pool = pool(1, 1);
        let admitted = pool.admit().unwrap();
        assert_eq!(pool.in_use(), 1);
        let (release, gate) = mpsc::channel::<()>();
        let (started, mut running) = tokio::sync::mpsc::unbounded_channel();
        // Work begun elsewhere, handed over, and its answer dropped at once.
        drop(pool.take_over(Some("acme"), admitted, held(started, Arc::new(Mutex::new(gate)))).unwrap());
        running.recv().await.unwrap();
        assert_eq!(pool.in_use(), 1, "the admission goes with the job");
        assert!(pool.admit().is_ok(), "the queue has room for one more");
        release.send(()).unwrap();
        pool.run(|| ()).await.unwrap();
        assert_eq!(pool.in_use(), 0);
    }

    #[tokio::test]
    async fn runs_jobs_off_the_runtime_threads() {
        let pool = pool(2, 2);
        let name = pool.run(|| std::thread::current().name().map(str::to_owned)).await.unwrap();
        assert!(name.unwrap().starts_with("soulbox-worker"));
    }

    #[tokio::test]
    async fn refuses_when_full_and_recovers() {
        let pool = pool(1, 1);
        let (release, gate) = mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let (started, mut running) = tokio::sync::mpsc::unbounded_channel();
        let mut held_jobs = Vec::new();
        for _ in 0..2 {
            let (pool, job) = (Arc::clone(&pool), held(started.clone(), Arc::clone(&gate)));
            held_jobs.push(tokio::spawn(async move { pool.run(job).await }));
        }
        running.recv().await.unwrap();
        while pool.in_use() < 2 {
            tokio::task::yield_now().await;
        }
        let refused = pool.run(|| ()).await.unwrap_err();
        assert!(matches!(refused, BackendError::Busy { capacity: 2 }));
        release.send(()).unwrap();
        release.send(()).unwrap();
        for h in held_jobs {
            h.await.unwrap().unwrap();
        }
        pool.run(|| ()).await.unwrap();
    }

    #[tokio::test]
    async fn follow_up_runs_on_the_same_thread_after_the_reply() {
        let pool = pool(1, 0);
        let (tell, heard) = mpsc::channel();
        let job_thread = pool
            .run_then(|| std::thread::current().id(), move || tell.send(std::thread::current().id()).unwrap())
            .await
            .unwrap();
        assert_eq!(heard.recv().unwrap(), job_thread);
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_and_the_worker_survives() {
        let pool = pool(1, 0);
        let err = pool.run(|| panic!("guest glue bug")).await.unwrap_err();
        assert!(err.to_string().contains("guest glue bug"));
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn an_owner_filling_every_worker_does_not_hold_up_another() {
        let pool = pool(1, 8);
        let (release, gate) = mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let (started, mut running) = tokio::sync::mpsc::unbounded_channel();
        let mut busy = Vec::new();
        for _ in 0..4 {
            let (pool, job) = (Arc::clone(&pool), held(started.clone(), Arc::clone(&gate)));
            busy.push(tokio::spawn(async move { pool.run_as(Some("a"), job).await }));
        }
        running.recv().await.unwrap();
        // Tenant a holds the only worker and queues three more; b's job still runs, on a
        // thread of its own, while all of a's are held.
        assert_eq!(pool.run_as(Some("b"), || 2).await.unwrap(), 2);
        assert!(pool.threads() >= 2);
        for _ in 0..4 {
            release.send(()).unwrap();
        }
        for job in busy {
            job.await.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn one_job_after_another_needs_no_extra_thread() {
        let pool = pool(1, 8);
        for n in 0..50 {
            assert_eq!(pool.run_as(Some("a"), move || n).await.unwrap(), n);
        }
        assert_eq!(pool.threads(), 1, "a waiting thread takes the next job; none is started for it");
    }

    #[tokio::test]
    async fn a_rouse_wakes_a_parked_thread_and_none_that_is_busy() {
        let pool = pool(1, 8);
        // Until its first spin ends and it parks.
        while pool.shared.lock().idle == 0 {
            std::thread::yield_now();
        }
        pool.rouse();
        assert_eq!(pool.shared.lock().roused, 1, "the parked thread is woken");
        // It wakes with no job to take.
        while pool.shared.lock().notified > 0 {
            std::thread::yield_now();
        }
        assert_eq!(pool.run(|| 5).await.unwrap(), 5);
        assert_eq!(pool.threads(), 1, "a rouse starts no thread");
        let (started, mut running) = tokio::sync::mpsc::unbounded_channel();
        let (release, gate) = mpsc::channel::<()>();
        let job = held(started, Arc::new(Mutex::new(gate)));
        let busy = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move { pool.run(job).await }
        });
        running.recv().await.unwrap();
        pool.rouse();
        assert_eq!(pool.shared.lock().roused, 1, "no thread is parked: nothing to rouse");
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_job_waiting_in_a_host_call_frees_its_worker_for_the_queue() {
        let pool = pool(1, 8);
        let (release, gate) = mpsc::channel::<()>();
        let (started, mut running) = tokio::sync::mpsc::unbounded_channel();
        let sleeper = {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move {
                pool.run_as(Some("a"), move || {
                    job_waiting(true);
                    started.send(()).unwrap();
                    let _ = gate.recv();
                    job_waiting(false);
                })
                .await
            })
        };
        running.recv().await.unwrap();
        // The same owner's next job runs although the only worker is taken: that job waits.
        assert_eq!(pool.run_as(Some("a"), || 3).await.unwrap(), 3);
        release.send(()).unwrap();
        sleeper.await.unwrap().unwrap();
    }

    /// A pool's shared part with no threads: tests set its counts as if threads ran.
    fn fabricated(workers: usize, max_threads: usize) -> Arc<Shared> {
        Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            workers,
            max_threads,
            stack_bytes: DEFAULT_STACK_BYTES,
            name: "test".into(),
        })
    }

    /// Queues a job that does nothing, as [`WorkerPool::run`] does, after `set` has changed
    /// the pool's counts.
    fn queue_job(shared: &Arc<Shared>, set: impl FnOnce(&mut State)) {
        let mut state = shared.lock();
        set(&mut state);
        state.queued.push(None, Box::new(|| ()));
        shared.grow(state);
    }

    #[test]
    fn a_job_queued_while_a_thread_looks_for_work_wakes_no_other() {
        let shared = fabricated(2, 4);
        // Two threads as the pool counts them, no real ones: one spinning, one parked.
        queue_job(&shared, |state| (state.threads, state.spinning, state.idle) = (2, 1, 1));
        let state = shared.lock();
        assert_eq!((state.woken, state.threads), (0, 2), "the spinning thread takes it; none is woken or started");
        drop(state);
        // A second job while the spinning thread has not taken the first: the parked one is woken.
        queue_job(&shared, |_| ());
        assert_eq!(shared.lock().woken, 1);
        // A rouse on its way counts as a thread looking for work too.
        queue_job(&shared, |state| {
            (state.spinning, state.notified) = (0, 1);
            state.queued = FairQueue::default();
        });
        let state = shared.lock();
        assert_eq!((state.woken, state.threads), (1, 2), "the roused thread takes it");
    }

    #[test]
    fn a_job_queued_while_the_only_parked_thread_is_woken_for_another_gets_a_thread() {
        let shared = fabricated(2, 4);
        // Two workers as the pool counts them: one job waits in a host call (a guest's sleep),
        // the other worker is parked.
        queue_job(&shared, |state| (state.threads, state.idle, state.waiting) = (2, 1, 1));
        let state = shared.lock();
        assert_eq!((state.woken, state.notified), (1, 1), "the parked worker is woken for it");
        drop(state);
        // A second job before the woken worker runs: waking "another" parked thread would wake
        // nobody (there is none), so only one job would run while a worker sits in a sleep.
        queue_job(&shared, |_| ());
        let state = shared.lock();
        assert_eq!((state.woken, state.threads), (1, 3), "a thread is started for it");
        drop(state);
        // The started thread is real: it takes the queued jobs, and leaves when told.
        shared.lock().closed = true;
        shared.work.notify_all();
    }

    #[test]
    fn the_queue_serves_owners_in_turn_and_the_starved_first() {
        let mut queue = FairQueue::default();
        let (a, b, c): (Owner, Owner, Owner) = (Some("a".into()), Some("b".into()), Some("c".into()));
        for owner in [&a, &a, &a, &b, &c] {
            queue.push(owner.clone(), Box::new(|| ()));
        }
        let mut running = HashMap::from([(a.clone(), 1), (b.clone(), 1), (c.clone(), 1)]);
        let order: Vec<Owner> = std::iter::from_fn(|| queue.pop(&running).map(|(o, _)| o)).collect();
        assert_eq!(order, [a.clone(), b.clone(), c.clone(), a.clone(), a.clone()]);
        queue.push(a.clone(), Box::new(|| ()));
        queue.push(b.clone(), Box::new(|| ()));
        running.remove(&b);
        assert_eq!(queue.pop(&running).map(|(o, _)| o), Some(b), "an owner with nothing running goes first");
    }
}
