//! The wire format between a guest's HTTP library and the host: one JSON request, one JSON
//! answer. Bodies are base64.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// A request from the guest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FetchRequest {
    /// `GET`, `POST`...
    pub(crate) method: String,
    /// An absolute `http` or `https` URL.
    pub(crate) url: String,
    /// Header names and values, in order, repeated names allowed.
    #[serde(default)]
    pub(crate) headers: Vec<(String, String)>,
    /// The body, base64.
    #[serde(default, with = "optional_base64")]
    pub(crate) body: Option<Vec<u8>>,
    /// Whether the host follows redirects (`fetch`'s default) or answers them (Python's
    /// `urllib` follows them itself).
    #[serde(default)]
    pub(crate) follow_redirects: bool,
}

/// Why a request failed, for the guest to pick its exception.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FailureKind {
    /// The network policy (or its absence) refused it; nothing was sent.
    Refused,
    /// A policy limit was reached (response size, request count, redirects).
    Limit,
    /// The request's time limit passed.
    Timeout,
    /// The connection or the exchange failed (DNS, refused connection, TLS, a bad URL).
    Failed,
}

/// The host's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub(crate) enum FetchAnswer {
    /// A response arrived (any status).
    Response {
        /// The status code.
        status: u16,
        /// Its reason phrase (the canonical one for the code).
        reason: String,
        /// The URL that answered (after redirects).
        url: String,
        /// Header names and values, in order.
        headers: Vec<(String, String)>,
        /// The body, base64.
        #[serde(serialize_with = "as_base64")]
        body: Vec<u8>,
        /// Redirects followed.
        redirected: bool,
    },
    /// No response.
    Failure {
        /// Why.
        error: FailureKind,
        /// For the guest's exception message.
        message: String,
    },
}

impl FetchAnswer {
    pub(crate) fn refused(message: impl Into<String>) -> Self {
        FetchAnswer::Failure { error: FailureKind::Refused, message: message.into() }
    }

    pub(crate) fn limit(message: impl Into<String>) -> Self {
        FetchAnswer::Failure { error: FailureKind::Limit, message: message.into() }
    }

    pub(crate) fn timeout(message: impl Into<String>) -> Self {
        FetchAnswer::Failure { error: FailureKind::Timeout, message: message.into() }
    }

    pub(crate) fn failed(message: impl Into<String>) -> Self {
        FetchAnswer::Failure { error: FailureKind::Failed, message: message.into() }
    }

    /// The answer as the guest reads it.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        // Plain data: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_else(|_| br#"{"error":"failed","message":"unserializable answer"}"#.to_vec())
    }
}

fn as_base64<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&STANDARD.encode(bytes))
}

mod optional_base64 {
    use super::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => STANDARD.decode(text).map(Some).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_and_answers_write_as_the_guests_expect() {
        let request: FetchRequest = serde_json::from_str(
            r#"{"method":"POST","url":"http://a.test/x","headers":[["A","1"],["A","2"]],"body":"aGk=","follow_redirects":true}"#,
        )
        .unwrap();
        assert_eq!(request.body.as_deref(), Some(&b"hi"[..]));
        assert_eq!(request.headers.len(), 2);
        assert!(serde_json::from_str::<FetchRequest>(r#"{"method":"GET","url":"u","proxy":"p"}"#).is_err());
        let answer = FetchAnswer::Response {
            status: 200,
            reason: "OK".into(),
            url: "http://a.test/x".into(),
            headers: vec![("content-type".into(), "text/plain".into())],
            body: b"hello".to_vec(),
            redirected: false,
        };
        let json: serde_json::Value = serde_json::from_slice(&answer.to_json()).unwrap();
        assert_eq!(json["body"], "aGVsbG8=");
        let json: serde_json::Value = serde_json::from_slice(&FetchAnswer::refused("no").to_json()).unwrap();
        assert_eq!(json, serde_json::json!({"error": "refused", "message": "no"}));
    }
}
