//! [`NetworkPolicy`]: whether, where and how much a guest may reach over HTTP.
//!
//! Off by default: a request or sandbox without a policy has no network at all. With one, a
//! WebAssembly guest's outbound HTTP(S) (Python's `urllib.request` and `http.client`,
//! JavaScript's `fetch`) is made by the host on the guest's behalf, and every request and
//! every redirect hop is checked before anything is sent ([`NetworkRules::check_host`], then
//! [`NetworkRules::check_address`] for each address the name resolves to; the host connects
//! only to an address that passed, so a name that resolves differently the second time cannot
//! slip past):
//!
//! 1. the host name is refused if it matches `deny_domains`; when `allow_domains` is not
//!    empty, it must match one of them. A pattern is a name (`example.com`, that name only) or
//!    a wildcard (`*.example.com`, its subdomains, not the name itself). A URL with a literal
//!    address is held to the same lists by its address: with `allow_domains` set, it must be
//!    in `allow_cidrs`;
//! 2. each address is refused if it is in `deny_cidrs` (which wins over everything); else it
//!    is allowed if it is in `allow_cidrs`; else it is allowed only if it is public. Never
//!    public: loopback, private (RFC 1918, unique-local), link-local (with the cloud metadata
//!    address 169.254.169.254), shared (100.64/10), documentation, benchmarking, multicast,
//!    broadcast, unspecified and reserved ranges, and IPv4-mapped forms of them.
//!
//! Each request has a time limit and a response-size limit, and an execution (or a context's
//! cell) a request count; what was sent and received is counted in [`NetworkUsage`].

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// Time one request may take, connection to last byte, when a policy names none.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest time limit a policy may set for one request.
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// The largest response body a guest receives when a policy names no limit.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 16 << 20;
/// The largest response-body limit a policy may set.
pub const MAX_RESPONSE_BYTES: u64 = 256 << 20;
/// The largest request body a guest may send.
pub const MAX_REQUEST_BODY_BYTES: u64 = 16 << 20;
/// Requests one execution (or one cell) may make when a policy names no limit.
pub const DEFAULT_MAX_REQUESTS: u32 = 256;
/// The largest request count a policy may set.
pub const MAX_REQUESTS: u32 = 10_000;
/// Patterns and ranges one list may hold.
pub const MAX_RULES: usize = 1024;

/// Where a guest's HTTP may go and how much of it (see the module's documentation for the
/// order rules are applied in). `NetworkPolicy::default()` reaches every public address and
/// nothing else, with the default limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct NetworkPolicy {
    /// Host names the guest may reach (`example.com`, `*.example.com`); empty: any.
    pub allow_domains: Vec<String>,
    /// Host names the guest may never reach; they win over `allow_domains`.
    pub deny_domains: Vec<String>,
    /// Address ranges (`10.1.0.0/16`, `127.0.0.1/32`, `::1/128`) the guest may reach although
    /// they are not public.
    pub allow_cidrs: Vec<String>,
    /// Address ranges the guest may never reach; they win over everything.
    pub deny_cidrs: Vec<String>,
    /// Time limit for one request in milliseconds. Default [`DEFAULT_REQUEST_TIMEOUT`].
    pub request_timeout_ms: Option<u64>,
    /// Largest response body in bytes; a longer one fails the request. Default
    /// [`DEFAULT_MAX_RESPONSE_BYTES`].
    pub max_response_bytes: Option<u64>,
    /// Requests one execution or cell may make, redirect hops included. Default
    /// [`DEFAULT_MAX_REQUESTS`].
    pub max_requests: Option<u32>,
}

/// What a guest's HTTP sent and received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkUsage {
    /// Requests sent (redirect hops included).
    pub requests: u64,
    /// Requests the policy refused before sending.
    pub refused: u64,
    /// Request body bytes sent.
    pub bytes_sent: u64,
    /// Response body bytes received.
    pub bytes_received: u64,
}

impl NetworkUsage {
    /// Adds `other` to this.
    pub fn add(&mut self, other: &NetworkUsage) {
        self.requests += other.requests;
        self.refused += other.refused;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
    }
}

/// A policy SoulBox cannot apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkPolicyError {
    /// A domain pattern is not a host name or `*.` followed by one.
    #[error("invalid domain pattern `{0}`: use a host name (example.com) or a wildcard (*.example.com)")]
    Domain(String),
    /// A range is not in CIDR notation.
    #[error("invalid address range `{0}`: use CIDR notation (10.0.0.0/8, 203.0.113.7/32, ::1/128)")]
    Cidr(String),
    /// A list is longer than [`MAX_RULES`].
    #[error("`{0}` has more than {MAX_RULES} entries")]
    TooManyRules(&'static str),
    /// A limit is zero or past its maximum.
    #[error("`{name}` must be between 1 and {max}")]
    Limit {
        /// The field.
        name: &'static str,
        /// Its largest allowed value.
        max: u64,
    },
}

/// Why a host or an address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The name matches `deny_domains`.
    #[error("`{0}` is in the network policy's denied domains")]
    DeniedDomain(String),
    /// `allow_domains` is set and the name matches none of it.
    #[error("`{0}` is not in the network policy's allowed domains")]
    NotAllowedDomain(String),
    /// The address is in `deny_cidrs`.
    #[error("{0} is in the network policy's denied address ranges")]
    DeniedAddress(IpAddr),
    /// A literal address with `allow_domains` set, not in `allow_cidrs`.
    #[error("{0} is not in the network policy's allowed address ranges (the policy allows named domains only)")]
    NotAllowedAddress(IpAddr),
    /// A loopback, private, link-local or otherwise non-public address, not in `allow_cidrs`.
    #[error("{0} is a {1} address, which guests may not reach unless the network policy allows its range")]
    NotPublic(IpAddr, &'static str),
}

/// A [`NetworkPolicy`] checked and compiled: what the host applies to each request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRules {
    allow_domains: Vec<DomainPattern>,
    deny_domains: Vec<DomainPattern>,
    allow_cidrs: Vec<Cidr>,
    deny_cidrs: Vec<Cidr>,
    /// Time limit for one request.
    pub request_timeout: Duration,
    /// Largest response body.
    pub max_response_bytes: u64,
    /// Requests per execution or cell.
    pub max_requests: u32,
}

impl NetworkPolicy {
    /// Checks the policy and compiles it into [`NetworkRules`].
    pub fn rules(&self) -> Result<NetworkRules, NetworkPolicyError> {
        let domains = |name: &'static str, list: &[String]| -> Result<Vec<DomainPattern>, NetworkPolicyError> {
            if list.len() > MAX_RULES {
                return Err(NetworkPolicyError::TooManyRules(name));
            }
            list.iter().map(|p| DomainPattern::parse(p)).collect()
        };
        let cidrs = |name: &'static str, list: &[String]| -> Result<Vec<Cidr>, NetworkPolicyError> {
            if list.len() > MAX_RULES {
                return Err(NetworkPolicyError::TooManyRules(name));
            }
            list.iter().map(|c| Cidr::parse(c)).collect()
        };
        let timeout_ms = bounded(
            "request_timeout_ms",
            self.request_timeout_ms,
            DEFAULT_REQUEST_TIMEOUT.as_millis() as u64,
            MAX_REQUEST_TIMEOUT.as_millis() as u64,
        )?;
        Ok(NetworkRules {
            allow_domains: domains("allow_domains", &self.allow_domains)?,
            deny_domains: domains("deny_domains", &self.deny_domains)?,
            allow_cidrs: cidrs("allow_cidrs", &self.allow_cidrs)?,
            deny_cidrs: cidrs("deny_cidrs", &self.deny_cidrs)?,
            request_timeout: Duration::from_millis(timeout_ms),
            max_response_bytes: bounded(
                "max_response_bytes",
                self.max_response_bytes,
                DEFAULT_MAX_RESPONSE_BYTES,
                MAX_RESPONSE_BYTES,
            )?,
            max_requests: bounded(
                "max_requests",
                self.max_requests.map(u64::from),
                DEFAULT_MAX_REQUESTS.into(),
                MAX_REQUESTS.into(),
            )? as u32,
        })
    }
}

fn bounded(name: &'static str, value: Option<u64>, default: u64, max: u64) -> Result<u64, NetworkPolicyError> {
    match value {
        None => Ok(default),
        Some(v) if (1..=max).contains(&v) => Ok(v),
        Some(_) => Err(NetworkPolicyError::Limit { name, max }),
    }
}

impl NetworkRules {
    /// Checks a URL's host (a name, or a literal address with or without IPv6 brackets)
    /// against the domain rules, and a literal address against the address rules too.
    pub fn check_host(&self, host: &str) -> Result<(), Refusal> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(address) = bare.parse::<IpAddr>() {
            if !self.allow_domains.is_empty() && !self.allow_cidrs.iter().any(|c| c.contains(address)) {
                return Err(Refusal::NotAllowedAddress(address));
            }
            return self.check_address(address);
        }
        let name = bare.trim_end_matches('.').to_ascii_lowercase();
        if self.deny_domains.iter().any(|p| p.matches(&name)) {
            return Err(Refusal::DeniedDomain(name));
        }
        if !self.allow_domains.is_empty() && !self.allow_domains.iter().any(|p| p.matches(&name)) {
            return Err(Refusal::NotAllowedDomain(name));
        }
        Ok(())
    }

    /// Checks one address the host would connect to.
    pub fn check_address(&self, address: IpAddr) -> Result<(), Refusal> {
        let address = canonical(address);
        if self.deny_cidrs.iter().any(|c| c.contains(address)) {
            return Err(Refusal::DeniedAddress(address));
        }
        if self.allow_cidrs.iter().any(|c| c.contains(address)) {
            return Ok(());
        }
        match non_public(address) {
            Some(kind) => Err(Refusal::NotPublic(address, kind)),
            None => Ok(()),
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// What kind of non-public address `address` is, or `None` for a public one.
fn non_public(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(a: Ipv4Addr) -> Option<&'static str> {
    let [b0, b1, b2, _] = a.octets();
    Some(match () {
        _ if a.is_loopback() => "loopback",
        _ if a.is_private() => "private",
        _ if a.is_link_local() => "link-local (cloud metadata)",
        _ if a.is_unspecified() || b0 == 0 => "unspecified",
        _ if a.is_broadcast() => "broadcast",
        _ if a.is_multicast() => "multicast",
        _ if b0 == 100 && (64..128).contains(&b1) => "shared (carrier-grade NAT)",
        _ if b0 == 192 && b1 == 0 && b2 == 0 => "IETF protocol assignment",
        _ if a.is_documentation() => "documentation",
        _ if b0 == 198 && (18..20).contains(&b1) => "benchmarking",
        _ if b0 >= 240 => "reserved",
        _ => return None,
    })
}

/// IPv6 by IANA's special-purpose registry: every block it marks not globally reachable.
fn non_public_v6(a: Ipv6Addr) -> Option<&'static str> {
    let [first, second, third, fourth, ..] = a.segments();
    Some(match () {
        _ if a.is_loopback() => "loopback",
        _ if a.is_unspecified() => "unspecified",
        _ if a.is_multicast() => "multicast",
        _ if (first & 0xfe00) == 0xfc00 => "unique-local (private)",
        _ if (first & 0xffc0) == 0xfe80 => "link-local",
        _ if (first & 0xffc0) == 0xfec0 => "site-local (private)",
        _ if first == 0x2001 && second == 0x0db8 => "documentation",
        _ if first == 0x3fff && (second & 0xf000) == 0 => "documentation",
        _ if first == 0x0100 && second == 0 && third == 0 && fourth == 0 => "discard-only",
        _ if first == 0x5f00 => "segment routing (SRv6)",
        // The local-use translation prefix (64:ff9b:1::/48) maps to the operator's own IPv4.
        _ if first == 0x0064 && second == 0xff9b && third == 0x0001 => "local-use IPv4 translation",
        _ if first == 0x2001 && second < 0x0200 && !ietf_assignment_is_global(a) => "IETF protocol assignment",
        // NAT64 and 6to4 embed an IPv4 address: judge them by it.
        _ if first == 0x0064 && second == 0xff9b => {
            let [.., hi, lo] = a.segments();
            return non_public_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
        }
        _ if first == 0x2002 => {
            let [_, hi, lo, ..] = a.segments();
            return non_public_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
        }
        _ if a.to_ipv4().is_some() && first == 0 => "IPv4-compatible",
        _ => return None,
    })
}

/// The globally reachable blocks inside 2001::/23 (IETF protocol assignments, whose rest, Teredo
/// included, is not): the anycast addresses 2001:1::1 to 2001:1::3, AMT (2001:3::/32), AS112
/// (2001:4:112::/48), ORCHIDv2 (2001:20::/28) and drone remote ID (2001:30::/28).
fn ietf_assignment_is_global(a: Ipv6Addr) -> bool {
    let s = a.segments();
    let anycast = s[..7] == [0x2001, 1, 0, 0, 0, 0, 0] && (1..=3).contains(&s[7]);
    anycast || s[1] == 3 || (s[1] == 4 && s[2] == 0x0112) || (0x20..0x40).contains(&s[1])
}

/// `example.com` (that name) or `*.example.com` (its subdomains).
#[derive(Debug, Clone, PartialEq, Eq)]
enum DomainPattern {
    Exact(String),
    Subdomains(String),
}

impl DomainPattern {
    fn parse(pattern: &str) -> Result<Self, NetworkPolicyError> {
        let bad = || NetworkPolicyError::Domain(pattern.to_owned());
        let lower = pattern.trim_end_matches('.').to_ascii_lowercase();
        let (wildcard, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(bad());
        }
        Ok(if wildcard { DomainPattern::Subdomains(name.to_owned()) } else { DomainPattern::Exact(name.to_owned()) })
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            DomainPattern::Exact(exact) => name == exact,
            DomainPattern::Subdomains(parent) => {
                name.len() > parent.len() + 1
                    && name.ends_with(parent.as_str())
                    && name.as_bytes()[name.len() - parent.len() - 1] == b'.'
            }
        }
    }
}

/// An address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(text: &str) -> Result<Self, NetworkPolicyError> {
        let bad = || NetworkPolicyError::Cidr(text.to_owned());
        let (address, prefix) = text.split_once('/').ok_or_else(bad)?;
        let network: IpAddr = address.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        if prefix > bits {
            return Err(bad());
        }
        let (network, prefix) = canonical_cidr(network, prefix);
        Ok(Cidr { network, prefix })
    }

    fn contains(&self, address: IpAddr) -> bool {
        match (self.network, canonical(address)) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                masked(u32::from(net).into(), 32, self.prefix) == masked(u32::from(a).into(), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                masked(u128::from(net), 128, self.prefix) == masked(u128::from(a), 128, self.prefix)
            }
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 range (`::ffff:10.0.0.0/104`) as the IPv4 range it is.
fn canonical_cidr(network: IpAddr, prefix: u8) -> (IpAddr, u8) {
    match network {
        IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
            Some(v4) => (IpAddr::V4(v4), prefix - 96),
            None => (network, prefix),
        },
        _ => (network, prefix),
    }
}

fn masked(value: u128, bits: u8, prefix: u8) -> u128 {
    if prefix == 0 { 0 } else { value >> (bits - prefix) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(policy: NetworkPolicy) -> NetworkRules {
        policy.rules().unwrap()
    }

    #[test]
    fn the_default_reaches_public_addresses_only() {
        let r = rules(NetworkPolicy::default());
        assert!(r.check_host("example.com").is_ok());
        assert!(r.check_address("93.184.216.34".parse().unwrap()).is_ok());
        assert!(r.check_address("2606:2800:220:1::1".parse().unwrap()).is_ok());
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "::",
            "fec0::1",
            "64:ff9b:1::a00:1",
            "100::1",
            "2001::1",
            "2001:2::1",
            "2001:db8::1",
            "3fff::1",
            "3fff:fff::1",
            "5f00::1",
        ] {
            let address: IpAddr = private.parse().unwrap();
            assert!(matches!(r.check_address(address), Err(Refusal::NotPublic(..))), "{private}");
            assert!(r.check_host(private).is_err(), "{private}");
        }
        assert!(r.check_host("[::1]").is_err());
        // Public blocks beside the special ones.
        for public in [
            "2001:4860:4860::8888",
            "2001:1::1",
            "2001:3::1",
            "2001:4:112::1",
            "2001:20::1",
            "100:0:0:1::1",
            "3fff:1000::1",
        ] {
            assert!(r.check_address(public.parse().unwrap()).is_ok(), "{public}");
        }
    }

    #[test]
    fn domains_deny_wins_and_allow_narrows() {
        let r = rules(NetworkPolicy {
            allow_domains: vec!["*.example.com".into(), "api.test".into()],
            deny_domains: vec!["secret.example.com".into()],
            ..NetworkPolicy::default()
        });
        assert!(r.check_host("www.example.com").is_ok());
        assert!(r.check_host("A.B.Example.COM.").is_ok());
        assert!(r.check_host("api.test").is_ok());
        assert_eq!(r.check_host("example.com"), Err(Refusal::NotAllowedDomain("example.com".into())));
        assert_eq!(r.check_host("badexample.com"), Err(Refusal::NotAllowedDomain("badexample.com".into())));
        assert_eq!(r.check_host("secret.example.com"), Err(Refusal::DeniedDomain("secret.example.com".into())));
        assert!(matches!(r.check_host("93.184.216.34"), Err(Refusal::NotAllowedAddress(_))));
    }

    #[test]
    fn cidrs_allow_private_ranges_and_deny_wins() {
        let r = rules(NetworkPolicy {
            allow_cidrs: vec!["127.0.0.0/8".into(), "10.0.0.0/8".into()],
            deny_cidrs: vec!["10.9.0.0/16".into(), "93.184.216.0/24".into()],
            ..NetworkPolicy::default()
        });
        assert!(r.check_address("127.0.0.1".parse().unwrap()).is_ok());
        assert!(r.check_address("::ffff:127.0.0.1".parse().unwrap()).is_ok());
        assert!(r.check_address("10.1.1.1".parse().unwrap()).is_ok());
        assert!(matches!(r.check_address("10.9.1.1".parse().unwrap()), Err(Refusal::DeniedAddress(_))));
        assert!(matches!(r.check_address("93.184.216.34".parse().unwrap()), Err(Refusal::DeniedAddress(_))));
        assert!(matches!(r.check_address("169.254.169.254".parse().unwrap()), Err(Refusal::NotPublic(..))));
    }

    #[test]
    fn bad_policies_are_refused_clearly() {
        let refused = |p: NetworkPolicy| p.rules().unwrap_err().to_string();
        assert!(
            refused(NetworkPolicy { allow_domains: vec!["exa mple.com".into()], ..Default::default() })
                .contains("exa mple.com")
        );
        assert!(refused(NetworkPolicy { allow_domains: vec!["*".into()], ..Default::default() }).contains("wildcard"));
        assert!(refused(NetworkPolicy { deny_cidrs: vec!["10.0.0.0".into()], ..Default::default() }).contains("CIDR"));
        assert!(
            refused(NetworkPolicy { deny_cidrs: vec!["10.0.0.0/33".into()], ..Default::default() }).contains("CIDR")
        );
        assert!(refused(NetworkPolicy { max_requests: Some(0), ..Default::default() }).contains("max_requests"));
        assert!(
            refused(NetworkPolicy { max_response_bytes: Some(MAX_RESPONSE_BYTES + 1), ..Default::default() })
                .contains("max_response_bytes")
        );
        let json = serde_json::json!({"allow_domains": [], "allow_everything": true});
        assert!(serde_json::from_value::<NetworkPolicy>(json).is_err());
    }

    #[test]
    fn a_zero_prefix_range_covers_every_address_of_its_family() {
        let r = rules(NetworkPolicy { deny_cidrs: vec!["0.0.0.0/0".into()], ..Default::default() });
        assert!(r.check_address("8.8.8.8".parse().unwrap()).is_err());
        assert!(r.check_address("2606:2800:220:1::1".parse().unwrap()).is_ok());
    }
}
