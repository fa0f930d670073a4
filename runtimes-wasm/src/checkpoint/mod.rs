//! Checkpoints of a context's instance: capture between cells, restore into a fresh instance.
//!
//! A context's whole state is small and explicit: its linear memory, its mutable globals and
//! the host's side of its world. `capture` saves the memory's size, the pages that differ
//! from the module's initial image ([`dirty`]), every mutable global (exported for this by
//! [`exports`], private ones included) and the guest's monotonic clock, into a
//! [`ContextImage`]. A live context keeps a [`log`] of its checkpoints, so that a checkpoint
//! after a cell is the one before plus a part holding what the cell changed. `restore`
//! instantiates the same module afresh (copy-on-write from its image), grows the memory,
//! writes the pages (or, for an image restored into several kernels, maps one shared copy of
//! them: `cow`), sets the globals and continues the clock.
//!
//! What the host keeps for a context is rebuilt, not saved: its WASI world is made the way the
//! context was first made (the same arguments, environment and preopens in the same order, so
//! the guest's own table of them, in its memory, stays true); the door and the limits are set
//! per cell anyway. What cannot be rebuilt is refused, never dropped: a context holding an
//! open file or directory cannot be checkpointed, and says so ([`CheckpointError::HeldOpen`]).
//! Tables are not saved: neither interpreter changes its tables after instantiation (it has no
//! `table.set`, `table.grow` or similar instruction; [`exports::table_mutations`] counts them
//! and a test checks the shipped modules).
//!
//! Invariant: an image restores only into the module it came from (its key is in the header),
//! and a restore either completes or leaves nothing behind.

pub(crate) mod cow;
pub mod dirty;
pub mod exports;
pub mod image;
pub mod log;
pub(crate) mod trim;

use exports::{GLOBAL_EXPORT_PREFIX, MEMORY_EXPORT};
use image::{ContextImage, GlobalValue, Header};
pub(crate) use log::CaptureLog;
use soulbox_host_api::GuestState;
use std::sync::Arc;
use wasmtime::{Instance, Memory, Store, Val};

/// Why a context could not be checkpointed or restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The context holds something a checkpoint cannot carry.
    #[error(
        "the context holds {} open file(s) ({}) and {directories} open directory(ies); close them (for example with a `with` block) and checkpoint again",
        files.len(),
        files.join(", ")
    )]
    HeldOpen {
        /// Open files, by the path the guest sees.
        files: Vec<String>,
        /// Open directories beyond the preopened ones.
        directories: usize,
    },
    /// The image is not a whole, intact context image.
    #[error("the checkpoint is unusable: {0}")]
    Corrupt(String),
    /// The image belongs to another build of the interpreter.
    #[error("the checkpoint was taken with another interpreter build ({found}); this server runs {expected}")]
    OtherModule {
        /// The module this backend runs.
        expected: String,
        /// The module the image came from.
        found: String,
    },
    /// wasmtime refused an operation on the instance.
    #[error("wasmtime: {0}")]
    Wasm(String),
}

impl CheckpointError {
    fn wasm(error: &wasmtime::Error) -> Self {
        CheckpointError::Wasm(format!("{error:#}"))
    }
}

/// A never-run instance of a module: its memory is the module's initial image, which captures
/// compare against and rewinds ([`crate::rewind`]) copy back from, and its mutable globals'
/// initial values. Nothing runs in it or writes to it once made, so its pages stay the image's
/// shared pages, and any thread may read it without a lock.
pub(crate) struct Pristine {
    /// Kept only so that the instance, and the memory `image` points into, stay alive.
    _store: Store<GuestState>,
    image: *const u8,
    image_len: usize,
    globals: Vec<(u32, GlobalValue)>,
}

// SAFETY: after `Pristine::new` nothing uses the store again (no method touches `_store`), so
// sharing or sending a `Pristine` shares or sends only reads of `image` and of `globals`. The
// memory `image` points into belongs to the store's instance: a pool slot, which does not move,
// and which nothing grows or writes (no guest code runs in it), until the `Pristine` is dropped.
#[allow(unsafe_code)]
unsafe impl Send for Pristine {}
// SAFETY: as for `Send`: every `&self` method only reads memory that nothing writes.
#[allow(unsafe_code)]
unsafe impl Sync for Pristine {}

impl Pristine {
    /// Wraps a freshly instantiated, never-run instance.
    pub(crate) fn new(mut store: Store<GuestState>, instance: &Instance) -> Result<Self, CheckpointError> {
        let memory = state_memory(&mut store, instance)?;
        let (image, image_len) = (memory.data_ptr(&store).cast_const(), memory.data_size(&store));
        let globals = globals(&mut store, instance)?;
        Ok(Pristine { _store: store, image, image_len, globals })
    }

    /// The module's initial memory.
    #[allow(unsafe_code)]
    pub(crate) fn image(&self) -> &[u8] {
        // SAFETY: `image` and `image_len` describe the pristine instance's memory, which stays
        // mapped, unmoved and unwritten while `self` lives (see `unsafe impl Send`).
        unsafe { std::slice::from_raw_parts(self.image, self.image_len) }
    }

    /// Sets every mutable global of `instance` (another instance of the same module) back to
    /// its initial value.
    pub(crate) fn reset_globals(
        &self,
        store: &mut Store<GuestState>,
        instance: &Instance,
    ) -> Result<(), CheckpointError> {
        set_globals(store, instance, &self.globals)
    }
}

/// Captures `instance`'s state (between cells: no guest code is running), bringing the
/// context's `log` up to date: the image holds the log's parts, so it shares all but the
/// newest with the context's previous checkpoint.
pub(crate) fn capture(
    store: &mut Store<GuestState>,
    instance: &Instance,
    pristine: &Pristine,
    module: &str,
    log: &mut CaptureLog,
    mapped: Option<&cow::Overlay>,
) -> Result<ContextImage, CheckpointError> {
    let held = store.data_mut().held_open();
    if !held.is_empty() {
        return Err(CheckpointError::HeldOpen { files: held.files, directories: held.directories });
    }
    let memory = state_memory(store, instance)?;
    let live = memory.data(&*store);
    let mapped = mapped.into_iter().flat_map(cow::Overlay::chunks);
    log.record(live, &dirty::changed_chunks(live, pristine.image(), mapped));
    let header = Header {
        module: module.to_owned(),
        memory_pages: memory.size(&*store),
        globals: globals(store, instance)?,
        parts: log.parts().iter().map(|(chunks, _)| chunks.clone()).collect(),
        monotonic_ns: store.data().clock.now_ns(),
    };
    log.taken(header.clone());
    Ok(ContextImage { header, memory: log.parts().iter().map(|(_, bytes)| Arc::clone(bytes)).collect() })
}

/// The context's last checkpoint again, if no guest code ran since `log` took it (its clock
/// restores to then: the guest saw no time pass after it).
pub(crate) fn unchanged(log: &CaptureLog) -> Option<ContextImage> {
    let header = log.unchanged()?.clone();
    Some(ContextImage { header, memory: log.parts().iter().map(|(_, bytes)| Arc::clone(bytes)).collect() })
}

/// Makes a fresh, never-run `instance` of `module` the context `image` captured. Given `shared`
/// (the image's pages in a shared file), it maps them rather than copying where it can, and
/// returns the overlay, which must be dropped before `store`.
pub(crate) fn restore(
    store: &mut Store<GuestState>,
    instance: &Instance,
    image: ContextImage,
    module: &str,
    shared: Option<Arc<cow::PageFile>>,
) -> Result<Option<cow::Overlay>, CheckpointError> {
    let ContextImage { header, memory: data } = image;
    if header.module != module {
        return Err(CheckpointError::OtherModule { expected: module.to_owned(), found: header.module.clone() });
    }
    let memory = state_memory(store, instance)?;
    let pages = memory.size(&*store);
    if header.memory_pages < pages {
        return Err(CheckpointError::Corrupt(format!(
            "its memory ({} pages) is smaller than the module's initial memory ({pages} pages)",
            header.memory_pages
        )));
    }
    let chunks =
        usize::try_from(header.memory_pages).unwrap_or(usize::MAX).saturating_mul(WASM_PAGE / dirty::CHUNK_BYTES);
    let past_the_end = header
        .parts
        .iter()
        .flatten()
        .flat_map(|&(range, mask)| image::chunks_of(range, mask))
        .find(|&i| i as usize >= chunks);
    if let Some(index) = past_the_end {
        return Err(CheckpointError::Corrupt(format!("chunk {index} lies past its memory's end")));
    }
    memory.grow(&mut *store, header.memory_pages - pages).map_err(|e| CheckpointError::wasm(&e))?;
    let live = memory.data_mut(&mut *store);
    // SAFETY: `live` is the whole memory of `instance`, a pool slot, and the overlay goes to
    // the caller, who drops it before the store (the contract this function states).
    #[allow(unsafe_code)]
    let overlay = shared.and_then(|file| match unsafe { cow::Overlay::map(live, file) } {
        Ok(overlay) => Some(overlay),
        Err(reason) => {
            tracing::debug!(%reason, "copying the checkpoint's pages instead of mapping them");
            None
        }
    });
    if overlay.is_none() {
        let parts: Vec<log::Part> = header.parts.iter().cloned().zip(data).collect();
        log::apply(memory.data_mut(&mut *store), &parts);
    }
    set_globals(store, instance, &header.globals)?;
    store.data().clock.continue_from(header.monotonic_ns);
    Ok(overlay)
}

/// Sets `instance`'s mutable globals, by absolute index, to `values`.
fn set_globals(
    store: &mut Store<GuestState>,
    instance: &Instance,
    values: &[(u32, GlobalValue)],
) -> Result<(), CheckpointError> {
    for &(index, value) in values {
        let name = format!("{GLOBAL_EXPORT_PREFIX}{index}");
        let global = instance
            .get_global(&mut *store, &name)
            .ok_or_else(|| CheckpointError::Corrupt(format!("the module has no mutable global {index}")))?;
        global.set(&mut *store, to_val(value)).map_err(|e| CheckpointError::wasm(&e))?;
    }
    Ok(())
}

/// Bytes in a wasm page.
const WASM_PAGE: usize = 64 << 10;

/// The memory, through the export [`exports::export_state`] added.
pub(crate) fn state_memory(store: &mut Store<GuestState>, instance: &Instance) -> Result<Memory, CheckpointError> {
    instance
        .get_memory(&mut *store, MEMORY_EXPORT)
        .ok_or_else(|| CheckpointError::Wasm(format!("the module does not export `{MEMORY_EXPORT}`")))
}

/// Every mutable global, by absolute index.
fn globals(store: &mut Store<GuestState>, instance: &Instance) -> Result<Vec<(u32, GlobalValue)>, CheckpointError> {
    let exported: Vec<(u32, wasmtime::Global)> = instance
        .exports(&mut *store)
        .filter_map(|export| {
            let index = export.name().strip_prefix(GLOBAL_EXPORT_PREFIX)?.parse().ok()?;
            Some((index, export.into_global()?))
        })
        .collect();
    let mut values = Vec::with_capacity(exported.len());
    for (index, global) in exported {
        let value = match global.get(&mut *store) {
            Val::I32(v) => GlobalValue::I32(v),
            Val::I64(v) => GlobalValue::I64(v),
            Val::F32(v) => GlobalValue::F32(v),
            Val::F64(v) => GlobalValue::F64(v),
            Val::V128(v) => GlobalValue::V128(v.as_u128()),
            other => {
                return Err(CheckpointError::Wasm(format!(
                    "global {index} holds a reference ({other:?}), which cannot be saved"
                )));
            }
        };
        values.push((index, value));
    }
    values.sort_by_key(|&(index, _)| index);
    Ok(values)
}

fn to_val(value: GlobalValue) -> Val {
    match value {
        GlobalValue::I32(v) => Val::I32(v),
        GlobalValue::I64(v) => Val::I64(v),
        GlobalValue::F32(v) => Val::F32(v),
        GlobalValue::F64(v) => Val::F64(v),
        GlobalValue::V128(v) => Val::V128(v.into()),
    }
}
