//! Building a [`Config`] from its layers: defaults, the file, `SOULBOX__...` variables, `--set`.
//!
//! Each layer is parsed on its own first, so an error names where the bad key came from (the
//! file and line, the variable, or the flag) and the key's dotted path. The layers are then
//! merged key by key into one TOML table, checked for spec keys SoulBox does not implement,
//! parsed into [`Config`] and validated.

use super::{Config, ConfigError, DEFAULT_CONFIG_FILE, unsupported};
use std::path::PathBuf;
use toml::{Table, Value};

/// Prefix of environment variables that set one key: `SOULBOX__SERVER__ADDR=0.0.0.0:80`.
pub const ENV_PREFIX: &str = "SOULBOX__";

/// Where a configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// The file named by `--config` (it must exist). `None`: `./soulbox.toml` if present.
    pub file: Option<PathBuf>,
    /// The process environment (only `SOULBOX__...` variables are read).
    pub env: Vec<(String, String)>,
    /// `--set section.key=value` flags, in order.
    pub sets: Vec<String>,
}

impl ConfigSource {
    /// The file to read, if any.
    fn file_path(&self) -> Option<PathBuf> {
        match &self.file {
            Some(path) => Some(path.clone()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.is_file()),
        }
    }
}

/// Loads, merges and validates the configuration.
pub fn load(source: &ConfigSource) -> Result<(Config, Option<PathBuf>), ConfigError> {
    let mut merged = Table::new();
    let file = source.file_path();
    if let Some(path) = &file {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
        let table = parse_layer(&text, &path.display().to_string())?;
        merge(&mut merged, table);
    }
    for (name, raw) in &source.env {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else { continue };
        merge(&mut merged, override_layer(&env_keys(path), raw, name)?);
    }
    for set in &source.sets {
        let origin = format!("--set {set}");
        let (key, raw) = set.split_once('=').ok_or_else(|| ConfigError::Parse {
            origin: origin.clone(),
            message: "expected `section.key=value`".into(),
        })?;
        let keys: Vec<String> = key.trim().split('.').map(str::to_owned).collect();
        merge(&mut merged, override_layer(&keys, raw.trim(), &origin)?);
    }
    let config = typed(merged, "the configuration")?;
    config.validate()?;
    Ok((config, file))
}

/// Parses one layer's TOML text, refusing unsupported spec keys and anything [`Config`] would.
fn parse_layer(text: &str, origin: &str) -> Result<Table, ConfigError> {
    let table: Table = text.parse().map_err(|e: toml::de::Error| parse_error(origin, &e))?;
    unsupported::check(&table)?;
    let deserializer = toml::Deserializer::parse(text).map_err(|e| parse_error(origin, &e))?;
    serde_path_to_error::deserialize::<_, Config>(deserializer).map_err(|e| path_error(origin, &e))?;
    Ok(table)
}

/// The keys of a `SOULBOX__...` variable: `SERVER__ADDR` is `server.addr`. Names under
/// `environment` keep their case (they are the guests' variable names).
fn env_keys(path: &str) -> Vec<String> {
    let mut keys: Vec<String> = path.split("__").map(str::to_owned).collect();
    let in_environment = keys.first().is_some_and(|k| k.eq_ignore_ascii_case("environment"));
    let dynamic = in_environment && keys.len() > 2 && keys[1].eq_ignore_ascii_case("dynamic");
    // Lower the section names; keep a variable's name as written.
    let lower = match (in_environment, dynamic) {
        (false, _) => keys.len(),
        (true, false) => 1,
        (true, true) => 2,
    };
    for key in keys.iter_mut().take(lower) {
        key.make_ascii_lowercase();
    }
    keys
}

/// One key set by a variable or flag, as a table. The value is TOML when it parses as TOML
/// (`8080`, `true`, `[1, 2]`, `"quoted"`), else a plain string; under `environment` it is
/// always the plain string (a secret that looks like a number stays a string, and is never
/// quoted back in an error).
fn override_layer(keys: &[String], raw: &str, origin: &str) -> Result<Table, ConfigError> {
    if keys.iter().any(|k| k.is_empty()) {
        return Err(ConfigError::Parse { origin: origin.into(), message: "the key has an empty part".into() });
    }
    let value = match keys.first().map(String::as_str) {
        Some("environment") => None,
        _ => format!("v = {raw}").parse::<Table>().ok().and_then(|mut t| t.remove("v")),
    };
    let mut layer = Table::new();
    let (last, parents) = keys.split_last().expect("at least one key");
    let mut at = &mut layer;
    for key in parents {
        at = at.entry(key.clone()).or_insert_with(|| Value::Table(Table::new())).as_table_mut().expect("a table");
    }
    at.insert(last.clone(), value.unwrap_or_else(|| Value::String(raw.to_owned())));
    unsupported::check(&layer)?;
    typed(layer.clone(), origin)?;
    Ok(layer)
}

/// Parses a merged table into [`Config`], naming the key of any failure.
fn typed(table: Table, origin: &str) -> Result<Config, ConfigError> {
    serde_path_to_error::deserialize::<_, Config>(Value::Table(table)).map_err(|e| path_error(origin, &e))
}

/// Puts `layer`'s keys over `base`'s, table by table.
fn merge(base: &mut Table, layer: Table) {
    for (key, value) in layer {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(below)), Value::Table(above)) => merge(below, above),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn parse_error(origin: &str, error: &toml::de::Error) -> ConfigError {
    ConfigError::Parse { origin: origin.into(), message: error.to_string().trim_end().to_owned() }
}

fn path_error<E: std::fmt::Display>(origin: &str, error: &serde_path_to_error::Error<E>) -> ConfigError {
    let key = error.path().to_string();
    let inner = error.inner().to_string();
    // toml's own message may span lines (a snippet of the file); keep it whole.
    let message = if key == "." { inner } else { format!("`{key}`: {inner}") };
    ConfigError::Parse { origin: origin.into(), message: message.trim_end().to_owned() }
}

/// The environment's `SOULBOX__...` variables.
pub fn env_overrides() -> Vec<(String, String)> {
    std::env::vars().filter(|(name, _)| name.starts_with(ENV_PREFIX)).collect()
}
