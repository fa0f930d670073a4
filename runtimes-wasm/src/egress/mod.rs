//! Guests' outbound HTTP: made by the host, under the request's [`NetworkPolicy`].
//!
//! A guest has no sockets. Its HTTP library hands each request to the host instead: Python's
//! `http.client` connections (which `urllib.request` uses) through the door, as a
//! [`REQUEST_FRAME`](soulbox_host_api::REQUEST_FRAME), JavaScript's `fetch` through the event
//! loop the host runs. Either way the request is a [`FetchRequest`] and the answer a
//! [`FetchAnswer`], both JSON, and a [`GuestNetwork`] (one per execution or context) makes it:
//!
//! - every hop is checked before anything is sent: the URL's host against the domain rules,
//!   then each address its name resolves to against the address rules, in the client's own
//!   resolver ([`client`]), which hands the connector only the addresses that passed (so a
//!   name cannot resolve to something else between check and connect). Connections are pooled
//!   per guest only, never across guests or policies;
//! - redirects are followed by the host when the guest asks (`fetch`), each hop checked and
//!   counted; Python's `urllib` follows them itself, one request per hop;
//! - each request has the policy's time limit and response-size limit, each execution or cell
//!   its request count; a guest without a policy gets a clear refusal, never a socket error;
//! - what was sent and received is counted ([`NetworkUsage`]) for the execution's result.
//!
//! The client (and its pooled connections) lives for one execution or one cell, never longer:
//! its connections' tasks run on the runtime of the worker thread that opened them, which
//! drives them only while it runs that job; a context's next cell may run on another worker.

mod client;
mod frame;

pub(crate) use frame::{FetchAnswer, FetchRequest};

use soulbox_engine::network::{NetworkPolicy, NetworkRules, NetworkUsage};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// The most redirects one `fetch` follows.
pub(crate) const MAX_REDIRECTS: u32 = 20;

/// One guest's network: its rules, its client (made on first use) and what it has used.
pub(crate) struct GuestNetwork {
    /// `None`: the guest has no network; every request is refused.
    rules: Option<NetworkRules>,
    /// Made on the first request of an execution or cell, dropped at the next cell.
    client: Mutex<Option<reqwest::Client>>,
    usage: Mutex<NetworkUsage>,
}

impl std::fmt::Debug for GuestNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestNetwork").field("enabled", &self.rules.is_some()).finish_non_exhaustive()
    }
}

impl GuestNetwork {
    /// The network `policy` allows (none for `None`). The policy was validated with the request.
    pub(crate) fn new(policy: Option<&NetworkPolicy>) -> Arc<Self> {
        let rules = policy.and_then(|p| p.rules().ok());
        Arc::new(GuestNetwork { rules, client: Mutex::new(None), usage: Mutex::new(NetworkUsage::default()) })
    }

    /// Whether the guest may make requests at all.
    pub(crate) fn enabled(&self) -> bool {
        self.rules.is_some()
    }

    /// What the guest used, for a guest with a network.
    pub(crate) fn usage(&self) -> Option<NetworkUsage> {
        self.rules.as_ref().map(|_| *self.usage.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Starts a context's next cell: a request budget counted afresh, and a new client (the
    /// last cell's connections belong to its worker's runtime).
    pub(crate) fn begin_cell(&self) {
        *self.usage.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = NetworkUsage::default();
        *self.client.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// Makes `request`, following redirects if it asks to; never fails: a refusal or an error
    /// is an answer the guest turns into its own exception.
    pub(crate) async fn fetch(&self, request: FetchRequest) -> FetchAnswer {
        let Some(rules) = &self.rules else {
            return FetchAnswer::refused(
                "network access is not enabled for this execution (ask for a `network` policy)",
            );
        };
        let client = {
            let mut slot = self.client.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match slot.as_ref() {
                Some(client) => client.clone(),
                None => match client::build(rules) {
                    Ok(client) => slot.insert(client).clone(),
                    Err(why) => return FetchAnswer::failed(format!("cannot start the HTTP client: {why}")),
                },
            }
        };
        let mut exchange = client::Exchange { rules, client: &client, usage: &self.usage };
        exchange.run(request).await
    }
}

impl soulbox_host_api::Egress for GuestNetwork {
    fn answer(self: Arc<Self>, frame: Vec<u8>) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send>> {
        Box::pin(async move {
            let answer = match serde_json::from_slice::<FetchRequest>(&frame) {
                Ok(request) => self.fetch(request).await,
                Err(e) => FetchAnswer::failed(format!("malformed request from the guest's HTTP library: {e}")),
            };
            answer.to_json()
        })
    }
}
