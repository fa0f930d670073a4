//! The HTTP listener: accepts connections and serves the app on them, so that no client (and
//! none needs a key to try) can hold the server's sockets or file descriptors.
//!
//! - At most [`ConnectionLimits::max_connections`] connections are served at once; one past
//!   it is answered `503` with `connection: close` and closed at once (so the refusal is
//!   visible, and the kernel's backlog keeps moving), never left waiting.
//! - A connection must send a request's headers within
//!   [`ConnectionLimits::header_read_timeout`] of their first byte (slowloris; a new connection
//!   must begin within it too), and a kept-alive connection is closed after
//!   [`ConnectionLimits::keep_alive_timeout`] without a new request: longer than clients' pools
//!   keep idle connections, so the client closes first and never sends a request on a
//!   connection the server is closing ([`keep_alive`]).
//! - Shutdown: the listener stops accepting, idle connections close, and the caller bounds how
//!   long in-flight requests may take ([`Server::drain`]).
//!
//! [`raise_fd_limit`] lifts the soft limit on open files to the hard one at start, so the
//! connection cap, not an ordinary 1,024-descriptor default, is what bounds connections.

mod keep_alive;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// What a refused connection is told before it is closed.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
connection: close\r\ncontent-length: 85\r\n\r\n\
{\"error\":{\"code\":\"busy\",\"message\":\"the server has too many connections open; retry\"}}";
/// Pause after an accept error (out of file descriptors, say) before accepting again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(20);

/// Bounds on connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time a connection has to send a request's headers from their first byte, and a new
    /// connection to send its first byte.
    pub header_read_timeout: Duration,
    /// The longest a kept-alive connection may sit idle between requests.
    pub keep_alive_timeout: Duration,
}

impl ConnectionLimits {
    fn request_wait(&self) -> keep_alive::RequestWaitLimits {
        keep_alive::RequestWaitLimits { header: self.header_read_timeout, idle: self.keep_alive_timeout }
    }
}

/// A running server: the accept loop and the connections it serves.
#[derive(Debug)]
pub struct Server {
    accepting: tokio::task::JoinHandle<GracefulShutdown>,
    stop: tokio_util::sync::CancellationToken,
}

impl Server {
    /// Starts serving `app` on `listener`.
    pub fn start(listener: TcpListener, app: Router, limits: ConnectionLimits) -> Self {
        let stop = tokio_util::sync::CancellationToken::new();
        let accepting = tokio::spawn(accept(listener, app, limits, stop.clone()));
        Server { accepting, stop }
    }

    /// Stops accepting and waits for the connections to finish their requests (idle ones close
    /// at once), for at most `grace`. Returns false when some did not finish in time.
    pub async fn drain(self, grace: Duration) -> bool {
        self.stop.cancel();
        let Ok(graceful) = self.accepting.await else { return false };
        tokio::time::timeout(grace, graceful.shutdown()).await.is_ok()
    }
}

async fn accept(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    stop: tokio_util::sync::CancellationToken,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Each connection gets its own HTTP/1 timer (keep_alive::watch) for this timeout.
    builder.http1().header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(limits.header_read_timeout);
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return graceful,
            accepted = listener.accept() => accepted,
        };
        let (stream, _) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "could not accept a connection");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (app, mut builder, watcher) = (app.clone(), builder.clone(), graceful.watcher());
        tokio::spawn(async move {
            // hyper reads the first bytes to tell HTTP/1 from HTTP/2 with no timeout of its own:
            // a client that connects and says nothing is closed after the header timeout.
            let mut first = [0u8; 1];
            let said = tokio::time::timeout(limits.header_read_timeout, stream.peek(&mut first)).await;
            if !matches!(said, Ok(Ok(n)) if n > 0) {
                return;
            }
            let (stream, timer) = keep_alive::watch(stream, limits.request_wait());
            builder.http1().timer(timer);
            let service = TowerToHyperService::new(app);
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(error = %error, "connection ended with an error");
            }
            drop(slot);
        });
    }
}

/// Answers a connection past the cap with a 503 and closes it.
async fn refuse(mut stream: tokio::net::TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(REFUSAL)).await;
    let _ = stream.shutdown().await;
}

/// Raises the soft limit on open files to the hard limit; returns the limit now in force.
pub fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(error) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(%error, "could not raise the open-file limit");
        }
    }
    getrlimit(Resource::Nofile).current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_well_formed() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head.lines().find_map(|l| l.strip_prefix("content-length: ")).unwrap().parse().unwrap();
        assert_eq!(body.len(), length);
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "busy");
    }
}
