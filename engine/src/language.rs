//! The languages SoulBox runs.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A language a request may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// CPython 3.15 with numpy, pandas and matplotlib.
    Python,
    /// QuickJS-NG (ES2023).
    #[serde(alias = "js")]
    JavaScript,
}

impl Language {
    /// Every language, in a stable order.
    pub const ALL: [Language; 2] = [Language::Python, Language::JavaScript];

    /// The canonical lower-case name (`python`, `javascript`).
    pub fn name(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::JavaScript => "javascript",
        }
    }

    /// The language a file name's extension implies (`.py`, `.js`, `.mjs`), if any.
    pub fn from_path(path: &std::path::Path) -> Option<Language> {
        match path.extension()?.to_str()? {
            "py" => Some(Language::Python),
            "js" | "mjs" | "cjs" => Some(Language::JavaScript),
            _ => None,
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A language name SoulBox does not know.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown language `{0}`: expected one of python (py), javascript (js)")]
pub struct UnknownLanguage(pub String);

impl FromStr for Language {
    type Err = UnknownLanguage;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "python" | "py" | "python3" => Ok(Language::Python),
            "javascript" | "js" | "node" => Ok(Language::JavaScript),
            _ => Err(UnknownLanguage(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_aliases() {
        assert_eq!("py".parse::<Language>().unwrap(), Language::Python);
        assert_eq!("JS".parse::<Language>().unwrap(), Language::JavaScript);
        assert!("cobol".parse::<Language>().is_err());
        let json: Language = serde_json::from_str("\"js\"").unwrap();
        assert_eq!(json, Language::JavaScript);
    }

    #[test]
    fn guesses_from_extension() {
        assert_eq!(Language::from_path("a/b.py".as_ref()), Some(Language::Python));
        assert_eq!(Language::from_path("x.mjs".as_ref()), Some(Language::JavaScript));
        assert_eq!(Language::from_path("x.txt".as_ref()), None);
    }
}
