//! [`Cdp`]: a DevTools-protocol connection over Chromium's `--remote-debugging-pipe`.
//!
//! The pipe transport is JSON messages, each ended by a NUL byte, that the browser reads from
//! its fd 3 and answers on its fd 4. Here those are the standard input and output of the
//! `docker exec` that started it, so a sandbox's browser needs no network and no port inside
//! its container (a sandbox without network has none to offer). That is why this is not
//! chromiumoxide: it and its peers speak the WebSocket transport to a TCP port only. The
//! handful of commands a render needs are plain JSON here.
//!
//! Calls are matched to answers by id: a reader task routes each answer to its caller and
//! drops events (a render waits on page state by evaluating, not on events). When the
//! browser's output ends, every pending and later call fails with [`CdpError::Exited`], which
//! carries the end of what the browser wrote on stderr (kept, never logged as it comes: a page
//! decides what a browser prints).

use crate::exec::{Input, Output};
use bollard::container::LogOutput;
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

/// Most bytes of one message from the browser (a full-page PDF or screenshot, base64).
const MAX_MESSAGE_BYTES: usize = 96 << 20;
/// Bytes of the browser's stderr kept for the error that reports its exit.
const STDERR_TAIL_BYTES: usize = 2048;

/// What can go wrong on a DevTools connection.
#[derive(Debug, thiserror::Error)]
pub enum CdpError {
    /// The browser's pipe closed: it exited, crashed or was killed.
    #[error("the browser exited{}", stderr_suffix(.0))]
    Exited(String),
    /// The browser did not answer in time.
    #[error("the browser did not answer `{method}` within {} s", .after.as_secs())]
    TimedOut {
        /// The command.
        method: &'static str,
        /// How long SoulBox waited.
        after: Duration,
    },
    /// The browser answered with an error.
    #[error("the browser refused `{method}`: {message}")]
    Refused {
        /// The command.
        method: &'static str,
        /// The browser's message.
        message: String,
    },
    /// Writing to the browser failed.
    #[error("writing to the browser: {0}")]
    Io(#[from] std::io::Error),
}

fn stderr_suffix(tail: &str) -> String {
    if tail.trim().is_empty() { String::new() } else { format!(": {}", tail.trim()) }
}

type Answer = Result<Value, CdpError>;

/// Calls waiting for their answers, and why the connection closed once it has.
#[derive(Default)]
struct Pending {
    calls: HashMap<u64, oneshot::Sender<Answer>>,
    closed: Option<String>,
}

/// A connection to one browser.
pub struct Cdp {
    input: tokio::sync::Mutex<Input>,
    pending: Arc<Mutex<Pending>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Cdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cdp").field("open", &self.is_open()).finish_non_exhaustive()
    }
}

impl Cdp {
    /// A connection over a started browser's input and output (its reader runs on the current
    /// runtime until the output ends).
    pub fn new(input: Input, output: Output) -> Self {
        let pending = Arc::new(Mutex::new(Pending::default()));
        tokio::spawn(read(output, Arc::clone(&pending)));
        Cdp { input: tokio::sync::Mutex::new(input), pending, next_id: AtomicU64::new(1) }
    }

    /// Whether the browser's output is still open.
    pub fn is_open(&self) -> bool {
        lock(&self.pending).closed.is_none()
    }

    /// Sends `method` with `params` (to the page of `session`, or to the browser) and waits up
    /// to `timeout` for its result.
    pub async fn call(
        &self,
        session: Option<&str>,
        method: &'static str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, CdpError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        {
            let mut pending = lock(&self.pending);
            if let Some(tail) = &pending.closed {
                return Err(CdpError::Exited(tail.clone()));
            }
            pending.calls.insert(id, answer);
        }
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).expect("a JSON value serializes");
        bytes.push(0);
        let sent = async {
            let mut input = self.input.lock().await;
            input.write_all(&bytes).await?;
            input.flush().await
        };
        if let Err(error) = sent.await {
            lock(&self.pending).calls.remove(&id);
            return Err(CdpError::Io(error));
        }
        match tokio::time::timeout(timeout, answered).await {
            Ok(Ok(answer)) => answer.map_err(|error| match error {
                CdpError::Refused { message, .. } => CdpError::Refused { method, message },
                other => other,
            }),
            Ok(Err(_)) => Err(CdpError::Exited(lock(&self.pending).closed.clone().unwrap_or_default())),
            Err(_) => {
                lock(&self.pending).calls.remove(&id);
                Err(CdpError::TimedOut { method, after: timeout })
            }
        }
    }
}

/// Reads the browser's messages until its output ends, answering the calls they answer.
async fn read(mut output: Output, pending: Arc<Mutex<Pending>>) {
    let mut buffer: Vec<u8> = Vec::new();
    let mut stderr: Vec<u8> = Vec::new();
    while let Some(chunk) = output.next().await {
        match chunk {
            Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                buffer.extend_from_slice(&message);
                while let Some(end) = buffer.iter().position(|&b| b == 0) {
                    let message: Vec<u8> = buffer.drain(..=end).collect();
                    answer(&pending, &message[..end]);
                }
                if buffer.len() > MAX_MESSAGE_BYTES {
                    stderr.extend_from_slice(b"(a message from the browser was too large)");
                    break;
                }
            }
            Ok(LogOutput::StdErr { message }) => {
                stderr.extend_from_slice(&message);
                let excess = stderr.len().saturating_sub(STDERR_TAIL_BYTES);
                stderr.drain(..excess);
            }
            Ok(LogOutput::StdIn { .. }) => {}
            Err(error) => {
                stderr.extend_from_slice(format!("(the connection failed: {error})").as_bytes());
                break;
            }
        }
    }
    let tail = String::from_utf8_lossy(&stderr).into_owned();
    let calls = {
        let mut pending = lock(&pending);
        pending.closed = Some(tail.clone());
        std::mem::take(&mut pending.calls)
    };
    for (_, call) in calls {
        let _ = call.send(Err(CdpError::Exited(tail.clone())));
    }
}

/// Routes one message: an answer to its caller; events and garbage are dropped.
fn answer(pending: &Mutex<Pending>, message: &[u8]) {
    let Ok(message) = serde_json::from_slice::<Value>(message) else { return };
    let Some(id) = message.get("id").and_then(Value::as_u64) else { return };
    let Some(call) = lock(pending).calls.remove(&id) else { return };
    let answer = match message.get("error") {
        Some(error) => Err(CdpError::Refused {
            method: "",
            message: error.get("message").and_then(Value::as_str).unwrap_or("unknown error").to_owned(),
        }),
        None => Ok(message.get("result").cloned().unwrap_or(Value::Null)),
    };
    let _ = call.send(answer);
}

fn lock(pending: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    pending.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A fake browser: reads NUL-ended calls from the connection's input and answers each
    /// with `{"echo": method}` (or an error for `Fail.me`), with an event before each answer.
    async fn connected() -> (Cdp, tokio::task::JoinHandle<()>) {
        let (ours, mut theirs) = tokio::io::duplex(1 << 16);
        let (to_reader, from_browser) = tokio::sync::mpsc::unbounded_channel::<Result<LogOutput, _>>();
        let output: Output = Box::pin(tokio_stream_of(from_browser));
        let browser = tokio::spawn(async move {
            let mut buffer = Vec::new();
            let mut byte = [0u8; 1];
            while theirs.read(&mut byte).await.unwrap_or(0) == 1 {
                if byte[0] != 0 {
                    buffer.push(byte[0]);
                    continue;
                }
                let call: Value = serde_json::from_slice(&buffer).unwrap();
                buffer.clear();
                let id = call["id"].clone();
                let method = call["method"].as_str().unwrap().to_owned();
                let event = b"{\"method\":\"Page.loadEventFired\",\"params\":{}}\0".to_vec();
                let reply = if method == "Fail.me" {
                    json!({"id": id, "error": {"code": -32000, "message": "no such thing"}})
                } else {
                    json!({"id": id, "result": {"echo": method, "session": call["sessionId"]}})
                };
                let mut reply = serde_json::to_vec(&reply).unwrap();
                reply.push(0);
                // An answer split across chunks, after an event in the same chunk.
                let mut first = event;
                first.extend_from_slice(&reply[..5]);
                let _ = to_reader.send(Ok(LogOutput::StdOut { message: first.into() }));
                let _ = to_reader.send(Ok(LogOutput::StdOut { message: reply[5..].to_vec().into() }));
            }
            let _ = to_reader.send(Ok(LogOutput::StdErr { message: "crashed: out of memory\n".into() }));
        });
        (Cdp::new(Box::pin(ours), output), browser)
    }

    fn tokio_stream_of<T: Send + 'static>(
        mut receiver: tokio::sync::mpsc::UnboundedReceiver<T>,
    ) -> impl futures_util::Stream<Item = T> + Send {
        futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
    }

    #[tokio::test]
    async fn calls_get_their_own_answers_and_errors_name_the_method() {
        let (cdp, _browser) = connected().await;
        let second = Duration::from_secs(5);
        let (a, b) = tokio::join!(
            cdp.call(None, "Browser.getVersion", json!({}), second),
            cdp.call(Some("S1"), "Page.navigate", json!({"url": "about:blank"}), second),
        );
        assert_eq!(a.unwrap()["echo"], "Browser.getVersion");
        let b = b.unwrap();
        assert_eq!((b["echo"].as_str(), b["session"].as_str()), (Some("Page.navigate"), Some("S1")));
        let refused = cdp.call(None, "Fail.me", json!({}), second).await.unwrap_err();
        assert_eq!(refused.to_string(), "the browser refused `Fail.me`: no such thing");
        assert!(cdp.is_open());
    }

    #[tokio::test]
    async fn a_closed_browser_fails_every_call_with_its_last_words() {
        let (cdp, browser) = connected().await;
        cdp.input.lock().await.shutdown().await.unwrap();
        browser.await.unwrap();
        let error = cdp.call(None, "Browser.getVersion", json!({}), Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(error, CdpError::Exited(_) | CdpError::Io(_)), "{error}");
        // Once the reader saw the end, the reason is the browser's stderr.
        while cdp.is_open() {
            tokio::task::yield_now().await;
        }
        let error = cdp.call(None, "Browser.getVersion", json!({}), Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(error.to_string(), "the browser exited: crashed: out of memory");
    }
}
