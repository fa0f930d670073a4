//! The languages SoulBox runs, and the backends that may run them.
//!
//! Python and JavaScript run in WebAssembly by default (CPython and QuickJS); asked for with
//! [`BackendKind::Container`], they run natively (`python3`, `node`) in a container instead.
//! TypeScript runs in WebAssembly only (its types removed on the host, then QuickJS). The
//! other languages need native processes and only run in containers.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A language a request may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Language {
    /// CPython 3.15 with numpy, pandas and matplotlib (WebAssembly); `python3` in a container.
    #[serde(alias = "py", alias = "python3")]
    Python,
    /// QuickJS-NG (ES2023, WebAssembly); Node.js in a container.
    #[serde(alias = "js", alias = "node", alias = "nodejs")]
    JavaScript,
    /// TypeScript: its types removed on the host, then run as JavaScript (WebAssembly only).
    #[serde(alias = "ts")]
    TypeScript,
    /// A bash script (containers).
    #[serde(alias = "sh", alias = "shell")]
    Bash,
    /// C, compiled with gcc (containers).
    C,
    /// C++, compiled with g++ (containers).
    #[serde(alias = "c++", alias = "cxx")]
    Cpp,
    /// Go, `go run` (containers).
    #[serde(alias = "golang")]
    Go,
    /// Java, the single-file source launcher (containers).
    Java,
    /// Ruby (containers).
    #[serde(alias = "rb")]
    Ruby,
    /// PHP (containers).
    Php,
}

impl Language {
    /// Every language, in a stable order.
    pub const ALL: [Language; 10] = [
        Language::Python,
        Language::JavaScript,
        Language::TypeScript,
        Language::Bash,
        Language::C,
        Language::Cpp,
        Language::Go,
        Language::Java,
        Language::Ruby,
        Language::Php,
    ];

    /// The canonical lower-case name (`python`, `javascript`, `cpp`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::JavaScript => "javascript",
            Language::TypeScript => "typescript",
            Language::Bash => "bash",
            Language::C => "c",
            Language::Cpp => "cpp",
            Language::Go => "go",
            Language::Java => "java",
            Language::Ruby => "ruby",
            Language::Php => "php",
        }
    }

    /// The language a file name's extension implies, if any.
    pub fn from_path(path: &std::path::Path) -> Option<Language> {
        match path.extension()?.to_str()? {
            "py" => Some(Language::Python),
            "js" | "mjs" | "cjs" => Some(Language::JavaScript),
            "ts" | "mts" | "cts" => Some(Language::TypeScript),
            "sh" | "bash" => Some(Language::Bash),
            "c" => Some(Language::C),
            "cc" | "cpp" | "cxx" => Some(Language::Cpp),
            "go" => Some(Language::Go),
            "java" => Some(Language::Java),
            "rb" => Some(Language::Ruby),
            "php" => Some(Language::Php),
            _ => None,
        }
    }

    /// Whether SoulBox's WebAssembly interpreters run this language.
    pub fn runs_in_wasm(self) -> bool {
        matches!(self, Language::Python | Language::JavaScript | Language::TypeScript)
    }

    /// Whether a container runs this language (every language but TypeScript).
    pub fn runs_in_containers(self) -> bool {
        self != Language::TypeScript
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A language name SoulBox does not know.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown language `{0}`: expected one of python, javascript, typescript, bash, c, cpp, go, java, ruby, php")]
pub struct UnknownLanguage(pub String);

impl FromStr for Language {
    type Err = UnknownLanguage;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.to_ascii_lowercase()))
            .map_err(|_| UnknownLanguage(s.to_owned()))
    }
}

/// The kind of isolation a backend gives; a request may name one to choose where it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// WebAssembly (Python and JavaScript only): fastest, most isolated.
    Wasm,
    /// A Docker container: native processes, any language of the image.
    Container,
}

impl BackendKind {
    /// The name the backend reports (`wasm`, `container`).
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Wasm => "wasm",
            BackendKind::Container => "container",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_aliases() {
        assert_eq!("py".parse::<Language>().unwrap(), Language::Python);
        assert_eq!("JS".parse::<Language>().unwrap(), Language::JavaScript);
        assert_eq!("c++".parse::<Language>().unwrap(), Language::Cpp);
        assert_eq!("sh".parse::<Language>().unwrap(), Language::Bash);
        assert_eq!("ts".parse::<Language>().unwrap(), Language::TypeScript);
        assert!("cobol".parse::<Language>().is_err());
        let json: Language = serde_json::from_str("\"js\"").unwrap();
        assert_eq!(json, Language::JavaScript);
        for language in Language::ALL {
            assert_eq!(language.name().parse::<Language>().unwrap(), language);
        }
    }

    #[test]
    fn guesses_from_extension() {
        assert_eq!(Language::from_path("a/b.py".as_ref()), Some(Language::Python));
        assert_eq!(Language::from_path("x.mjs".as_ref()), Some(Language::JavaScript));
        assert_eq!(Language::from_path("x.go".as_ref()), Some(Language::Go));
        assert_eq!(Language::from_path("x.txt".as_ref()), None);
    }
}
