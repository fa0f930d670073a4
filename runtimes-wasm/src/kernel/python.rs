//! Python contexts: a snapshot instance warmed like a stateless guest, given the sandbox's
//! environment and started with `_soulbox_kernel.start(preload)`, all in one turn. A cell is the
//! user's code given to `turn` as is; the kernel module's display and exception hooks send its
//! results and errors through the door, and a cell that made figures ends with one more turn
//! that sends the figures still open.

use super::{GuestFrame, Live, context_store, read_guest_frame, start_failed};
use crate::backend::Inner;
use crate::error::RuntimeError;
use crate::execution::{self, Interpreter};
use crate::language::{GuestModule, WasmLanguage};
use crate::python::{Python, Reactor, layout, turn};
use soulbox_engine::kernel::{
    CellError, EventSender, ExecutionEvent, KernelSpec, MAX_RESULT_BYTES_PER_CELL, MAX_RESULTS_PER_CELL, Preload,
};
use soulbox_host_api::{DoorRefused, GuestState};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use wasmtime::{Instance, Store};

/// Starts a Python context for `spec` (blocking).
pub(super) fn start(inner: &Inner, spec: &KernelSpec) -> Result<(Store<GuestState>, Instance), RuntimeError> {
    let prepared = inner.prepared(GuestModule::for_kernel(spec)?)?;
    let Interpreter::Python(python) = &prepared.interpreter else {
        return Err(RuntimeError::Wasm("the Python module is not a Python interpreter".into()));
    };
    let mut store = store(inner, spec, python)?;
    let preload = match spec.preload {
        Preload::Nothing => "nothing",
        Preload::DataScience => "data-science",
        other => return Err(RuntimeError::Rejected(format!("the Python kernel has no preload {other:?}"))),
    };
    // One turn does it all (each turn costs host-side work): reseed, then the sandbox's
    // environment (only when it has one: the snapshot's is the base), then the kernel.
    let mut setup = Python::WARM.to_owned();
    if !spec.env.is_empty() {
        setup = format!("{setup}; {}", Python::prelude(&[], &Python::env_over(spec.env.clone())));
    }
    execution::bundled_compiled(inner, python.flavour());
    if !spec.packages.is_empty() {
        let installed = execution::installed_and_compiled(inner, &spec.packages, python.flavour())?;
        crate::packages::place(&installed, &spec.workspace)?;
        setup = format!("{setup}; {}", crate::packages::import_path_turn());
    }
    let setup = format!("{setup}; __import__(\"_soulbox_kernel\").start(\"{preload}\")");
    let instance = execution::block_on(async {
        let instance = prepared.instance_pre.instantiate_async(&mut store).await?;
        let reactor = Reactor::of(&mut store, &instance)?;
        Python::run_internal(&mut store, &reactor, &setup).await?;
        wasmtime::Result::<_>::Ok(instance)
    })
    .map_err(|e| start_failed(WasmLanguage::Python, &e, &store))?;
    Ok((store, instance))
}

/// A store for a Python context: the snapshot's fixed layout (its preopens, in its order, and
/// its base environment), whatever the sandbox; the sandbox's environment is set by a turn.
pub(super) fn store(inner: &Inner, spec: &KernelSpec, python: &Python) -> Result<Store<GuestState>, RuntimeError> {
    let (args, base_env, mounts) = (Python::wasi_argv(), Python::base_env(), python.mounts());
    context_store(inner, &spec.workspace, &layout::MOUNT_POINTS, &args, &base_env, &mounts)
}

/// Reseeds `random` and `numpy.random` from fresh WASI entropy (a fork: their state was the
/// source's).
pub(super) async fn reseed(live: &mut Live) -> wasmtime::Result<()> {
    let reactor = live.reactor()?;
    Python::run_internal(&mut live.store, &reactor, Python::WARM).await
}

/// What the interpreter keeps open for itself and reopens on demand: matplotlib's cache of
/// font files (a figure that drew text holds them). Closed before a checkpoint, which cannot
/// carry open files; the next drawing opens them again.
const RELEASE: &str = "__import__(\"sys\").modules.get(\"matplotlib.font_manager\") and \
                       __import__(\"sys\").modules[\"matplotlib.font_manager\"]._get_font.cache_clear()";

/// Closes what the interpreter holds open for itself ([`RELEASE`]), before a checkpoint.
pub(super) async fn release(live: &mut Live) -> wasmtime::Result<()> {
    let reactor = live.reactor()?;
    Python::run_internal(&mut live.store, &reactor, RELEASE).await
}

/// The turn that ends a cell which made figures.
const FINISH: &str = "__import__(\"_soulbox_kernel\").finish()";

/// Runs one cell, after installing what its `%pip install` lines name
/// ([`crate::packages::pip_magic`]): the union of the packages placed in the workspace so far
/// and the new ones is resolved and placed again, then put first on `sys.path`, and the cell
/// runs with those lines as no-ops. An installation that fails is the cell's error.
pub(super) async fn run_cell(
    inner: &Inner,
    spec: &KernelSpec,
    live: &mut Live,
    code: &str,
    events: &EventSender,
) -> wasmtime::Result<()> {
    let Some(magic) = crate::packages::pip_magic(code) else { return run(live, code, events).await };
    let installed = magic.and_then(|(requirements, code)| {
        let mut all = crate::packages::placed_requirements(&spec.workspace);
        all.extend(requirements.iter().cloned());
        soulbox_engine::packages::validate(&all).map_err(|e| e.to_string())?;
        let set = inner.packages.resolve(&all).map_err(|e| e.to_string())?;
        crate::packages::place(&set, &spec.workspace).map_err(|e| e.to_string())?;
        let installed: Vec<String> =
            set.wheels.iter().map(|w| w.file.splitn(3, '-').take(2).collect::<Vec<_>>().join("-")).collect();
        Ok((installed, code))
    });
    match installed {
        Ok((installed, code)) => {
            let path = crate::packages::import_path_turn();
            let reactor = live.reactor()?;
            Python::run_internal(&mut live.store, &reactor, &path).await?;
            let _ = events
                .send(ExecutionEvent::Stdout { text: format!("Successfully installed {}\n", installed.join(" ")) });
            run(live, &code, events).await
        }
        Err(message) => {
            let error = CellError { name: "PipError".into(), value: message, traceback: String::new() };
            let _ = events.send(ExecutionEvent::Error(error));
            Ok(())
        }
    }
}

/// Runs one cell: the code is the turn itself; results and errors arrive through the door.
async fn run(live: &mut Live, code: &str, events: &EventSender) -> wasmtime::Result<()> {
    let seen = Arc::new(Seen::default());
    let (sender, door_seen) = (events.clone(), Arc::clone(&seen));
    let mut budget = ResultBudget::default();
    live.store.data_mut().door = Some(Box::new(move |frame: &[u8]| {
        budget.take(frame.len())?;
        match read_guest_frame(frame) {
            Some(GuestFrame::Result(result)) => {
                let _ = sender.send(ExecutionEvent::Result(result));
            }
            Some(GuestFrame::Error(error)) => {
                door_seen.error.store(true, Ordering::Relaxed);
                let _ = sender.send(ExecutionEvent::Error(error));
            }
            Some(GuestFrame::FiguresOpen) => door_seen.figures.store(true, Ordering::Relaxed),
            None => {}
        }
        Ok(())
    }));
    let reactor = live.reactor()?;
    let status = turn(&mut live.store, &reactor, code).await?;
    if status != 0 && !seen.error.load(Ordering::Relaxed) {
        // Ended before the exception hook ran: a syntax error (its traceback is on stderr) or
        // `sys.exit()` (nothing printed), which ends the turn, never the context.
        let stderr = String::from_utf8_lossy(&live.store.data().stderr.snapshot()).into_owned();
        let error = match error_from_traceback(&stderr) {
            Some(error) => error,
            None => {
                CellError { name: "SystemExit".into(), value: (status & 0xff).to_string(), traceback: String::new() }
            }
        };
        let _ = events.send(ExecutionEvent::Error(error));
    }
    if seen.figures.load(Ordering::Relaxed) {
        let reactor = live.reactor()?;
        Python::run_internal(&mut live.store, &reactor, FINISH).await?;
    }
    Ok(())
}

/// What a cell's frames have used of [`MAX_RESULT_BYTES_PER_CELL`] and
/// [`MAX_RESULTS_PER_CELL`].
#[derive(Debug, Default)]
struct ResultBudget {
    bytes: usize,
    frames: usize,
}

impl ResultBudget {
    /// Counts one frame of `len` bytes, or refuses it past the budget (the cell stops).
    fn take(&mut self, len: usize) -> Result<(), DoorRefused> {
        self.bytes = self.bytes.saturating_add(len);
        self.frames += 1;
        if self.bytes > MAX_RESULT_BYTES_PER_CELL || self.frames > MAX_RESULTS_PER_CELL {
            return Err(DoorRefused(format!(
                "rich results over the cell's budget ({} MiB, {MAX_RESULTS_PER_CELL} results)",
                MAX_RESULT_BYTES_PER_CELL >> 20
            )));
        }
        Ok(())
    }
}

/// What the door saw during a cell.
#[derive(Default)]
struct Seen {
    error: AtomicBool,
    figures: AtomicBool,
}

/// An error from a printed traceback, whose last line is `Name: value` (or just `Name`).
fn error_from_traceback(traceback: &str) -> Option<CellError> {
    let last = traceback.lines().rev().find(|l| !l.trim().is_empty())?;
    let (name, value) = last.split_once(": ").unwrap_or((last, ""));
    let is_name = !name.is_empty() && name.split('.').all(|part| part.chars().all(|c| c.is_alphanumeric() || c == '_'));
    is_name.then(|| CellError { name: name.to_owned(), value: value.to_owned(), traceback: traceback.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_budget_stops_at_its_bounds() {
        let mut budget = ResultBudget::default();
        budget.take(MAX_RESULT_BYTES_PER_CELL).unwrap();
        assert!(budget.take(1).is_err());
        let mut budget = ResultBudget::default();
        for _ in 0..MAX_RESULTS_PER_CELL {
            budget.take(1).unwrap();
        }
        assert!(budget.take(1).is_err());
    }

    #[test]
    fn reads_an_error_off_a_traceback() {
        let error = error_from_traceback("  File \"<turn 3>\", line 1\n    def f(:\nSyntaxError: invalid syntax\n");
        let error = error.unwrap();
        assert_eq!(error.name, "SyntaxError");
        assert_eq!(error.value, "invalid syntax");
        assert!(error_from_traceback("").is_none());
        assert!(error_from_traceback("some output (not a traceback)\n").is_none());
    }
}
