//! Per-execution limits and their safe defaults.
//!
//! Every execution runs under all of these; a request that names none gets the defaults below.
//! Upper bounds keep a single request from asking for the whole host.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Wall-clock deadline when a request names none.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
/// The longest deadline a request may ask for.
pub const MAX_DEADLINE: Duration = Duration::from_secs(60 * 60);
/// Guest linear-memory cap when a request names none.
pub const DEFAULT_MEMORY_BYTES: u64 = 512 * 1024 * 1024;
/// The largest memory cap a request may ask for (the wasm32 address space).
pub const MAX_MEMORY_BYTES: u64 = 4 * 1024 * 1024 * 1024;
/// Cap on captured stdout, and separately on stderr, when a request names none.
pub const DEFAULT_OUTPUT_BYTES: u64 = 1024 * 1024;
/// The largest output cap a request may ask for.
pub const MAX_OUTPUT_BYTES: u64 = 64 * 1024 * 1024;
/// Files and directories a guest may hold open at once when a request names none.
pub const DEFAULT_OPEN_FILES: u32 = 64;
/// The largest open-file cap a request may ask for.
pub const MAX_OPEN_FILES: u32 = 4096;

/// The limits one execution runs under.
///
/// Serialized with durations in milliseconds; unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Wall-clock deadline, enforced by epoch interruption. Default [`DEFAULT_DEADLINE`].
    #[serde(rename = "deadline_ms", with = "millis")]
    #[cfg_attr(feature = "openapi", schema(value_type = u64))]
    pub deadline: Duration,
    /// Instruction budget in wasmtime fuel units; `None` (the default) meters nothing.
    /// Needs a backend started with fuel metering.
    pub fuel: Option<u64>,
    /// Cap on guest linear memory in bytes. Default [`DEFAULT_MEMORY_BYTES`].
    pub memory_bytes: u64,
    /// Cap on captured stdout in bytes; the guest is stopped when it writes past it.
    /// Default [`DEFAULT_OUTPUT_BYTES`].
    pub stdout_bytes: u64,
    /// Cap on captured stderr in bytes, as for stdout. Default [`DEFAULT_OUTPUT_BYTES`].
    pub stderr_bytes: u64,
    /// Files the guest may hold open at once. Default [`DEFAULT_OPEN_FILES`].
    pub open_files: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: DEFAULT_DEADLINE,
            fuel: None,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            stdout_bytes: DEFAULT_OUTPUT_BYTES,
            stderr_bytes: DEFAULT_OUTPUT_BYTES,
            open_files: DEFAULT_OPEN_FILES,
        }
    }
}

/// Limits a caller asked for, each `None` when not named: laid [`LimitsPatch::over`] a base,
/// so a service can give omitted limits its own defaults. Same JSON names as [`Limits`];
/// unknown fields are rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LimitsPatch {
    /// Wall-clock deadline in milliseconds.
    pub deadline_ms: Option<u64>,
    /// Fuel budget (needs a backend with fuel metering).
    pub fuel: Option<u64>,
    /// Memory cap in bytes.
    pub memory_bytes: Option<u64>,
    /// Stdout cap in bytes.
    pub stdout_bytes: Option<u64>,
    /// Stderr cap in bytes.
    pub stderr_bytes: Option<u64>,
    /// Open-file cap.
    pub open_files: Option<u32>,
}

impl LimitsPatch {
    /// `base` with every limit this patch names replaced.
    pub fn over(&self, base: &Limits) -> Limits {
        Limits {
            deadline: self.deadline_ms.map_or(base.deadline, Duration::from_millis),
            fuel: self.fuel.or(base.fuel),
            memory_bytes: self.memory_bytes.unwrap_or(base.memory_bytes),
            stdout_bytes: self.stdout_bytes.unwrap_or(base.stdout_bytes),
            stderr_bytes: self.stderr_bytes.unwrap_or(base.stderr_bytes),
            open_files: self.open_files.unwrap_or(base.open_files),
        }
    }
}

/// A limit outside what SoulBox accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitsError {
    /// A limit is zero, or above its maximum.
    #[error("limit `{name}` must be between {min} and {max}, got {got}")]
    OutOfRange {
        /// The limit's field name.
        name: &'static str,
        /// The smallest accepted value.
        min: u64,
        /// The largest accepted value.
        max: u64,
        /// What the request asked for.
        got: u64,
    },
}

impl Limits {
    /// Checks every limit against its bounds.
    pub fn validate(&self) -> Result<(), LimitsError> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        check("deadline_ms", ms(self.deadline), 1, ms(MAX_DEADLINE))?;
        if let Some(fuel) = self.fuel {
            check("fuel", fuel, 1, u64::MAX)?;
        }
        check("memory_bytes", self.memory_bytes, 1, MAX_MEMORY_BYTES)?;
        check("stdout_bytes", self.stdout_bytes, 1, MAX_OUTPUT_BYTES)?;
        check("stderr_bytes", self.stderr_bytes, 1, MAX_OUTPUT_BYTES)?;
        check("open_files", self.open_files.into(), 1, MAX_OPEN_FILES.into())
    }
}

fn check(name: &'static str, got: u64, min: u64, max: u64) -> Result<(), LimitsError> {
    if (min..=max).contains(&got) { Ok(()) } else { Err(LimitsError::OutOfRange { name, min, max, got }) }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_safe() {
        let limits = Limits::default();
        limits.validate().unwrap();
        assert_eq!(limits.deadline, Duration::from_secs(30));
        assert_eq!(limits.memory_bytes, 512 << 20);
        assert_eq!(limits.stdout_bytes, 1 << 20);
        assert!(limits.fuel.is_none());
    }

    #[test]
    fn rejects_out_of_range_and_unknown_fields() {
        let zero = Limits { memory_bytes: 0, ..Limits::default() };
        assert!(zero.validate().unwrap_err().to_string().contains("memory_bytes"));
        let err = serde_json::from_str::<Limits>(r#"{"deadline": 5}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"));
        let ok: Limits = serde_json::from_str(r#"{"deadline_ms": 250}"#).unwrap();
        assert_eq!(ok.deadline, Duration::from_millis(250));
    }

    #[test]
    fn a_patch_replaces_only_what_it_names() {
        let base = Limits { memory_bytes: 64 << 20, ..Limits::default() };
        let patch: LimitsPatch = serde_json::from_str(r#"{"deadline_ms": 250}"#).unwrap();
        let limits = patch.over(&base);
        assert_eq!((limits.deadline, limits.memory_bytes), (Duration::from_millis(250), 64 << 20));
        assert!(serde_json::from_str::<LimitsPatch>(r#"{"deadline": 5}"#).is_err());
    }
}
