//! [`CappedOutput`]: a stdout/stderr sink that keeps at most `cap` bytes.
//!
//! wasmtime-wasi's own `MemoryOutputPipe` traps with a generic message when full. This pipe
//! keeps exactly the first `cap` bytes, records that the cap was hit, and then traps the guest
//! so a runaway print loop ends at once; the backend reports the outcome as an output limit.

use bytes::{Bytes, BytesMut};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// A shared, capped byte sink. Clones share the same buffer.
#[derive(Debug, Clone)]
pub struct CappedOutput {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cap: AtomicUsize,
    buffer: Mutex<BytesMut>,
    overflowed: AtomicBool,
}

impl CappedOutput {
    /// A sink keeping at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        CappedOutput {
            inner: Arc::new(Inner {
                cap: AtomicUsize::new(cap),
                buffer: Mutex::new(BytesMut::new()),
                overflowed: AtomicBool::new(false),
            }),
        }
    }

    /// Changes the cap for what is written from now on.
    pub fn set_cap(&self, cap: usize) {
        self.inner.cap.store(cap, Ordering::Relaxed);
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

    /// Appends what fits; returns how many bytes were kept and whether the cap was hit.
    fn append(&self, bytes: &[u8]) -> (usize, bool) {
        let mut buffer = self.inner.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let room = self.inner.cap.load(Ordering::Relaxed).saturating_sub(buffer.len());
        let kept = bytes.len().min(room);
        buffer.extend_from_slice(&bytes[..kept]);
        let hit = kept < bytes.len();
        if hit {
            self.inner.overflowed.store(true, Ordering::Relaxed);
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
}
