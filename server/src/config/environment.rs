//! `[environment]`: the variables every guest sees, with `$VAR` and `$SECRET_NAME` resolved
//! once at start-up and `[environment.dynamic]` filled in per sandbox.
//!
//! A value is taken as written, except: `$$...` is a literal `$...`; `$SECRET_NAME` is the
//! secret `NAME` from `security.secrets_file`, else the environment variable `SECRET_NAME`;
//! any other `$VAR` is SoulBox's environment variable `VAR`. A name that resolves to nothing
//! stops the start-up with an error naming the key, rather than handing guests an empty value.
//! Resolved values are never logged: `Debug` shows names only.

use super::EnvironmentSection;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a secret reference starts with.
const SECRET_PREFIX: &str = "$SECRET_";

/// Why `[environment]` could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// `$VAR` names an unset variable.
    #[error("`environment.{key}`: the environment variable `{var}` is not set")]
    MissingVar {
        /// The key.
        key: String,
        /// The variable.
        var: String,
    },
    /// `$SECRET_NAME` is in neither the secrets file nor the environment.
    #[error("`environment.{key}`: the secret `{name}` is not in {where_} nor in the environment as `SECRET_{name}`")]
    MissingSecret {
        /// The key.
        key: String,
        /// The secret's name.
        name: String,
        /// The secrets file, or "no secrets file".
        where_: String,
    },
    /// A variable name no guest can receive.
    #[error("`environment.{0}`: a variable name must be non-empty, without `=` or NUL")]
    BadName(String),
    /// A `$` reference that is not a variable name.
    #[error("`environment.{key}`: `{value}` is not a valid reference; write `$$` for a literal `$`")]
    BadReference {
        /// The key.
        key: String,
        /// Its value.
        value: String,
    },
    /// An `[environment.dynamic]` value SoulBox does not know.
    #[error("`environment.dynamic.{key}`: `{value}` is not one of {}", DYNAMIC_NAMES.join(", "))]
    UnknownDynamic {
        /// The key.
        key: String,
        /// Its value.
        value: String,
    },
    /// The secrets file could not be read or parsed.
    #[error("secrets file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The secrets file is readable by other users.
    #[error("secrets file {0} is readable by other users; `chmod 600` it")]
    Exposed(PathBuf),
}

/// The `[environment.dynamic]` values SoulBox fills in per sandbox.
const DYNAMIC_NAMES: [&str; 5] =
    ["$SOULBOX_SANDBOX_ID", "$SOULBOX_INSTANCE_ID", "$SOULBOX_SANDBOX_URL", "$SOULBOX_TENANT", "$SOULBOX_TEMPLATE"];

/// A per-sandbox value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dynamic {
    SandboxId,
    SandboxUrl,
    Tenant,
    Template,
}

/// What a sandbox's dynamic variables are made from.
#[derive(Debug, Clone, Copy)]
pub struct DynamicEnv<'a> {
    /// The sandbox's id.
    pub sandbox_id: &'a str,
    /// Its tenant.
    pub tenant: &'a str,
    /// Its template's name.
    pub template: &'a str,
    /// The server's public URL (no trailing `/`).
    pub base_url: &'a str,
}

/// The resolved environment. Cheap to clone.
#[derive(Clone, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
    dynamic: BTreeMap<String, Dynamic>,
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Environment")
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .field("dynamic", &self.dynamic.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Environment {
    /// Resolves `section`, reading `secrets_file` when given and `lookup` for variables.
    pub fn resolve(
        section: &EnvironmentSection,
        secrets_file: Option<&Path>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SecretsError> {
        let secrets = match secrets_file {
            Some(path) => read_secrets(path)?,
            None => BTreeMap::new(),
        };
        let where_ = secrets_file.map_or_else(|| "no secrets file".to_owned(), |p| p.display().to_string());
        let mut vars = BTreeMap::new();
        for (key, value) in &section.vars {
            check_name(key)?;
            vars.insert(key.clone(), resolve_value(key, value, &secrets, &where_, &lookup)?);
        }
        let mut dynamic = BTreeMap::new();
        for (key, value) in &section.dynamic {
            check_name(key)?;
            let which = match value.as_str() {
                "$SOULBOX_SANDBOX_ID" | "$SOULBOX_INSTANCE_ID" => Dynamic::SandboxId,
                "$SOULBOX_SANDBOX_URL" => Dynamic::SandboxUrl,
                "$SOULBOX_TENANT" => Dynamic::Tenant,
                "$SOULBOX_TEMPLATE" => Dynamic::Template,
                _ => return Err(SecretsError::UnknownDynamic { key: key.clone(), value: value.clone() }),
            };
            dynamic.insert(key.clone(), which);
        }
        Ok(Environment { vars, dynamic })
    }

    /// The static variables (what a one-shot execution gets).
    pub fn vars(&self) -> &BTreeMap<String, String> {
        &self.vars
    }

    /// The static variables plus the dynamic ones for one sandbox.
    pub fn for_sandbox(&self, sandbox: &DynamicEnv<'_>) -> BTreeMap<String, String> {
        let mut all = self.vars.clone();
        for (key, which) in &self.dynamic {
            let value = match which {
                Dynamic::SandboxId => sandbox.sandbox_id.to_owned(),
                Dynamic::SandboxUrl => format!("{}/v1/sandboxes/{}", sandbox.base_url, sandbox.sandbox_id),
                Dynamic::Tenant => sandbox.tenant.to_owned(),
                Dynamic::Template => sandbox.template.to_owned(),
            };
            all.insert(key.clone(), value);
        }
        all
    }
}

fn check_name(key: &str) -> Result<(), SecretsError> {
    if key.is_empty() || key.contains(['=', '\0']) {
        return Err(SecretsError::BadName(key.to_owned()));
    }
    Ok(())
}

fn resolve_value(
    key: &str,
    value: &str,
    secrets: &BTreeMap<String, String>,
    where_: &str,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<String, SecretsError> {
    if let Some(literal) = value.strip_prefix("$$") {
        return Ok(format!("${literal}"));
    }
    let Some(var) = value.strip_prefix('$') else { return Ok(value.to_owned()) };
    let valid = var.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(SecretsError::BadReference { key: key.to_owned(), value: value.to_owned() });
    }
    if let Some(name) = value.strip_prefix(SECRET_PREFIX) {
        return secrets.get(name).cloned().or_else(|| lookup(var)).ok_or_else(|| SecretsError::MissingSecret {
            key: key.to_owned(),
            name: name.to_owned(),
            where_: where_.to_owned(),
        });
    }
    lookup(var).ok_or_else(|| SecretsError::MissingVar { key: key.to_owned(), var: var.to_owned() })
}

/// Reads a secrets file: a TOML table of strings, private to its owner.
fn read_secrets(path: &Path) -> Result<BTreeMap<String, String>, SecretsError> {
    use std::os::unix::fs::PermissionsExt;
    let file_error = |message: String| SecretsError::File { path: path.to_owned(), message };
    let metadata = std::fs::metadata(path).map_err(|e| file_error(e.to_string()))?;
    if metadata.permissions().mode() & 0o077 != 0 {
        return Err(SecretsError::Exposed(path.to_owned()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    // Not `toml::de::Error`'s message: it would quote the line, and so the secret.
    toml::from_str(&text).map_err(|e: toml::de::Error| {
        let at = e.span().map(|s| format!(" at byte {}", s.start)).unwrap_or_default();
        file_error(format!("expected `NAME = \"value\"` lines of strings{at}"))
    })
}
