//! One execution, start to finish, on a worker thread.
//!
//! Fresh guest root, input files placed, fresh store (limits armed: memory limiter, epoch
//! deadline, fuel), fresh instance from the `InstancePre` (pooling allocator, copy-on-write
//! memory image), the interpreter's entry point, then the outcome classified, the output files
//! collected, and everything dropped. Nothing outlives the execution, so nothing leaks between
//! executions.

use crate::backend::Inner;
use crate::error::RuntimeError;
use crate::javascript::JavaScript;
use crate::python::{Python, layout};
use crate::ticker::EpochTicker;
use soulbox_engine::{ExecRequest, ExecResult, Limits, Outcome, OutputFile};
use soulbox_host_api::{CollectLimits, GuestConfig, GuestRoot, GuestState};
use std::time::{Duration, Instant};
use wasmtime::{InstancePre, Store, Trap};
use wasmtime_wasi::{I32Exit, ResourceTableError};

/// Exit status reported when the deadline stopped the guest (as `timeout(1)` does).
pub const EXIT_DEADLINE: i32 = 124;
/// Exit status reported when another limit stopped the guest (as for SIGKILL).
pub const EXIT_LIMIT: i32 = 137;
/// Exit status reported when the guest faulted (as for SIGABRT).
pub const EXIT_CRASH: i32 = 134;
/// Output files returned per execution, at most.
pub const MAX_OUTPUT_FILES: usize = 256;
/// Bytes of output files returned per execution, at most.
pub const MAX_OUTPUT_FILE_BYTES: u64 = 64 << 20;
/// Extra wall time allowed past the deadline before a guest blocked in a host call (a
/// `sleep`, say) is abandoned; running guest code is stopped by the epoch at the deadline.
const HOST_CALL_GRACE: Duration = Duration::from_millis(50);

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
}

thread_local! {
    /// Each worker thread drives its guests on its own single-threaded runtime.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread tokio runtime");
}

/// Runs `request` to completion. Blocks: call it on a worker thread.
pub(crate) fn execute(inner: &Inner, request: ExecRequest, admitted: Instant) -> Result<ExecResult, RuntimeError> {
    let prepared = inner.prepared(request.language)?;
    let scratch = inner.config.home.scratch_dir();
    std::fs::create_dir_all(&scratch).map_err(|e| RuntimeError::io(&scratch, e))?;
    let mount_points: &[&str] = match prepared.interpreter {
        Interpreter::Python(_) => &layout::MOUNT_POINTS,
        Interpreter::JavaScript => &[],
    };
    let mut root = GuestRoot::create_in(&scratch, mount_points)?;
    for file in &request.files {
        root.place(&file.path, &file.contents)?;
    }
    let mut store = new_store(inner, &prepared, &request, &root)?;
    let ran = RUNTIME.with(|runtime| {
        runtime.block_on(async {
            let deadline = request.limits.deadline + HOST_CALL_GRACE;
            tokio::time::timeout(deadline, run_guest(&mut store, &prepared, &request)).await
        })
    });
    let ended = classify(ran, &store);
    let collected =
        root.collect(CollectLimits { max_files: MAX_OUTPUT_FILES, max_total_bytes: MAX_OUTPUT_FILE_BYTES })?;
    if collected.truncated {
        tracing::warn!(max_files = MAX_OUTPUT_FILES, max_bytes = MAX_OUTPUT_FILE_BYTES, "output files truncated");
    }
    let state = store.data();
    Ok(ExecResult {
        stdout: String::from_utf8_lossy(&state.stdout.take()).into_owned(),
        stderr: String::from_utf8_lossy(&state.stderr.take()).into_owned(),
        exit_code: ended.exit_code,
        outcome: ended.outcome,
        error: ended.error,
        duration: admitted.elapsed(),
        fuel_used: fuel_used(&store, &request.limits),
        peak_memory_bytes: state.limiter.peak_bytes(),
        files: collected.files.into_iter().map(|(path, contents)| OutputFile { path, contents }).collect(),
        backend: "wasm".into(),
    })
}

fn new_store(
    inner: &Inner,
    prepared: &Prepared,
    request: &ExecRequest,
    root: &GuestRoot,
) -> Result<Store<GuestState>, RuntimeError> {
    let root_path = root.host_path();
    let (args, env, mounts) = match &prepared.interpreter {
        Interpreter::Python(python) => (Python::wasi_argv(), Python::env(request), python.mounts()),
        Interpreter::JavaScript => (JavaScript::argv(request), request.env.clone().into_iter().collect(), Vec::new()),
    };
    let limits = &request.limits;
    let state = GuestState::new(GuestConfig {
        args: &args,
        env: &env,
        stdin: request.stdin.clone(),
        mounts: &mounts,
        root: &root_path,
        stdout_cap: usize::try_from(limits.stdout_bytes).unwrap_or(usize::MAX),
        stderr_cap: usize::try_from(limits.stderr_bytes).unwrap_or(usize::MAX),
        memory_cap: limits.memory_bytes,
        open_files: limits.open_files,
    })?;
    let mut store = Store::new(&inner.engine, state);
    store.limiter(|state| &mut state.limiter);
    store.epoch_deadline_trap();
    store.set_epoch_deadline(EpochTicker::ticks_for(limits.deadline));
    if inner.config.settings.fuel {
        store.set_fuel(limits.fuel.unwrap_or(u64::MAX)).map_err(|e| RuntimeError::wasm(&e))?;
    }
    Ok(store)
}

async fn run_guest(store: &mut Store<GuestState>, prepared: &Prepared, request: &ExecRequest) -> wasmtime::Result<i32> {
    let instance = prepared.instance_pre.instantiate_async(&mut *store).await?;
    match &prepared.interpreter {
        Interpreter::Python(_) => {
            let env = Python::env(request);
            let prelude = Python::prelude(request, &env);
            Python::run(store, &instance, &prelude, &request.code).await
        }
        Interpreter::JavaScript => JavaScript::run(store, &instance, &JavaScript::argv(request)).await,
    }
}

/// How a guest ended, as the result reports it.
#[derive(Debug)]
struct Ended {
    outcome: Outcome,
    exit_code: i32,
    error: Option<String>,
}

impl Ended {
    fn completed(exit_code: i32) -> Self {
        Ended { outcome: Outcome::Completed, exit_code, error: None }
    }

    fn stopped(outcome: Outcome, error: impl Into<String>) -> Self {
        let exit_code = match outcome {
            Outcome::DeadlineExceeded => EXIT_DEADLINE,
            Outcome::Crashed => EXIT_CRASH,
            _ => EXIT_LIMIT,
        };
        Ended { outcome, exit_code, error: Some(error.into()) }
    }
}

fn classify(ran: Result<wasmtime::Result<i32>, tokio::time::error::Elapsed>, store: &Store<GuestState>) -> Ended {
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
    if error.downcast_ref::<ResourceTableError>().is_some() {
        return Ended::stopped(Outcome::OpenFileLimitExceeded, "open-file limit exceeded");
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Ended::stopped(Outcome::DeadlineExceeded, "deadline exceeded"),
        Some(Trap::OutOfFuel) => Ended::stopped(Outcome::FuelExhausted, "fuel exhausted"),
        _ if memory_hit => Ended::stopped(Outcome::MemoryExceeded, "memory limit exceeded"),
        Some(Trap::StackOverflow) => Ended::stopped(Outcome::Crashed, "stack overflow"),
        Some(trap) => Ended::stopped(Outcome::Crashed, format!("guest trapped: {trap}")),
        None => {
            tracing::debug!(error = format!("{error:#}"), "guest failed");
            Ended::stopped(Outcome::Crashed, format!("guest failed: {}", first_line(&error)))
        }
    }
}

fn first_line(error: &wasmtime::Error) -> String {
    format!("{error:#}").lines().next().unwrap_or_default().to_owned()
}

fn fuel_used(store: &Store<GuestState>, limits: &Limits) -> Option<u64> {
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
