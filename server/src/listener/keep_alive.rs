//! Two limits where hyper has one: how long a kept-alive connection may sit idle between
//! requests, and how long a client may take to send a request's headers once it has begun.
//!
//! hyper's `header_read_timeout` runs from the moment it starts waiting for a request, so on a
//! kept-alive connection it is also the idle limit. A slowloris bound of seconds then closed
//! idle connections that clients' pools keep for minutes (the E2B SDK 300 s, Go 90 s), and a
//! client that reused one as the server closed it lost its request ("connection closed before
//! message completed"). Go's `net/http`, Envoy and nginx keep the two apart; so does this:
//!
//! - [`Watched`] wraps a connection's stream and notes when the first byte of a request
//!   arrives: the first read after a write (a response ends the request before it).
//! - [`HeaderTimer`] is the connection's HTTP/1 timer, which hyper uses for the header timeout
//!   only. The deadline it gives is `idle` after hyper began waiting while no byte of the next
//!   request has come, and `header` after that byte once it has.
//!
//! Invariant: hyper polls the deadline each time a read leaves a request's headers incomplete,
//! so the read that brings the first byte also moves the deadline from the idle limit to the
//! header limit. A byte read ahead of the previous response (pipelining) counts from the
//! first read after that response: at worst one idle limit, which any idle client has anyway.

use hyper::rt::{Sleep, Timer};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The two limits on a connection waiting for a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestWaitLimits {
    /// From a request's first byte to the end of its headers.
    pub header: Duration,
    /// From the end of a response to the next request's first byte.
    pub idle: Duration,
}

/// Wraps `stream` and returns it with the HTTP/1 timer that applies `limits` to it.
pub(super) fn watch<T>(stream: T, limits: RequestWaitLimits) -> (Watched<T>, HeaderTimer) {
    let first_byte = FirstByte::default();
    let timer = HeaderTimer { first_byte: first_byte.clone(), limits };
    (Watched { stream, first_byte }, timer)
}

/// When the first byte of the request being read arrived; `None` between requests.
#[derive(Debug, Clone, Default)]
struct FirstByte(Arc<Mutex<Option<Instant>>>);

impl FirstByte {
    fn get(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert_with(Instant::now);
    }

    fn wrote(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// A connection's stream that notes when each request's first byte arrives.
#[derive(Debug)]
pub(super) struct Watched<T> {
    stream: T,
    first_byte: FirstByte,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.first_byte.read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.first_byte.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.first_byte.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// One connection's HTTP/1 timer: hyper's header deadline, made the idle limit until the next
/// request's first byte arrives.
#[derive(Debug, Clone)]
pub(super) struct HeaderTimer {
    first_byte: FirstByte,
    limits: RequestWaitLimits,
}

impl HeaderTimer {
    fn deadline(&self, waiting_since: Instant) -> HeaderDeadline {
        let due = waiting_since + self.limits.idle;
        HeaderDeadline {
            timer: self.clone(),
            waiting_since,
            due,
            sleep: Box::pin(tokio::time::sleep_until(due.into())),
        }
    }
}

impl Timer for HeaderTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    /// hyper asks for `now + header_read_timeout` when it starts waiting for a request.
    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(self.deadline(deadline - self.limits.header))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<HeaderDeadline>() {
            Some(deadline) => deadline.get_mut().waiting_since = new_deadline - self.limits.header,
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// Fires `idle` after `waiting_since` while no byte of a request has come, `header` after its
/// first byte once one has.
#[derive(Debug)]
pub(super) struct HeaderDeadline {
    timer: HeaderTimer,
    waiting_since: Instant,
    /// What `sleep` is set for.
    due: Instant,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl HeaderDeadline {
    fn due(&self) -> Instant {
        match self.timer.first_byte.get() {
            Some(first_byte) => first_byte + self.timer.limits.header,
            None => self.waiting_since + self.timer.limits.idle,
        }
    }
}

impl Future for HeaderDeadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let due = this.due();
        if due != this.due {
            this.due = due;
            this.sleep.as_mut().reset(due.into());
        }
        this.sleep.as_mut().poll(cx)
    }
}

impl Sleep for HeaderDeadline {}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const LIMITS: RequestWaitLimits =
        RequestWaitLimits { header: Duration::from_secs(10), idle: Duration::from_secs(600) };

    #[tokio::test]
    async fn the_deadline_is_the_idle_limit_until_a_request_begins_then_the_header_limit() {
        let (ours, mut client) = tokio::io::duplex(64);
        let (mut stream, timer) = watch(ours, LIMITS);
        let waiting_since = Instant::now();
        let deadline = timer.deadline(waiting_since);
        assert_eq!(deadline.due(), waiting_since + LIMITS.idle, "idle: no byte yet");

        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let read = stream.read(&mut buf).await.unwrap();
        assert!(read > 0);
        let first_byte = timer.first_byte.get().expect("the first read of a request is noted");
        assert_eq!(deadline.due(), first_byte + LIMITS.header, "a request has begun");

        client.write_all(b"host: x\r\n").await.unwrap();
        let _ = stream.read(&mut buf).await.unwrap();
        assert_eq!(timer.first_byte.get(), Some(first_byte), "later reads keep the request's first byte");

        stream.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        assert_eq!(timer.first_byte.get(), None, "the response ends the request");
        assert_eq!(deadline.due(), waiting_since + LIMITS.idle);
    }

    #[tokio::test]
    async fn hyper_resetting_the_deadline_restarts_the_idle_wait() {
        let (ours, _client) = tokio::io::duplex(64);
        let (_stream, timer) = watch(ours, LIMITS);
        let first = Instant::now();
        let mut sleep = timer.sleep_until(first + LIMITS.header);
        let later = first + Duration::from_secs(30);
        timer.reset(&mut sleep, later + LIMITS.header);
        let deadline = sleep.as_mut().downcast_mut_pin::<HeaderDeadline>().expect("reset in place");
        assert_eq!(deadline.due(), later + LIMITS.idle);
    }
}
