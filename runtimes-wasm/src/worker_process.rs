//! Guests in worker processes instead of worker threads.
//!
//! In one multi-threaded process, every copy-on-write page fault a fresh guest takes sends a
//! TLB-shootdown interrupt to the other cores running that process, and a fresh Python guest
//! takes hundreds. With [`Workers::Processes`], each of the backend's worker threads instead
//! owns one child process (the SoulBox binary's hidden `__worker` command), which runs guests on
//! a single thread of its own, so faults stay on one core. The parent keeps the admission bound
//! (its `WorkerPool`); each child enforces its request's limits. A watchdog kills a child that
//! has not answered [`WATCHDOG_MARGIN`] after its request's deadline (or not reported ready
//! within [`STARTUP_TIMEOUT`]); a child that dies is replaced on the next request, and the
//! request it was running gets an internal error, never a hung caller.
//!
//! Protocol: the child first writes [`WorkerReply::Ready`] once its modules are loaded; then one
//! JSON line per request on its stdin ([`ExecRequest`]), one JSON line per answer on its stdout
//! ([`WorkerReply`]). The child's stderr is inherited (its logs). The
//! child gets the parent's home and fuel setting through `SOULBOX_HOME` and
//! `SOULBOX_FUEL_METERING`; it starts on its worker thread's first job and loads the compiled
//! modules then (tens of milliseconds, once).

use crate::backend::{WasmBackend, WasmConfig};
use serde::{Deserialize, Serialize};
use soulbox_engine::{Backend, BackendError, ExecRequest, ExecResult, WorkerPoolConfig};
use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long past its request's deadline a child may take to answer before it is killed.
pub const WATCHDOG_MARGIN: Duration = Duration::from_secs(10);
/// How long a new child may take to report ready (loading, or on a cold cache compiling, the
/// modules).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The environment variable that tells a worker process to meter fuel.
pub const FUEL_ENV: &str = "SOULBOX_FUEL_METERING";

/// Where guests run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Workers {
    /// On the backend's worker threads, in this process (the default; nothing to spawn).
    #[default]
    Threads,
    /// In one child process per worker thread, started with `program args... __worker`.
    Processes {
        /// The SoulBox executable (or any program whose `__worker` command calls [`serve`]).
        program: PathBuf,
        /// Arguments before `__worker` (global flags such as `--home`).
        args: Vec<String>,
    },
}

/// One answer from a worker process.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerReply {
    /// The child has loaded its modules and takes requests.
    Ready,
    /// The execution's result.
    Result(Box<ExecResult>),
    /// The worker could not run it: the backend's own typed error, as the worker had it.
    Refused(BackendError),
}

impl From<BackendError> for WorkerReply {
    fn from(error: BackendError) -> Self {
        WorkerReply::Refused(error)
    }
}

impl WorkerReply {
    fn into_result(self) -> Result<ExecResult, BackendError> {
        match self {
            WorkerReply::Result(result) => Ok(*result),
            WorkerReply::Ready => Err(BackendError::Internal("the worker process answered out of turn".into())),
            WorkerReply::Refused(error) => Err(error),
        }
    }
}

/// A running child and its pipes. The process handle is shared with watchdogs.
struct WorkerChild {
    child: Arc<Mutex<Child>>,
    watchdog: Watchdog,
    requests: ChildStdin,
    replies: BufReader<ChildStdout>,
}

impl Drop for WorkerChild {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// One thread per child that kills it when an armed limit passes before it is disarmed.
/// (A thread per child, not per request, keeps the request path free of thread spawns.)
struct Watchdog {
    commands: Sender<Option<Duration>>,
}

impl Watchdog {
    fn start(child: &Arc<Mutex<Child>>) -> Self {
        let (commands, orders) = channel::<Option<Duration>>();
        let child = Arc::clone(child);
        let _ = std::thread::Builder::new().name("soulbox-watchdog".into()).spawn(move || {
            // `Some(limit)` arms, `None` disarms; the thread ends when the child's handle drops.
            while let Ok(order) = orders.recv() {
                let Some(limit) = order else { continue };
                if let Err(RecvTimeoutError::Timeout) = orders.recv_timeout(limit) {
                    tracing::warn!(?limit, "a worker process did not answer in time; killing it");
                    let _ = child.lock().unwrap_or_else(|e| e.into_inner()).kill();
                }
            }
        });
        Watchdog { commands }
    }

    /// Runs `work`, killing the child if it takes longer than `limit`.
    fn guard<T>(&self, limit: Duration, work: impl FnOnce() -> T) -> T {
        let _ = self.commands.send(Some(limit));
        let value = work();
        let _ = self.commands.send(None);
        value
    }
}

thread_local! {
    /// This worker thread's child process, started on its first job.
    static CHILD: RefCell<Option<WorkerChild>> = const { RefCell::new(None) };
}

/// How to start a worker process.
#[derive(Debug, Clone)]
pub(crate) struct ChildSpec {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) home: PathBuf,
    pub(crate) fuel: bool,
}

/// Runs `request` in this worker thread's child process. Blocks: call it on a worker thread.
pub(crate) fn execute(spec: &ChildSpec, request: &ExecRequest) -> Result<ExecResult, BackendError> {
    let line =
        serde_json::to_string(request).map_err(|e| BackendError::Internal(format!("encoding the request: {e}")))?;
    CHILD.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            *slot = Some(spawn(spec)?);
        }
        let child = slot.as_mut().expect("just started");
        let limit = request.limits.deadline + WATCHDOG_MARGIN;
        let answer = child.watchdog.guard(limit, || exchange(&mut child.requests, &mut child.replies, &line));
        match answer {
            Ok(reply) => reply.into_result(),
            Err(error) => {
                *slot = None; // kill it; the next job starts a new one
                Err(BackendError::Internal(format!("the worker process failed: {error}")))
            }
        }
    })
}

fn spawn(spec: &ChildSpec) -> Result<WorkerChild, BackendError> {
    let program = &spec.program;
    let mut child = Command::new(program)
        .args(&spec.args)
        .arg("__worker")
        .env(crate::home::HOME_ENV, &spec.home)
        .env(FUEL_ENV, if spec.fuel { "true" } else { "false" })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| BackendError::Unavailable(format!("cannot start worker process {}: {e}", program.display())))?;
    let requests = child.stdin.take().ok_or_else(|| BackendError::Internal("worker has no stdin".into()))?;
    let replies =
        BufReader::new(child.stdout.take().ok_or_else(|| BackendError::Internal("worker has no stdout".into()))?);
    let child = Arc::new(Mutex::new(child));
    let watchdog = Watchdog::start(&child);
    let mut worker = WorkerChild { child, watchdog, requests, replies };
    let ready = worker.watchdog.guard(STARTUP_TIMEOUT, || read_reply(&mut worker.replies));
    match ready {
        Ok(WorkerReply::Ready) => Ok(worker),
        Ok(WorkerReply::Refused(error)) => Err(error),
        Ok(_) => Err(BackendError::Internal("the worker process did not start cleanly".into())),
        Err(error) => Err(BackendError::Internal(format!("the worker process did not start: {error}"))),
    }
}

fn exchange(
    requests: &mut ChildStdin,
    replies: &mut BufReader<ChildStdout>,
    line: &str,
) -> std::io::Result<WorkerReply> {
    requests.write_all(line.as_bytes())?;
    requests.write_all(b"\n")?;
    requests.flush()?;
    read_reply(replies)
}

fn read_reply(replies: &mut BufReader<ChildStdout>) -> std::io::Result<WorkerReply> {
    let mut reply = String::new();
    if replies.read_line(&mut reply)? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "it exited"));
    }
    serde_json::from_str(&reply).map_err(std::io::Error::other)
}

/// The child's side: reports [`WorkerReply::Ready`] once its modules are loaded, then runs
/// requests read from stdin, one at a time, on a single worker thread, until stdin closes.
/// `config`'s worker pool is replaced by one worker with no queue, and its wasmtime pool by
/// one sized for guests one at a time ([`crate::engine_config::SEQUENTIAL_POOL_SLOTS`]).
pub async fn serve(mut config: WasmConfig) -> Result<(), crate::RuntimeError> {
    config.pool = WorkerPoolConfig { workers: 1, queue: 0, ..WorkerPoolConfig::default() };
    config.settings.pool_slots = crate::engine_config::SEQUENTIAL_POOL_SLOTS;
    config.workers = Workers::Threads;
    let mut stdout = tokio::io::stdout();
    let opened = tokio::task::spawn_blocking(move || {
        let backend = WasmBackend::open(config)?;
        backend.prepare().map(|()| backend)
    })
    .await
    .map_err(|e| crate::RuntimeError::Wasm(format!("worker start-up panicked: {e}")))?;
    let backend = match opened {
        Ok(backend) => backend,
        Err(error) => return send(&mut stdout, &WorkerReply::from(BackendError::from(error))).await,
    };
    send(&mut stdout, &WorkerReply::Ready).await?;
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(tokio::io::stdin()));
    while let Some(line) = lines.next_line().await.map_err(|e| crate::RuntimeError::io("stdin".as_ref(), e))? {
        let reply = match serde_json::from_str::<ExecRequest>(&line) {
            Ok(request) => {
                backend.execute(request).await.map_or_else(WorkerReply::from, |r| WorkerReply::Result(Box::new(r)))
            }
            Err(e) => WorkerReply::Refused(BackendError::Rejected(format!("invalid request: {e}"))),
        };
        send(&mut stdout, &reply).await?;
    }
    Ok(())
}

async fn send(stdout: &mut tokio::io::Stdout, reply: &WorkerReply) -> Result<(), crate::RuntimeError> {
    use tokio::io::AsyncWriteExt;
    let mut line =
        serde_json::to_vec(reply).map_err(|e| crate::RuntimeError::Wasm(format!("encoding a reply: {e}")))?;
    line.push(b'\n');
    let io = |e| crate::RuntimeError::io("stdout".as_ref(), e);
    stdout.write_all(&line).await.map_err(io)?;
    stdout.flush().await.map_err(io)
}
