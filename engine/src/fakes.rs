//! Fake [`Backend`], [`Kernel`] and [`Machine`] for the engine's unit tests: the sandbox layer's
//! edge cases (log truncation, eviction, lag notices, quota races, teardown) run here without
//! wasmtime or Docker.
//!
//! The fakes speak a tiny script language so a test says what a guest does:
//! - a cell's code is echoed to stdout, except `raise NAME` (an exception event), `count` (the
//!   number of cells this kernel ran, including this one: state that a restart loses) and
//!   `lose` (the kernel fails, as a backend fault), `seed` (its entropy: 0 until a fork's
//!   [`Kernel::diverge`] gives it a number no other kernel got);
//! - a process's command is `print TEXT`, `flood N BYTES` (N stdout events of BYTES bytes),
//!   `hang` (runs until killed) or `exit CODE`.

use crate::backend::{Backend, BackendError};
use crate::capabilities::Capabilities;
use crate::kernel::{Cell, CellError, CellReport, EventSender, ExecutionEvent, Kernel, KernelImage, KernelSpec};
use crate::language::{BackendKind, Language};
use crate::process::{
    Machine, MachineSpec, ProcessControl, ProcessEvent, ProcessExit, ProcessSender, ProcessSpec, PtySize,
    RenderRequest, RenderedPage,
};
use crate::request::ExecRequest;
use crate::result::{ExecResult, Outcome};
use async_trait::async_trait;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the fakes did, shared with the test.
#[derive(Debug, Default)]
pub(crate) struct Record {
    pub(crate) kernels_started: AtomicUsize,
    pub(crate) machines_started: AtomicUsize,
    pub(crate) machines_shut: AtomicUsize,
    pub(crate) executions: Mutex<Vec<(Language, String)>>,
    pub(crate) owners: Mutex<Vec<Option<String>>>,
    /// While set, kernels never finish starting or restoring; each notifies `kernel_stalled`
    /// first.
    pub(crate) stall_kernels: std::sync::atomic::AtomicBool,
    pub(crate) kernel_stalled: tokio::sync::Notify,
    /// When the last kernel finished starting.
    pub(crate) kernel_started_at: Mutex<Option<std::time::Instant>>,
}

/// A backend of `capabilities` whose executions echo their code.
#[derive(Debug, Clone)]
pub(crate) struct FakeBackend {
    pub(crate) name: &'static str,
    pub(crate) capabilities: Capabilities,
    pub(crate) record: Arc<Record>,
}

impl FakeBackend {
    /// Kernels for Python and JavaScript, machines and rendering, as a container-kind backend.
    pub(crate) fn everything() -> Self {
        let languages = [Language::Python, Language::JavaScript];
        let capabilities = Capabilities::new(BackendKind::Container)
            .languages(Language::ALL)
            .kernels(languages)
            .machines()
            .rendering();
        FakeBackend::with("fake", capabilities)
    }

    pub(crate) fn with(name: &'static str, capabilities: Capabilities) -> Self {
        FakeBackend { name, capabilities, record: Arc::default() }
    }
}

#[async_trait]
impl Backend for FakeBackend {
    fn name(&self) -> &'static str {
        self.name
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities.clone()
    }

    async fn execute(&self, request: ExecRequest) -> Result<ExecResult, BackendError> {
        self.record.executions.lock().unwrap().push((request.language, request.code.clone()));
        self.record.owners.lock().unwrap().push(request.owner.clone());
        Ok(ExecResult {
            stdout: format!("{}: {}", self.name, request.code),
            stderr: String::new(),
            exit_code: 0,
            outcome: Outcome::Completed,
            error: None,
            duration: Duration::ZERO,
            fuel_used: None,
            peak_memory_bytes: 0,
            files: Vec::new(),
            files_truncated: false,
            backend: self.name.into(),
            network: None,
        })
    }

    async fn start_kernel(&self, spec: KernelSpec) -> Result<Box<dyn Kernel>, BackendError> {
        self.record.kernels_started.fetch_add(1, Ordering::SeqCst);
        self.record.owners.lock().unwrap().push(spec.owner.clone());
        if self.record.stall_kernels.load(Ordering::SeqCst) {
            self.record.kernel_stalled.notify_one();
            std::future::pending::<()>().await;
        }
        *self.record.kernel_started_at.lock().unwrap() = Some(std::time::Instant::now());
        Ok(Box::new(FakeKernel { language: spec.language, cells: 0, seed: 0 }))
    }

    async fn restore_kernel(&self, spec: KernelSpec, image: KernelImage) -> Result<Box<dyn Kernel>, BackendError> {
        if self.record.stall_kernels.load(Ordering::SeqCst) {
            self.record.kernel_stalled.notify_one();
            std::future::pending::<()>().await;
        }
        let bytes: [u8; 8] =
            image.parts.get(1).and_then(|part| (**part).try_into().ok()).ok_or_else(|| {
                BackendError::BadCheckpoint("the fake kernel's checkpoint is a tag and 8 bytes".into())
            })?;
        Ok(Box::new(FakeKernel { language: spec.language, cells: u64::from_le_bytes(bytes), seed: 0 }))
    }

    async fn start_machine(&self, spec: MachineSpec) -> Result<Box<dyn Machine>, BackendError> {
        let _ = spec;
        self.record.machines_started.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(FakeMachine { record: Arc::clone(&self.record), processes: Mutex::default() }))
    }

    async fn render(&self, request: RenderRequest) -> Result<RenderedPage, BackendError> {
        let _ = request;
        Err(BackendError::Rejected("the fake browser renders nothing".into()))
    }
}

/// A kernel that echoes its cells (see the module's documentation).
#[derive(Debug)]
pub(crate) struct FakeKernel {
    language: Language,
    cells: u64,
    seed: usize,
}

/// The part of a fake kernel's checkpoint that never changes.
const FAKE_TAG: &[u8] = b"fake kernel";

/// The last seed a fake kernel's [`Kernel::diverge`] gave out.
static SEEDS: AtomicUsize = AtomicUsize::new(0);

#[async_trait]
impl Kernel for FakeKernel {
    fn language(&self) -> Language {
        self.language
    }

    async fn run(&mut self, cell: Cell, events: EventSender) -> Result<CellReport, BackendError> {
        self.cells += 1;
        let code = cell.code.trim();
        let event = match code.split_once(' ') {
            Some(("raise", name)) => ExecutionEvent::Error(CellError {
                name: name.into(),
                value: "raised by the fake".into(),
                traceback: String::new(),
            }),
            _ if code == "lose" => return Err(BackendError::Internal("the fake kernel was lost".into())),
            _ if code == "count" => ExecutionEvent::Stdout { text: format!("{}\n", self.cells) },
            _ if code == "seed" => ExecutionEvent::Stdout { text: format!("{}\n", self.seed) },
            _ => ExecutionEvent::Stdout { text: format!("{code}\n") },
        };
        let _ = events.send_now(event);
        Ok(CellReport {
            outcome: Outcome::Completed,
            message: None,
            restarted: false,
            fuel_used: None,
            peak_memory_bytes: 0,
            network: None,
        })
    }

    async fn checkpoint(&mut self) -> Result<KernelImage, BackendError> {
        // Two parts, like a real kernel's: one that never changes, one each cell changes.
        let parts = vec![Arc::from(FAKE_TAG), Arc::from(self.cells.to_le_bytes().as_slice())];
        Ok(KernelImage::from_parts(self.language, parts))
    }

    async fn diverge(&mut self) -> Result<(), BackendError> {
        self.seed = SEEDS.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(())
    }
}

/// A machine whose processes follow their command (see the module's documentation).
#[derive(Debug)]
pub(crate) struct FakeMachine {
    record: Arc<Record>,
    /// Its processes, killed when it shuts down.
    processes: Mutex<Vec<Arc<FakeProcess>>>,
}

#[async_trait]
impl Machine for FakeMachine {
    async fn start(&self, spec: ProcessSpec, events: ProcessSender) -> Result<Arc<dyn ProcessControl>, BackendError> {
        let control = Arc::new(FakeProcess { events: events.clone(), killed: tokio::sync::Notify::new() });
        self.processes.lock().unwrap_or_else(|e| e.into_inner()).push(Arc::clone(&control));
        let words: Vec<&str> = spec.command.split_whitespace().collect();
        let exit = |code: i32| {
            ProcessEvent::Exit(ProcessExit {
                exit_code: Some(code),
                outcome: Outcome::Completed,
                message: None,
                duration: Duration::ZERO,
            })
        };
        match words.as_slice() {
            ["print", text @ ..] => {
                let _ = events.send(ProcessEvent::Stdout { text: format!("{}\n", text.join(" ")) });
                let _ = events.send(exit(0));
            }
            ["flood", count, bytes] => {
                let (count, bytes): (usize, usize) = (count.parse().unwrap(), bytes.parse().unwrap());
                for i in 0..count {
                    let digit = char::from(b'0' + (i % 10) as u8);
                    let _ = events.send(ProcessEvent::Stdout { text: digit.to_string().repeat(bytes) });
                }
                let _ = events.send(exit(0));
            }
            ["exit", code] => {
                let _ = events.send(exit(code.parse().unwrap()));
            }
            ["hang"] => {
                let control = Arc::clone(&control);
                tokio::spawn(async move {
                    control.killed.notified().await;
                    let killed = ProcessExit {
                        exit_code: Some(137),
                        outcome: Outcome::Killed,
                        message: Some("killed on request".into()),
                        duration: Duration::ZERO,
                    };
                    let _ = control.events.send(ProcessEvent::Exit(killed));
                });
            }
            other => return Err(BackendError::Rejected(format!("the fake machine cannot run {other:?}"))),
        }
        Ok(control)
    }

    async fn render(&self, request: RenderRequest) -> Result<RenderedPage, BackendError> {
        let _ = request;
        Err(BackendError::Rejected("the fake browser renders nothing".into()))
    }

    async fn shutdown(&self) {
        // A real machine takes a while to go: yield so a caller that does not wait would see
        // it still there.
        tokio::task::yield_now().await;
        for process in self.processes.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            process.killed.notify_one();
        }
        self.record.machines_shut.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Debug)]
struct FakeProcess {
    events: ProcessSender,
    killed: tokio::sync::Notify,
}

#[async_trait]
impl ProcessControl for FakeProcess {
    async fn write_stdin(&self, data: Vec<u8>) -> Result<(), BackendError> {
        let _ = self.events.send(ProcessEvent::Stdout { text: String::from_utf8_lossy(&data).into_owned() });
        Ok(())
    }

    async fn close_stdin(&self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn kill(&self) -> Result<(), BackendError> {
        self.killed.notify_one();
        Ok(())
    }

    async fn resize(&self, size: PtySize) -> Result<(), BackendError> {
        let _ = size;
        Ok(())
    }
}

/// A kernel spec for `language` with a throwaway workspace path (the fakes never touch it).
pub(crate) fn kernel_spec(language: Language) -> KernelSpec {
    KernelSpec {
        language,
        preload: crate::kernel::Preload::Nothing,
        workspace: std::env::temp_dir(),
        env: Default::default(),
        stop: Default::default(),
        owner: None,
        network: None,
        packages: Vec::new(),
    }
}
