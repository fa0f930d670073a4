//! The HTTP client a guest's requests go through: reqwest over rustls, with the policy's
//! resolver, no proxy, no automatic redirects, and one TLS configuration (the system's root
//! certificates, loaded once per process) shared by every guest's client.

use super::MAX_REDIRECTS;
use super::frame::{FetchAnswer, FetchRequest};
use soulbox_engine::network::{MAX_REQUEST_BODY_BYTES, NetworkRules, NetworkUsage, Refusal};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

/// Headers a guest may not set: the host frames the request itself.
const HOST_SET_HEADERS: [&str; 11] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
];
/// Headers dropped when a redirect leads to another host.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// A client for one guest, resolving names through `rules`.
pub(super) fn build(rules: &NetworkRules) -> Result<reqwest::Client, String> {
    let tls = tls_config()?;
    reqwest::Client::builder()
        .use_preconfigured_tls(tls.clone())
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(PolicyResolver { rules: rules.clone() }))
        .connect_timeout(rules.request_timeout)
        .pool_max_idle_per_host(4)
        .build()
        .map_err(|e| e.to_string())
}

/// The process's TLS client configuration: the system's root certificates (read once).
fn tls_config() -> Result<&'static rustls::ClientConfig, String> {
    static CONFIG: OnceLock<Result<rustls::ClientConfig, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // A certificate the system holds but rustls cannot parse is skipped, as reqwest does.
                let _ = roots.add(cert);
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(config)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Resolves a name and keeps only the addresses the rules allow; none allowed is an error
/// carrying the [`Refusal`], which [`Exchange`] reports as a refusal.
struct PolicyResolver {
    rules: NetworkRules,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let rules = self.rules.clone();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let mut refusal = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match rules.check_address(a.ip()) {
                    Ok(()) => true,
                    Err(why) => {
                        refusal.get_or_insert(why);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refusal) {
                (true, Some(why)) => Err(Box::new(why) as Box<dyn std::error::Error + Send + Sync>),
                _ => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

/// One guest request, hop by hop.
pub(super) struct Exchange<'a> {
    pub(super) rules: &'a NetworkRules,
    pub(super) client: &'a reqwest::Client,
    pub(super) usage: &'a Mutex<NetworkUsage>,
}

impl Exchange<'_> {
    pub(super) async fn run(&mut self, request: FetchRequest) -> FetchAnswer {
        let Ok(method) = reqwest::Method::from_bytes(request.method.as_bytes()) else {
            return FetchAnswer::failed(format!("`{}` is not an HTTP method", request.method));
        };
        if request.body.as_ref().is_some_and(|b| b.len() as u64 > MAX_REQUEST_BODY_BYTES) {
            return FetchAnswer::limit(format!("request bodies are limited to {MAX_REQUEST_BODY_BYTES} bytes"));
        }
        let mut hop = Hop { method, url: request.url, headers: request.headers, body: request.body };
        let timeout = self.rules.request_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        for redirects in 0..=MAX_REDIRECTS {
            let sent = tokio::time::timeout_at(deadline, self.send(&hop)).await;
            let response = match sent {
                Err(_) => {
                    return FetchAnswer::timeout(format!("no complete response within {} ms", timeout.as_millis()));
                }
                Ok(Err(answer)) => return answer,
                Ok(Ok(response)) => response,
            };
            let next = request.follow_redirects.then(|| hop.redirected(&response)).flatten();
            let Some(next) = next else {
                return match tokio::time::timeout_at(deadline, self.read(response, redirects > 0)).await {
                    Err(_) => FetchAnswer::timeout(format!("no complete response within {} ms", timeout.as_millis())),
                    Ok(answer) => answer,
                };
            };
            hop = next;
        }
        FetchAnswer::limit(format!("more than {MAX_REDIRECTS} redirects"))
    }

    /// Checks one hop against the rules and sends it.
    async fn send(&self, hop: &Hop) -> Result<reqwest::Response, FetchAnswer> {
        let url = reqwest::Url::parse(&hop.url)
            .map_err(|e| FetchAnswer::failed(format!("invalid URL `{}`: {e}", hop.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchAnswer::failed(format!("`{}` URLs are not supported: use http or https", url.scheme())));
        }
        let host = url.host_str().ok_or_else(|| FetchAnswer::failed(format!("`{url}` has no host")))?;
        if let Err(why) = self.rules.check_host(host) {
            return Err(self.refuse(&why));
        }
        {
            let mut usage = self.usage.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if usage.requests >= u64::from(self.rules.max_requests) {
                return Err(FetchAnswer::limit(format!(
                    "the network policy allows {} requests per execution or cell",
                    self.rules.max_requests
                )));
            }
            usage.requests += 1;
            usage.bytes_sent += hop.body.as_ref().map_or(0, |b| b.len() as u64);
        }
        let mut builder = self.client.request(hop.method.clone(), url.clone());
        for (name, value) in &hop.headers {
            if !HOST_SET_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                builder = builder.header(name.as_str(), value.as_str());
            }
        }
        if let Some(body) = &hop.body {
            builder = builder.body(body.clone());
        }
        builder.send().await.map_err(|e| match refusal_in(&e) {
            Some(why) => self.refuse(why),
            None => FetchAnswer::failed(format!("{} {url}: {}", hop.method, describe(&e))),
        })
    }

    /// Reads the body up to the policy's limit.
    async fn read(&self, mut response: reqwest::Response, redirected: bool) -> FetchAnswer {
        let limit = self.rules.max_response_bytes;
        let (status, url) = (response.status(), response.url().to_string());
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    self.count_received(chunk.len());
                    if body.len() as u64 + chunk.len() as u64 > limit {
                        return FetchAnswer::limit(format!(
                            "the response from {url} is larger than the network policy's {limit} bytes"
                        ));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return FetchAnswer::failed(format!("reading the response from {url}: {}", describe(&e))),
            }
        }
        let reason = status.canonical_reason().unwrap_or("").to_owned();
        FetchAnswer::Response { status: status.as_u16(), reason, url, headers, body, redirected }
    }

    fn count_received(&self, bytes: usize) {
        self.usage.lock().unwrap_or_else(std::sync::PoisonError::into_inner).bytes_received += bytes as u64;
    }

    fn refuse(&self, why: &Refusal) -> FetchAnswer {
        self.usage.lock().unwrap_or_else(std::sync::PoisonError::into_inner).refused += 1;
        tracing::debug!(%why, "guest HTTP request refused");
        FetchAnswer::refused(format!("refused by SoulBox's network policy: {why}"))
    }
}

/// One request on the way: what the next hop sends.
struct Hop {
    method: reqwest::Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Hop {
    /// The next hop if `response` redirects, as `fetch` follows it: 303 (and 301/302 after a
    /// POST) becomes a GET without a body; credentials are dropped when the host changes.
    fn redirected(&self, response: &reqwest::Response) -> Option<Hop> {
        let status = response.status().as_u16();
        if !matches!(status, 301 | 302 | 303 | 307 | 308) {
            return None;
        }
        let location = response.headers().get(reqwest::header::LOCATION)?.to_str().ok()?;
        let next = response.url().join(location).ok()?;
        let to_get = status == 303 || (matches!(status, 301 | 302) && self.method == reqwest::Method::POST);
        let same_host = next.host_str() == response.url().host_str();
        let headers = self
            .headers
            .iter()
            .filter(|(name, _)| {
                let name = name.to_ascii_lowercase();
                (same_host || !CREDENTIAL_HEADERS.contains(&name.as_str()))
                    && !(to_get && (name == "content-type" || name.starts_with("content-")))
            })
            .cloned()
            .collect();
        Some(Hop {
            method: if to_get && self.method != reqwest::Method::HEAD {
                reqwest::Method::GET
            } else {
                self.method.clone()
            },
            url: next.to_string(),
            headers,
            body: if to_get { None } else { self.body.clone() },
        })
    }
}

/// The policy's refusal behind a failed send (the resolver's error), found by type.
fn refusal_in(error: &reqwest::Error) -> Option<&Refusal> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(refusal) = e.downcast_ref::<Refusal>() {
            return Some(refusal);
        }
        source = e.source();
    }
    None
}

/// An error and its causes on one line (reqwest's own message names only the outer layer).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
