//! Rewinding a used guest (Python or JavaScript) to a new guest's state, instead of making a
//! new one.
//!
//! Most of what a fresh execution of a short program costs is not the program. Instantiating
//! takes a pool slot and builds the function table's references; the guest then takes a
//! copy-on-write fault on every snapshot page it writes (a Python guest's warm-up alone writes
//! hundreds; a JavaScript `console.log(1 + 1)` takes about thirty page faults, most in its
//! heap); and dropping the instance resets its slot, which hands most written pages back to
//! the kernel, so the next guest in that slot faults on them again. In a
//! multi-threaded process every one of those faults and hand-backs also interrupts the other
//! cores (a TLB shootdown).
//!
//! A guest's whole state is its linear memory and its mutable globals. Its tables never change
//! (see [`crate::checkpoint`]), and the host's side (the WASI world, pipes, limiter, guest
//! root) is built anew for every execution anyway. So after an execution a worker rewinds its
//! guest in place:
//! - every page the guest may have written since its slot was mapped is copied back from the
//!   module's pristine instance ([`crate::checkpoint::Pristine`]). The kernel's write
//!   tracking tells which ([`tracker::WriteTracker`]), or, where it is not available,
//!   pagemap: an anonymous page; a page never written is still the image file's
//!   ([`crate::checkpoint::dirty::written_chunks`]);
//! - every mutable global is set back to its initial value;
//! - the store gets new host state and the warm-up deadline.
//!
//! The pages stay mapped and private, so the next execution writes them without a fault. Then
//! a Python guest runs the same warm-up turns a new guest runs, which reseed its random state
//! from fresh entropy; a JavaScript guest's memory is the never-run instance's, so it reads its
//! argv, env and entropy from the WASI world it is given for its next request, as a new one does.
//!
//! Invariant: to guest code, a rewound guest is a new guest. It has the same memory bytes, the
//! same globals, the same (unchanging) tables and the same WASI world. A guest is dropped
//! instead, so wasmtime resets its slot, when:
//! - its execution did not end normally;
//! - its memory grew (wasm memory cannot shrink, and the guest can see its size);
//! - it has written more than [`MAX_REWIND_BYTES`] since its slot was mapped (every rewind copies
//!   all of it back);
//! - neither its write tracker nor pagemap can say what it wrote.

pub(crate) mod tracker;

use crate::checkpoint::dirty::{CHUNK_BYTES, runs, written_chunks};
use crate::checkpoint::{Pristine, state_memory};
use tracker::WriteTracker;

/// The most written memory a guest may have and still be rewound. A page copied back stays the
/// slot's private page, so a guest's written set only grows, and every later rewind copies all
/// of it: a guest that once ran pandas (about 8 MiB written) would make every `print` after it
/// pay for 8 MiB (in `report`, fresh executions/s fell from about 1,200 to 550). Past this, the
/// guest is dropped and its replacement starts again from what the warm-up writes (about
/// 1.2 MiB for Python).
pub const MAX_REWIND_BYTES: usize = 4 << 20;

/// Why a guest was dropped instead of rewound (logged at debug level).
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotRewound {
    #[error("its memory grew from {pristine} to {live} bytes")]
    Grown { pristine: usize, live: usize },
    #[error("it wrote {0} bytes, more than a rewind copies")]
    TooMuchWritten(usize),
    #[error("neither its write tracker nor pagemap can say which pages it wrote")]
    WrittenUnknown,
    #[error("{0}")]
    Failed(String),
}

/// Sets `instance`'s memory and mutable globals back to `pristine`'s. `tracker`, when the
/// memory has one, tells which pages were written; when it has none, pagemap does, and the
/// kernel's tracking starts (a guest rewound once is likely to be rewound again). The host
/// state is the caller's to replace.
pub(crate) fn rewind_instance(
    store: &mut wasmtime::Store<soulbox_host_api::GuestState>,
    instance: &wasmtime::Instance,
    pristine: &Pristine,
    tracker: &mut Option<WriteTracker>,
) -> Result<(), NotRewound> {
    let memory = state_memory(&mut *store, instance).map_err(|e| NotRewound::Failed(e.to_string()))?;
    let original = pristine.image();
    let live = memory.data_mut(&mut *store);
    if live.len() != original.len() {
        return Err(NotRewound::Grown { pristine: original.len(), live: live.len() });
    }
    let written = match tracker {
        Some(tracker) => tracker.written_chunks(live),
        None => written_chunks(live),
    };
    let written = written.ok_or(NotRewound::WrittenUnknown)?;
    if written.len() * CHUNK_BYTES > MAX_REWIND_BYTES {
        return Err(NotRewound::TooMuchWritten(written.len() * CHUNK_BYTES));
    }
    for (first, count) in runs(&written) {
        let range = first * CHUNK_BYTES..(first + count) * CHUNK_BYTES;
        live[range.clone()].copy_from_slice(&original[range]);
    }
    if tracker.is_none() {
        *tracker = WriteTracker::start(live, written);
    }
    pristine.reset_globals(store, instance).map_err(|e| NotRewound::Failed(e.to_string()))
}
