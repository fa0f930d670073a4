//! What a SoulBox guest may reach, and nothing more.
//!
//! Capabilities are denied by default: a guest gets no network, no host files, no host
//! environment and no host functions beyond the ones listed here.
//!
//! - [`GuestRoot`]: the guest's private, writable file system root (a fresh host directory per
//!   execution). It is also the workspace: input files are placed in it and the files the guest
//!   writes there are collected afterwards, all through `cap-std`, so `..` and symlinks cannot
//!   leave it.
//! - [`ReadOnlyMount`]: a host directory the guest may read at a fixed guest path (the Python
//!   standard library).
//! - [`CappedOutput`]: stdout/stderr capture that keeps at most a cap and then stops the guest;
//!   [`GuestStdin`]: stdin the host can set up to the moment the guest runs.
//! - [`GuestLimiter`]: linear-memory cap and peak tracking.
//! - [`GuestState`] and [`add_to_linker`]: the store data a guest runs with, and the imports it
//!   may call (WASI preview 1 plus `host.call`, the door: "no host" unless a [`DoorHandler`]
//!   is set, which a stateful kernel uses to send rich results to the host, or an [`Egress`],
//!   which answers a guest's outbound HTTP requests under the backend's network policy).
//!
//! Randomness and the wall clock are WASI's defaults (a fresh random seed per guest, the real
//! time); the monotonic clock is SoulBox's [`GuestClock`], which a restored context continues.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod clock;
mod guest_root;
mod input;
mod limiter;
mod output;
mod state;

pub use clock::GuestClock;
pub use guest_root::{CollectLimits, Collected, GuestRoot, GuestRootError, RESERVED_DIRS, ROOT_PREFIX, prepare_root};
pub use input::GuestStdin;
pub use limiter::GuestLimiter;
pub use output::{CappedOutput, OutputTap};
pub use state::{
    DoorHandler, DoorRefused, Egress, GuestConfig, GuestLimits, GuestState, HOST_FAULT, HeldOpen, HostApiError,
    MAX_DOOR_ANSWER_BYTES, MAX_DOOR_FRAME_BYTES, NO_HOST, REQUEST_FRAME, ReadOnlyMount, UnreportableExit,
    add_to_linker,
};
