//! A client of a running server's `/v1` API, for the CLI commands that act on live sandboxes
//! and on templates (pause, resume, checkpoint, fork, kill; list, describe, delete).
//!
//! Sandboxes live in the server's process, so these commands ask the server rather than touch
//! its files: the registry in the database (`soulbox sandboxes list`) can be read while the
//! server is down, but only the server can pause what it holds. A refusal comes back as the
//! server's own message and code (`not_found: no sandbox sbx_...`), and the command fails.

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// How long one call may take: a fork of a hundred sandboxes or a pause of a big one is
/// seconds, not minutes.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the server is and who calls it.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// The server's base URL.
    #[arg(long, env = "SOULBOX_SERVER", default_value = "http://127.0.0.1:8080", value_name = "URL")]
    pub server: String,
    /// An API key (`soulbox keys create`); none for a server in development mode.
    #[arg(long, env = "SOULBOX_API_KEY", value_name = "KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// A connection to one server as one caller.
#[derive(Debug)]
pub struct ApiClient {
    base: String,
    key: Option<String>,
    http: reqwest::Client,
}

/// The error body every `/v1` route answers with.
#[derive(Debug, serde::Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, serde::Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

impl ApiClient {
    pub fn new(args: &ServerArgs) -> anyhow::Result<Self> {
        let base = args.server.trim_end_matches('/').to_owned();
        anyhow::ensure!(
            base.starts_with("http://") || base.starts_with("https://"),
            "--server must be an http:// or https:// URL, not `{}`",
            args.server
        );
        let http = reqwest::Client::builder().timeout(CALL_TIMEOUT).build().context("building the HTTP client")?;
        Ok(Self { base, key: args.api_key.clone(), http })
    }

    /// `GET /v1{path}`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call(reqwest::Method::GET, path, None::<&()>).await
    }

    /// `POST /v1{path}` with a JSON body.
    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> anyhow::Result<T> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// `DELETE /v1{path}`, whose success has no body.
    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        self.call::<serde::de::IgnoredAny>(reqwest::Method::DELETE, path, None::<&()>).await.map(drop)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> anyhow::Result<T> {
        let url = format!("{}/v1{path}", self.base);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.with_context(|| format!("reaching the server at {}", self.base))?;
        let status = response.status();
        let bytes = response.bytes().await.with_context(|| format!("reading the answer to {method} {path}"))?;
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(body) => anyhow::anyhow!("{}: {}", body.error.code, body.error.message),
                Err(_) => anyhow::anyhow!("the server answered {status} to {method} {path}"),
            });
        }
        let bytes = if bytes.is_empty() { &b"null"[..] } else { &bytes[..] };
        serde_json::from_slice(bytes).with_context(|| format!("reading the answer to {method} {path}"))
    }
}

/// One path segment, percent-encoded: ids and names are plain, but what a user types is not
/// trusted to be.
pub fn segment(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (byte as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("sbx_abc-1.2"), "sbx_abc-1.2");
        assert_eq!(segment("../x y"), "..%2Fx%20y");
    }

    #[test]
    fn a_server_that_is_not_a_url_is_refused() {
        let args = ServerArgs { server: "localhost:8080".into(), api_key: None };
        let error = ApiClient::new(&args).unwrap_err().to_string();
        assert!(error.contains("http:// or https://"), "{error}");
    }
}
