//! The egress proxy: the only way out of a sandbox container that has network.
//!
//! Such a container sits on [`EGRESS_NETWORK`](crate::confinement::EGRESS_NETWORK), a Docker
//! bridge marked `internal` (no route beyond it) with no traffic between its containers. The
//! one thing it can reach is this proxy, listening on the bridge's gateway address on the
//! host, which the container's environment names (`HTTP_PROXY`, `HTTPS_PROXY` and their lower
//! case forms, so curl, pip, Python's urllib and requests, git and wget use it). The proxy
//! knows each container by its address on that bridge ([`EgressProxy::admit`]) and applies the
//! sandbox's [`NetworkRules`], the same rules as its WebAssembly contexts' HTTP:
//!
//! - `CONNECT host:port` (HTTPS and any other TCP protocol a client tunnels) and plain HTTP
//!   requests in absolute form (`GET http://host/path`) are the only requests it serves;
//! - the host name is checked against the domain rules, then every address it resolves to (on
//!   the host) against the address rules; the proxy connects only to an address that passed;
//!   a refusal is a `403` whose body says why;
//! - a plain HTTP request goes upstream alone: its `Host` is the URL's (no fronting another
//!   name behind an allowed one), its body only what its `Content-Length` says (a chunked
//!   request body is refused), then `Connection: close`; nothing else the client sends on that
//!   connection reaches the upstream, so every request is checked;
//! - per connection, the policy's time limit (`request_timeout_ms`) and response-size limit
//!   (`max_response_bytes`, counted over everything the upstream sends) end it when reached,
//!   with a reset (a cut response never looks complete); so does the container's admission
//!   ending (its sandbox killed, its container gone);
//! - a container holds at most [`MAX_CONNECTIONS_PER_CONTAINER`] connections, the proxy
//!   [`MAX_CONNECTIONS`] (then `503`): one container cannot take the host's file descriptors;
//! - what was sent and received is counted per container ([`Admission::usage`]).
//!
//! Not enforced here: the request count (`max_requests`), which applies to WebAssembly cells;
//! the name a TLS client sends inside a tunnel (a `CONNECT` to an allowed name on a shared CDN
//! could ask it for another site); and a client that ignores the proxy variables simply cannot
//! connect.

use soulbox_engine::network::{NetworkRules, NetworkUsage};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// The longest request head the proxy reads.
const MAX_HEAD_BYTES: usize = 16 << 10;
/// The most header lines a request may have.
const MAX_HEADERS: usize = 100;
/// Time a client has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to connect to an upstream address.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Buffer per direction of a relayed connection.
const RELAY_BUFFER_BYTES: usize = 16 << 10;
/// Connections one container may hold open through the proxy.
pub const MAX_CONNECTIONS_PER_CONTAINER: usize = 64;
/// Connections the proxy holds open in all.
pub const MAX_CONNECTIONS: usize = 1024;

/// A running proxy, one per container backend.
#[derive(Debug)]
pub struct EgressProxy {
    address: SocketAddr,
    tenants: Arc<Tenants>,
    accept: tokio::task::JoinHandle<()>,
    /// The proxy's opening in the host fence, if the host is fenced.
    fence: std::sync::OnceLock<crate::host_fence::HostFence>,
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

#[derive(Debug)]
struct Tenants {
    by_address: Mutex<HashMap<IpAddr, Arc<Tenant>>>,
    next_token: AtomicU64,
    connections: Arc<Semaphore>,
}

impl Default for Tenants {
    fn default() -> Self {
        Tenants {
            by_address: Mutex::default(),
            next_token: AtomicU64::new(0),
            connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        }
    }
}

impl Tenants {
    fn get(&self, address: IpAddr) -> Option<Arc<Tenant>> {
        self.by_address.lock().unwrap_or_else(|p| p.into_inner()).get(&address).cloned()
    }
}

#[derive(Debug)]
struct Tenant {
    rules: NetworkRules,
    usage: Mutex<NetworkUsage>,
    /// Tells this admission from a later one of the same address (a new container).
    token: u64,
    connections: Arc<Semaphore>,
    /// Cancelled when the admission ends: its connections close.
    ended: CancellationToken,
}

impl Tenant {
    fn count(&self, update: impl FnOnce(&mut NetworkUsage)) {
        update(&mut self.usage.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// A container's place at the proxy: its address maps to its rules until this is dropped.
#[derive(Debug)]
pub struct Admission {
    tenants: Arc<Tenants>,
    address: IpAddr,
    tenant: Arc<Tenant>,
}

impl Admission {
    /// What the container sent and received through the proxy so far.
    pub fn usage(&self) -> NetworkUsage {
        *self.tenant.usage.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.tenant.ended.cancel();
        let usage = self.usage();
        tracing::info!(
            address = %self.address,
            requests = usage.requests,
            refused = usage.refused,
            bytes_sent = usage.bytes_sent,
            bytes_received = usage.bytes_received,
            "egress proxy: a container's traffic"
        );
        let mut tenants = self.tenants.by_address.lock().unwrap_or_else(|p| p.into_inner());
        if tenants.get(&self.address).is_some_and(|t| t.token == self.tenant.token) {
            tenants.remove(&self.address);
        }
    }
}

impl EgressProxy {
    /// Starts a proxy listening on `bind` (a port the system picks).
    pub async fn start(bind: IpAddr) -> io::Result<Self> {
        let listener = TcpListener::bind((bind, 0)).await?;
        let address = listener.local_addr()?;
        let tenants = Arc::new(Tenants::default());
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&tenants)));
        tracing::info!(%address, "egress proxy listening");
        Ok(EgressProxy { address, tenants, accept, fence: std::sync::OnceLock::new() })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Keeps `fence`'s opening (for this proxy) as long as the proxy lives.
    pub fn keep_fence(&self, fence: crate::host_fence::HostFence) {
        let _ = self.fence.set(fence);
    }

    /// The proxy's URL, for the containers' environment.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Lets the container at `address` through under `rules` (replacing whatever that address
    /// had: a container that died may have left it to this one).
    pub fn admit(&self, address: IpAddr, rules: NetworkRules) -> Admission {
        let token = self.tenants.next_token.fetch_add(1, Ordering::Relaxed);
        let tenant = Arc::new(Tenant {
            rules,
            usage: Mutex::default(),
            token,
            connections: Arc::new(Semaphore::new(MAX_CONNECTIONS_PER_CONTAINER)),
            ended: CancellationToken::new(),
        });
        self.tenants.by_address.lock().unwrap_or_else(|p| p.into_inner()).insert(address, Arc::clone(&tenant));
        Admission { tenants: Arc::clone(&self.tenants), address, tenant }
    }
}

async fn accept_loop(listener: TcpListener, tenants: Arc<Tenants>) {
    loop {
        match listener.accept().await {
            Ok((client, peer)) => {
                tokio::spawn(serve(client, peer.ip(), Arc::clone(&tenants)));
            }
            Err(error) => {
                tracing::warn!(%error, "egress proxy: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Why the proxy answers a request itself.
#[derive(Debug)]
struct Failure {
    status: u16,
    message: String,
}

impl Failure {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Failure { status, message: message.into() }
    }

    fn response(&self) -> String {
        let reason = match self.status {
            400 => "Bad Request",
            403 => "Forbidden",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            411 => "Length Required",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            _ => "Bad Gateway",
        };
        let body = format!("SoulBox egress proxy: {}\n", self.message);
        format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.status,
            body.len()
        )
    }
}

async fn serve(mut client: TcpStream, peer: IpAddr, tenants: Arc<Tenants>) {
    let served = match tenants.get(peer) {
        None => Err(Failure::new(403, format!("{peer} has no network policy here"))),
        Some(tenant) => {
            match (tenants.connections.clone().try_acquire_owned(), tenant.connections.clone().try_acquire_owned()) {
                (Ok(_all), Ok(_own)) => {
                    tokio::select! {
                        served = proxy(&mut client, &tenant) => served,
                        () = tenant.ended.cancelled() => Ok(Ended::Cut),
                    }
                }
                _ => Err(Failure::new(503, "too many connections through the proxy: close some")),
            }
        }
    };
    match served {
        Ok(Ended::Done) => {}
        Ok(Ended::Cut) => {
            // A limit or the admission's end cut the response: the client must not take it
            // for a whole one, so a reset rather than an orderly close.
            // The deprecation is about blocking on drop, which a zero linger never does (the
            // kernel discards what is unsent and resets at once); only a positive one would.
            #[allow(deprecated)]
            let _ = client.set_linger(Some(Duration::ZERO));
        }
        Err(failure) => {
            tracing::debug!(%peer, status = failure.status, message = %failure.message, "egress proxy refused a request");
            let _ = client.write_all(failure.response().as_bytes()).await;
            let _ = client.shutdown().await;
        }
    }
}

/// How a relayed connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The upstream finished its answer.
    Done,
    /// A limit (size, time) or the admission's end cut it.
    Cut,
}

/// One request: read, checked, connected, then relayed until the response is done or a limit
/// is met. `Err` is what the client is told instead.
async fn proxy(client: &mut TcpStream, tenant: &Tenant) -> Result<Ended, Failure> {
    let (head, early) = tokio::time::timeout(HEAD_TIMEOUT, read_head(client))
        .await
        .map_err(|_| Failure::new(408, "the request head did not arrive in time"))??;
    let request = Target::parse(&head)?;
    let mut upstream = match connect(&tenant.rules, &request.host, request.port).await {
        Ok(upstream) => upstream,
        Err(failure) => {
            tenant.count(|u| u.refused += u64::from(failure.status == 403));
            return Err(failure);
        }
    };
    tenant.count(|u| u.requests += 1);
    let rules = &tenant.rules;
    let relayed = tokio::time::timeout(rules.request_timeout, async {
        match &request.forward {
            // CONNECT: the client speaks to the upstream from now on, both ways.
            None => {
                client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await.map_err(gone)?;
                upstream.write_all(&early).await.map_err(gone)?;
                tenant.count(|u| u.bytes_sent += early.len() as u64);
                Ok(relay(client, &mut upstream, tenant).await)
            }
            // Plain HTTP: this one request and its body, then only the response.
            Some(forward) => {
                upstream.write_all(&forward.head).await.map_err(gone)?;
                let body = send_body(client, &mut upstream, &early, forward.body_bytes).await?;
                tenant.count(|u| u.bytes_sent += forward.head.len() as u64 + body);
                let (mut upstream_read, _) = upstream.split();
                let (_, mut client_write) = client.split();
                Ok(respond(&mut upstream_read, &mut client_write, tenant).await)
            }
        }
    })
    .await;
    relayed.unwrap_or_else(|_| {
        tracing::debug!(host = %request.host, "egress proxy: a connection met the policy's time limit");
        Ok(Ended::Cut)
    })
}

/// Sends a plain HTTP request's body (`length` bytes: what came with the head, then the rest
/// from the client) upstream; the bytes sent.
async fn send_body(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    early: &[u8],
    length: u64,
) -> Result<u64, Failure> {
    let first = usize::try_from(length).unwrap_or(usize::MAX).min(early.len());
    upstream.write_all(&early[..first]).await.map_err(gone)?;
    let rest = length - first as u64;
    let copied = tokio::io::copy(&mut client.take(rest), upstream).await.map_err(gone)?;
    if copied < rest {
        return Err(Failure::new(400, "the request body ended before its Content-Length"));
    }
    Ok(length)
}

fn gone(error: io::Error) -> Failure {
    Failure::new(502, format!("the connection failed: {error}"))
}

/// Reads up to the end of the request head; returns the head and what came after it.
async fn read_head(client: &mut TcpStream) -> Result<(Vec<u8>, Vec<u8>), Failure> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buffer.split_off(end + 4);
            return Ok((buffer, rest));
        }
        if buffer.len() > MAX_HEAD_BYTES {
            return Err(Failure::new(431, format!("the request head is longer than {MAX_HEAD_BYTES} bytes")));
        }
        let n = client.read(&mut chunk).await.map_err(gone)?;
        if n == 0 {
            return Err(Failure::new(400, "the connection closed before a request"));
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// Where a request goes, and for plain HTTP what to send there.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    host: String,
    port: u16,
    /// The plain HTTP request for the origin (`None` for `CONNECT`).
    forward: Option<Forward>,
}

/// A plain HTTP request as the origin gets it.
#[derive(Debug, PartialEq, Eq)]
struct Forward {
    /// The head, in origin form, with the URL's `Host` and `Connection: close`.
    head: Vec<u8>,
    /// Its body's length (`Content-Length`; 0 without one).
    body_bytes: u64,
}

impl Target {
    fn parse(head: &[u8]) -> Result<Target, Failure> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(Failure::new(400, "an incomplete request head")),
            Err(error) => return Err(Failure::new(400, format!("not an HTTP request: {error}"))),
        }
        let (method, target) = (request.method.unwrap_or_default(), request.path.unwrap_or_default());
        if method.eq_ignore_ascii_case("CONNECT") {
            let (host, port) = split_authority(target)
                .ok_or_else(|| Failure::new(400, format!("CONNECT needs host:port, not `{target}`")))?;
            return Ok(Target { host, port, forward: None });
        }
        let url = url::Url::parse(target).map_err(|_| {
            Failure::new(400, format!("`{target}` is not an absolute URL: this is a proxy (set HTTP_PROXY)"))
        })?;
        if url.scheme() != "http" {
            return Err(Failure::new(
                400,
                format!("the proxy forwards http:// URLs; use CONNECT for {}", url.scheme()),
            ));
        }
        let host = url.host_str().ok_or_else(|| Failure::new(400, "the URL has no host"))?.to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let mut origin = url.path().to_owned();
        if let Some(query) = url.query() {
            origin.push('?');
            origin.push_str(query);
        }
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        };
        let mut head = format!("{method} {origin} HTTP/1.1\r\nHost: {authority}\r\n").into_bytes();
        let mut body_bytes = None;
        for header in request.headers.iter() {
            let name = header.name.to_ascii_lowercase();
            match name.as_str() {
                "transfer-encoding" => {
                    return Err(Failure::new(
                        411,
                        "a chunked request body cannot go through the proxy: send a Content-Length",
                    ));
                }
                "content-length" => {
                    let length = std::str::from_utf8(header.value).ok().and_then(|v| v.trim().parse::<u64>().ok());
                    match (length, body_bytes) {
                        (Some(length), None) => body_bytes = Some(length),
                        _ => return Err(Failure::new(400, "one valid Content-Length, please")),
                    }
                }
                "host" | "connection" | "keep-alive" | "upgrade" | "te" | "trailer" => continue,
                _ if name.starts_with("proxy-") => continue,
                _ => {}
            }
            head.extend_from_slice(header.name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(header.value);
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"Connection: close\r\n\r\n");
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        Ok(Target { host, port, forward: Some(Forward { head, body_bytes: body_bytes.unwrap_or(0) }) })
    }
}

/// `host:port` or `[v6]:port`.
fn split_authority(authority: &str) -> Option<(String, u16)> {
    let (host, port) = authority.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then_some(())?;
    Some((host.to_owned(), port.parse().ok()?))
}

/// Checks `host` and each address it resolves to, then connects to the first that passed and
/// answers.
async fn connect(rules: &NetworkRules, host: &str, port: u16) -> Result<TcpStream, Failure> {
    let refused = |refusal: soulbox_engine::network::Refusal| Failure::new(403, format!("refused: {refusal}"));
    rules.check_host(host).map_err(refused)?;
    let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(address) => vec![SocketAddr::new(address, port)],
        Err(_) => tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| Failure::new(502, format!("resolving {host} timed out")))?
            .map_err(|e| Failure::new(502, format!("cannot resolve {host}: {e}")))?
            .collect(),
    };
    let mut refusal = None;
    let allowed: Vec<SocketAddr> = addresses
        .into_iter()
        .filter(|a| rules.check_address(a.ip()).map_err(|r| refusal.get_or_insert(r).clone()).is_ok())
        .collect();
    if allowed.is_empty() {
        return Err(refusal.map_or_else(|| Failure::new(502, format!("{host} has no address")), refused));
    }
    let mut last = None;
    for address in allowed {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(error)) => last = Some(error.to_string()),
            Err(_) => last = Some("timed out".into()),
        }
    }
    Err(Failure::new(502, format!("cannot connect to {host}:{port}: {}", last.unwrap_or_default())))
}

/// Copies both ways until the upstream is done (or sent more than the policy's response
/// limit); the client's side may end first (a half-close).
async fn relay(client: &mut TcpStream, upstream: &mut TcpStream, tenant: &Tenant) -> Ended {
    let (mut client_read, mut client_write) = client.split();
    let (mut upstream_read, mut upstream_write) = upstream.split();
    let up = async {
        copy(&mut client_read, &mut upstream_write, u64::MAX, |n| tenant.count(|u| u.bytes_sent += n)).await;
        // The client is done sending; the response may still be coming.
        std::future::pending::<()>().await
    };
    tokio::select! {
        ended = respond(&mut upstream_read, &mut client_write, tenant) => ended,
        () = up => Ended::Done,
    }
}

/// Copies the upstream's answer to the client, up to the policy's response limit.
async fn respond<R, W>(upstream: &mut R, client: &mut W, tenant: &Tenant) -> Ended
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let limit = tenant.rules.max_response_bytes;
    if copy(upstream, client, limit, |n| tenant.count(|u| u.bytes_received += n)).await {
        tracing::debug!(limit, "egress proxy: a response met the policy's size limit");
        return Ended::Cut;
    }
    Ended::Done
}

/// Copies `from` to `to` until `from` ends or `limit` bytes went through (true then); counts
/// each chunk.
async fn copy<R, W>(from: &mut R, to: &mut W, limit: u64, count: impl Fn(u64)) -> bool
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0u8; RELAY_BUFFER_BYTES];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let allowed = usize::try_from(limit.saturating_sub(total)).unwrap_or(usize::MAX).min(n);
        if to.write_all(&buffer[..allowed]).await.is_err() {
            break;
        }
        total += allowed as u64;
        count(allowed as u64);
        if allowed < n {
            return true;
        }
    }
    let _ = to.shutdown().await;
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_and_absolute_requests_are_understood_and_rewritten() {
        let connect = Target::parse(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n").unwrap();
        assert_eq!(connect, Target { host: "example.com".into(), port: 443, forward: None });
        let v6 = Target::parse(b"CONNECT [::1]:8443 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 8443));
        let get = Target::parse(
            b"GET http://example.com:8080/a/b?c=1 HTTP/1.1\r\nHost: example.com:8080\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: x\r\nAccept: */*\r\n\r\n",
        )
        .unwrap();
        assert_eq!((get.host.as_str(), get.port), ("example.com", 8080));
        let forward = get.forward.unwrap();
        assert_eq!(
            String::from_utf8(forward.head).unwrap(),
            "GET /a/b?c=1 HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(forward.body_bytes, 0);
        // The URL names the origin: a Host header naming another is not sent.
        let fronted =
            Target::parse(b"POST http://allowed.test/x HTTP/1.1\r\nHost: other.test\r\nContent-Length: 3\r\n\r\n")
                .unwrap();
        let forward = fronted.forward.unwrap();
        assert_eq!(
            String::from_utf8(forward.head).unwrap(),
            "POST /x HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 3\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(forward.body_bytes, 3);
    }

    #[test]
    fn what_is_not_a_proxy_request_is_refused_with_a_reason() {
        let origin = Target::parse(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n").unwrap_err();
        assert_eq!(origin.status, 400);
        assert!(origin.message.contains("not an absolute URL"), "{origin:?}");
        let https = Target::parse(b"GET https://a/ HTTP/1.1\r\n\r\n").unwrap_err();
        assert!(https.message.contains("use CONNECT"), "{https:?}");
        assert_eq!(Target::parse(b"CONNECT nowhere HTTP/1.1\r\n\r\n").unwrap_err().status, 400);
        assert_eq!(Target::parse(b"\x16\x03\x01 tls\r\n\r\n").unwrap_err().status, 400);
        let chunked = b"POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(Target::parse(chunked).unwrap_err().status, 411);
        let two = b"POST http://a/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(Target::parse(two).unwrap_err().status, 400);
    }

    #[tokio::test]
    async fn the_rules_decide_and_a_refusal_says_why() {
        let rules = soulbox_engine::NetworkPolicy { deny_domains: vec!["denied.test".into()], ..Default::default() }
            .rules()
            .unwrap();
        let denied = connect(&rules, "denied.test", 80).await.unwrap_err();
        assert_eq!(denied.status, 403);
        assert!(denied.message.contains("denied domains"), "{denied:?}");
        let loopback = connect(&rules, "127.0.0.1", 80).await.unwrap_err();
        assert!(loopback.message.contains("loopback"), "{loopback:?}");
        let metadata = connect(&rules, "169.254.169.254", 80).await.unwrap_err();
        assert_eq!(metadata.status, 403, "{metadata:?}");
    }
}
