//! [`Agent`]: a small process inside a sandbox's container that starts the sandbox's processes
//! for it, so that a command costs a message instead of a `docker exec` (the Docker engine's
//! exec round trip alone is about 45 ms; a message and a fork about 5).
//!
//! The agent is `python3 -c` [`AGENT`], started with one exec when the container's first
//! process starts. It speaks JSON lines: on its standard input `run` (an argv, environment
//! over the container's, a working directory), `stdin` (base64) and `close`; on its standard
//! output `ready`, then per process `out`/`err` (base64) as they come and `exit` (a signal as
//! 128 + its number, as Docker reports it) or `failed` (it could not start). Processes still
//! run under the exec wrapper ([`crate::exec::wrapped`]): the same pid file, process group and
//! deadline, so killing one is unchanged. Terminals keep their exec (the agent has no PTYs).
//!
//! When the agent cannot start (an image without `python3`), processes are started with
//! `docker exec`; when it dies, the processes it was following end without an exit status (as
//! they would if their exec connection broke) and the next process starts a new agent.
//!
//! Trust: the agent runs as the container's user, like the processes it starts, so one of
//! them could open the agent's pipes through `/proc` and forge the output or exit of its own
//! sandbox's other processes, or stop the agent. Nothing it says is trusted beyond that: a line
//! that is not JSON or is too long stops the agent, and the container holds one sandbox.

use crate::docker::DockerEngine;
use crate::error::ContainerError;
use crate::exec::{self, Input};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bollard::container::LogOutput;
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// How long the agent may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest line taken from the agent (a 64 KiB chunk in base64 is about 88 KiB).
const MAX_LINE_BYTES: usize = 1 << 20;

/// The agent, run by the container's `python3`.
pub const AGENT: &str = r#"
import base64, json, os, queue, subprocess, sys, threading
lock = threading.Lock()
procs = {}
def emit(msg):
    line = (json.dumps(msg) + "\n").encode()
    with lock:
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
def pump(i, f, key):
    while True:
        try:
            data = os.read(f.fileno(), 65536)
        except OSError:
            data = b""
        if not data:
            return
        emit({"id": i, key: base64.b64encode(data).decode()})
def feed(p, q):
    while True:
        data = q.get()
        try:
            if data is None:
                p.stdin.close()
                return
            p.stdin.write(data)
            p.stdin.flush()
        except OSError:
            pass
def run(msg):
    i = msg["id"]
    env = dict(os.environ)
    env.update(msg.get("env") or {})
    try:
        p = subprocess.Popen(msg["argv"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             cwd=msg.get("cwd") or None, env=env, start_new_session=True)
    except OSError as e:
        emit({"id": i, "failed": str(e)})
        return
    q = queue.Queue()
    procs[i] = q
    threading.Thread(target=feed, args=(p, q), daemon=True).start()
    pumps = [threading.Thread(target=pump, args=(i, p.stdout, "out")), threading.Thread(target=pump, args=(i, p.stderr, "err"))]
    for t in pumps:
        t.start()
    def wait():
        code = p.wait()
        for t in pumps:
            t.join()
        procs.pop(i, None)
        emit({"id": i, "exit": code if code >= 0 else 128 - code})
    threading.Thread(target=wait, daemon=True).start()
emit({"ready": True})
for line in sys.stdin.buffer:
    msg = json.loads(line)
    if msg["op"] == "run":
        run(msg)
    elif msg["id"] in procs:
        procs[msg["id"]].put(base64.b64decode(msg["data"]) if msg["op"] == "stdin" else None)
"#;

/// What the agent says about one process.
#[derive(Debug)]
enum Said {
    Output(LogOutput),
    Exit(i64),
    Failed(String),
}

/// A running agent.
pub struct Agent {
    input: tokio::sync::Mutex<Input>,
    following: Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Said>>>>,
    alive: Arc<AtomicBool>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").field("alive", &self.is_alive()).finish_non_exhaustive()
    }
}

/// A process the agent started.
pub struct AgentProcess {
    /// Its output, ending when it exits (or the agent dies).
    pub output: exec::Output,
    /// Its exit status, set before its output ends; unset if the agent died first.
    pub exit: Arc<OnceLock<i64>>,
    /// Its id with the agent (for its standard input).
    pub id: u64,
}

impl std::fmt::Debug for AgentProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentProcess").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Agent {
    /// Starts the agent in `container` and waits until it is ready.
    pub async fn start(docker: &DockerEngine, container: &str) -> Result<Agent, ContainerError> {
        let argv = vec!["python3".to_owned(), "-c".to_owned(), AGENT.to_owned()];
        // In the container's working directory (the workspace): a process given no `cwd` runs there.
        let started = exec::start_argv(docker, container, argv, vec![], None, false).await?;
        let following: Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Said>>>> = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        let (ready, is_ready) = tokio::sync::oneshot::channel();
        tokio::spawn(read(started.output, Arc::clone(&following), Arc::clone(&alive), ready));
        match tokio::time::timeout(READY_TIMEOUT, is_ready).await {
            Ok(Ok(())) => {}
            _ => {
                return Err(ContainerError::Internal(
                    "the process agent did not start (no python3 in the image?)".into(),
                ));
            }
        }
        Ok(Agent { input: tokio::sync::Mutex::new(started.input), following, alive, next_id: AtomicU64::new(1) })
    }

    /// Whether it still runs.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Starts `argv` with `env` (over the container's) in `cwd` (default: the container's).
    pub async fn run(
        &self,
        argv: Vec<String>,
        env: &BTreeMap<String, String>,
        cwd: Option<&str>,
    ) -> Result<AgentProcess, ContainerError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, mut said) = mpsc::unbounded_channel();
        self.following.lock().unwrap_or_else(|e| e.into_inner()).insert(id, sender);
        if let Err(error) = self.send(&json!({ "op": "run", "id": id, "argv": argv, "env": env, "cwd": cwd })).await {
            self.following.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            return Err(error);
        }
        let exit = Arc::new(OnceLock::new());
        let set = Arc::clone(&exit);
        let output = futures_util::stream::poll_fn(move |cx| match said.poll_recv(cx) {
            std::task::Poll::Ready(Some(Said::Output(chunk))) => std::task::Poll::Ready(Some(Ok(chunk))),
            std::task::Poll::Ready(Some(Said::Exit(code))) => {
                let _ = set.set(code);
                std::task::Poll::Ready(None)
            }
            std::task::Poll::Ready(Some(Said::Failed(why))) => {
                tracing::info!(%why, "the process agent could not start a process");
                let _ = set.set(exec::EXIT_NOT_STARTED);
                std::task::Poll::Ready(None)
            }
            std::task::Poll::Ready(None) => std::task::Poll::Ready(None),
            std::task::Poll::Pending => std::task::Poll::Pending,
        });
        Ok(AgentProcess { output: Box::pin(output), exit, id })
    }

    /// Writes `data` to process `id`'s standard input.
    pub async fn write_stdin(&self, id: u64, data: &[u8]) -> Result<(), ContainerError> {
        self.send(&json!({ "op": "stdin", "id": id, "data": BASE64.encode(data) })).await
    }

    /// Closes process `id`'s standard input.
    pub async fn close_stdin(&self, id: u64) -> Result<(), ContainerError> {
        self.send(&json!({ "op": "close", "id": id })).await
    }

    async fn send(&self, message: &Value) -> Result<(), ContainerError> {
        let mut line = serde_json::to_vec(message).expect("JSON values serialize");
        line.push(b'\n');
        let mut input = self.input.lock().await;
        let sent = async {
            input.write_all(&line).await?;
            input.flush().await
        };
        sent.await.map_err(|e| {
            self.alive.store(false, Ordering::SeqCst);
            ContainerError::Internal(format!("the process agent is gone: {e}"))
        })
    }
}

/// Reads the agent's lines and hands each to the process it is about, until the agent ends;
/// then every process still followed ends (its sender dropped).
async fn read(
    mut output: exec::Output,
    following: Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Said>>>>,
    alive: Arc<AtomicBool>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    let mut pending: Vec<u8> = Vec::new();
    'reading: while let Some(Ok(chunk)) = output.next().await {
        let bytes = match chunk {
            LogOutput::StdOut { message } => message,
            LogOutput::StdErr { message } => {
                tracing::debug!(said = %String::from_utf8_lossy(&message), "the process agent's stderr");
                continue;
            }
            _ => continue,
        };
        pending.extend_from_slice(&bytes);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let Ok(message) = serde_json::from_slice::<Value>(&line) else {
                tracing::warn!("the process agent said something that is not JSON; stopping it");
                break 'reading;
            };
            if message.get("ready").is_some() {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
                continue;
            }
            dispatch(&following, &message);
        }
        if pending.len() > MAX_LINE_BYTES {
            tracing::warn!("the process agent wrote an overlong line; stopping it");
            break;
        }
    }
    alive.store(false, Ordering::SeqCst);
    following.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

fn dispatch(following: &Mutex<HashMap<u64, mpsc::UnboundedSender<Said>>>, message: &Value) {
    let Some(id) = message.get("id").and_then(Value::as_u64) else { return };
    let decode = |key: &str| message.get(key).and_then(Value::as_str).and_then(|b| BASE64.decode(b).ok());
    let said = if let Some(bytes) = decode("out") {
        Said::Output(LogOutput::StdOut { message: bytes.into() })
    } else if let Some(bytes) = decode("err") {
        Said::Output(LogOutput::StdErr { message: bytes.into() })
    } else if let Some(code) = message.get("exit").and_then(Value::as_i64) {
        Said::Exit(code)
    } else {
        Said::Failed(message.get("failed").and_then(Value::as_str).unwrap_or("unknown").to_owned())
    };
    let mut following = following.lock().unwrap_or_else(|e| e.into_inner());
    let ended = matches!(said, Said::Exit(_) | Said::Failed(_));
    if let Some(sender) = following.get(&id) {
        let _ = sender.send(said);
    }
    if ended {
        following.remove(&id);
    }
}
