//! JavaScript contexts: a fresh instance of the QuickJS snapshot begun with the sandbox's
//! environment, then given the driver in `kernel.js`. Each cell is `__soulbox.cell(code)`, then
//! the promise jobs, then a flush; then the host captures `__soulbox.report()`'s JSON line from
//! stdout (the tap is off, so it is never streamed as output) and turns it into events.

use super::{Live, context_store, start_failed};
use crate::backend::Inner;
use crate::error::RuntimeError;
use crate::execution;
use crate::javascript::{JavaScript, Stop, eval, run_event_loop};
use crate::language::{GuestModule, WasmLanguage};
use serde::Deserialize;
use soulbox_engine::kernel::{CellError, EventSender, ExecutionEvent, KernelSpec, RichResult};
use soulbox_host_api::GuestState;
use wasmtime::{Instance, Store};

/// The driver, evaluated once per context.
const DRIVER: &str = include_str!("kernel.js");

/// What `__soulbox.report()` writes.
#[derive(Deserialize)]
struct Report {
    result: Option<RichResult>,
    error: Option<CellError>,
}

/// Starts a JavaScript context for `spec` (blocking).
pub(super) fn start(inner: &Inner, spec: &KernelSpec) -> Result<(Store<GuestState>, Instance), RuntimeError> {
    let prepared = inner.prepared(GuestModule::JavaScript)?;
    let mut store = store(inner, spec)?;
    let instance = execution::block_on(async {
        let instance = prepared.instance_pre.instantiate_async(&mut store).await?;
        JavaScript::start_context(&mut store, &instance, spec.network.is_some()).await?;
        if !eval(&mut store, &instance, DRIVER).await? {
            wasmtime::bail!("the JavaScript kernel driver failed to load");
        }
        wasmtime::Result::<_>::Ok(instance)
    })
    .map_err(|e| start_failed(WasmLanguage::JavaScript, &e, &store))?;
    Ok((store, instance))
}

/// A store for a JavaScript context: the sandbox's environment, the workspace as `/`.
pub(super) fn store(inner: &Inner, spec: &KernelSpec) -> Result<Store<GuestState>, RuntimeError> {
    let env: Vec<(String, String)> = spec.env.clone().into_iter().collect();
    context_store(inner, &spec.workspace, &[], &JavaScript::context_argv(), &env, &[])
}

/// Gives the context's generators (`crypto`'s and `Math.random`'s) fresh host entropy (a fork:
/// their state was the source's).
pub(super) async fn reseed(live: &mut Live) -> wasmtime::Result<()> {
    if !eval(&mut live.store, &live.instance, &format!("__soulbox_reseed({})", crate::javascript::seed()?)).await? {
        wasmtime::bail!("the JavaScript context could not reseed");
    }
    Ok(())
}

/// Runs one cell, then its event loop until it is idle or `deadline` is near.
pub(super) async fn run(
    live: &mut Live,
    code: &str,
    events: &EventSender,
    deadline: std::time::Instant,
) -> wasmtime::Result<()> {
    let (store, instance) = (&mut live.store, &live.instance);
    let network = Some(&live.network).filter(|n| n.enabled());
    // The network is set for every cell: a context restored from a checkpoint carries the
    // setting of the context it was taken from. Module syntax becomes a script's (`esm.rs`);
    // the kernel makes a cell that awaits an async script itself.
    let code = crate::javascript::esm::to_script(code).code;
    let cell = format!("__soulbox_network({}); __soulbox.cell({})", network.is_some(), serde_json::to_string(&code)?);
    eval(store, instance, &cell).await?;
    run_event_loop(store, instance, Stop::BeforeDeadline(deadline), network).await?;
    eval(store, instance, "__soulbox.flush()").await?;
    let stdout = store.data().stdout.clone();
    stdout.set_tap(None);
    stdout.take();
    eval(store, instance, "__soulbox.report()").await?;
    let captured = stdout.take();
    let report: Report = serde_json::from_slice(&captured)
        .map_err(|e| wasmtime::format_err!("the JavaScript kernel's report is unreadable: {e}"))?;
    if let Some(error) = report.error {
        let _ = events.send(ExecutionEvent::Error(error));
    }
    if let Some(result) = report.result {
        let _ = events.send(ExecutionEvent::Result(RichResult { is_main_result: true, ..result }));
    }
    Ok(())
}
