//! [`ExecutionStream`]: a running cell's events as a `futures_core::Stream`.

use super::SandboxError;
use crate::events::EventReceiver;
use crate::kernel::{Execution, ExecutionEvent};
use futures_core::Stream;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::oneshot;

/// The events of one execution, in order, ending with [`ExecutionEvent::End`]; or, if the
/// sandbox could not run the cell at all (busy, backend failure), an `Err` as the last item.
///
/// The cell runs whether or not the stream is polled; dropping the stream does not stop it.
/// A stream that is not read holds the cell back once its buffer is full (see
/// [`crate::events`]).
#[derive(Debug)]
pub struct ExecutionStream {
    events: EventReceiver,
    failure: Option<oneshot::Receiver<SandboxError>>,
}

impl ExecutionStream {
    pub(crate) fn new(events: EventReceiver, failure: oneshot::Receiver<SandboxError>) -> Self {
        ExecutionStream { events, failure: Some(failure) }
    }

    /// Waits for the cell to end and folds its events into an [`Execution`].
    pub async fn finish(mut self) -> Result<Execution, SandboxError> {
        let mut events = Vec::new();
        while let Some(event) = self.next_event().await {
            events.push(event?);
        }
        Execution::from_events(events).ok_or(SandboxError::Interrupted)
    }

    /// The next event, `None` after the last.
    pub async fn next_event(&mut self) -> Option<Result<ExecutionEvent, SandboxError>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for ExecutionStream {
    type Item = Result<ExecutionEvent, SandboxError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.events.poll_recv(cx) {
            Poll::Ready(Some(event)) => return Poll::Ready(Some(Ok(event))),
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {}
        }
        // Every event is in: the cell's task is done, and it left a failure or nothing.
        let Some(failure) = self.failure.as_mut() else { return Poll::Ready(None) };
        let polled = Pin::new(failure).poll(cx);
        match polled {
            Poll::Ready(Ok(error)) => {
                self.failure = None;
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(Err(_)) => {
                self.failure = None;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
