//! [`GuestStdin`]: the guest's standard input, which the host may set until the guest reads.

use bytes::Bytes;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdinStream};
use wasmtime_wasi::p2::{InputStream, Pollable, StreamError};

/// In-memory stdin whose contents can be replaced after the guest is instantiated (a guest
/// instantiated ahead of its request gets the request's stdin just before it runs). Reads past
/// the end report end of file. Clones share the same buffer.
#[derive(Debug, Clone, Default)]
pub struct GuestStdin {
    buffer: Arc<Mutex<Bytes>>,
}

impl GuestStdin {
    /// Replaces what the guest will read.
    pub fn set(&self, bytes: impl Into<Bytes>) {
        *self.buffer.lock().unwrap_or_else(|e| e.into_inner()) = bytes.into();
    }

    fn take(&self, size: usize) -> Bytes {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let size = size.min(buffer.len());
        buffer.split_to(size)
    }
}

#[wasmtime_wasi::async_trait]
impl InputStream for GuestStdin {
    fn read(&mut self, size: usize) -> Result<Bytes, StreamError> {
        let bytes = self.take(size);
        if bytes.is_empty() && size > 0 { Err(StreamError::Closed) } else { Ok(bytes) }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestStdin {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncRead for GuestStdin {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let bytes = self.take(buf.remaining());
        buf.put_slice(&bytes);
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for GuestStdin {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdinStream for GuestStdin {
    fn p2_stream(&self) -> Box<dyn InputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncRead + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_was_set_then_ends() {
        let mut stdin = GuestStdin::default();
        stdin.set("abc");
        assert_eq!(stdin.read(2).unwrap(), "ab");
        assert_eq!(stdin.read(10).unwrap(), "c");
        assert!(matches!(stdin.read(1), Err(StreamError::Closed)));
    }
}
