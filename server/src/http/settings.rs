//! [`Settings`]: what the server's configuration decides for each request.
//!
//! Limits a request leaves out get the configured defaults; limits it names may not exceed the
//! configured maxima ([`LimitPolicy`]). Every guest gets the configured environment under its
//! own variables (a request's or sandbox's own value wins), and a sandbox also gets its dynamic
//! variables (its id, URL, tenant, template).

use super::{ApiError, Tenant};
use crate::config::{Config, DynamicEnv, Environment};
use soulbox_engine::{Limits, LimitsPatch, NetworkPolicy, SandboxSpec};
use std::collections::BTreeMap;
use std::time::Duration;

/// The HTTP layer's settings. Built once at start-up.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Limit defaults and maxima.
    pub limits: LimitPolicy,
    /// Variables every guest sees.
    pub env: Environment,
    /// A sandbox's lifetime when its spec names none (`None`: the engine's default).
    pub sandbox_lifetime: Option<Duration>,
    /// The URL clients reach the server at (no trailing `/`).
    pub public_url: String,
    /// Largest JSON body.
    pub json_body_limit: usize,
    /// Largest file upload.
    pub upload_limit: u64,
    /// How long producing a response may take.
    pub request_timeout: Duration,
    /// Requests in flight at once.
    pub max_in_flight: usize,
    /// Whether `/metrics` is served.
    pub metrics_enabled: bool,
    /// Whether requests and sandboxes may ask for network access.
    pub allow_network: bool,
    /// Whether a tenant's network policy may allow the host's loopback.
    pub allow_localhost: bool,
    /// Whether requests and sandboxes may name Python packages.
    pub allow_packages: bool,
}

/// Address ranges a tenant's network policy never reaches, whatever it allows: link-local
/// (the cloud metadata address) and private networks, the operator's.
const TENANT_DENIED_CIDRS: [&str; 8] = [
    "169.254.0.0/16",
    "fe80::/10",
    "fd00:ec2::254/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
];
/// The host's loopback, denied to tenants unless `network.allow_localhost`.
const LOOPBACK_CIDRS: [&str; 3] = ["127.0.0.0/8", "::1/128", "0.0.0.0/8"];

/// Defaults and maxima for execution limits.
#[derive(Debug, Clone)]
pub struct LimitPolicy {
    /// What a request that names no limit gets.
    pub defaults: Limits,
    /// The longest deadline a request may ask for.
    pub max_deadline: Duration,
    /// The most memory a request may ask for.
    pub max_memory_bytes: u64,
    /// The most stdout, and stderr, a request may ask to keep.
    pub max_output_bytes: u64,
}

impl Settings {
    /// Settings from a validated configuration, its resolved environment and the URL clients
    /// reach the server at.
    pub fn from_config(config: &Config, env: Environment, public_url: String) -> Self {
        let output = config.resources.output_bytes.unwrap_or(soulbox_engine::limits::DEFAULT_OUTPUT_BYTES);
        let defaults = Limits {
            deadline: config.default_deadline().min(config.max_deadline()),
            memory_bytes: config.memory_bytes(),
            stdout_bytes: output,
            stderr_bytes: output,
            ..Limits::default()
        };
        Settings {
            limits: LimitPolicy {
                defaults,
                max_deadline: config.max_deadline(),
                max_memory_bytes: config.memory_bytes(),
                max_output_bytes: config.resources.output_bytes.unwrap_or(soulbox_engine::limits::MAX_OUTPUT_BYTES),
            },
            env,
            sandbox_lifetime: config.sandbox_lifetime(),
            public_url: public_url.trim_end_matches('/').to_owned(),
            json_body_limit: config.server.json_body_limit_bytes,
            upload_limit: config.server.upload_limit_bytes,
            request_timeout: config.server.request_timeout(),
            max_in_flight: config.server.max_in_flight_requests,
            metrics_enabled: config.monitoring.metrics_enabled,
            allow_network: config.network.allow_internet.unwrap_or(false),
            allow_localhost: config.network.allow_localhost.unwrap_or(false),
            allow_packages: config.packages.enabled.unwrap_or(false),
        }
    }

    /// A tenant's network policy as this server applies it: the operator's private and
    /// link-local ranges (and, unless allowed, its loopback) denied on top of the tenant's own
    /// rules (a denied range wins over an allowed one).
    pub fn tenant_network(&self, policy: NetworkPolicy) -> NetworkPolicy {
        let mut policy = policy;
        let denied = TENANT_DENIED_CIDRS.iter().chain(if self.allow_localhost { &[][..] } else { &LOOPBACK_CIDRS[..] });
        policy.deny_cidrs.extend(denied.map(|c| (*c).to_owned()));
        policy
    }

    /// The environment of a one-shot execution: the configured variables under the request's.
    pub fn execution_env(&self, own: BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut env = self.env.vars().clone();
        env.extend(own);
        env
    }

    /// A sandbox spec with the configured environment, dynamic variables and lifetime filled
    /// in (it is given its id here, so the variables can name it).
    pub fn sandbox_spec(&self, mut spec: SandboxSpec, tenant: &Tenant) -> SandboxSpec {
        let id = soulbox_engine::sandbox::new_sandbox_id();
        let dynamic = DynamicEnv {
            sandbox_id: &id,
            tenant: &tenant.0,
            template: spec.template.name(),
            base_url: &self.public_url,
        };
        let mut env = self.env.for_sandbox(&dynamic);
        env.extend(std::mem::take(&mut spec.env));
        spec.env = env;
        spec.lifetime = spec.lifetime.or(self.sandbox_lifetime);
        spec.id = Some(id);
        spec.owner = Some(tenant.0.clone());
        spec
    }
}

impl Default for Settings {
    fn default() -> Self {
        let config = Config::default();
        let url = format!("http://{}", config.server.addr);
        Settings::from_config(&config, Environment::default(), url)
    }
}

impl LimitPolicy {
    /// The limits for a request that asked for `patch`: defaults for what it left out, and a
    /// 400 naming the limit for anything above the server's maxima or out of range.
    pub fn resolve(&self, patch: &LimitsPatch) -> Result<Limits, ApiError> {
        let limits = patch.over(&self.defaults);
        if limits.deadline > self.max_deadline {
            return Err(ApiError::BadRequest(format!(
                "`limits.deadline_ms` may be at most {} on this server",
                self.max_deadline.as_millis()
            )));
        }
        if limits.memory_bytes > self.max_memory_bytes {
            return Err(ApiError::BadRequest(format!(
                "`limits.memory_bytes` may be at most {} on this server",
                self.max_memory_bytes
            )));
        }
        if limits.stdout_bytes.max(limits.stderr_bytes) > self.max_output_bytes {
            return Err(ApiError::BadRequest(format!(
                "`limits.stdout_bytes` and `limits.stderr_bytes` may be at most {} on this server",
                self.max_output_bytes
            )));
        }
        limits.validate().map_err(|e| ApiError::BadRequest(e.to_string()))?;
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn omitted_limits_get_the_configured_defaults_and_maxima_hold() {
        let mut config = Config::default();
        config.resources.memory_mb = Some(128);
        config.resources.timeout_seconds = Some(5);
        let settings = Settings::from_config(&config, Environment::default(), "http://x/".into());
        let limits = settings.limits.resolve(&LimitsPatch::default()).unwrap();
        assert_eq!((limits.memory_bytes, limits.deadline), (128 << 20, Duration::from_secs(5)));
        let asked = LimitsPatch { deadline_ms: Some(100), ..LimitsPatch::default() };
        assert_eq!(settings.limits.resolve(&asked).unwrap().deadline, Duration::from_millis(100));
        let greedy = LimitsPatch { memory_bytes: Some(256 << 20), ..LimitsPatch::default() };
        let refused = settings.limits.resolve(&greedy).unwrap_err().to_string();
        assert!(refused.contains("limits.memory_bytes"), "{refused}");
        let slow = LimitsPatch { deadline_ms: Some(6000), ..LimitsPatch::default() };
        assert!(settings.limits.resolve(&slow).unwrap_err().to_string().contains("deadline_ms"));
        let zero = LimitsPatch { open_files: Some(0), ..LimitsPatch::default() };
        assert!(settings.limits.resolve(&zero).unwrap_err().to_string().contains("open_files"));
        assert_eq!(settings.public_url, "http://x");
    }

    #[test]
    fn a_sandbox_gets_its_own_variables_over_the_configured_ones() {
        let section: crate::config::EnvironmentSection = toml::from_str(
            "MODE = \"prod\"\nKEEP = \"yes\"\n[dynamic]\nME = \"$SOULBOX_SANDBOX_URL\"\nWHO = \"$SOULBOX_TENANT\"\n",
        )
        .unwrap();
        let env = Environment::resolve(&section, None, |_| None).unwrap();
        let settings = Settings { env, ..Settings::default() };
        let own = SandboxSpec { env: BTreeMap::from([("MODE".into(), "test".into())]), ..SandboxSpec::default() };
        let spec = settings.sandbox_spec(own, &Tenant("acme".into()));
        let id = spec.id.clone().unwrap();
        assert_eq!(spec.env["MODE"], "test", "the sandbox's own value wins");
        assert_eq!(spec.env["KEEP"], "yes");
        assert_eq!(spec.env["WHO"], "acme");
        assert_eq!(spec.env["ME"], format!("http://127.0.0.1:8080/v1/sandboxes/{id}"));
        assert_eq!(settings.execution_env(BTreeMap::new())["MODE"], "prod");
    }
}
