//! Forwarding a request to the node that owns its sandbox, streaming both ways: the request
//! body is sent as it arrives (file uploads), the response body as the owner produces it
//! (NDJSON and SSE cells, process output, downloads).
//!
//! The forwarded request keeps its method, path, query and end-to-end headers (the API key,
//! `x-request-id`, so both nodes log the same request id) and gains [`FORWARDED_BY`], which
//! makes the owner serve it locally whatever it believes: a request is forwarded at most once.

use super::{Cluster, ClusterError};
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, header};
use axum::response::Response;
use std::time::Duration;
use tracing::Instrument;

/// The header a forwarded request carries: the name of the node that forwarded it.
pub const FORWARDED_BY: &str = "x-soulbox-forwarded-by";
/// How long connecting to another node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle connections kept per node.
const IDLE_PER_NODE: usize = 32;

/// The client nodes forward with: no overall timeout (a stream lasts as long as its cell),
/// no redirects followed, no proxy from the environment.
pub(super) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_max_idle_per_host(IDLE_PER_NODE)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .tcp_nodelay(true)
        .build()
        .expect("a client with these settings builds")
}

impl Cluster {
    /// Sends `request` to node `node` at `url` and returns its response as it streams, in a
    /// `forward` span whose trace context the request carries (when traces are exported).
    pub async fn forward(&self, node: &str, url: &str, request: Request) -> Result<Response, ClusterError> {
        self.forward_in_span(node, url, request).instrument(tracing::info_span!("forward", node = %node)).await
    }

    async fn forward_in_span(&self, node: &str, url: &str, request: Request) -> Result<Response, ClusterError> {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let target = format!("{}{path}", url.trim_end_matches('/'));
        let mut headers = end_to_end(&parts.headers);
        crate::telemetry::inject(&mut headers);
        let sent = self
            .0
            .client
            .request(parts.method, target)
            .headers(headers)
            .header(FORWARDED_BY, self.node())
            .header(super::FORWARD_TOKEN, &self.0.forward_token)
            .body(reqwest::Body::wrap_stream(body.into_data_stream()))
            .send()
            .await
            // Without the URL: it may carry the client's query string.
            .map_err(|e| ClusterError::Unreachable { node: node.to_owned(), why: e.without_url().to_string() })?;
        let mut response = Response::builder().status(sent.status());
        if let Some(headers) = response.headers_mut() {
            *headers = end_to_end(sent.headers());
        }
        Ok(response.body(Body::from_stream(sent.bytes_stream())).expect("status and headers came from a response"))
    }
}

/// `headers` without the hop-by-hop ones (and `Host`, which the client sets for the target).
fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let named_by_connection: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    let mut kept = headers.clone();
    for name in [
        header::CONNECTION,
        header::HOST,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
        HeaderName::from_static("keep-alive"),
    ]
    .iter()
    .chain(&named_by_connection)
    {
        kept.remove(name);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-private"));
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert(header::HOST, HeaderValue::from_static("node-1:8080"));
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer sbk_x"));
        headers.insert("x-request-id", HeaderValue::from_static("abc"));
        let kept = end_to_end(&headers);
        let mut names: Vec<&str> = kept.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["authorization", "x-request-id"]);
    }
}
