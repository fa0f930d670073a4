//! A sandbox's processes: started on its [`Machine`] (made on the first command, kept until
//! the sandbox dies or is paused: a pause stops it, and the next command makes another) and
//! kept in a registry by id, with their output for readers that come late.
//!
//! Each process has a pump task that takes its events from the backend, appends them to a log
//! (at most [`MAX_LOG_BYTES`] of text; the oldest events go first, and readers are told) and
//! broadcasts them to live readers, under one lock, so a reader that replays the log and then
//! follows the broadcast sees every event once. A finished process stays listed (for `wait`
//! and its output) until [`MAX_FINISHED`] newer ones have finished.

use super::SandboxError;
use crate::engine::Engine;
use crate::process::{Machine, MachineSpec, ProcessControl, ProcessEvent, ProcessExit, ProcessSpec, PtySize};
use futures_core::Stream;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, watch};

/// Text kept per process for late readers.
pub const MAX_LOG_BYTES: usize = 1 << 20;
/// Finished processes kept listed per sandbox.
pub const MAX_FINISHED: usize = 64;
/// Processes running at once per sandbox.
pub const MAX_RUNNING: usize = 64;
/// Events a live reader may fall behind by before it skips ahead.
const LIVE_CAPACITY: usize = 4096;

/// What a caller may know about a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct ProcessInfo {
    /// Its id in the sandbox.
    pub pid: u32,
    /// Its command line.
    pub command: String,
    /// Whether it runs on a pseudo-terminal.
    pub pty: bool,
    /// When it started, milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// How it ended, once it has.
    pub exit: Option<ProcessExit>,
}

/// The registry. `machine` is made on first use, and again after [`Processes::stop_machine`];
/// `starting` is held while one is made or stopped, so two are never made at once.
#[derive(Default)]
pub(crate) struct Processes {
    machine: Mutex<Option<Arc<dyn Machine>>>,
    starting: tokio::sync::Mutex<()>,
    entries: Mutex<BTreeMap<u32, Arc<Entry>>>,
    next_pid: AtomicU32,
}

struct Entry {
    pid: u32,
    command: String,
    pty: bool,
    started_at_ms: u64,
    control: Arc<dyn ProcessControl>,
    state: Mutex<Log>,
    live: broadcast::Sender<ProcessEvent>,
    exited: watch::Sender<Option<ProcessExit>>,
    /// Its machine was stopped under it ([`Processes::stop_machine`]): however the backend
    /// reports its end, it was killed, and its exit says why.
    stopped: AtomicBool,
}

#[derive(Default)]
struct Log {
    events: VecDeque<ProcessEvent>,
    bytes: usize,
    truncated: bool,
    exit: Option<ProcessExit>,
}

impl Processes {
    /// The sandbox's machine, made on first use.
    pub(crate) async fn machine(
        &self,
        engine: &Engine,
        spec: impl FnOnce() -> MachineSpec,
    ) -> Result<Arc<dyn Machine>, SandboxError> {
        if let Some(machine) = self.current_machine() {
            return Ok(machine);
        }
        let _starting = self.starting.lock().await;
        if let Some(machine) = self.current_machine() {
            return Ok(machine);
        }
        let machine: Arc<dyn Machine> = Arc::from(engine.start_machine(spec()).await?);
        *self.machine.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&machine));
        Ok(machine)
    }

    fn current_machine(&self) -> Option<Arc<dyn Machine>> {
        self.machine.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops the machine, if one was made, and waits until it is gone: every process dies
    /// (its readers see it end) and the next process makes a new machine. Returns how many
    /// processes were running.
    pub(crate) async fn stop_machine(&self) -> usize {
        let _starting = self.starting.lock().await;
        let Some(machine) = self.machine.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return 0;
        };
        let running: Vec<Arc<Entry>> =
            self.entries.lock().unwrap_or_else(|e| e.into_inner()).values().filter(|e| e.running()).cloned().collect();
        for entry in &running {
            entry.stopped.store(true, Ordering::Relaxed);
        }
        machine.shutdown().await;
        running.len()
    }

    /// Starts `spec` on `machine` and registers it.
    pub(crate) async fn start(
        &self,
        machine: &Arc<dyn Machine>,
        spec: ProcessSpec,
    ) -> Result<ProcessInfo, SandboxError> {
        let running = self.entries.lock().unwrap_or_else(|e| e.into_inner()).values().filter(|e| e.running()).count();
        if running >= MAX_RUNNING {
            return Err(SandboxError::Full(format!("a sandbox runs at most {MAX_RUNNING} processes at once")));
        }
        let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
        let command = spec.command.clone();
        let pty = spec.pty.is_some();
        let control = machine.start(spec, events_tx).await?;
        let pid = self.next_pid.fetch_add(1, Ordering::Relaxed) + 1;
        let entry = Arc::new(Entry {
            pid,
            command,
            pty,
            started_at_ms: now_ms(),
            control,
            state: Mutex::default(),
            live: broadcast::channel(LIVE_CAPACITY).0,
            exited: watch::channel(None).0,
            stopped: AtomicBool::new(false),
        });
        tokio::spawn(pump(Arc::clone(&entry), events_rx));
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.insert(pid, Arc::clone(&entry));
        forget_old(&mut entries);
        Ok(entry.info())
    }

    /// Every process listed, by id.
    pub(crate) fn list(&self) -> Vec<ProcessInfo> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).values().map(|e| e.info()).collect()
    }

    /// One process.
    pub(crate) fn info(&self, pid: u32) -> Result<ProcessInfo, SandboxError> {
        Ok(self.entry(pid)?.info())
    }

    /// Writes to a process's stdin.
    pub(crate) async fn write_stdin(&self, pid: u32, data: Vec<u8>) -> Result<(), SandboxError> {
        Ok(self.running_entry(pid)?.control.write_stdin(data).await?)
    }

    /// Closes a process's stdin.
    pub(crate) async fn close_stdin(&self, pid: u32) -> Result<(), SandboxError> {
        Ok(self.running_entry(pid)?.control.close_stdin().await?)
    }

    /// Kills a process (and its children).
    pub(crate) async fn kill(&self, pid: u32) -> Result<(), SandboxError> {
        Ok(self.running_entry(pid)?.control.kill().await?)
    }

    /// Resizes a process's terminal.
    pub(crate) async fn resize(&self, pid: u32, size: PtySize) -> Result<(), SandboxError> {
        let entry = self.running_entry(pid)?;
        if !entry.pty {
            return Err(SandboxError::Invalid(format!("process {pid} has no terminal to resize")));
        }
        Ok(entry.control.resize(size).await?)
    }

    /// Waits for a process to end.
    pub(crate) async fn wait(&self, pid: u32) -> Result<ProcessExit, SandboxError> {
        let mut exited = self.entry(pid)?.exited.subscribe();
        let exit = exited.wait_for(Option::is_some).await.map_err(|_| SandboxError::Interrupted)?;
        Ok(exit.clone().expect("waited for it"))
    }

    /// A process's events: what is kept of the past, then what happens, to its exit.
    pub(crate) fn output(&self, pid: u32) -> Result<ProcessStream, SandboxError> {
        Ok(self.entry(pid)?.subscribe())
    }

    /// Forgets a finished process.
    pub(crate) fn forget(&self, pid: u32) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).remove(&pid);
    }

    /// Starts removing the machine, if one was made (every process dies); the handle ends
    /// when it is gone.
    pub(crate) fn shut(&self) -> Option<tokio::task::JoinHandle<()>> {
        let machine = self.machine.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        Some(runtime.spawn(async move { machine.shutdown().await }))
    }

    fn entry(&self, pid: u32) -> Result<Arc<Entry>, SandboxError> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(&pid).cloned().ok_or(SandboxError::ProcessNotFound(pid))
    }

    fn running_entry(&self, pid: u32) -> Result<Arc<Entry>, SandboxError> {
        let entry = self.entry(pid)?;
        if !entry.running() {
            return Err(SandboxError::ProcessEnded(pid));
        }
        Ok(entry)
    }
}

/// Drops the oldest finished processes past [`MAX_FINISHED`].
fn forget_old(entries: &mut BTreeMap<u32, Arc<Entry>>) {
    let finished: Vec<u32> = entries.values().filter(|e| !e.running()).map(|e| e.pid).collect();
    for pid in finished.iter().take(finished.len().saturating_sub(MAX_FINISHED)) {
        entries.remove(pid);
    }
}

impl Entry {
    fn running(&self) -> bool {
        self.exited.borrow().is_none()
    }

    fn info(&self) -> ProcessInfo {
        ProcessInfo {
            pid: self.pid,
            command: self.command.clone(),
            pty: self.pty,
            started_at_ms: self.started_at_ms,
            exit: self.exited.borrow().clone(),
        }
    }

    fn subscribe(&self) -> ProcessStream {
        let log = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut past: VecDeque<ProcessEvent> = log.events.clone();
        if log.truncated {
            past.push_front(ProcessEvent::Stderr { text: "[soulbox: earlier output was not kept]\n".into() });
        }
        let done = log.exit.is_some();
        if let Some(exit) = &log.exit {
            past.push_back(ProcessEvent::Exit(exit.clone()));
        }
        // Subscribed under the log's lock: the pump appends and broadcasts under it too.
        let live = (!done).then(|| self.live.subscribe());
        ProcessStream { past, live: live.map(live_stream), ended: false }
    }
}

/// Moves a process's events from its backend into its log and to live readers.
async fn pump(entry: Arc<Entry>, mut events: tokio::sync::mpsc::UnboundedReceiver<ProcessEvent>) {
    let exit = loop {
        let Some(event) = events.recv().await else {
            break ProcessExit {
                exit_code: None,
                outcome: crate::result::Outcome::Crashed,
                message: Some("the process's machine went away".into()),
                duration: std::time::Duration::ZERO,
            };
        };
        if let ProcessEvent::Exit(exit) = event {
            break exit;
        }
        let mut log = entry.state.lock().unwrap_or_else(|e| e.into_inner());
        log.bytes += text_len(&event);
        log.events.push_back(event.clone());
        while log.bytes > MAX_LOG_BYTES
            && let Some(old) = log.events.pop_front()
        {
            log.bytes -= text_len(&old);
            log.truncated = true;
        }
        let _ = entry.live.send(event);
    };
    let exit = if entry.stopped.load(Ordering::Relaxed) {
        ProcessExit {
            outcome: crate::result::Outcome::Killed,
            message: Some("the sandbox was paused: its container stopped with its processes".into()),
            ..exit
        }
    } else {
        exit
    };
    let mut log = entry.state.lock().unwrap_or_else(|e| e.into_inner());
    log.exit = Some(exit.clone());
    let _ = entry.live.send(ProcessEvent::Exit(exit.clone()));
    entry.exited.send_replace(Some(exit));
}

fn text_len(event: &ProcessEvent) -> usize {
    match event {
        ProcessEvent::Stdout { text } | ProcessEvent::Stderr { text } => text.len(),
        ProcessEvent::Exit(_) => 0,
    }
}

type Live = Pin<Box<dyn Stream<Item = ProcessEvent> + Send>>;

/// Adapts a broadcast receiver: a reader that fell behind is told, then goes on.
fn live_stream(receiver: broadcast::Receiver<ProcessEvent>) -> Live {
    use tokio_stream::StreamExt as _;
    use tokio_stream::wrappers::BroadcastStream;
    use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
    Box::pin(BroadcastStream::new(receiver).map(|item| match item {
        Ok(event) => event,
        Err(BroadcastStreamRecvError::Lagged(missed)) => ProcessEvent::Stderr {
            text: format!("[soulbox: {missed} output events skipped: the reader fell behind]\n"),
        },
    }))
}

/// A process's events to its exit (the last item).
pub struct ProcessStream {
    past: VecDeque<ProcessEvent>,
    live: Option<Live>,
    ended: bool,
}

impl std::fmt::Debug for ProcessStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessStream").field("buffered", &self.past.len()).finish_non_exhaustive()
    }
}

impl Stream for ProcessStream {
    type Item = ProcessEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let next = match self.past.pop_front() {
            Some(event) => Poll::Ready(Some(event)),
            None => match self.live.as_mut() {
                Some(live) => live.as_mut().poll_next(cx),
                None => Poll::Ready(None),
            },
        };
        if let Poll::Ready(Some(ProcessEvent::Exit(_)) | None) = &next {
            self.ended = true;
        }
        next
    }
}

impl ProcessStream {
    /// The next event, or `None` after the exit.
    pub async fn next_event(&mut self) -> Option<ProcessEvent> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

/// Text kept per stream by [`Sandbox::run_command`](super::Sandbox::run_command); past it the rest is counted, not kept.
pub const MAX_COMMAND_OUTPUT_BYTES: usize = 4 << 20;

/// A command run to its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct CommandResult {
    /// Its id while it ran.
    pub pid: u32,
    /// Its standard output (the first [`MAX_COMMAND_OUTPUT_BYTES`]).
    pub stdout: String,
    /// Its standard error (likewise).
    pub stderr: String,
    /// Whether output was cut short.
    pub output_truncated: bool,
    /// How it ended.
    #[serde(flatten)]
    pub exit: ProcessExit,
}

impl super::Sandbox {
    /// The sandbox's machine, made on first use (with a `workspace` link in the workspace, so
    /// `/workspace/...` names the same file in WebAssembly contexts and in the machine).
    async fn machine(&self) -> Result<Arc<dyn Machine>, SandboxError> {
        let shared = &self.shared;
        let _active = shared.begin()?;
        shared
            .processes
            .machine(&shared.engine, || {
                if let Err(error) = shared.workspace.link_root_as("workspace")
                    && !matches!(error, super::FileError::AlreadyExists(_))
                {
                    tracing::warn!(%error, "could not link /workspace in the workspace");
                }
                MachineSpec {
                    sandbox_id: shared.identity.id.clone(),
                    workspace: shared.workspace.host_path().to_path_buf(),
                    env: shared.identity.env.clone(),
                    network: shared.identity.network.then(|| shared.identity.egress.clone().unwrap_or_default()),
                    stop: shared.stop.clone(),
                }
            })
            .await
    }

    /// Starts a process in the background (the sandbox's machine is made on its first
    /// process); read it with [`Sandbox::process_output`](super::Sandbox::process_output), end it with
    /// [`Sandbox::kill_process`](super::Sandbox::kill_process).
    pub async fn spawn(&self, spec: ProcessSpec) -> Result<ProcessInfo, SandboxError> {
        validate_spec(&spec)?;
        let machine = self.machine().await?;
        let _active = self.shared.begin()?;
        let span = tracing::info_span!("spawn", sandbox = %self.shared.identity.id, pty = spec.pty.is_some());
        use tracing::Instrument as _;
        self.shared.processes.start(&machine, spec).instrument(span).await
    }

    /// Runs a command, yielding its events as they happen (the exit last).
    pub async fn run_command_stream(&self, spec: ProcessSpec) -> Result<(ProcessInfo, ProcessStream), SandboxError> {
        let info = self.spawn(spec).await?;
        Ok((info.clone(), self.shared.processes.output(info.pid)?))
    }

    /// Runs a command to its end.
    pub async fn run_command(&self, spec: ProcessSpec) -> Result<CommandResult, SandboxError> {
        let (info, mut events) = self.run_command_stream(spec).await?;
        let _active = self.shared.begin()?;
        let (mut stdout, mut stderr, mut truncated) = (String::new(), String::new(), false);
        let exit = loop {
            match events.next_event().await {
                Some(ProcessEvent::Stdout { text }) => truncated |= keep(&mut stdout, &text),
                Some(ProcessEvent::Stderr { text }) => truncated |= keep(&mut stderr, &text),
                Some(ProcessEvent::Exit(exit)) => break exit,
                None => return Err(SandboxError::Interrupted),
            }
        };
        self.shared.processes.forget(info.pid);
        Ok(CommandResult { pid: info.pid, stdout, stderr, output_truncated: truncated, exit })
    }

    /// The sandbox's processes: running ones and recently finished ones.
    pub fn processes(&self) -> Vec<ProcessInfo> {
        self.shared.processes.list()
    }

    /// One process.
    pub fn process(&self, pid: u32) -> Result<ProcessInfo, SandboxError> {
        self.shared.processes.info(pid)
    }

    /// Writes to a process's standard input (a terminal's input, for a PTY).
    pub async fn send_stdin(&self, pid: u32, data: Vec<u8>) -> Result<(), SandboxError> {
        self.shared.processes.write_stdin(pid, data).await
    }

    /// Closes a process's standard input.
    pub async fn close_stdin(&self, pid: u32) -> Result<(), SandboxError> {
        self.shared.processes.close_stdin(pid).await
    }

    /// Kills a process and everything it started.
    pub async fn kill_process(&self, pid: u32) -> Result<(), SandboxError> {
        self.shared.processes.kill(pid).await
    }

    /// Resizes a PTY process's terminal.
    pub async fn resize_pty(&self, pid: u32, size: PtySize) -> Result<(), SandboxError> {
        self.shared.processes.resize(pid, size).await
    }

    /// Waits for a process to end.
    pub async fn wait_process(&self, pid: u32) -> Result<ProcessExit, SandboxError> {
        self.shared.processes.wait(pid).await
    }

    /// A process's output: what is kept of it so far, then what comes, to its exit.
    pub fn process_output(&self, pid: u32) -> Result<ProcessStream, SandboxError> {
        self.shared.processes.output(pid)
    }

    /// Renders a page (a URL, a workspace file, or HTML) in the machine's headless browser.
    pub async fn render(
        &self,
        request: crate::process::RenderRequest,
    ) -> Result<crate::process::RenderedPage, SandboxError> {
        request.validate().map_err(SandboxError::Invalid)?;
        let machine = self.machine().await?;
        let _active = self.shared.begin()?;
        Ok(machine.render(request).await?)
    }
}

/// Appends `text` to `kept` up to [`MAX_COMMAND_OUTPUT_BYTES`]; true when some was left out.
fn keep(kept: &mut String, text: &str) -> bool {
    let room = MAX_COMMAND_OUTPUT_BYTES.saturating_sub(kept.len());
    if text.len() <= room {
        kept.push_str(text);
        return false;
    }
    let mut cut = room;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    kept.push_str(&text[..cut]);
    true
}

fn validate_spec(spec: &ProcessSpec) -> Result<(), SandboxError> {
    if spec.command.trim().is_empty() && spec.pty.is_none() {
        return Err(SandboxError::Invalid("`command` is empty".into()));
    }
    crate::request::validate_code(&spec.command)?;
    crate::request::validate_env(&spec.env)?;
    if let Some(cwd) = &spec.cwd
        && cwd.contains('\0')
    {
        return Err(SandboxError::Invalid("`cwd` contains a NUL byte".into()));
    }
    if let Some(deadline) = spec.deadline
        && (deadline.is_zero() || deadline > super::MAX_LIFETIME)
    {
        return Err(SandboxError::Invalid(format!(
            "`timeout_ms` must be between 1 and {}",
            super::MAX_LIFETIME.as_millis()
        )));
    }
    if let Some(size) = spec.pty
        && (size.cols == 0 || size.rows == 0)
    {
        return Err(SandboxError::Invalid("a terminal needs at least one column and one row".into()));
    }
    Ok(())
}
