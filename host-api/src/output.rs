//! [`CappedOutput`]: a stdout/stderr sink that keeps at most `cap` bytes.
//!
//! wasmtime-wasi's own `MemoryOutputPipe` traps with a generic message when full. This pipe
//! keeps exactly the first `cap` bytes, records that the cap was hit, and then traps the guest
//! so a runaway print loop ends at once; the backend reports the outcome as an output limit.
//!
//! A [`OutputTap`] may be attached to see each write as it happens (streaming to a caller while
//! the guest runs); it gets exactly the bytes kept, in order, on the guest's thread.

use bytes::{Bytes, BytesMut};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Called with each chunk of output as the guest writes it.
pub type OutputTap = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// A shared, capped byte sink. Clones share the same buffer.
#[derive(Debug, Clone)]
pub struct CappedOutput {
    inner: Arc<Inner>,
}

struct Inner {
    cap: AtomicUsize,
    buffer: Mutex<BytesMut>,
    overflowed: AtomicBool,
    tap: Mutex<Option<OutputTap>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner").field("cap", &self.cap).field("overflowed", &self.overflowed).finish_non_exhaustive()
    }
}

impl CappedOutput {
    /// A sink keeping at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        CappedOutput {
            inner: Arc::new(Inner {
                cap: AtomicUsize::new(cap),
                buffer: Mutex::new(BytesMut::new()),
                overflowed: AtomicBool::new(false),
                tap: Mutex::new(None),
            }),
        }
    }

    /// Changes the cap for what is written from now on.
    pub fn set_cap(&self, cap: usize) {
        self.inner.cap.store(cap, Ordering::Relaxed);
    }

    /// Sends every later write to `tap` as well (`None` stops it).
    pub fn set_tap(&self, tap: Option<OutputTap>) {
        *self.inner.tap.lock().unwrap_or_else(|e| e.into_inner()) = tap;
    }

    /// Whether the guest tried to write past the cap.
    pub fn overflowed(&self) -> bool {
        self.inner.overflowed.load(Ordering::Relaxed)
    }

    /// Takes the captured bytes, leaving the sink empty and its overflow flag cleared.
    pub fn take(&self) -> Vec<u8> {
        self.inner.overflowed.store(false, Ordering::Relaxed);
        let mut buffer = self.inner.buffer.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *buffer).to_vec()
    }

    /// A copy of the captured bytes, leaving them in place.
    pub fn snapshot(&self) -> Vec<u8> {
        self.inner.buffer.lock().unwrap_or_else(|e| e.into_inner()).to_vec()
    }

    /// Appends what fits; returns how many bytes were kept and whether the cap was hit.
    fn append(&self, bytes: &[u8]) -> (usize, bool) {
        let mut buffer = self.inner.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let room = self.inner.cap.load(Ordering::Relaxed).saturating_sub(buffer.len());
        let kept = bytes.len().min(room);
        buffer.extend_from_slice(&bytes[..kept]);
        drop(buffer);
        let hit = kept < bytes.len();
        if hit {
            self.inner.overflowed.store(true, Ordering::Relaxed);
        }
        if kept > 0 {
            let tap = self.inner.tap.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(tap) = tap {
                tap(&bytes[..kept]);
            }
        }
        (kept, hit)
    }
}

fn limit_trap() -> StreamError {
    StreamError::trap("output limit exceeded")
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CappedOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        match self.append(&bytes) {
            (_, false) => Ok(()),
            (_, true) => Err(limit_trap()),
        }
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always accept a full write so an overflowing one reaches `write`, which keeps the
        // prefix that fits before stopping the guest.
        if self.overflowed() { Err(limit_trap()) } else { Ok(64 * 1024) }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CappedOutput {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.append(buf) {
            (kept, false) => Poll::Ready(Ok(kept)),
            (_, true) => Poll::Ready(Err(std::io::Error::other("output limit exceeded"))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_prefix_and_flags_overflow() {
        let mut out = CappedOutput::new(5);
        out.write(Bytes::from_static(b"abc")).unwrap();
        assert!(!out.overflowed());
        assert!(out.write(Bytes::from_static(b"defg")).is_err());
        assert!(out.overflowed());
        assert_eq!(out.take(), b"abcde");
        assert!(!out.overflowed());
    }

    #[test]
    fn tap_sees_what_is_kept() {
        let mut out = CappedOutput::new(4);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        out.set_tap(Some(Arc::new(move |b: &[u8]| sink.lock().unwrap().extend_from_slice(b))));
        out.write(Bytes::from_static(b"ab")).unwrap();
        assert!(out.write(Bytes::from_static(b"cdef")).is_err());
        assert_eq!(*seen.lock().unwrap(), b"abcd");
    }
}
