//! Python contexts: a snapshot instance warmed like a stateless guest, then given the sandbox's
//! environment and `_soulbox_kernel.start(preload)`. Each cell is one `turn` calling
//! `_soulbox_kernel.cell(code)`; the kernel module sends results and errors through the door.

use super::{Live, forward_guest_event};
use crate::backend::Inner;
use crate::error::RuntimeError;
use crate::execution::{self, Interpreter, WARM_LIMITS};
use crate::python::{Python, layout, turn};
use soulbox_engine::Language;
use soulbox_engine::kernel::{EventSender, KernelSpec, Preload};
use soulbox_host_api::{GuestConfig, GuestState, prepare_root};
use wasmtime::{Instance, Store};

/// Starts a Python context for `spec` (blocking).
pub(super) fn start(inner: &Inner, spec: &KernelSpec) -> Result<(Store<GuestState>, Instance), RuntimeError> {
    let prepared = inner.prepared(Language::Python)?;
    let Interpreter::Python(python) = &prepared.interpreter else {
        return Err(RuntimeError::Wasm("the Python module is not a Python interpreter".into()));
    };
    prepare_root(&spec.workspace, &layout::MOUNT_POINTS)?;
    let (args, base_env, mounts) = (Python::wasi_argv(), Python::base_env(), python.mounts());
    let state = GuestState::new(GuestConfig {
        args: &args,
        env: &base_env,
        mounts: &mounts,
        root: &spec.workspace,
        limits: WARM_LIMITS,
    })?;
    let mut store = execution::new_store(inner, state)?;
    let env = Python::env_over(spec.env.clone());
    let preload = match spec.preload {
        Preload::Nothing => "nothing",
        Preload::DataScience => "data-science",
    };
    let instance = execution::block_on(async {
        let instance = prepared.instance_pre.instantiate_async(&mut store).await?;
        Python::run_internal(&mut store, &instance, Python::WARM).await?;
        Python::run_internal(&mut store, &instance, &Python::prelude(&[], &env)).await?;
        let start = format!("__import__(\"_soulbox_kernel\").start(\"{preload}\")");
        Python::run_internal(&mut store, &instance, &start).await?;
        wasmtime::Result::<_>::Ok(instance)
    })
    .map_err(|e| {
        let stderr = String::from_utf8_lossy(&store.data().stderr.take()).into_owned();
        RuntimeError::Wasm(format!("the Python context did not start: {e:#} {stderr}"))
    })?;
    Ok((store, instance))
}

/// Runs one cell.
pub(super) async fn run(live: &mut Live, code: &str, events: &EventSender) -> wasmtime::Result<()> {
    let sender = events.clone();
    live.store.data_mut().door = Some(Box::new(move |frame: &[u8]| forward_guest_event(&sender, frame)));
    let call = format!("__import__(\"_soulbox_kernel\").cell({})", serde_json::to_string(code)?);
    match turn(&mut live.store, &live.instance, &call).await? {
        0 => Ok(()),
        status => wasmtime::bail!("the Python context's cell driver failed (status {status})"),
    }
}
