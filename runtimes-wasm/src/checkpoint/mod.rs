//! Checkpoints of a context's instance: capture between cells, restore into a fresh instance.
//!
//! A context's whole state is small and explicit: its linear memory, its mutable globals and
//! the host's side of its world. `capture` saves the memory's size, the pages that differ
//! from the module's initial image ([`dirty`]), every mutable global (exported for this by
//! [`exports`], private ones included) and the guest's monotonic clock, into a
//! [`ContextImage`]. `restore` instantiates the same module afresh (copy-on-write from its
//! image), grows the memory, writes the pages, sets the globals and continues the clock.
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

pub mod dirty;
pub mod exports;
pub mod image;

use exports::{GLOBAL_EXPORT_PREFIX, MEMORY_EXPORT};
use image::{ContextImage, GlobalValue, Header};
use soulbox_host_api::GuestState;
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

/// A never-run instance of a module: its memory is the module's initial image, which a
/// capture compares against. Its pages stay the image's shared pages (it is only read).
pub(crate) struct Pristine {
    store: Store<GuestState>,
    memory: Memory,
}

impl Pristine {
    /// Wraps a freshly instantiated, never-run instance.
    pub(crate) fn new(mut store: Store<GuestState>, instance: &Instance) -> Result<Self, CheckpointError> {
        let memory = state_memory(&mut store, instance)?;
        Ok(Pristine { store, memory })
    }

    fn image(&self) -> &[u8] {
        self.memory.data(&self.store)
    }
}

/// Captures `instance`'s state (between cells: no guest code is running).
pub(crate) fn capture(
    store: &mut Store<GuestState>,
    instance: &Instance,
    pristine: &Pristine,
    module: &str,
) -> Result<ContextImage, CheckpointError> {
    let held = store.data_mut().held_open();
    if !held.is_empty() {
        return Err(CheckpointError::HeldOpen { files: held.files, directories: held.directories });
    }
    let memory = state_memory(store, instance)?;
    let live = memory.data(&*store);
    let changed = dirty::changed_chunks(live, pristine.image());
    let mut data = Vec::with_capacity(changed.len() * dirty::CHUNK_BYTES);
    for &index in &changed {
        let start = index as usize * dirty::CHUNK_BYTES;
        data.extend_from_slice(&live[start..start + dirty::CHUNK_BYTES]);
    }
    let header = Header {
        module: module.to_owned(),
        memory_pages: memory.size(&*store),
        globals: globals(store, instance)?,
        chunks: image::runs(&changed),
        monotonic_ns: store.data().clock.now_ns(),
    };
    Ok(ContextImage { header, data })
}

/// Makes a fresh, never-run `instance` of `module` the context `image` captured.
pub(crate) fn restore(
    store: &mut Store<GuestState>,
    instance: &Instance,
    image: &ContextImage,
    module: &str,
) -> Result<(), CheckpointError> {
    let header = &image.header;
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
    memory.grow(&mut *store, header.memory_pages - pages).map_err(|e| CheckpointError::wasm(&e))?;
    let live = memory.data_mut(&mut *store);
    for (index, chunk) in header.chunk_indices().zip(image.data.chunks_exact(dirty::CHUNK_BYTES)) {
        let start = index as usize * dirty::CHUNK_BYTES;
        let target = live
            .get_mut(start..start + dirty::CHUNK_BYTES)
            .ok_or_else(|| CheckpointError::Corrupt(format!("chunk {index} lies past its memory's end")))?;
        target.copy_from_slice(chunk);
    }
    for &(index, value) in &header.globals {
        let name = format!("{GLOBAL_EXPORT_PREFIX}{index}");
        let global = instance
            .get_global(&mut *store, &name)
            .ok_or_else(|| CheckpointError::Corrupt(format!("the module has no mutable global {index}")))?;
        global.set(&mut *store, to_val(value)).map_err(|e| CheckpointError::wasm(&e))?;
    }
    store.data().clock.continue_from(header.monotonic_ns);
    Ok(())
}

/// The memory, through the export [`exports::export_state`] added.
fn state_memory(store: &mut Store<GuestState>, instance: &Instance) -> Result<Memory, CheckpointError> {
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
