//! Cells that start on their caller's task, and go to a worker only if they run long.
//!
//! A cell handed to the worker pool costs two hand-offs between threads: the caller wakes a
//! worker, the worker wakes the caller with the report. On a small VM whose virtual CPUs halt
//! when idle, each is a wake-up of a halted CPU (tens of microseconds), and the cell's own work
//! is often smaller: a session cell `x = x + 1` is about 20 us in the guest. So a cell whose
//! events nobody waits to read ([`EventSender::waits`] is false: the caller keeps them all
//! until the end, [`soulbox_engine::Sandbox::run_code`]) starts here, on the task that awaits
//! it, and most cells end before anything is handed anywhere.
//!
//! The guest runs on a wasmtime fiber, as a future, so the thread is held only while the guest
//! computes, and at most until the epoch ticker's next tick ([`crate::ticker::EPOCH_TICK`], 5
//! ms): the cell's first deadline check is then, and if the cell is still running there it
//! yields (`UpdateDeadline::Yield`) and its run ([`CellRun`], a future owning all it needs,
//! the slot's lock included) is handed to a worker
//! ([`WorkerPool::take_over`](soulbox_engine::WorkerPool::take_over)), which runs it
//! to its end like any job. A guest waiting in a host call (a `sleep`, an outbound request)
//! holds no thread here either: its future is pending, and the caller's task with it. (One
//! wait does hold it: JavaScript's event loop sleeps in the OS for a timer due within 2 ms, for
//! precision; those waits count toward the slice, whose end is checked when the guest runs.)
//!
//! Invariants:
//! - Admission is the pool's: a cell here holds one of its places ([`Admitted`]) from start to
//!   end, wherever it ends, so the pool's bound counts it. It starts here only when nothing
//!   waits in the pool's queue (it would overtake other owners' jobs) and a place is free; else
//!   it goes to the pool the usual way (which refuses a full pool).
//! - Nothing here blocks for long: a cell whose instance must be started first (after a trap
//!   lost it), a `%pip install` cell (it resolves and copies packages), and a TypeScript cell
//!   (its translation is host work no deadline check reaches) go to the pool; restarting an
//!   instance a trap lost is a job of its own.
//! - A cell runs to its end whatever its caller does: if the caller's future is dropped while
//!   the cell is here (a client gone, a request timed out), the run is handed to a worker and
//!   finishes there, as a job already running would. A panic here is the pool's too: reported
//!   as an internal error, the instance lost, the next cell starting afresh.

use super::{CellRun, Settled, Slot, cell_run, finish_on_worker, refill};
use crate::backend::Inner;
use soulbox_engine::kernel::{Cell, CellReport, EventSender, KernelSpec};
use soulbox_engine::{Admitted, BackendError, Language};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

/// Where a cell went.
pub(super) enum Placed {
    /// It ran (here, or here and then on a worker).
    Ran(CellReport),
    /// It may not start here: it goes to the pool.
    Declined(Cell),
}

/// Runs `cell` starting on this task when it may ([`Placed::Ran`]); else gives it back.
pub(super) async fn run(
    inner: &Arc<Inner>,
    spec: &Arc<KernelSpec>,
    slot: &Slot,
    cell: Cell,
    events: &EventSender,
) -> Result<Placed, BackendError> {
    if !may_start_here(inner, spec, &cell, events) {
        return Ok(Placed::Declined(cell));
    }
    let Ok(admitted) = inner.pool.admit() else { return Ok(Placed::Declined(cell)) };
    let held = Arc::clone(slot).lock_owned().await;
    if held.is_none() || spec.stop.is_stopped() {
        // Starting an instance is blocking work; a killed sandbox's refusal is the pool path's.
        return Ok(Placed::Declined(cell));
    }
    let used = Arc::new(AtomicBool::new(false));
    let run = cell_run(
        Arc::clone(inner),
        Arc::clone(spec),
        Arc::clone(slot),
        held,
        cell,
        events.clone(),
        Some(Arc::clone(&used)),
    )?;
    let mut here =
        Here { run: Some(run), admitted: Some(admitted), used, inner: Arc::clone(inner), spec: Arc::clone(spec) };
    let report = match std::future::poll_fn(|cx| here.poll_here(cx)).await? {
        Some(settled) => here.settled(settled),
        None => here.hand_over()?.await?,
    };
    Ok(Placed::Ran(report))
}

/// Whether `cell` may start on its caller's task (see the module's invariants).
fn may_start_here(inner: &Inner, spec: &KernelSpec, cell: &Cell, events: &EventSender) -> bool {
    let language_here = match spec.language {
        Language::Python => crate::packages::pip_magic(&cell.code).is_none(),
        Language::JavaScript => true,
        _ => false,
    };
    language_here && !events.waits() && !inner.pool.is_backlogged()
}

/// A cell running on its caller's task.
struct Here {
    /// The cell's run; `None` once it ended or was handed over.
    run: Option<CellRun>,
    /// Its place in the pool's admission, passed on with the run.
    admitted: Option<Admitted>,
    /// Set by the cell's epoch callback when its slice here is used.
    used: Arc<AtomicBool>,
    inner: Arc<Inner>,
    spec: Arc<KernelSpec>,
}

impl Here {
    /// Polls the run here: `Some` when it ended, `None` when its slice is used (to be handed
    /// over), pending while the guest waits in a host call.
    fn poll_here(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Settled>, BackendError>> {
        let Some(run) = self.run.as_mut() else { return Poll::Ready(Ok(None)) };
        match catch_unwind(AssertUnwindSafe(|| run.as_mut().poll(cx))) {
            Ok(Poll::Ready(settled)) => {
                self.run = None;
                Poll::Ready(Ok(Some(settled)))
            }
            Ok(Poll::Pending) if self.used.load(Ordering::Relaxed) => Poll::Ready(Ok(None)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => {
                // The run (and the instance it held) is dropped: the slot stays empty.
                self.run = None;
                Poll::Ready(Err(BackendError::Internal(format!(
                    "cell panicked: {}",
                    soulbox_engine::panic_message(&*panic)
                ))))
            }
        }
    }

    /// The report of a cell that ended here; an instance it lost is replaced by a job.
    fn settled(&mut self, settled: Settled) -> CellReport {
        let Settled { report, emptied } = settled;
        if let (Some(emptied), Some(admitted)) = (emptied, self.admitted.take()) {
            let (inner, spec) = (Arc::clone(&self.inner), Arc::clone(&self.spec));
            let owner = self.spec.owner.as_deref();
            if let Err(error) = self.inner.pool.take_over(owner, admitted, move || refill(emptied, &inner, &spec)) {
                tracing::warn!(%error, "could not restart a context");
            }
        }
        report
    }

    /// Hands the run to a worker, which runs it to its end.
    fn hand_over(&mut self) -> Result<soulbox_engine::JobAnswer<CellReport>, BackendError> {
        let (Some(run), Some(admitted)) = (self.run.take(), self.admitted.take()) else {
            return Err(BackendError::Internal("the cell was handed over twice".into()));
        };
        let (inner, spec) = (Arc::clone(&self.inner), Arc::clone(&self.spec));
        let owner = self.spec.owner.as_deref();
        self.inner.pool.take_over(owner, admitted, move || finish_on_worker(run, &inner, &spec))
    }
}

impl Drop for Here {
    /// A caller gone while its cell runs here: the cell finishes on a worker.
    fn drop(&mut self) {
        if self.run.is_some()
            && let Err(error) = self.hand_over()
        {
            tracing::warn!(%error, "a cell whose caller went away could not be finished");
        }
    }
}
