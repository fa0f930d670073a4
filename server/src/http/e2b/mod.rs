//! The E2B surface: what the official, unmodified E2B SDKs (`e2b`, `e2b-code-interpreter`)
//! call, served by `soulbox serve` on its own port, mapped onto SoulBox's own sandboxes.
//!
//! A user sets `E2B_API_URL` and `E2B_SANDBOX_URL` to this server and `E2B_API_KEY` to a
//! SoulBox API key. Two kinds of traffic arrive (the wire protocol is written up in the team's
//! `notes/e2b-protocol.md`):
//!
//! - **The control plane** ([`control`]): `/v2/sandboxes...` and `/sandboxes/{id}...`, with
//!   the API key in `X-API-KEY`, behind the same authentication, rate limits and bounds as
//!   `/v1`. An E2B sandbox *is* a SoulBox sandbox of the key's tenant. Every error is E2B's
//!   `{"code": <status>, "message": ...}` (the SDK's parser needs exactly that shape), made
//!   from the [`ApiError`](super::ApiError) the request failed with.
//! - **Sandbox traffic** ([`traffic`]): any request carrying `E2b-Sandbox-Id`, routed by
//!   `E2b-Sandbox-Port` to envd (49983: [`envd`], [`process`] and [`watch`], the `filesystem`/`process` Connect services,
//!   `/files`, `/health`) or the code interpreter (49999: [`interpreter`], `/execute`,
//!   `/contexts`). No API key comes with it: the per-sandbox token handed out at create
//!   ([`SandboxTokens`]) is the only proof, and the caller is the sandbox's owner.
//!
//! Paths: E2B's `/home/user` is a directory of the sandbox's workspace, made when an E2B
//! sandbox is created, and E2B paths are workspace paths as they are (`/home/user/a.csv` is
//! `/home/user/a.csv` to the file API and to code alike; a relative path is relative to
//! `/home/user`, which is every Python context's working directory here).

mod connect;
mod control;
mod envd;
mod interpreter;
mod process;
mod traffic;
mod watch;
mod wire;

pub use traffic::{SandboxTraffic, divert};
pub use wire::reshape_errors;

use super::AppState;
use axum::Router;

/// The user every E2B path and process belongs to, and its home.
pub const HOME: &str = "/home/user";
/// The envd version advertised: the SDK gates features on it (octet-stream uploads from
/// 0.5.7, which [`envd`] implements).
pub const ENVD_VERSION: &str = "0.5.7";
/// The `clientID` of every sandbox (E2B names a node; SoulBox has one).
pub const CLIENT_ID: &str = "soulbox";
/// The metadata key that records an E2B sandbox's template as the caller named it.
pub const TEMPLATE_KEY: &str = "e2b_template";

/// What the E2B surface keeps between requests: its tokens and its polled watchers. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct E2b {
    /// Per-sandbox access tokens.
    pub tokens: SandboxTokens,
    /// Directory watchers the sync SDK polls.
    pub watchers: watch::Watchers,
}

impl E2b {
    /// The surface's state, with `tokens`.
    pub fn new(tokens: SandboxTokens) -> Self {
        E2b { tokens, watchers: watch::Watchers::default() }
    }
}

/// The control plane's routes (the caller's authentication and bounds are layered on by
/// [`super::app`]).
pub fn control_routes() -> Router<AppState> {
    control::routes()
}

/// Per-sandbox access tokens: `envdAccessToken` and `trafficAccessToken` are one secret,
/// derived from the sandbox's id with a key the server keeps in its database, so a token
/// handed out before a restart still opens a sandbox resumed after it, and nothing has to be
/// stored per sandbox. 256 bits, compared in constant time.
#[derive(Clone)]
pub struct SandboxTokens {
    key: [u8; 32],
}

impl std::fmt::Debug for SandboxTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SandboxTokens(..)")
    }
}

impl SandboxTokens {
    /// Name of the key in the database's secrets.
    pub const SECRET_NAME: &str = "e2b-sandbox-tokens";

    /// Tokens derived with `secret` (64 hex digits, from [`crate::database::Database::secret`]).
    pub fn from_secret(secret: &str) -> Option<Self> {
        let hash = blake3::Hash::from_hex(secret).ok()?;
        Some(SandboxTokens { key: *hash.as_bytes() })
    }

    /// Tokens with a fresh random key (tests; a server uses [`SandboxTokens::from_secret`]).
    #[cfg(test)]
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the OS random source works");
        SandboxTokens { key }
    }

    fn hash(&self, sandbox: &str) -> blake3::Hash {
        blake3::keyed_hash(&self.key, sandbox.as_bytes())
    }

    /// Sandbox `sandbox`'s token.
    pub fn token(&self, sandbox: &str) -> String {
        self.hash(sandbox).to_hex().to_string()
    }

    /// Whether `presented` is sandbox `sandbox`'s token (constant time).
    pub fn verify(&self, sandbox: &str, presented: &str) -> bool {
        // `blake3::Hash`'s equality is constant-time.
        blake3::Hash::from_hex(presented).is_ok_and(|given| given == self.hash(sandbox))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_its_sandbox_only_and_survives_a_restart() {
        let secret = blake3::hash(b"kept in the database").to_hex().to_string();
        let (before, after) =
            (SandboxTokens::from_secret(&secret).unwrap(), SandboxTokens::from_secret(&secret).unwrap());
        let token = before.token("sbx_a");
        assert_eq!(token.len(), 64);
        assert!(after.verify("sbx_a", &token));
        assert!(!after.verify("sbx_b", &token));
        assert!(!after.verify("sbx_a", "not hex"));
        assert!(!SandboxTokens::random().verify("sbx_a", &token));
        assert!(SandboxTokens::from_secret("short").is_none());
    }
}
