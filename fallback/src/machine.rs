//! [`DockerMachine`]: a sandbox's container, where its processes, terminals and browser run.
//!
//! The container is made when the sandbox starts its first process, with the sandbox's
//! workspace bind-mounted at `/workspace` (so a file a Python cell writes is there for `ls`,
//! and the other way round), and removed when the sandbox dies. If it dies first (killed to
//! stop a fork bomb, say), the next process gets a new one over the same workspace.
//!
//! Renders go to the container's browser, kept warm between them ([`browser::WarmBrowser`]).
//!
//! A process is started by the container's [`Agent`] (a message, not a `docker exec`), or by an
//! exec for a terminal or when the agent cannot run. Its output is forwarded as it comes; its
//! deadline is enforced by the wrapper inside the container, with a backstop here; a kill
//! takes its whole process group, and when the container cannot even run the kill (every pid
//! taken) the container itself is killed.

use crate::agent::Agent;
use crate::browser;
use crate::cgroup::{self, KillVerdict};
use crate::confinement::{ContainerSpec, share_with_containers};
use crate::containers::{Containers, short};
use crate::egress::Admission;
use crate::error::ContainerError;
use crate::exec::{self, Channel, CommandLine, Decoder, EXIT_KILLED, Input};
use async_trait::async_trait;
use bollard::exec::ResizeExecOptions;
use futures_util::StreamExt;
use soulbox_engine::network::NetworkRules;
use soulbox_engine::process::{
    Machine, MachineSpec, ProcessControl, ProcessEvent, ProcessExit, ProcessSender, ProcessSpec, PtySize,
    RenderRequest, RenderedPage,
};
use soulbox_engine::{BackendError, Outcome};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Time past a process's deadline before SoulBox kills it itself.
const DEADLINE_GRACE: Duration = Duration::from_secs(1);
/// The variables that point a networked container's programs at the egress proxy.
const PROXY_VARIABLES: [&str; 4] = ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"];
/// What they reach directly: the container's own servers.
const NO_PROXY: &str = "localhost,127.0.0.1,::1";

/// A sandbox's container.
#[derive(Debug)]
pub struct DockerMachine {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    containers: Arc<Containers>,
    spec: MachineSpec,
    /// The container's id, once made; `None` after it died.
    container: tokio::sync::Mutex<Option<String>>,
    /// The agent of the container named, once started.
    agent: tokio::sync::Mutex<Option<(String, Arc<Agent>)>>,
    /// Set when the image cannot run the agent: every process is an exec.
    no_agent: AtomicBool,
    next_process: AtomicU64,
    /// The container's browser, kept warm between renders.
    browser: browser::WarmBrowser,
    shut: AtomicBool,
    /// The network policy's rules, when the sandbox has network.
    rules: Option<NetworkRules>,
    /// The current container's place at the egress proxy.
    admission: std::sync::Mutex<Option<Admission>>,
}

impl DockerMachine {
    /// A machine for `spec` (its container is made on first use).
    pub fn new(containers: Arc<Containers>, spec: MachineSpec) -> Result<Self, ContainerError> {
        if spec.network.is_some() && !containers.config.allow_network {
            return Err(ContainerError::Rejected(
                "network access is not allowed on this server (`network.allow_internet`)".into(),
            ));
        }
        let rules = match &spec.network {
            Some(policy) => Some(policy.rules().map_err(|e| ContainerError::Rejected(e.to_string()))?),
            None => None,
        };
        Ok(DockerMachine {
            shared: Arc::new(Shared {
                containers,
                spec,
                container: tokio::sync::Mutex::new(None),
                agent: tokio::sync::Mutex::new(None),
                no_agent: AtomicBool::new(false),
                next_process: AtomicU64::new(0),
                browser: browser::WarmBrowser::default(),
                shut: AtomicBool::new(false),
                rules,
                admission: std::sync::Mutex::new(None),
            }),
        })
    }
}

impl Shared {
    /// The running container, made (or made again) when needed.
    async fn container(&self) -> Result<String, ContainerError> {
        if self.shut.load(Ordering::SeqCst) {
            return Err(ContainerError::Rejected("the sandbox is gone".into()));
        }
        let mut current = self.container.lock().await;
        if self.shut.load(Ordering::SeqCst) {
            return Err(ContainerError::Rejected("the sandbox is gone".into()));
        }
        if let Some(id) = current.as_ref() {
            // A live agent in it says it runs, without asking the engine.
            if self.agent_of(id).await.is_some() || self.containers.is_running(id).await? {
                return Ok(id.clone());
            }
            tracing::info!(sandbox = %self.spec.sandbox_id, container = %short(id), "sandbox container died; making another");
            self.admit(None);
            self.containers.remove(id).await;
        }
        let mut env: Vec<String> = self.spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let proxy = match self.rules {
            Some(_) => Some(self.containers.egress_proxy().await?),
            None => None,
        };
        if let Some(proxy) = &proxy {
            let url = proxy.url();
            env.extend(PROXY_VARIABLES.iter().map(|name| format!("{name}={url}")));
            env.extend(["NO_PROXY", "no_proxy"].map(|name| format!("{name}={NO_PROXY}")));
        }
        let purpose = format!("sandbox:{}", self.spec.sandbox_id);
        let spec = ContainerSpec {
            workspace: &self.spec.workspace,
            memory_bytes: self.containers.config.machine_memory_bytes,
            network: proxy.is_some(),
            env,
            purpose: &purpose,
            agent: false,
        };
        let id = self.containers.start(&spec).await?;
        if let (Some(proxy), Some(rules)) = (&proxy, &self.rules) {
            match self.containers.egress_address(&id).await {
                Ok(address) => self.admit(Some(proxy.admit(address, rules.clone()))),
                Err(error) => {
                    self.containers.remove(&id).await;
                    return Err(error);
                }
            }
        }
        tracing::info!(sandbox = %self.spec.sandbox_id, container = %short(&id), "sandbox container started");
        *current = Some(id.clone());
        Ok(id)
    }

    /// Replaces the container's place at the egress proxy (the old one's address is freed).
    fn admit(&self, admission: Option<Admission>) {
        *self.admission.lock().unwrap_or_else(|p| p.into_inner()) = admission;
    }

    /// Hands what the host wrote in the workspace (the private workspace itself included) to
    /// the containers' user, before anything in the container reads it.
    async fn share_workspace(&self) -> Result<(), ContainerError> {
        let workspace = self.spec.workspace.clone();
        tokio::task::spawn_blocking(move || share_with_containers(&workspace))
            .await
            .map_err(|e| ContainerError::Internal(format!("sharing the workspace: {e}")))?
            .map_err(|e| ContainerError::io("sharing the workspace", e))
    }

    /// The live agent of container `id`, if it has one.
    async fn agent_of(&self, id: &str) -> Option<Arc<Agent>> {
        let agent = self.agent.lock().await;
        agent.as_ref().filter(|(of, agent)| of == id && agent.is_alive()).map(|(_, agent)| Arc::clone(agent))
    }

    /// The agent of container `id`, started if it has none (or its last one died); `None` when
    /// the image cannot run one.
    async fn agent(&self, id: &str) -> Option<Arc<Agent>> {
        if self.no_agent.load(Ordering::Relaxed) {
            return None;
        }
        let mut agent = self.agent.lock().await;
        if let Some((of, running)) = agent.as_ref()
            && of == id
            && running.is_alive()
        {
            return Some(Arc::clone(running));
        }
        match Agent::start(&self.containers.docker, id).await {
            Ok(started) => {
                let started = Arc::new(started);
                *agent = Some((id.to_owned(), Arc::clone(&started)));
                Some(started)
            }
            Err(error) => {
                tracing::info!(%error, container = %short(id), "no process agent: processes start with docker exec");
                self.no_agent.store(true, Ordering::Relaxed);
                None
            }
        }
    }

    /// Kills the container (its processes die; the next process gets a new one).
    async fn kill_container(&self, id: &str) {
        if let Err(error) = self.containers.kill(id).await {
            tracing::warn!(container = %short(id), %error, "could not kill a sandbox container");
        }
    }
}

#[async_trait]
impl Machine for DockerMachine {
    async fn start(&self, spec: ProcessSpec, events: ProcessSender) -> Result<Arc<dyn ProcessControl>, BackendError> {
        let shared = &self.shared;
        let container = shared.container().await?;
        shared.share_workspace().await?;
        let number = shared.next_process.fetch_add(1, Ordering::Relaxed) + 1;
        let line = CommandLine {
            command: spec.command.clone(),
            env: spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            cwd: spec.cwd.clone(),
            deadline: spec.deadline,
            tty: spec.pty.is_some(),
            pid_file: format!("/tmp/.soulbox/{number}.pid"),
        };
        // The OOM count before the process exists: a process killed for memory before its
        // driver first runs still counts.
        let oom_before = cgroup::oom_kills(&container);
        let agent = match spec.pty {
            None => shared.agent(&container).await,
            Some(_) => None,
        };
        let (output, stdin, exit) = match agent {
            Some(agent) => {
                let run = agent.run(exec::wrapped(&line), &spec.env, line.cwd.as_deref()).await?;
                (run.output, Stdin::Agent { agent, id: run.id }, Exit::Agent(run.exit))
            }
            None => {
                let started = exec::start(&shared.containers.docker, &container, &line).await?;
                let stdin = Stdin::Exec(tokio::sync::Mutex::new(Some(started.input)));
                (started.output, stdin, Exit::Exec(started.exec_id))
            }
        };
        let process = Arc::new(MachineProcess {
            shared: Arc::clone(shared),
            container,
            exit,
            pid_file: line.pid_file.clone(),
            stdin,
            killed: AtomicBool::new(false),
        });
        if let Some(size) = spec.pty
            && let Err(error) = process.resize(size).await
        {
            // The process may have ended already (a `cwd` the container does not have): its
            // exit, which `drive` reports, says why.
            tracing::debug!(%error, "could not size a new terminal");
        }
        tokio::spawn(drive(Arc::clone(&process), output, events, spec.deadline, oom_before));
        Ok(process)
    }

    async fn render(&self, request: RenderRequest) -> Result<RenderedPage, BackendError> {
        let container = self.shared.container().await?;
        self.shared.share_workspace().await?;
        Ok(self.shared.browser.render(&self.shared.containers, &container, request).await?)
    }

    async fn shutdown(&self) {
        self.shared.shut.store(true, Ordering::SeqCst);
        if let Some(id) = self.shared.container.lock().await.take() {
            self.shared.admit(None);
            self.shared.containers.remove(&id).await;
            tracing::info!(sandbox = %self.shared.spec.sandbox_id, container = %short(&id), "sandbox container removed");
        }
    }
}

/// One process in a sandbox's container.
struct MachineProcess {
    shared: Arc<Shared>,
    container: String,
    exit: Exit,
    pid_file: String,
    stdin: Stdin,
    killed: AtomicBool,
}

/// Where a process's exit status comes from.
enum Exit {
    /// Its exec's, asked of the engine once its output ends.
    Exec(String),
    /// The agent's word, given before its output ends.
    Agent(Arc<std::sync::OnceLock<i64>>),
}

/// Where its standard input goes.
enum Stdin {
    /// Its exec's attached input (`None` once closed).
    Exec(tokio::sync::Mutex<Option<Input>>),
    /// Through the agent.
    Agent { agent: Arc<Agent>, id: u64 },
}

impl std::fmt::Debug for MachineProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let started_by = match &self.exit {
            Exit::Exec(id) => format!("exec {id}"),
            Exit::Agent(_) => "agent".to_owned(),
        };
        f.debug_struct("MachineProcess")
            .field("container", &short(&self.container))
            .field("started_by", &started_by)
            .finish()
    }
}

impl MachineProcess {
    /// Kills the process group; if the container cannot run the kill, the container.
    async fn kill_group(&self) {
        let docker = &self.shared.containers.docker;
        if let Err(error) = exec::kill_group(docker, &self.container, &self.pid_file).await {
            tracing::info!(%error, container = %short(&self.container), "could not kill a process group; killing its container");
            self.shared.kill_container(&self.container).await;
        }
    }
}

#[async_trait]
impl ProcessControl for MachineProcess {
    async fn write_stdin(&self, data: Vec<u8>) -> Result<(), BackendError> {
        let input = match &self.stdin {
            Stdin::Agent { agent, id } => return Ok(agent.write_stdin(*id, &data).await?),
            Stdin::Exec(input) => input,
        };
        let mut input = input.lock().await;
        let writer = input.as_mut().ok_or_else(|| BackendError::Rejected("stdin is closed".into()))?;
        let written = async {
            writer.write_all(&data).await?;
            writer.flush().await
        };
        written.await.map_err(|e| BackendError::Rejected(format!("the process does not take input: {e}")))
    }

    async fn close_stdin(&self) -> Result<(), BackendError> {
        match &self.stdin {
            Stdin::Agent { agent, id } => agent.close_stdin(*id).await?,
            Stdin::Exec(input) => {
                if let Some(mut writer) = input.lock().await.take() {
                    let _ = writer.shutdown().await;
                }
            }
        }
        Ok(())
    }

    async fn kill(&self) -> Result<(), BackendError> {
        self.killed.store(true, Ordering::SeqCst);
        self.kill_group().await;
        Ok(())
    }

    async fn resize(&self, size: PtySize) -> Result<(), BackendError> {
        let Exit::Exec(id) = &self.exit else {
            return Err(BackendError::Rejected("the process has no terminal".into()));
        };
        let options = ResizeExecOptions { height: size.rows, width: size.cols };
        let id = id.clone();
        self.shared
            .containers
            .docker
            .call("resize a terminal", crate::docker::Retry::Yes, |d| {
                let id = id.clone();
                async move { d.resize_exec(&id, options).await }
            })
            .await
            .map_err(BackendError::from)
    }
}

/// Forwards a process's output, enforces its deadline's backstop, and reports its exit.
async fn drive(
    process: Arc<MachineProcess>,
    mut output: exec::Output,
    events: ProcessSender,
    deadline: Option<Duration>,
    oom_before: Option<u64>,
) {
    let started = Instant::now();
    let mut decoder = Decoder::default();
    let backstop = tokio::time::sleep(deadline.map_or(Duration::from_secs(u64::MAX / 4), |d| d + DEADLINE_GRACE));
    tokio::pin!(backstop);
    let mut overdue = false;
    let mut lost = false;
    // After the deadline's kill, output that stays open (a child that left the process group
    // holds it) is given up on after this long, and the container killed.
    let give_up = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(give_up);
    loop {
        tokio::select! {
            chunk = output.next() => match chunk {
                Some(Ok(chunk)) => {
                    if let Some((channel, text)) = decoder.decode(chunk) {
                        send(&events, channel, text);
                    }
                }
                Some(Err(error)) => {
                    tracing::debug!(%error, "lost a process's output");
                    lost = true;
                    break;
                }
                None => break,
            },
            () = &mut backstop, if !overdue => {
                overdue = true;
                process.kill_group().await;
                give_up.as_mut().reset(tokio::time::Instant::now() + DEADLINE_GRACE);
            }
            () = &mut give_up => {
                process.shared.kill_container(&process.container).await;
                break;
            }
        }
    }
    for (channel, text) in decoder.finish() {
        send(&events, channel, text);
    }
    let code = match &process.exit {
        Exit::Exec(id) => exec::exit_code(&process.shared.containers.docker, id).await.ok().flatten(),
        Exit::Agent(said) => said.get().copied(),
    };
    let elapsed = started.elapsed();
    let timed_out = overdue || deadline.is_some_and(|d| elapsed + Duration::from_millis(50) >= d);
    let (outcome, message) = match code {
        _ if process.killed.load(Ordering::SeqCst) => (Outcome::Killed, Some("killed on request".to_owned())),
        Some(EXIT_KILLED) if timed_out => (Outcome::DeadlineExceeded, Some("stopped at its deadline".to_owned())),
        Some(EXIT_KILLED) => match KillVerdict::from_counts(oom_before, cgroup::oom_kills(&process.container)) {
            KillVerdict::OutOfMemory => (
                Outcome::MemoryExceeded,
                Some("killed (SIGKILL) by the OOM killer: the sandbox's memory cap was reached".to_owned()),
            ),
            // Not the memory cap: the program's own doing (`kill -9 $$`, `exit 137`).
            KillVerdict::NotMemory => (Outcome::Completed, None),
            KillVerdict::Unknown => (
                Outcome::Crashed,
                Some("killed (SIGKILL); whether by the memory cap is unknown (the cgroup is not readable)".to_owned()),
            ),
        },
        Some(_) => (Outcome::Completed, None),
        None if lost => (Outcome::Crashed, Some("the sandbox's container stopped answering".to_owned())),
        None => (Outcome::Crashed, Some("the process's exit status is unknown (its container died)".to_owned())),
    };
    let exit_code = code.and_then(|c| i32::try_from(c).ok());
    let _ = events.send(ProcessEvent::Exit(ProcessExit { exit_code, outcome, message, duration: elapsed }));
}

fn send(events: &ProcessSender, channel: Channel, text: String) {
    if text.is_empty() {
        return;
    }
    let event = match channel {
        Channel::Stdout => ProcessEvent::Stdout { text },
        Channel::Stderr => ProcessEvent::Stderr { text },
    };
    let _ = events.send(event);
}
