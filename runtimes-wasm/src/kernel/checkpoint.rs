//! A live context's checkpoint and restore (what is captured: [`crate::checkpoint`]).
//!
//! Both run on a worker-pool thread like a cell, and a checkpoint holds the context's slot, so
//! it never sees a cell half-run: it waits for a running cell to end.

use super::{Live, javascript, python};
use crate::backend::Inner;
use crate::checkpoint::image::ContextImage;
use crate::checkpoint::{self, CheckpointError};
use crate::error::RuntimeError;
use crate::execution::{self, Interpreter};
use crate::language::{GuestModule, WasmLanguage};
use crate::ticker::EpochTicker;
use soulbox_engine::BackendError;
use soulbox_engine::kernel::{KernelImage, KernelSpec};

impl From<CheckpointError> for BackendError {
    fn from(error: CheckpointError) -> Self {
        match error {
            CheckpointError::HeldOpen { .. } => BackendError::NotCheckpointable(error.to_string()),
            CheckpointError::Corrupt(_) | CheckpointError::OtherModule { .. } => {
                BackendError::BadCheckpoint(error.to_string())
            }
            CheckpointError::Wasm(_) => BackendError::Internal(error.to_string()),
        }
    }
}

/// Captures the context in `slot` (blocking; on a worker thread).
pub(super) fn capture(
    inner: &Inner,
    spec: &KernelSpec,
    slot: &tokio::sync::Mutex<Option<Live>>,
) -> Result<KernelImage, BackendError> {
    let prepared = inner.prepared(GuestModule::for_kernel(spec)?)?;
    let pristine = prepared.pristine(inner)?;
    let mut slot = slot.blocking_lock();
    let live = slot.as_mut().ok_or_else(|| {
        BackendError::NotCheckpointable("the context's interpreter was lost; run a cell to restart it first".into())
    })?;
    if let Some(image) = checkpoint::unchanged(&live.log) {
        let kept = image.memory.len();
        return Ok(KernelImage::from_parts(spec.language, image.encode()).with_kept(kept));
    }
    // Python's own cache of open fonts is closed only when something is open (a turn costs
    // a fraction of a millisecond, and changes pages the checkpoint then stores).
    let python = WasmLanguage::of(spec.language)? == WasmLanguage::Python;
    if python && !live.store.data_mut().held_open().is_empty() {
        arm_for_own_turn(inner, live)?;
        execution::block_on(python::release(live)).map_err(|e| RuntimeError::wasm(&e))?;
    }
    let image = checkpoint::capture(
        &mut live.store,
        &live.instance,
        pristine,
        &prepared.module,
        &mut live.log,
        live.overlay.as_ref(),
    )?;
    Ok(KernelImage::from_parts(spec.language, image.encode()).with_kept(live.log.kept()))
}

/// Gives a live context the deadline and fuel of SoulBox's own turns (its last cell's are
/// spent), with no output tap.
fn arm_for_own_turn(inner: &Inner, live: &mut Live) -> Result<(), RuntimeError> {
    live.store.epoch_deadline_trap();
    live.store.set_epoch_deadline(EpochTicker::ticks_for(execution::WARM_DEADLINE));
    if inner.config.settings.fuel {
        live.store.set_fuel(u64::MAX).map_err(|e| RuntimeError::wasm(&e))?;
    }
    Ok(())
}

/// Rebuilds a context from `image` (blocking; on a worker thread): a fresh instance in a world
/// made as the context's first one was, given the captured state. No guest code runs. An
/// image the engine restores into several kernels ([`KernelImage::shared`]) has its pages
/// mapped from one shared copy where the platform allows ([`checkpoint::cow`]).
pub(super) fn restore(inner: &Inner, spec: &KernelSpec, image: &KernelImage) -> Result<Live, BackendError> {
    if image.language != spec.language {
        return Err(BackendError::BadCheckpoint(format!(
            "the checkpoint is of a {} context, not {}",
            image.language, spec.language
        )));
    }
    let decoded = ContextImage::decode(&image.parts)?;
    let language = WasmLanguage::of(spec.language)?;
    let prepared = inner.prepared(GuestModule::for_kernel(spec)?)?;
    let mut store = match (&prepared.interpreter, language) {
        (Interpreter::Python(python), WasmLanguage::Python) => python::store(inner, spec, python)?,
        (Interpreter::JavaScript, WasmLanguage::JavaScript) => javascript::store(inner, spec)?,
        _ => return Err(RuntimeError::Wasm(format!("the {language} module runs another interpreter")).into()),
    };
    let pages = match image.shared && inner.config.share_fork_pages {
        true => shared_pages(inner, &prepared, image, &decoded),
        false => None,
    };
    let instance =
        execution::block_on(prepared.instance_pre.instantiate_async(&mut store)).map_err(|e| RuntimeError::wasm(&e))?;
    let overlay = checkpoint::restore(&mut store, &instance, decoded, &prepared.module, pages)?;
    if overlay.is_some() {
        inner.contexts_mapped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let network = crate::egress::GuestNetwork::new(spec.network.as_ref());
    Ok(Live::new(inner, language, store, instance, overlay, network)?)
}

/// The shared page file of `image` (made by the first of its restores), or `None` where it
/// cannot be made: the restore then copies.
fn shared_pages(
    inner: &Inner,
    prepared: &execution::Prepared,
    image: &KernelImage,
    decoded: &ContextImage,
) -> Option<std::sync::Arc<checkpoint::cow::PageFile>> {
    let pristine = prepared.pristine(inner).ok()?;
    let pages =
        inner.shared_pages.get_or_build(&image.parts, || checkpoint::cow::PageFile::build(decoded, pristine.image()));
    pages.inspect_err(|reason| tracing::debug!(%reason, "no shared page file; copying")).ok()
}

/// Reseeds the context's random generators from fresh entropy (a fork; blocking, on a worker
/// thread). No user code runs.
pub(super) fn diverge(spec: &KernelSpec, slot: &tokio::sync::Mutex<Option<Live>>) -> Result<(), BackendError> {
    let language = WasmLanguage::of(spec.language)?;
    let mut slot = slot.blocking_lock();
    let live = slot.as_mut().ok_or_else(|| BackendError::Internal("the restored context is gone".into()))?;
    live.log.touch();
    let reseeded = execution::block_on(async {
        match language {
            WasmLanguage::Python => python::reseed(live).await,
            WasmLanguage::JavaScript => javascript::reseed(live).await,
        }
    });
    reseeded.map_err(|e| RuntimeError::wasm(&e))?;
    Ok(())
}
