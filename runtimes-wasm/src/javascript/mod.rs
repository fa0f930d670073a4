//! JavaScript: the QuickJS-NG reactor, one fresh instance per execution.
//!
//! Per execution: instantiate, `_initialize` (wasi-libc constructors), then
//! `qjs_init_argv(["qjs", "--std", "-e", "", "--", args...])`, which makes a context with `std`
//! and `os` as globals, then the timers (`timers.js`: `setTimeout`, `setInterval`,
//! `setImmediate` and their `clear*`), then the script itself, as a global script named
//! `<cmdline>`. Then the host runs the event loop (`event_loop`: promise jobs, then due timers,
//! until no timer is left) and flushes `std.out`/`std.err`, also after a script that threw.
//!
//! Evaluating `timers.js` costs about as much as a short script (QuickJS parses and compiles
//! it in every new guest), so a one-shot script gets the timers only when its text names one
//! (`Timeout`, `Interval` or `Immediate`: [`names_a_timer`]); one that reaches them only by a
//! computed name finds them undefined. A context always has them. The
//! script's exit status is 0, 1 for an uncaught exception (printed on stderr), or the value given
//! to `std.exit`. A known gap: an unhandled promise rejection is not reported.

mod event_loop;
mod exports;

pub(crate) use event_loop::{Stop, run as run_event_loop};

use crate::error::RuntimeError;
use crate::verify::sha256_bytes;
use soulbox_engine::ExecRequest;
use soulbox_host_api::GuestState;
use std::path::{Path, PathBuf};
use wasmtime::{Instance, Store};

/// `argv[0]` the guest sees.
const ARGV0: &str = "qjs";
/// Code run after the script and its jobs, so buffered `std.out` output is not lost.
const FLUSH: &str = "std.out.flush(); std.err.flush();";
/// The timers, evaluated in every guest before any user code.
const TIMERS: &str = include_str!("timers.js");
/// The name the script runs under (in its errors' stack traces), as `qjs -e` names it.
const SCRIPT_NAME: &str = "<cmdline>";

/// The JavaScript runtime's files.
#[derive(Debug, Clone)]
pub struct JavaScript {
    wasm_path: PathBuf,
    sha256: String,
}

impl JavaScript {
    /// The runtime installed in `dir`.
    pub fn new(dir: &Path) -> Self {
        let file = crate::manifest::runtime("javascript").file("qjs-wasi-reactor.wasm");
        JavaScript { wasm_path: dir.join(&file.install), sha256: file.sha256.clone() }
    }

    /// What identifies the module SoulBox compiles.
    pub fn content_key(&self) -> String {
        format!("qjs:{}:exports-v2", self.sha256)
    }

    /// The module to compile: the verified reactor with SoulBox's extra exports.
    pub fn wasm(&self) -> Result<Vec<u8>, RuntimeError> {
        let bytes = std::fs::read(&self.wasm_path).map_err(|e| RuntimeError::io(&self.wasm_path, e))?;
        let got = sha256_bytes(&bytes);
        if got != self.sha256 {
            return Err(RuntimeError::Tampered { path: self.wasm_path.clone(), expected: self.sha256.clone(), got });
        }
        exports::add_internal_exports(&bytes)
    }

    /// The guest's argv (the code itself is evaluated afterwards, by [`JavaScript::run`]).
    pub fn argv(request: &ExecRequest) -> Vec<String> {
        let mut argv = vec![ARGV0.to_owned(), "--std".into(), "-e".into(), String::new()];
        if !request.args.is_empty() {
            argv.push("--".into());
            argv.extend(request.args.iter().cloned());
        }
        argv
    }

    /// Starts a stateful context in a fresh `instance`: `qjs --std -e ''` with `env` from the
    /// WASI context, leaving `std` and `os` as globals for later `eval`s, and the timers.
    pub async fn start_context(store: &mut Store<GuestState>, instance: &Instance) -> wasmtime::Result<()> {
        start(store, instance, &Self::context_argv(), true).await
    }

    /// The guest's argv for a stateful context.
    pub fn context_argv() -> Vec<String> {
        [ARGV0, "--std", "-e", ""].map(String::from).into()
    }

    /// Runs `code` as a script in a fresh `instance` started with `argv`, then its event loop
    /// until no timer is left; returns its exit status.
    pub async fn run(
        store: &mut Store<GuestState>,
        instance: &Instance,
        argv: &[String],
        code: &str,
    ) -> wasmtime::Result<i32> {
        let timers = names_a_timer(code);
        start(store, instance, argv, timers).await?;
        // As Node: a script that throws ends there, its timers and jobs never run.
        let ok = eval_named(store, instance, code, SCRIPT_NAME).await?
            && match timers {
                true => event_loop::run(store, instance, Stop::WhenIdle).await?,
                false => run_pending_jobs(store, instance).await?,
            };
        eval(store, instance, FLUSH).await?;
        Ok(if ok { 0 } else { 1 })
    }
}

/// Whether a script's text names a timer function (see the module's documentation).
pub fn names_a_timer(code: &str) -> bool {
    ["Timeout", "Interval", "Immediate"].iter().any(|name| code.contains(name))
}

/// `_initialize`, then `qjs_init_argv(argv)` (whose `-e` script must be empty), then, if asked,
/// the timers.
async fn start(
    store: &mut Store<GuestState>,
    instance: &Instance,
    argv: &[String],
    timers: bool,
) -> wasmtime::Result<()> {
    call0(store, instance, "_initialize").await?;
    let argv_ptr = write_argv(store, instance, argv).await?;
    let init = instance.get_typed_func::<(i32, i32), i32>(&mut *store, "qjs_init_argv")?;
    match init.call_async(&mut *store, (i32::try_from(argv.len())?, argv_ptr)).await? {
        0 => {}
        status => wasmtime::bail!("the JavaScript context did not start (status {status})"),
    }
    if timers && !eval_named(store, instance, TIMERS, "<timers>").await? {
        wasmtime::bail!("the JavaScript timers failed to load");
    }
    Ok(())
}

/// The guest's `JSContext`.
async fn qjs_context(store: &mut Store<GuestState>, instance: &Instance) -> wasmtime::Result<i32> {
    instance.get_typed_func::<(), i32>(&mut *store, "qjs_get_context")?.call_async(&mut *store, ()).await
}

pub(crate) async fn call0(store: &mut Store<GuestState>, instance: &Instance, name: &str) -> wasmtime::Result<()> {
    instance.get_typed_func::<(), ()>(&mut *store, name)?.call_async(&mut *store, ()).await
}

pub(crate) async fn malloc(store: &mut Store<GuestState>, instance: &Instance, bytes: &[u8]) -> wasmtime::Result<i32> {
    let malloc = instance.get_typed_func::<i32, i32>(&mut *store, "malloc")?;
    let ptr = malloc.call_async(&mut *store, i32::try_from(bytes.len())?).await?;
    if ptr == 0 {
        wasmtime::bail!("guest malloc of {} bytes failed", bytes.len());
    }
    let memory = instance.get_memory(&mut *store, "memory").ok_or_else(|| wasmtime::format_err!("no memory export"))?;
    memory.write(&mut *store, usize::try_from(ptr)?, bytes)?;
    Ok(ptr)
}

/// Copies `argv` into guest memory as NUL-terminated strings plus a pointer array.
pub(crate) async fn write_argv(
    store: &mut Store<GuestState>,
    instance: &Instance,
    argv: &[String],
) -> wasmtime::Result<i32> {
    let mut pointers = Vec::with_capacity(argv.len() * 4);
    for arg in argv {
        let mut bytes = Vec::with_capacity(arg.len() + 1);
        bytes.extend_from_slice(arg.as_bytes());
        bytes.push(0);
        pointers.extend_from_slice(&malloc(store, instance, &bytes).await?.to_le_bytes());
    }
    malloc(store, instance, &pointers).await
}

/// Runs queued promise jobs until none is left. False if a job threw (the error is printed).
pub(crate) async fn run_pending_jobs(store: &mut Store<GuestState>, instance: &Instance) -> wasmtime::Result<bool> {
    let context = qjs_context(store, instance).await?;
    let runtime = instance
        .get_typed_func::<i32, i32>(&mut *store, "soulbox_get_runtime")?
        .call_async(&mut *store, context)
        .await?;
    let job = instance.get_typed_func::<(i32, i32), i32>(&mut *store, "soulbox_execute_pending_job")?;
    let job_context = malloc(store, instance, &[0; 4]).await?;
    let mut ok = true;
    // No count limit: jobs are guest code, bounded by the deadline and fuel like the script.
    loop {
        match job.call_async(&mut *store, (runtime, job_context)).await? {
            0 => break,
            n if n < 0 => {
                ok = false;
                let dump = instance.get_typed_func::<i32, ()>(&mut *store, "soulbox_dump_error")?;
                dump.call_async(&mut *store, context).await?;
            }
            _ => {}
        }
    }
    free(store, instance, job_context).await?;
    Ok(ok)
}

/// Evaluates `code` as a global script in the guest's context; false if it threw (the error is
/// printed on stderr). The buffers are freed afterwards: a context lives for many cells.
pub(crate) async fn eval(store: &mut Store<GuestState>, instance: &Instance, code: &str) -> wasmtime::Result<bool> {
    eval_named(store, instance, code, "<soulbox>").await
}

/// [`eval`], the script named `name` in its errors.
async fn eval_named(
    store: &mut Store<GuestState>,
    instance: &Instance,
    code: &str,
    name: &str,
) -> wasmtime::Result<bool> {
    let context = qjs_context(store, instance).await?;
    let mut source = code.as_bytes().to_vec();
    source.push(0);
    let buf = malloc(store, instance, &source).await?;
    let name = malloc(store, instance, format!("{name}\0").as_bytes()).await?;
    let eval_buf = instance.get_typed_func::<(i32, i32, i32, i32, i32), i32>(&mut *store, "soulbox_eval_buf")?;
    let status = eval_buf.call_async(&mut *store, (context, buf, i32::try_from(code.len())?, name, 0)).await?;
    free(store, instance, buf).await?;
    free(store, instance, name).await?;
    Ok(status == 0)
}

pub(crate) async fn free(store: &mut Store<GuestState>, instance: &Instance, ptr: i32) -> wasmtime::Result<()> {
    instance.get_typed_func::<i32, ()>(&mut *store, "free")?.call_async(&mut *store, ptr).await
}
