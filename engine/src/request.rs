//! What to run: an [`ExecRequest`].

use crate::language::{BackendKind, Language};
use crate::limits::{Limits, LimitsError};
use crate::network::{NetworkPolicy, NetworkPolicyError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Component, Path};

/// The largest program text a request may carry.
pub const MAX_CODE_BYTES: usize = 4 * 1024 * 1024;
/// The most bytes of inputs (files, stdin, arguments and environment) one request may carry.
pub const MAX_INPUT_BYTES: usize = 64 * 1024 * 1024;
/// The most input files one request may carry.
pub const MAX_INPUT_FILES: usize = 1024;

/// One execution: code in a language, with its inputs and limits.
///
/// Build one with [`ExecRequest::new`] and the `with_*` methods; every field has a safe default
/// (no stdin, no arguments, no environment, no files, [`Limits::default`]).
///
/// The limits are a type parameter so the wire format is this same type: a service takes an
/// `ExecRequest<LimitsPatch>` (limits left out get its policy's defaults) and resolves it into
/// an `ExecRequest` with [`ExecRequest::with_resolved_limits`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExecRequest<L = Limits> {
    /// The language `code` is written in.
    pub language: Language,
    /// The program text.
    pub code: String,
    /// Bytes the guest reads on standard input. Default: none (immediate end of file).
    #[serde(default, with = "crate::result::base64_bytes")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub stdin: Vec<u8>,
    /// Arguments after the program name (`sys.argv[1:]` in Python, `scriptArgs` in JS).
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables the guest sees on top of the runtime's own base set. The host's
    /// environment is never passed through.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Files placed in the guest's workspace before the code runs.
    #[serde(default)]
    pub files: Vec<InputFile>,
    /// The limits this execution runs under.
    #[serde(default)]
    pub limits: L,
    /// Where to run it: `wasm` or `container`. Default: WebAssembly for Python and JavaScript,
    /// a container for every other language.
    #[serde(default)]
    pub backend: Option<BackendKind>,
    /// Outbound HTTP the guest may make, and where to ([`NetworkPolicy`]). Default `None`: no
    /// network at all. WebAssembly only: the container backend refuses a request with one.
    #[serde(default)]
    pub network: Option<NetworkPolicy>,
    /// Python packages to install before the code runs: pip requirements (`requests==2.*`).
    /// The WebAssembly backend installs pure-Python wheels only (resolved on the host, cached);
    /// a package with native code is refused. Default: none.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Who it runs for (a service's tenant): the worker pool queues and schedules fairly
    /// between owners. `None`, the default, is the library's own use. Not part of the wire
    /// format: a service sets it from the caller's identity.
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub owner: Option<String>,
}

impl<L> ExecRequest<L> {
    /// The same request with its limits resolved by `resolve` (a service's policy applied to
    /// the limits a caller asked for).
    pub fn with_resolved_limits<E>(self, resolve: impl FnOnce(&L) -> Result<Limits, E>) -> Result<ExecRequest, E> {
        let limits = resolve(&self.limits)?;
        Ok(ExecRequest {
            language: self.language,
            code: self.code,
            stdin: self.stdin,
            args: self.args,
            env: self.env,
            files: self.files,
            limits,
            backend: self.backend,
            network: self.network,
            packages: self.packages,
            owner: self.owner,
        })
    }
}

/// A file placed in the guest's workspace.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InputFile {
    /// A relative path inside the workspace, `/`-separated, without `..`.
    pub path: String,
    /// The file's bytes (base64 in JSON).
    #[serde(with = "crate::result::base64_bytes")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub contents: Vec<u8>,
}

impl std::fmt::Debug for InputFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputFile").field("path", &self.path).field("bytes", &self.contents.len()).finish()
    }
}

/// A request SoulBox refuses before running anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A limit is out of range.
    #[error(transparent)]
    Limits(#[from] LimitsError),
    /// The code is larger than [`MAX_CODE_BYTES`].
    #[error("code is {0} bytes; the most a request may carry is {MAX_CODE_BYTES}")]
    CodeTooLarge(usize),
    /// Input files and stdin together exceed [`MAX_INPUT_BYTES`] or [`MAX_INPUT_FILES`].
    #[error("inputs are too large: {0}")]
    InputsTooLarge(String),
    /// A string holds a NUL byte, which no guest can receive.
    #[error("{0} contains a NUL byte")]
    NulByte(&'static str),
    /// An environment variable name is empty or holds `=`.
    #[error("invalid environment variable name `{0}`")]
    EnvName(String),
    /// An input file's path is absolute, empty, or climbs out with `..`.
    #[error("invalid input file path `{0}`: use a relative path inside the workspace, without `..`")]
    FilePath(String),
    /// The network policy cannot be applied.
    #[error(transparent)]
    Network(#[from] NetworkPolicyError),
    /// A package requirement is refused.
    #[error(transparent)]
    Packages(#[from] crate::packages::PackagesError),
    /// Packages were named for a language that has none.
    #[error("packages can be installed for Python only, not {0}")]
    PackagesLanguage(Language),
}

impl ExecRequest {
    /// A request to run `code` in `language`, with safe defaults for everything else.
    pub fn new(language: Language, code: impl Into<String>) -> Self {
        ExecRequest {
            language,
            code: code.into(),
            stdin: Vec::new(),
            args: Vec::new(),
            env: BTreeMap::new(),
            files: Vec::new(),
            limits: Limits::default(),
            backend: None,
            network: None,
            packages: Vec::new(),
            owner: None,
        }
    }

    /// Installs the pip requirements `packages` before the code runs (Python).
    pub fn with_packages<S: Into<String>>(mut self, packages: impl IntoIterator<Item = S>) -> Self {
        self.packages = packages.into_iter().map(Into::into).collect();
        self
    }

    /// Lets the guest make outbound HTTP requests under `policy`.
    pub fn with_network(mut self, policy: NetworkPolicy) -> Self {
        self.network = Some(policy);
        self
    }

    /// Runs it for `owner` (a service's tenant).
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// Asks for a backend (`container` runs Python and JavaScript natively).
    pub fn with_backend(mut self, backend: BackendKind) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Sets the bytes the guest reads on stdin.
    pub fn with_stdin(mut self, stdin: impl Into<Vec<u8>>) -> Self {
        self.stdin = stdin.into();
        self
    }

    /// Sets the arguments after the program name.
    pub fn with_args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Adds one environment variable.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Adds one input file.
    pub fn with_file(mut self, path: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push(InputFile { path: path.into(), contents: contents.into() });
        self
    }

    /// Replaces the limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Checks everything a backend relies on; the engine calls this before routing.
    pub fn validate(&self) -> Result<(), RequestError> {
        self.limits.validate()?;
        validate_code(&self.code)?;
        if self.args.iter().any(|a| a.contains('\0')) {
            return Err(RequestError::NulByte("an argument"));
        }
        validate_env(&self.env)?;
        if let Some(policy) = &self.network {
            policy.rules()?;
        }
        if !self.packages.is_empty() {
            if self.language != Language::Python {
                return Err(RequestError::PackagesLanguage(self.language));
            }
            crate::packages::validate(&self.packages)?;
        }
        self.validate_files()
    }

    fn validate_files(&self) -> Result<(), RequestError> {
        if self.files.len() > MAX_INPUT_FILES {
            let n = self.files.len();
            return Err(RequestError::InputsTooLarge(format!("{n} files; at most {MAX_INPUT_FILES}")));
        }
        let total: usize = self.stdin.len()
            + self.files.iter().map(|f| f.path.len() + f.contents.len()).sum::<usize>()
            + self.args.iter().map(String::len).sum::<usize>()
            + self.env.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        if total > MAX_INPUT_BYTES {
            return Err(RequestError::InputsTooLarge(format!("{total} bytes; at most {MAX_INPUT_BYTES}")));
        }
        for file in &self.files {
            if !is_plain_relative(&file.path) {
                return Err(RequestError::FilePath(file.path.clone()));
            }
        }
        Ok(())
    }
}

/// True for a non-empty relative path of `/`-separated normal names: no empty, `.` or `..`
/// component, no backslash, NUL or other control character (so each path has exactly one
/// spelling, and none forges a log line).
fn is_plain_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.contains(['\0', '\\'])
        && !path.chars().any(char::is_control)
        && path.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && Path::new(path).components().all(|c| matches!(c, Component::Normal(_)))
}

/// Checks code any guest receives: at most [`MAX_CODE_BYTES`], no NUL byte.
pub(crate) fn validate_code(code: &str) -> Result<(), RequestError> {
    if code.len() > MAX_CODE_BYTES {
        return Err(RequestError::CodeTooLarge(code.len()));
    }
    if code.contains('\0') {
        return Err(RequestError::NulByte("code"));
    }
    Ok(())
}

/// Checks environment variables any guest receives: names non-empty without `=` or NUL,
/// values without NUL.
pub(crate) fn validate_env<'a>(env: impl IntoIterator<Item = (&'a String, &'a String)>) -> Result<(), RequestError> {
    for (key, value) in env {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(RequestError::EnvName(key.clone()));
        }
        if value.contains('\0') {
            return Err(RequestError::NulByte("an environment value"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_plain_request() {
        let req = ExecRequest::new(Language::Python, "print(1)").with_env("A", "1").with_file("data/in.csv", "a,b\n");
        req.validate().unwrap();
    }

    #[test]
    fn refuses_escaping_paths_and_bad_env() {
        for bad in ["../x", "/etc/passwd", "a/../../b", "", "a\\b", "a//b", "a/./b", "a/", "./a", "a\nb"] {
            let req = ExecRequest::new(Language::Python, "").with_file(bad, "");
            assert!(matches!(req.validate(), Err(RequestError::FilePath(_))), "{bad}");
        }
        let req = ExecRequest::new(Language::Python, "").with_env("A=B", "1");
        assert!(matches!(req.validate(), Err(RequestError::EnvName(_))));
        let req = ExecRequest::new(Language::Python, "x\0");
        assert!(matches!(req.validate(), Err(RequestError::NulByte(_))));
    }

    proptest::proptest! {
        /// Whatever the path, validation answers (never panics), and an accepted path is plain:
        /// relative, normal names only, nothing that climbs out or forges a log line.
        #[test]
        fn accepted_input_paths_stay_inside(path in "[a-z./\\\\\\x00\n\t]{0,24}") {
            let request = ExecRequest::new(Language::Python, "").with_file(path.clone(), "");
            if request.validate().is_ok() {
                let parsed = Path::new(&path);
                proptest::prop_assert!(parsed.components().all(|c| matches!(c, Component::Normal(n) if n != "..")));
                proptest::prop_assert!(!path.starts_with('/') && !path.chars().any(char::is_control));
            }
        }

        /// Requests of any shape are checked without panicking.
        #[test]
        fn any_request_is_checked(code in ".{0,64}", key in ".{0,8}", value in ".{0,8}", arg in ".{0,8}") {
            let _ = ExecRequest::new(Language::JavaScript, code).with_env(key, value).with_args([arg]).validate();
        }
    }

    #[test]
    fn json_round_trip_uses_base64_and_rejects_unknown_fields() {
        let req = ExecRequest::new(Language::JavaScript, "1").with_file("a.bin", vec![0u8, 255]);
        let json = serde_json::to_string(&req).unwrap();
        assert!(json.contains("AP8="), "{json}");
        assert_eq!(serde_json::from_str::<ExecRequest>(&json).unwrap(), req);
        let bad = r#"{"language":"python","code":"1","timeout":3}"#;
        assert!(serde_json::from_str::<ExecRequest>(bad).is_err());
    }
}
