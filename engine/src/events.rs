//! A cell's events on their way from the guest's thread to the caller: bounded in bytes, with
//! backpressure.
//!
//! A kernel sends from the worker thread that runs the guest (an output tap, a result frame):
//! [`EventSender::send`] is synchronous. When more than [`MAX_BUFFERED_EVENT_BYTES`] wait for a
//! caller that does not read (a client that stopped reading a stream), the guest waits in that
//! send, its worker pool told it waits ([`crate::job_waiting`]) so other jobs get threads,
//! until the caller reads, goes away (the event is dropped), or the channel's deadline passes
//! (the event is dropped; the guest's own deadline has passed by then too). So what the host
//! holds for one cell is bounded by the buffer, whatever the guest writes and however slowly
//! the caller reads.
//!
//! A caller that keeps every event until the cell ends ([`crate::Sandbox::run_code`]) gains
//! nothing from the bound, and uses a [`collecting_channel`], whose sends never wait (what it
//! holds is bounded by the cell's output limits, as the caller's copy is). A kernel may then
//! run the cell on the caller's own task ([`EventSender::waits`]), where a send that waited
//! for the caller to read would wait for itself.

use crate::kernel::{ExecutionEvent, RichResult};
use std::collections::VecDeque;
use std::future::Future as _;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;

/// Bytes of events waiting for a caller, at most, before the guest waits.
pub const MAX_BUFFERED_EVENT_BYTES: usize = 4 << 20;

/// Why an event was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Undelivered {
    /// Nobody will read it: the caller went away.
    #[error("the caller went away")]
    Closed,
    /// The caller did not read before the channel's deadline.
    #[error("the caller did not read in time")]
    TimedOut,
}

/// A new channel whose sends wait for room until `until` at the latest.
pub fn channel(until: Instant) -> (EventSender, EventReceiver) {
    new_channel(Some(MAX_BUFFERED_EVENT_BYTES), until)
}

/// A new channel whose sends never wait: for a caller that keeps every event until the cell
/// ends ([`crate::Sandbox::run_code`]), so that what waits in the channel costs no more than
/// the caller's own copy would (both are bounded by the cell's output limits). Its sender can
/// run on the caller's own task ([`EventSender::waits`]).
pub fn collecting_channel() -> (EventSender, EventReceiver) {
    new_channel(None, Instant::now())
}

fn new_channel(bound: Option<usize>, until: Instant) -> (EventSender, EventReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State { senders: 1, receiving: true, ..State::default() }),
        room: Condvar::new(),
        ready: Arc::new(tokio::sync::Notify::new()),
        bound,
        until,
    });
    (EventSender { shared: Arc::clone(&shared) }, EventReceiver { shared, waiting: None })
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    room: Condvar,
    ready: Arc<tokio::sync::Notify>,
    /// Bytes buffered, at most, before a send waits; `None`: sends never wait.
    bound: Option<usize>,
    until: Instant,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<(ExecutionEvent, usize)>,
    bytes: usize,
    senders: usize,
    receiving: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Sends a cell's events (cheap to clone; the channel ends when the last clone drops).
#[derive(Debug)]
pub struct EventSender {
    shared: Arc<Shared>,
}

impl Clone for EventSender {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        EventSender { shared: Arc::clone(&self.shared) }
    }
}

impl Drop for EventSender {
    fn drop(&mut self) {
        self.shared.lock().senders -= 1;
        self.shared.ready.notify_one();
    }
}

impl EventSender {
    /// Sends `event` without waiting, past the buffer's bound if need be: for the host's own
    /// last event of a cell (its end), sent from async code, which must never block.
    pub fn send_now(&self, event: ExecutionEvent) -> Result<(), Undelivered> {
        let size = weight(&event);
        self.push(self.shared.lock(), event, size)
    }

    /// Whether a send may wait for the caller to read (a [`channel`], not a
    /// [`collecting_channel`]): a sender that may wait must not run on its caller's task.
    pub fn waits(&self) -> bool {
        self.shared.bound.is_some()
    }

    /// Sends `event`, waiting while the buffer is full (see the module's documentation).
    /// Blocking: for the guest's thread, never for async code ([`EventSender::send_now`]).
    pub fn send(&self, event: ExecutionEvent) -> Result<(), Undelivered> {
        let size = weight(&event);
        let Some(bound) = self.shared.bound else { return self.push(self.shared.lock(), event, size) };
        let mut state = self.shared.lock();
        while state.receiving && state.bytes > 0 && state.bytes + size > bound {
            let now = Instant::now();
            if now >= self.shared.until {
                return Err(Undelivered::TimedOut);
            }
            crate::job_waiting(true);
            state = self.shared.room.wait_timeout(state, self.shared.until - now).unwrap_or_else(|e| e.into_inner()).0;
            crate::job_waiting(false);
        }
        self.push(state, event, size)
    }

    fn push(&self, mut state: MutexGuard<'_, State>, event: ExecutionEvent, size: usize) -> Result<(), Undelivered> {
        if !state.receiving {
            return Err(Undelivered::Closed);
        }
        state.bytes += size;
        state.queue.push_back((event, size));
        drop(state);
        self.shared.ready.notify_one();
        Ok(())
    }
}

/// Receives a cell's events.
pub struct EventReceiver {
    shared: Arc<Shared>,
    waiting: Option<std::pin::Pin<Box<tokio::sync::futures::OwnedNotified>>>,
}

impl std::fmt::Debug for EventReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventReceiver").finish_non_exhaustive()
    }
}

impl Drop for EventReceiver {
    fn drop(&mut self) {
        self.shared.lock().receiving = false;
        self.shared.room.notify_all();
    }
}

impl EventReceiver {
    /// The next event; `None` once every sender is gone and the buffer is empty.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<ExecutionEvent>> {
        loop {
            {
                let mut state = self.shared.lock();
                if let Some((event, size)) = state.queue.pop_front() {
                    state.bytes -= size;
                    drop(state);
                    self.shared.room.notify_all();
                    self.waiting = None;
                    return Poll::Ready(Some(event));
                }
                if state.senders == 0 {
                    return Poll::Ready(None);
                }
            }
            let waiting = self.waiting.get_or_insert_with(|| Box::pin(Arc::clone(&self.shared.ready).notified_owned()));
            match waiting.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                // Told something changed: look again, with a fresh registration.
                Poll::Ready(()) => self.waiting = None,
            }
        }
    }
}

/// What an event weighs in the buffer: its text, roughly.
fn weight(event: &ExecutionEvent) -> usize {
    const OVERHEAD: usize = 64;
    OVERHEAD
        + match event {
            ExecutionEvent::Stdout { text } | ExecutionEvent::Stderr { text } => text.len(),
            ExecutionEvent::Result(result) => result_weight(result),
            ExecutionEvent::Error(error) => error.name.len() + error.value.len() + error.traceback.len(),
            ExecutionEvent::End(_) => 0,
        }
}

fn result_weight(result: &RichResult) -> usize {
    let texts = [&result.text, &result.html, &result.markdown, &result.svg, &result.png, &result.latex];
    let json = [&result.json, &result.data, &result.chart];
    texts.iter().map(|t| t.as_ref().map_or(0, String::len)).sum::<usize>()
        + json.iter().map(|j| j.as_ref().map_or(0, |v| v.to_string().len())).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn text(n: usize) -> ExecutionEvent {
        ExecutionEvent::Stdout { text: "x".repeat(n) }
    }

    #[test]
    fn a_collecting_channel_never_makes_its_sender_wait() {
        let (bounded, _reader) = channel(Instant::now() + Duration::from_secs(60));
        assert!(bounded.waits());
        let (sender, mut receiver) = collecting_channel();
        assert!(!sender.waits());
        // Three times the bound, nobody reading: a bounded channel's sender would wait.
        for _ in 0..3 {
            sender.send(text(MAX_BUFFERED_EVENT_BYTES)).unwrap();
        }
        drop(sender);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut received = 0;
        while let Poll::Ready(Some(_)) = receiver.poll_recv(&mut cx) {
            received += 1;
        }
        assert_eq!(received, 3);
    }

    #[tokio::test]
    async fn a_full_buffer_makes_the_sender_wait_until_the_caller_reads() {
        let (sender, mut receiver) = channel(Instant::now() + Duration::from_secs(60));
        sender.send(text(MAX_BUFFERED_EVENT_BYTES)).unwrap();
        let (tell, sent) = std::sync::mpsc::channel();
        let writer = std::thread::spawn(move || {
            let result = sender.send(text(10));
            tell.send(()).unwrap();
            result
        });
        assert!(sent.try_recv().is_err(), "the second send waits for room");
        let first = std::future::poll_fn(|cx| receiver.poll_recv(cx)).await.unwrap();
        assert!(matches!(first, ExecutionEvent::Stdout { text } if text.len() == MAX_BUFFERED_EVENT_BYTES));
        writer.join().unwrap().unwrap();
        let second = std::future::poll_fn(|cx| receiver.poll_recv(cx)).await;
        assert!(matches!(second, Some(ExecutionEvent::Stdout { text }) if text.len() == 10));
        assert!(std::future::poll_fn(|cx| receiver.poll_recv(cx)).await.is_none(), "every sender is gone");
    }

    #[test]
    fn a_caller_that_goes_away_or_never_reads_releases_the_sender() {
        let (sender, receiver) = channel(Instant::now() + Duration::from_millis(1));
        sender.send(text(MAX_BUFFERED_EVENT_BYTES)).unwrap();
        assert_eq!(sender.send(text(10)), Err(Undelivered::TimedOut));
        drop(receiver);
        assert_eq!(sender.send(text(10)), Err(Undelivered::Closed));
    }
}
