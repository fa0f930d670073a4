//! JavaScript: QuickJS-NG with Node's basics, one fresh instance per execution.
//!
//! SoulBox never runs the reactor as shipped. It builds a pre-initialized module once
//! (`snapshot.rs`): QuickJS started as `qjs --std -e ''` (`std` and `os` as globals) with
//! [`PRELUDE`] evaluated, which defines the timers (`timers.js`: `setTimeout`, `setInterval`,
//! `setImmediate`, their `clear*`) and the Node globals (`node/`: `console` formatting as
//! Node's, `process`, `Buffer`, `TextEncoder`/`TextDecoder`, `URL`/`URLSearchParams`,
//! `structuredClone`, `crypto`, `performance`, and `require` of `fs`, `path`, `os`, `util`,
//! `events`, `assert`, `crypto`, `url`, `buffer`, `timers`, `string_decoder`). A guest thus
//! starts with all of it defined, at no cost per execution.
//!
//! Per execution: instantiate the snapshot, then `begin` (the request's environment, read
//! again by wasi-libc; fresh entropy for `crypto` and `Math.random`; the arguments as
//! `process.argv` and `scriptArgs`; the clocks' origin), then the script itself, as a global
//! script named `<cmdline>`; then the host runs the event loop (`event_loop`: promise jobs, then
//! due timers, until no timer is left) and calls `__soulbox_finish` (the `exit` event, then
//! `std.out`/`std.err` flushed), also after a script that threw. The exit status is 0, 1 for an
//! uncaught exception (printed on stderr), `process.exitCode`, or the value given to
//! `process.exit`/`std.exit`. A promise rejected with no handler by the end of a turn is
//! reported on stderr as `Uncaught (in promise) ...` and, as in Node, ends a script with status
//! 1 (`rejections.rs`); in a context's cell it is reported and the cell goes on.

pub mod esm;
mod event_loop;
mod exports;
mod rejections;
mod snapshot;
pub mod typescript;

pub(crate) use event_loop::{Stop, run as run_event_loop};

use crate::egress::GuestNetwork;
use crate::error::RuntimeError;
use crate::verify::sha256_bytes;
use soulbox_engine::ExecRequest;
use soulbox_host_api::GuestState;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::{Instance, Store};

/// `argv[0]` the guest sees in WASI (QuickJS reads its argv only while the snapshot is built).
const ARGV0: &str = "qjs";
/// Flushes QuickJS's buffered `std.out` and `std.err`.
const FLUSH: &str = "std.out.flush(); std.err.flush();";
/// What the snapshot evaluates: the timers, then the Node globals (one scope for the files in
/// `node/`, which share their helpers).
pub const PRELUDE: &str = concat!(
    include_str!("timers.js"),
    // QuickJS's `std` and `os` modules held in the prelude's own scope: a program's top-level
    // `const os = require("os")` shadows the global one for every later lookup.
    "(() => {\nconst { std, os } = globalThis;\n",
    include_str!("node/util.js"),
    include_str!("node/encoding.js"),
    include_str!("node/buffer.js"),
    include_str!("node/url.js"),
    include_str!("node/crypto.js"),
    include_str!("node/events.js"),
    include_str!("node/fetch.js"),
    include_str!("node/path.js"),
    include_str!("node/process.js"),
    include_str!("node/fs.js"),
    include_str!("node/intl.js"),
    include_str!("node/modules.js"),
    "})();\n",
);
/// Runs the `process.nextTick` callbacks queued so far (`timers.js`).
const DRAIN_TICKS: &str = "__soulbox_drain_ticks()";
/// The name the script runs under (in its errors' stack traces), as `qjs -e` names it.
const SCRIPT_NAME: &str = "<cmdline>";
/// `JS_Eval`'s flag for a global script with top-level `await` (the result is a promise).
const JS_EVAL_FLAG_ASYNC: i32 = 1 << 7;
/// How many 32-bit words of host entropy seed each guest's generators.
const SEED_WORDS: usize = 8;

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

    /// What identifies the snapshot module SoulBox builds: the reactor and the prelude.
    pub fn content_key(&self) -> String {
        format!("qjs:{}:exports-v5:prelude-{}", self.sha256, blake3::hash(PRELUDE.as_bytes()).to_hex())
    }

    /// The reactor with SoulBox's extra exports, verified (what the snapshot is built from).
    pub fn wasm(&self) -> Result<Vec<u8>, RuntimeError> {
        let bytes = std::fs::read(&self.wasm_path).map_err(|e| RuntimeError::io(&self.wasm_path, e))?;
        let got = sha256_bytes(&bytes);
        if got != self.sha256 {
            return Err(RuntimeError::Tampered { path: self.wasm_path.clone(), expected: self.sha256.clone(), got });
        }
        exports::add_internal_exports(&bytes)
    }

    /// The guest's WASI argv (the script's arguments reach it through `begin`).
    pub fn argv(request: &ExecRequest) -> Vec<String> {
        let mut argv = vec![ARGV0.to_owned()];
        argv.extend(request.args.iter().cloned());
        argv
    }

    /// Starts a stateful context in a fresh `instance` of the snapshot, with `env` from the WASI
    /// context and no arguments; `fetch` queues requests for the host when it has a `network`.
    pub async fn start_context(
        store: &mut Store<GuestState>,
        instance: &Instance,
        network: bool,
    ) -> wasmtime::Result<()> {
        begin(store, instance, &[], network).await
    }

    /// The guest's argv for a stateful context.
    pub fn context_argv() -> Vec<String> {
        vec![ARGV0.to_owned()]
    }

    /// Runs `code` as a script with `args` in a fresh `instance` of the snapshot, then its event
    /// loop until no timer or request is left; returns its exit status. `fetch` goes through
    /// `network` (rejected at once without one, or when it has no policy).
    pub(crate) async fn run(
        store: &mut Store<GuestState>,
        instance: &Instance,
        args: &[String],
        code: &str,
        network: &Arc<GuestNetwork>,
    ) -> wasmtime::Result<i32> {
        let network = Some(network).filter(|n| n.enabled());
        begin(store, instance, args, network.is_some()).await?;
        // Module syntax becomes a script's (`esm.rs`); one with top-level `await` runs as an
        // async script, which the event loop carries on after its first `await`.
        let script = esm::to_script(code);
        let evaluated = match script.top_level_await {
            true => eval_async(store, instance, &script.code, SCRIPT_NAME).await?,
            false => eval_named(store, instance, &script.code, SCRIPT_NAME).await?,
        };
        // As Node: a script that throws ends there, its timers and jobs never run; its
        // `process.nextTick` callbacks run before its promise jobs.
        let ok = evaluated
            && eval(store, instance, DRAIN_TICKS).await?
            && event_loop::run(store, instance, Stop::WhenIdle, network).await?;
        let status = finish(store, instance).await?;
        Ok(if ok { status } else { 1 })
    }
}

/// Gives a guest of the snapshot what the snapshot froze: wasi-libc reads the environment
/// again (the build's was empty), then `__soulbox_begin` reseeds the generators from fresh
/// host entropy, sets `process.argv`, `scriptArgs` and `process.env`, restarts the clocks,
/// and lets `fetch` queue requests for the host when the guest has a `network`.
async fn begin(
    store: &mut Store<GuestState>,
    instance: &Instance,
    args: &[String],
    network: bool,
) -> wasmtime::Result<()> {
    call0(store, instance, "soulbox_initialize_environ").await?;
    let code = format!("__soulbox_begin({}, {}, {network})", seed()?, serde_json::to_string(args)?);
    if !eval(store, instance, &code).await? {
        wasmtime::bail!("the JavaScript guest did not begin");
    }
    Ok(())
}

/// [`SEED_WORDS`] words of host entropy, as a JavaScript array literal.
pub(crate) fn seed() -> wasmtime::Result<String> {
    let mut seed = [0u8; SEED_WORDS * 4];
    getrandom::fill(&mut seed).map_err(|e| wasmtime::format_err!("no entropy: {e}"))?;
    let words: Vec<String> =
        seed.chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]).to_string()).collect();
    Ok(format!("[{}]", words.join(", ")))
}

/// `__soulbox_finish()`: the `exit` event, the output flushed; the exit status it returns
/// (1 if an `exit` listener threw, its error printed).
async fn finish(store: &mut Store<GuestState>, instance: &Instance) -> wasmtime::Result<i32> {
    match eval_value(store, instance, "__soulbox_finish()").await? {
        Value::Int(status) => Ok(status),
        Value::Threw | Value::Other => Ok(1),
    }
}

/// `qjs_init_argv(argv)` (whose `-e` script must be empty), after `_initialize`: only while
/// building the snapshot.
async fn init_argv(store: &mut Store<GuestState>, instance: &Instance, argv: &[String]) -> wasmtime::Result<()> {
    let argv_ptr = write_argv(store, instance, argv).await?;
    let init = instance.get_typed_func::<(i32, i32), i32>(&mut *store, "qjs_init_argv")?;
    match init.call_async(&mut *store, (i32::try_from(argv.len())?, argv_ptr)).await? {
        0 => Ok(()),
        status => wasmtime::bail!("the JavaScript context did not start (status {status})"),
    }
}

/// A value `JS_Eval` returned, as far as the host reads one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value {
    Int(i32),
    Threw,
    Other,
}

/// QuickJS's NaN-boxed values on wasm32 keep their tag in the high 32 bits.
const TAG_INT: i32 = 0;
const TAG_EXCEPTION: i32 = 6;

impl Value {
    pub(crate) fn decode(value: i64) -> Value {
        match ((value >> 32) as i32, value as i32) {
            (TAG_INT, n) => Value::Int(n),
            (TAG_EXCEPTION, _) => Value::Threw,
            _ => Value::Other,
        }
    }
}

/// Evaluates `code` as a global script and reads its value; an exception is printed on stderr.
async fn eval_value(store: &mut Store<GuestState>, instance: &Instance, code: &str) -> wasmtime::Result<Value> {
    let context = qjs_context(store, instance).await?;
    let source = malloc(store, instance, format!("{code}\0").as_bytes()).await?;
    let name = malloc(store, instance, b"<soulbox>\0").await?;
    let eval = instance.get_typed_func::<(i32, i32, i32, i32, i32), i64>(&mut *store, "soulbox_js_eval")?;
    let value =
        Value::decode(eval.call_async(&mut *store, (context, source, i32::try_from(code.len())?, name, 0)).await?);
    free(store, instance, source).await?;
    free(store, instance, name).await?;
    if let Value::Threw = value {
        let dump = instance.get_typed_func::<i32, ()>(&mut *store, "soulbox_dump_error")?;
        dump.call_async(&mut *store, context).await?;
    }
    Ok(value)
}

/// Evaluates `code` and reads its value as a string: `None` for a value that is not one (an
/// exception is printed on stderr). The value and its copy are freed in the guest.
pub(crate) async fn eval_string(
    store: &mut Store<GuestState>,
    instance: &Instance,
    code: &str,
) -> wasmtime::Result<Option<Vec<u8>>> {
    let context = qjs_context(store, instance).await?;
    let source = malloc(store, instance, format!("{code}\0").as_bytes()).await?;
    let name = malloc(store, instance, b"<soulbox>\0").await?;
    let eval = instance.get_typed_func::<(i32, i32, i32, i32, i32), i64>(&mut *store, "soulbox_js_eval")?;
    let value = eval.call_async(&mut *store, (context, source, i32::try_from(code.len())?, name, 0)).await?;
    free(store, instance, source).await?;
    free(store, instance, name).await?;
    let text = match Value::decode(value) {
        Value::Int(_) => None,
        Value::Threw => {
            let dump = instance.get_typed_func::<i32, ()>(&mut *store, "soulbox_dump_error")?;
            dump.call_async(&mut *store, context).await?;
            None
        }
        Value::Other => {
            let length = malloc(store, instance, &[0; 4]).await?;
            let to_cstring = instance.get_typed_func::<(i32, i32, i64, i32), i32>(&mut *store, "soulbox_to_cstring")?;
            let ptr = to_cstring.call_async(&mut *store, (context, length, value, 0)).await?;
            let memory =
                instance.get_memory(&mut *store, "memory").ok_or_else(|| wasmtime::format_err!("no memory export"))?;
            let mut len = [0u8; 4];
            memory.read(&mut *store, usize::try_from(length)?, &mut len)?;
            free(store, instance, length).await?;
            if ptr == 0 {
                None
            } else {
                let mut bytes = vec![0; u32::from_le_bytes(len) as usize];
                memory.read(&mut *store, usize::try_from(ptr)?, &mut bytes)?;
                let free_cstring = instance.get_typed_func::<(i32, i32), ()>(&mut *store, "soulbox_free_cstring")?;
                free_cstring.call_async(&mut *store, (context, ptr)).await?;
                Some(bytes)
            }
        }
    };
    let free_value = instance.get_typed_func::<(i32, i64), ()>(&mut *store, "soulbox_free_value")?;
    free_value.call_async(&mut *store, (context, value)).await?;
    Ok(text)
}

/// The guest's `JSContext`.
async fn qjs_context(store: &mut Store<GuestState>, instance: &Instance) -> wasmtime::Result<i32> {
    instance.get_typed_func::<(), i32>(&mut *store, "qjs_get_context")?.call_async(&mut *store, ()).await
}

/// The `JSRuntime` of the guest's `context`.
async fn qjs_runtime(store: &mut Store<GuestState>, instance: &Instance, context: i32) -> wasmtime::Result<i32> {
    instance.get_typed_func::<i32, i32>(&mut *store, "soulbox_get_runtime")?.call_async(&mut *store, context).await
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
    let runtime = qjs_runtime(store, instance, context).await?;
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
    let (context, source, name) = script_in_guest(store, instance, code, name).await?;
    let eval_buf = instance.get_typed_func::<(i32, i32, i32, i32, i32), i32>(&mut *store, "soulbox_eval_buf")?;
    let status = eval_buf.call_async(&mut *store, (context, source, i32::try_from(code.len())?, name, 0)).await?;
    free(store, instance, source).await?;
    free(store, instance, name).await?;
    Ok(status == 0)
}

/// The guest's context, and `code` and `name` copied into guest memory as C strings (the
/// caller frees both).
async fn script_in_guest(
    store: &mut Store<GuestState>,
    instance: &Instance,
    code: &str,
    name: &str,
) -> wasmtime::Result<(i32, i32, i32)> {
    let context = qjs_context(store, instance).await?;
    let source = malloc(store, instance, format!("{code}\0").as_bytes()).await?;
    let name = malloc(store, instance, format!("{name}\0").as_bytes()).await?;
    Ok((context, source, name))
}

/// Evaluates `code` as an async global script (top-level `await`) named `name`: it runs to
/// its first `await`, the event loop carries it on. False if it did not compile or threw
/// before that (printed on stderr); a later failure rejects its promise, which the rejection
/// tracker reports. Through `JS_Eval` itself: the reactor's `eval_buf` traps on this flag.
async fn eval_async(
    store: &mut Store<GuestState>,
    instance: &Instance,
    code: &str,
    name: &str,
) -> wasmtime::Result<bool> {
    let (context, source, name) = script_in_guest(store, instance, code, name).await?;
    let eval = instance.get_typed_func::<(i32, i32, i32, i32, i32), i64>(&mut *store, "soulbox_js_eval")?;
    let value =
        eval.call_async(&mut *store, (context, source, i32::try_from(code.len())?, name, JS_EVAL_FLAG_ASYNC)).await?;
    free(store, instance, source).await?;
    free(store, instance, name).await?;
    if let Value::Threw = Value::decode(value) {
        let dump = instance.get_typed_func::<i32, ()>(&mut *store, "soulbox_dump_error")?;
        dump.call_async(&mut *store, context).await?;
        return Ok(false);
    }
    let free_value = instance.get_typed_func::<(i32, i64), ()>(&mut *store, "soulbox_free_value")?;
    free_value.call_async(&mut *store, (context, value)).await?;
    Ok(true)
}

pub(crate) async fn free(store: &mut Store<GuestState>, instance: &Instance, ptr: i32) -> wasmtime::Result<()> {
    instance.get_typed_func::<i32, ()>(&mut *store, "free")?.call_async(&mut *store, ptr).await
}
