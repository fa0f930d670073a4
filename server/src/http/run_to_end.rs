//! [`run_to_end`]: awaits work in the request's own task, and finishes it on a task of its own
//! if the request goes away first.
//!
//! Work that must end once started (a cell holding its caller's execution slot, whose end is
//! recorded in the usage records and the budget) used to run on a spawned task that the
//! handler awaited. That costs every request a hop between tasks: on a 2-core VM the spawned
//! task's end wakes a second runtime thread, often on a halted virtual CPU, which took about
//! 0.2 ms before the response was written. Here the work is polled in place, and only when
//! the request's future is dropped unfinished (the client disconnected, a request timeout) is
//! the rest of it, in the state it reached, handed to a task of its own to run to its end.
//!
//! Invariant: once polled, the work runs to its end exactly once, in place or on the task. A
//! panic in the work ends it with [`Panicked`], as a spawned task's would with a `JoinError`,
//! rather than taking down the request's connection.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The work panicked (with this message, when it had one).
#[derive(Debug, thiserror::Error)]
#[error("it panicked: {0}")]
pub struct Panicked(String);

/// `work`, polled in place; if dropped before it ends, the rest runs on a task of its own
/// (outside a runtime, as at shutdown, it is dropped instead).
pub fn run_to_end<F>(work: F) -> RunToEnd<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    RunToEnd { work: Some(Box::pin(work)) }
}

/// The future [`run_to_end`] returns.
pub struct RunToEnd<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    /// `None` once the work has ended.
    work: Option<Pin<Box<F>>>,
}

impl<F> Future for RunToEnd<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    type Output = Result<F::Output, Panicked>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let work = self.work.as_mut().expect("RunToEnd polled after it ended");
        let polled = catch_unwind(AssertUnwindSafe(|| work.as_mut().poll(cx)));
        let ended = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(output)) => Ok(output),
            Err(panic) => Err(Panicked(panic_message(&*panic))),
        };
        // A panicked future is not polled again: it is dropped here, not handed to a task.
        self.work = None;
        Poll::Ready(ended)
    }
}

impl<F> Drop for RunToEnd<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn drop(&mut self) {
        let Some(work) = self.work.take() else { return };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            // The box moves, the pinned work inside it does not.
            runtime.spawn(work);
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(text), _) => (*text).to_owned(),
        (_, Some(text)) => text.clone(),
        _ => "no message".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn finished_work_gives_its_output() {
        assert_eq!(run_to_end(async { 7 }).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn a_panic_is_an_error_not_an_unwinding() {
        let ended = run_to_end(async { panic!("boom") }).await;
        assert_eq!(ended.unwrap_err().to_string(), "it panicked: boom");
    }

    #[tokio::test]
    async fn dropped_work_runs_to_its_end_on_a_task() {
        let (release, released) = oneshot::channel::<()>();
        let (ended, heard) = oneshot::channel::<()>();
        let reached_the_end = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&reached_the_end);
        let mut work = Box::pin(run_to_end(async move {
            released.await.unwrap();
            flag.store(true, Ordering::SeqCst);
            ended.send(()).unwrap();
        }));
        // Started (waiting on `released`), then abandoned, as a disconnected request is.
        assert!(futures_util::poll!(work.as_mut()).is_pending());
        drop(work);
        release.send(()).unwrap();
        heard.await.unwrap();
        assert!(reached_the_end.load(Ordering::SeqCst));
    }
}
