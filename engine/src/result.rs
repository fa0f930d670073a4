//! What happened: an [`ExecResult`].

use crate::network::NetworkUsage;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Most files a backend returns from one execution; more are reported as `files_truncated`.
pub const MAX_OUTPUT_FILES: usize = 256;
/// Most bytes of files a backend returns from one execution.
pub const MAX_OUTPUT_FILE_BYTES: u64 = 64 << 20;

/// How an execution ended.
///
/// `Completed` means the program ran to its end (its exit status may still be non-zero); every
/// other variant names the limit or fault that stopped it. The host is unaffected by all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// The program ended by itself.
    Completed,
    /// The wall-clock deadline passed.
    DeadlineExceeded,
    /// The fuel budget ran out.
    FuelExhausted,
    /// The program asked for more memory than its cap.
    MemoryExceeded,
    /// The program wrote more stdout or stderr than its cap.
    OutputLimitExceeded,
    /// The program tried to hold more files open at once than its cap.
    OpenFileLimitExceeded,
    /// The program faulted (a wasm trap such as a stack overflow; a container that died);
    /// `ExecResult::error` says how.
    Crashed,
    /// The process was killed on request.
    Killed,
}

impl Outcome {
    /// The stable snake_case name (`deadline_exceeded`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::DeadlineExceeded => "deadline_exceeded",
            Outcome::FuelExhausted => "fuel_exhausted",
            Outcome::MemoryExceeded => "memory_exceeded",
            Outcome::OutputLimitExceeded => "output_limit_exceeded",
            Outcome::OpenFileLimitExceeded => "open_file_limit_exceeded",
            Outcome::Crashed => "crashed",
            Outcome::Killed => "killed",
        }
    }
}

/// The result of one execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecResult {
    /// Captured standard output (invalid UTF-8 replaced), at most the stdout cap.
    pub stdout: String,
    /// Captured standard error, as for stdout.
    pub stderr: String,
    /// The program's exit status: 0 on success, 1 for an uncaught exception, the value passed to
    /// `exit`, or 128 + a signal-like code when a limit stopped it (see [`Outcome`]).
    pub exit_code: i32,
    /// How the execution ended.
    pub outcome: Outcome,
    /// For an outcome other than `Completed`, a one-line description of what stopped it.
    pub error: Option<String>,
    /// Wall-clock time from admission to result, guest set-up included.
    #[serde(rename = "duration_us", with = "micros")]
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub duration: Duration,
    /// Fuel consumed, when the request set a fuel budget.
    pub fuel_used: Option<u64>,
    /// The largest the guest's linear memory grew to, in bytes.
    pub peak_memory_bytes: u64,
    /// Files the program created or changed in its workspace.
    pub files: Vec<OutputFile>,
    /// Whether `files` was cut short by the backend's cap on returned files.
    pub files_truncated: bool,
    /// Which backend ran it (`wasm`).
    pub backend: String,
    /// What the guest's HTTP sent and received, for a request with a network policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkUsage>,
}

/// A file the program wrote in its workspace.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutputFile {
    /// Its path relative to the workspace, `/`-separated.
    pub path: String,
    /// Its bytes (base64 in JSON).
    #[serde(with = "base64_bytes")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub contents: Vec<u8>,
}

impl std::fmt::Debug for OutputFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputFile").field("path", &self.path).field("bytes", &self.contents.len()).finish()
    }
}

pub(crate) mod micros {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_micros)
    }
}

/// Serde for byte fields as standard base64 strings (`#[serde(with = ...)]`).
pub mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Writes `bytes` as a base64 string.
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    /// Reads bytes from a base64 string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(|e| D::Error::custom(format!("invalid base64: {e}")))
    }
}
