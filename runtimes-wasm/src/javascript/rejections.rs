//! Unhandled promise rejections, reported as Node reports them.
//!
//! `qjs` installs QuickJS-libc's rejection tracker when it starts (so every guest of the
//! snapshot has it): a promise rejected with no handler is added to the thread state's
//! `rejected_promise_list`, and taken off again if a handler is attached later. QuickJS-libc
//! checks that list only in its own loop (`js_std_loop`, which the host does not run, and which
//! would `exit(1)`), so the host checks it instead, at the same point Node does: after each
//! turn's promise jobs have drained. Each entry's reason is printed on stderr as
//! `Uncaught (in promise) ` and the error with its stack (`js_std_dump_error1`, as an uncaught
//! exception prints), then handed back to the tracker as handled, which frees the entry.
//!
//! The list is read in guest memory: its head is the fifth `list_head` of `JSThreadState`
//! (after the rw-handler, signal-handler, timer and port lists), an entry is a `list_head`
//! followed by the promise and the reason (NaN-boxed, 8 bytes each). That layout belongs to the
//! pinned reactor (its SHA-256 is checked before anything runs); [`Rejections::find`] checks
//! that the head it finds is a well-formed list and refuses the guest otherwise, so a reactor
//! laid out differently fails loudly instead of being misread.

use super::{eval, free, malloc, qjs_context, qjs_runtime};
use soulbox_host_api::GuestState;
use wasmtime::{Instance, Memory, Store};

/// Offset of `rejected_promise_list` in `JSThreadState` on wasm32 (four `list_head`s before it).
const LIST_OFFSET: u32 = 4 * 8;
/// Offsets in a `JSRejectedPromiseEntry`: the link's `next`, the promise, the reason.
const NEXT_OFFSET: u32 = 4;
const PROMISE_OFFSET: u32 = 8;
const REASON_OFFSET: u32 = 16;
/// `js_std_cmd`'s command that returns the runtime's opaque pointer (the thread state).
const GET_OPAQUE: i32 = 0;
/// Most entries reported in one check (a loop rejecting thousands of promises prints these and
/// a count of the rest).
const MAX_REPORTED: usize = 16;

/// Where a guest's list of unhandled rejections is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rejections {
    head: u32,
}

impl Rejections {
    /// Finds the list in `instance` (one lookup per loop: the thread state never moves).
    pub(crate) async fn find(store: &mut Store<GuestState>, instance: &Instance) -> wasmtime::Result<Self> {
        let context = qjs_context(store, instance).await?;
        let runtime = qjs_runtime(store, instance, context).await?;
        // `js_std_cmd(int cmd, ...)` is variadic: its extra arguments are read from memory.
        let varargs = malloc(store, instance, &runtime.to_le_bytes()).await?;
        let state = instance
            .get_typed_func::<(i32, i32), i32>(&mut *store, "soulbox_std_cmd")?
            .call_async(&mut *store, (GET_OPAQUE, varargs))
            .await?;
        free(store, instance, varargs).await?;
        let head = u32::try_from(state)? + LIST_OFFSET;
        let memory = memory(store, instance)?;
        // A list_head is `{ prev, next }`; an empty list points at itself both ways, and a
        // non-empty one's neighbours point back at the head.
        let (prev, next) = (read_u32(store, memory, head)?, read_u32(store, memory, head + NEXT_OFFSET)?);
        let well_formed = (prev == head && next == head)
            || (read_u32(store, memory, next)? == head && read_u32(store, memory, prev + NEXT_OFFSET)? == head);
        if state == 0 || !well_formed {
            wasmtime::bail!("the JavaScript runtime's rejection list is not where SoulBox expects it");
        }
        Ok(Rejections { head })
    }

    /// Prints and clears the rejections no handler took since the last check; true if any.
    pub(crate) async fn report(&self, store: &mut Store<GuestState>, instance: &Instance) -> wasmtime::Result<bool> {
        let memory = memory(store, instance)?;
        let mut entry = read_u32(store, memory, self.head + NEXT_OFFSET)?;
        if entry == self.head {
            return Ok(false);
        }
        let context = qjs_context(store, instance).await?;
        let dump = instance.get_typed_func::<(i32, i64), ()>(&mut *store, "soulbox_dump_error1")?;
        let tracker =
            instance.get_typed_func::<(i32, i64, i64, i32, i32), ()>(&mut *store, "soulbox_track_rejection")?;
        let mut reported = 0;
        while entry != self.head {
            let promise = read_i64(store, memory, entry + PROMISE_OFFSET)?;
            let reason = read_i64(store, memory, entry + REASON_OFFSET)?;
            if reported < MAX_REPORTED {
                eval(store, instance, "std.err.puts('Uncaught (in promise) ')").await?;
                dump.call_async(&mut *store, (context, reason)).await?;
            }
            reported += 1;
            // Handled now: the tracker takes the entry off the list and frees it.
            tracker.call_async(&mut *store, (context, promise, reason, 1, 0)).await?;
            let next = read_u32(store, memory, self.head + NEXT_OFFSET)?;
            if next == entry {
                wasmtime::bail!("the JavaScript runtime kept a rejection the host handed back");
            }
            entry = next;
        }
        if reported > MAX_REPORTED {
            let more = reported - MAX_REPORTED;
            eval(store, instance, &format!("std.err.puts('... and {more} more unhandled rejections\\n')")).await?;
        }
        eval(store, instance, "std.err.flush()").await?;
        Ok(true)
    }
}

fn memory(store: &mut Store<GuestState>, instance: &Instance) -> wasmtime::Result<Memory> {
    instance.get_memory(&mut *store, "memory").ok_or_else(|| wasmtime::format_err!("no memory export"))
}

fn read_u32(store: &Store<GuestState>, memory: Memory, at: u32) -> wasmtime::Result<u32> {
    let mut bytes = [0u8; 4];
    memory.read(store, at as usize, &mut bytes)?;
    Ok(u32::from_le_bytes(bytes))
}

fn read_i64(store: &Store<GuestState>, memory: Memory, at: u32) -> wasmtime::Result<i64> {
    let mut bytes = [0u8; 8];
    memory.read(store, at as usize, &mut bytes)?;
    Ok(i64::from_le_bytes(bytes))
}
