//! [`DockerEngine`]: the Docker Engine API through bollard, behind retries and a breaker.
//!
//! Every call goes through `DockerEngine::call`: refused at once while the [`Breaker`] is
//! open; on a transport failure (the socket missing, a connection reset, a timeout) retried
//! with backoff when the call is safe to repeat, and counted against the breaker. An answer
//! from the engine, even an error, proves it alive. The API version is negotiated on first use
//! (the engine may be older than bollard), and `DOCKER_HOST` is honoured.

use crate::breaker::Breaker;
use crate::error::ContainerError;
use bollard::Docker;
use bollard::errors::Error as DockerError;
use std::future::Future;
use std::time::Duration;
use tokio::sync::OnceCell;

/// The engine's socket when neither the configuration nor `$DOCKER_HOST` names one.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";
/// Waits between attempts of a retried call.
const BACKOFF: [Duration; 2] = [Duration::from_millis(50), Duration::from_millis(250)];
/// bollard's own bound on one HTTP exchange (long-running output streams are not bounded).
const CALL_TIMEOUT_SECONDS: u64 = 120;
/// How long SoulBox waits for one API call: an engine that answers other calls but not this
/// one (a container it cannot tear down) is not left to hold a request.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a call may be sent again after a transport failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Safe to repeat (reads, removals, idempotent updates).
    Yes,
    /// Not safe, or its stream cannot be replayed.
    No,
}

/// A connection to one Docker engine. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct DockerEngine {
    /// Made on first use, and again after a failure to make it (the socket may appear later).
    client: std::sync::Mutex<Option<Docker>>,
    host: String,
    breaker: Breaker,
    negotiated: OnceCell<()>,
}

impl DockerEngine {
    /// A client for `host` (`unix:///path`, `tcp://...`), else `$DOCKER_HOST`, else the
    /// default socket. Nothing is dialled until the first call: a missing engine is an error
    /// for the calls, not here.
    pub fn connect(host: Option<&str>) -> Self {
        let host = host
            .map(str::to_owned)
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_owned());
        DockerEngine {
            client: std::sync::Mutex::new(None),
            host,
            breaker: Breaker::default(),
            negotiated: OnceCell::new(),
        }
    }

    /// The client, made now if need be.
    fn client(&self) -> Result<Docker, DockerError> {
        let mut client = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = client.as_ref() {
            return Ok(client.clone());
        }
        let made = match self.host.strip_prefix("unix://") {
            Some(_) => Docker::connect_with_unix(&self.host, CALL_TIMEOUT_SECONDS, bollard::API_DEFAULT_VERSION)?,
            None => Docker::connect_with_host(&self.host)?,
        };
        *client = Some(made.clone());
        Ok(made)
    }

    /// Where the engine is.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether the breaker is refusing calls now.
    pub fn is_tripped(&self) -> bool {
        self.breaker.is_open()
    }

    /// Whether the engine answers.
    pub async fn ping(&self) -> Result<(), ContainerError> {
        self.call("ping", Retry::Yes, |docker| async move { docker.ping().await.map(drop) }).await
    }

    /// Runs one API call (`op` names it in errors).
    pub(crate) async fn call<T, F, Fut>(&self, op: &'static str, retry: Retry, call: F) -> Result<T, ContainerError>
    where
        F: Fn(Docker) -> Fut,
        Fut: Future<Output = Result<T, DockerError>>,
    {
        self.negotiate().await?;
        self.attempt(op, retry, call).await
    }

    /// Negotiates the API version once (the first call that reaches the engine does it).
    async fn negotiate(&self) -> Result<(), ContainerError> {
        self.negotiated
            .get_or_try_init(|| async {
                // The client shares its version with its clones: negotiating on one sets all.
                self.attempt("negotiate the API version", Retry::Yes, |docker| async move {
                    docker.negotiate_version().await.map(drop)
                })
                .await
            })
            .await
            .map(drop)
    }

    async fn attempt<T, F, Fut>(&self, op: &'static str, retry: Retry, call: F) -> Result<T, ContainerError>
    where
        F: Fn(Docker) -> Fut,
        Fut: Future<Output = Result<T, DockerError>>,
    {
        let attempts = if retry == Retry::Yes { BACKOFF.len() + 1 } else { 1 };
        let mut last = None;
        for attempt in 0..attempts {
            if let Err(wait) = self.breaker.admit() {
                return Err(ContainerError::Unavailable(format!(
                    "the Docker engine at {} is not answering (retrying in {} s)",
                    self.host,
                    wait.as_secs().max(1)
                )));
            }
            let outcome = match self.client() {
                Ok(client) => match tokio::time::timeout(CALL_TIMEOUT, call(client)).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        // Not counted against the breaker: the engine may be fine but for this call.
                        return Err(ContainerError::Refused {
                            op,
                            status: None,
                            message: format!("no answer within {} s", CALL_TIMEOUT.as_secs()),
                        });
                    }
                },
                Err(error) => Err(error),
            };
            match outcome {
                Ok(value) => {
                    self.breaker.succeeded();
                    return Ok(value);
                }
                Err(error) if unreachable(&error) => {
                    self.breaker.failed();
                    tracing::debug!(op, attempt, %error, "the Docker engine did not answer");
                    last = Some(error);
                    if let Some(wait) = BACKOFF.get(attempt).filter(|_| attempt + 1 < attempts) {
                        tokio::time::sleep(*wait).await;
                    }
                }
                Err(error) => {
                    self.breaker.succeeded();
                    return Err(refused(op, error));
                }
            }
        }
        let reason = last.map(|e| e.to_string()).unwrap_or_default();
        Err(ContainerError::Unavailable(format!("cannot reach the Docker engine at {}: {reason}", self.host)))
    }
}

/// Whether `error` means the engine was not reached (rather than that it answered "no").
fn unreachable(error: &DockerError) -> bool {
    matches!(
        error,
        DockerError::IOError { .. }
            | DockerError::HyperResponseError { .. }
            | DockerError::HyperLegacyError { .. }
            | DockerError::RequestTimeoutError
            | DockerError::SocketNotFoundError(_)
    )
}

/// The engine's answer to `op`, as an error.
fn refused(op: &'static str, error: DockerError) -> ContainerError {
    match error {
        DockerError::DockerResponseServerError { status_code, message } => {
            ContainerError::Refused { op, status: Some(status_code), message }
        }
        other => ContainerError::Refused { op, status: None, message: other.to_string() },
    }
}
