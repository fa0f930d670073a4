//! envd's `process.Process` Connect service over the sandbox's container processes:
//! `commands.run` (foreground and background), `commands.connect`, `list`, `kill`,
//! `send_stdin`, `stream_input`, `close_stdin` and terminals (`pty.create`, `resize`).
//!
//! Every process is started in the background and its stream follows it (SoulBox's
//! replay-then-follow output): a client that goes away leaves the process running, as E2B's
//! envd does, and `Connect` replays what it wrote before following it. The stream starts with
//! `start` (the pid), then `data` as output happens, then `end`, with a `keepalive` while the
//! process is silent; it ends with an end-of-stream envelope.

use super::HOME;
use super::connect::{self, ConnectError, Envelopes, Unary};
use super::traffic::TargetSandbox;
use crate::http::AppState;
use crate::http::auth::Caller;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use soulbox_engine::Sandbox;
use soulbox_engine::process::{ProcessEvent, ProcessExit, ProcessSpec, PtySize};
use soulbox_engine::sandbox::ProcessStream;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a process's stream may be silent before a keepalive event (the SDK asks for one
/// at least every 50 s: `Keepalive-Ping-Interval`).
const KEEPALIVE: Duration = Duration::from_secs(30);

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/process.Process/Start", post(start))
        .route("/process.Process/Connect", post(connect))
        .route("/process.Process/List", post(list))
        .route("/process.Process/SendSignal", post(send_signal))
        .route("/process.Process/SendInput", post(send_input))
        .route("/process.Process/StreamInput", post(stream_input))
        .route("/process.Process/CloseStdin", post(close_stdin))
        .route("/process.Process/Update", post(update))
}

/// `ProcessConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ProcessConfig {
    cmd: String,
    args: Vec<String>,
    envs: BTreeMap<String, String>,
    cwd: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Pty {
    size: Option<Size>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Size {
    cols: u16,
    rows: u16,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StartRequest {
    process: ProcessConfig,
    pty: Option<Pty>,
    tag: Option<String>,
    stdin: Option<bool>,
}

/// `ProcessSelector`: a pid (tags are not kept).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Selector {
    pid: Option<u32>,
    tag: Option<String>,
}

impl Selector {
    fn pid(&self) -> Result<u32, ConnectError> {
        match (self.pid, &self.tag) {
            (Some(pid), _) => Ok(pid),
            (None, Some(_)) => {
                Err(ConnectError::new("invalid_argument", "SoulBox selects processes by pid, not by tag"))
            }
            (None, None) => Err(ConnectError::new("invalid_argument", "no process selected")),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Selected {
    process: Selector,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Input {
    stdin: Option<String>,
    pty: Option<String>,
}

impl Input {
    fn bytes(&self) -> Result<Vec<u8>, ConnectError> {
        let text = self.stdin.as_deref().or(self.pty.as_deref()).unwrap_or_default();
        BASE64.decode(text).map_err(|e| ConnectError::new("invalid_argument", format!("input is not base64: {e}")))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SendInputRequest {
    process: Selector,
    input: Input,
}

/// `SendSignalRequest`; its `signal` is not looked at: SIGTERM and SIGKILL both kill the
/// process and everything it started.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SendSignalRequest {
    process: Selector,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct UpdateRequest {
    process: Selector,
    pty: Option<Pty>,
}

/// A message of `StreamInput`'s request stream.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StreamInputMessage {
    start: Option<Selected>,
    data: Option<StreamInputData>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StreamInputData {
    input: Input,
}

/// The shell line for E2B's `cmd` and `args`: `bash -l -c LINE` is LINE (SoulBox runs every
/// command with `bash -c`), a bare shell is an interactive one, anything else is quoted word by
/// word.
fn command_line(config: &ProcessConfig) -> String {
    let shell = matches!(config.cmd.as_str(), "/bin/bash" | "bash" | "/bin/sh" | "sh");
    if shell {
        if let Some(at) = config.args.iter().position(|a| a == "-c") {
            return config.args.get(at + 1).cloned().unwrap_or_default();
        }
        if config.args.iter().all(|a| a.starts_with('-')) {
            return String::new();
        }
    }
    std::iter::once(&config.cmd).chain(&config.args).map(|word| quote(word)).collect::<Vec<_>>().join(" ")
}

/// `word` in single quotes for bash.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// `process.Process/Start`.
async fn start(
    State(state): State<AppState>,
    caller: Caller,
    TargetSandbox(sandbox): TargetSandbox,
    request: Request,
) -> Result<Response, ConnectError> {
    // A `tag` is not kept: SoulBox selects processes by pid (and refuses a tag selector).
    let request: StartRequest = first_message(request).await?;
    let mut env = BTreeMap::from([("HOME".to_owned(), HOME.to_owned()), ("USER".to_owned(), "user".to_owned())]);
    env.extend(request.process.envs.clone());
    let pty = request.pty.as_ref().map(|p| {
        let size = p.size.as_ref();
        PtySize { cols: size.map_or(80, |s| s.cols.max(1)), rows: size.map_or(24, |s| s.rows.max(1)) }
    });
    let cwd = super::wire::workspace_path(request.process.cwd.as_deref().unwrap_or(HOME));
    // bash keeps a `PWD` that names its working directory: `/home/user`, not the
    // `/workspace/home/user` the link resolves to.
    env.insert("PWD".into(), cwd.clone());
    let spec =
        ProcessSpec { command: command_line(&request.process), cwd: Some(cwd), env, pty, ..ProcessSpec::default() };
    let info = state.spawn_process(&caller, &sandbox, spec).await?;
    if request.stdin != Some(true) && pty.is_none() {
        // E2B's `stdin: false`: the process reads end-of-file.
        let _ = sandbox.close_stdin(info.pid).await;
    }
    let output = sandbox.process_output(info.pid)?;
    Ok(stream(info.pid, info.pty, output, state.lifecycle.shutdown.clone()))
}

/// `process.Process/Connect`: the process's output so far, then what comes.
async fn connect(
    State(state): State<AppState>,
    TargetSandbox(sandbox): TargetSandbox,
    request: Request,
) -> Result<Response, ConnectError> {
    let request: Selected = first_message(request).await?;
    let pid = request.process.pid()?;
    let info = sandbox.process(pid)?;
    let output = sandbox.process_output(pid)?;
    Ok(stream(pid, info.pty, output, state.lifecycle.shutdown.clone()))
}

/// Where a process's stream is.
enum Following {
    /// Following the process.
    Output(ProcessStream),
    /// Done: this envelope ends the stream.
    Ending(Bytes),
}

/// A process's events as a Connect server stream: `start`, then its events (keepalives while
/// it is silent), then the end of the stream, with an error if the sandbox went away or the
/// server is shutting down before the process ended.
fn stream(pid: u32, pty: bool, output: ProcessStream, shutdown: CancellationToken) -> Response {
    let start = connect::message(&json!({ "event": { "start": { "pid": pid } } }));
    let events = futures_util::stream::unfold(Some(Following::Output(output)), move |following| {
        let shutdown = shutdown.clone();
        async move {
            let mut output = match following? {
                Following::Output(output) => output,
                Following::Ending(last) => return Some((last, None)),
            };
            let next = tokio::select! {
                next = tokio::time::timeout(KEEPALIVE, output.next_event()) => next,
                () = shutdown.cancelled() => {
                    let last = ConnectError::new("unavailable", "the server is shutting down").end_of_stream();
                    return Some((Bytes::new(), Some(Following::Ending(last))));
                }
            };
            match next {
                Err(_) => {
                    Some((connect::message(&json!({ "event": { "keepalive": {} } })), Some(Following::Output(output))))
                }
                Ok(Some(event)) => {
                    let message = event_json(&event, pty).map(|e| connect::message(&e)).unwrap_or_default();
                    let after = match event {
                        ProcessEvent::Exit(_) => Following::Ending(connect::end_of_stream()),
                        _ => Following::Output(output),
                    };
                    Some((message, Some(after)))
                }
                Ok(None) => {
                    let last = ConnectError::new("unavailable", "the sandbox went away").end_of_stream();
                    Some((Bytes::new(), Some(Following::Ending(last))))
                }
            }
        }
    })
    .filter(|bytes| std::future::ready(!bytes.is_empty()));
    let body = futures_util::stream::once(async move { start }).chain(events).map(Ok::<_, std::convert::Infallible>);
    ([(header::CONTENT_TYPE, "application/connect+json")], Body::from_stream(body)).into_response()
}

/// A process event as E2B's `ProcessEvent`.
fn event_json(event: &ProcessEvent, pty: bool) -> Option<Value> {
    let data = |stream: &str, text: &str| json!({ "event": { "data": { stream: BASE64.encode(text) } } });
    Some(match event {
        ProcessEvent::Stdout { text } => data(if pty { "pty" } else { "stdout" }, text),
        ProcessEvent::Stderr { text } => data("stderr", text),
        ProcessEvent::Exit(exit) => json!({ "event": { "end": end_json(exit) } }),
        _ => return None,
    })
}

/// E2B's `EndEvent`: a process that exited by itself has its code and `exit status N`; one
/// that was killed (by a signal, a limit, its sandbox) `exited: false` and why.
fn end_json(exit: &ProcessExit) -> Value {
    match exit.exit_code {
        Some(code) if exit.outcome == soulbox_engine::Outcome::Completed => {
            json!({ "exitCode": code, "exited": true, "status": format!("exit status {code}") })
        }
        code => {
            let why = exit.message.clone().unwrap_or_else(|| exit.outcome.name().to_owned());
            json!({ "exitCode": code.unwrap_or(-1), "exited": false, "status": "signal: killed", "error": why })
        }
    }
}

/// `process.Process/List`: the running processes.
async fn list(TargetSandbox(sandbox): TargetSandbox) -> Response {
    let processes: Vec<Value> = sandbox
        .processes()
        .into_iter()
        .filter(|p| p.exit.is_none())
        .map(|p| json!({ "pid": p.pid, "config": { "cmd": "/bin/bash", "args": ["-l", "-c", p.command], "envs": {} } }))
        .collect();
    connect::reply(json!({ "processes": processes }))
}

/// `process.Process/SendSignal`: SIGKILL and SIGTERM both kill the process and its children.
async fn send_signal(
    TargetSandbox(sandbox): TargetSandbox,
    Unary(request): Unary<SendSignalRequest>,
) -> Result<Response, ConnectError> {
    let pid = request.process.pid()?;
    live(&sandbox, pid)?;
    sandbox.kill_process(pid).await?;
    Ok(connect::reply(json!({})))
}

/// `process.Process/SendInput`.
async fn send_input(
    TargetSandbox(sandbox): TargetSandbox,
    Unary(request): Unary<SendInputRequest>,
) -> Result<Response, ConnectError> {
    sandbox.send_stdin(request.process.pid()?, request.input.bytes()?).await?;
    Ok(connect::reply(json!({})))
}

/// `process.Process/CloseStdin`.
async fn close_stdin(
    TargetSandbox(sandbox): TargetSandbox,
    Unary(request): Unary<Selected>,
) -> Result<Response, ConnectError> {
    sandbox.close_stdin(request.process.pid()?).await?;
    Ok(connect::reply(json!({})))
}

/// `process.Process/Update`: a terminal's new size.
async fn update(
    TargetSandbox(sandbox): TargetSandbox,
    Unary(request): Unary<UpdateRequest>,
) -> Result<Response, ConnectError> {
    let pid = request.process.pid()?;
    if let Some(size) = request.pty.and_then(|p| p.size) {
        sandbox.resize_pty(pid, PtySize { cols: size.cols.max(1), rows: size.rows.max(1) }).await?;
    }
    Ok(connect::reply(json!({})))
}

/// `process.Process/StreamInput` (client stream): a `start` naming the process, then `data`
/// chunks written to its standard input in order, each as it arrives.
async fn stream_input(TargetSandbox(sandbox): TargetSandbox, request: Request) -> Result<Response, ConnectError> {
    let mut messages = Messages::of(request);
    let mut pid = None;
    while let Some(message) = messages.next::<StreamInputMessage>().await? {
        if let Some(start) = message.start {
            pid = Some(start.process.pid()?);
        }
        if let Some(data) = message.data {
            let Some(pid) = pid else {
                return Err(ConnectError::new("invalid_argument", "input came before the `start` naming the process"));
            };
            sandbox.send_stdin(pid, data.input.bytes()?).await?;
        }
    }
    let body = [connect::message(&json!({})), connect::end_of_stream()].concat();
    Ok(([(header::CONTENT_TYPE, "application/connect+json")], body).into_response())
}

/// A process that has not ended, or `not_found` (E2B's answer to killing an ended one).
fn live(sandbox: &Sandbox, pid: u32) -> Result<(), ConnectError> {
    match sandbox.process(pid) {
        Ok(info) if info.exit.is_none() => Ok(()),
        _ => Err(ConnectError::new("not_found", format!("process with pid {pid} not found"))),
    }
}

/// A request's messages, read as they arrive: envelopes (`application/connect+json`), or one
/// JSON document.
struct Messages {
    body: axum::body::BodyDataStream,
    enveloped: bool,
    envelopes: Envelopes,
    ready: std::collections::VecDeque<Bytes>,
    /// For a plain JSON request: whether its one message was taken.
    taken: bool,
}

impl Messages {
    fn of(request: Request) -> Self {
        let enveloped = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/connect+"));
        let body = request.into_body().into_data_stream();
        Messages { body, enveloped, envelopes: Envelopes::default(), ready: Default::default(), taken: false }
    }

    /// The next message, `None` at the end of the request.
    async fn next<T: serde::de::DeserializeOwned + Default>(&mut self) -> Result<Option<T>, ConnectError> {
        let reading = |e: axum::Error| ConnectError::new("invalid_argument", format!("reading the request: {e}"));
        let parse = |json: &[u8]| {
            serde_json::from_slice::<T>(json)
                .map_err(|e| ConnectError::new("invalid_argument", format!("the request message: {e}")))
        };
        if !self.enveloped {
            if std::mem::replace(&mut self.taken, true) {
                return Ok(None);
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = self.body.next().await {
                bytes.extend_from_slice(&chunk.map_err(reading)?);
                if bytes.len() > Envelopes::MAX_MESSAGE_BYTES {
                    return Err(ConnectError::new("resource_exhausted", "a request message is too large"));
                }
            }
            return Ok(Some(if bytes.is_empty() { T::default() } else { parse(&bytes)? }));
        }
        loop {
            if let Some(message) = self.ready.pop_front() {
                return Ok(Some(parse(&message)?));
            }
            match self.body.next().await {
                Some(chunk) => self.ready.extend(self.envelopes.push(&chunk.map_err(reading)?)?),
                None if self.envelopes.is_partial() => {
                    return Err(ConnectError::new("invalid_argument", "the request stream was cut short"));
                }
                None => return Ok(None),
            }
        }
    }
}

/// A server-streaming call's one request message.
pub(super) async fn first_message<T: serde::de::DeserializeOwned + Default>(
    request: Request,
) -> Result<T, ConnectError> {
    Messages::of(request).next().await?.ok_or_else(|| ConnectError::new("invalid_argument", "no request message"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(cmd: &str, args: &[&str]) -> ProcessConfig {
        ProcessConfig { cmd: cmd.into(), args: args.iter().map(|a| a.to_string()).collect(), ..Default::default() }
    }

    #[test]
    fn e2b_commands_become_shell_lines() {
        assert_eq!(command_line(&config("/bin/bash", &["-l", "-c", "echo hi | wc"])), "echo hi | wc");
        assert_eq!(command_line(&config("/bin/bash", &["-i", "-l"])), "", "an interactive shell");
        assert_eq!(command_line(&config("python3", &["-c", "print('x')"])), r#"'python3' '-c' 'print('\''x'\'')'"#);
    }

    #[test]
    fn an_exit_and_a_kill_are_told_apart() {
        let exit = |code, outcome| ProcessExit { exit_code: code, outcome, message: None, duration: Duration::ZERO };
        let done = end_json(&exit(Some(3), soulbox_engine::Outcome::Completed));
        assert_eq!(done, json!({"exitCode": 3, "exited": true, "status": "exit status 3"}));
        let killed = end_json(&exit(None, soulbox_engine::Outcome::Killed));
        assert_eq!((killed["exited"].clone(), killed["exitCode"].clone()), (json!(false), json!(-1)));
    }
}
