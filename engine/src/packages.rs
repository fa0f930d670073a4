//! Python packages a request or a sandbox asks for: pip requirements, checked here before
//! anything runs; a backend resolves and installs them (the WebAssembly backend: pure-Python
//! wheels only, see `soulbox_runtimes_wasm::packages`).

/// The most requirements one request or sandbox may name.
pub const MAX_PACKAGES: usize = 64;
/// The longest requirement.
pub const MAX_REQUIREMENT_BYTES: usize = 200;

/// A requirement SoulBox refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackagesError {
    /// More than [`MAX_PACKAGES`].
    #[error("at most {MAX_PACKAGES} packages may be named")]
    TooMany,
    /// Not a plain requirement (`name`, `name==1.*`, `name[extra]>=2,<3`).
    #[error(
        "invalid package `{0}`: name a package from the index with an optional version (`requests`, `requests==2.*`, `pydantic>=2,<3`); options, paths and URLs are not accepted"
    )]
    Invalid(String),
}

/// Checks `requirements`: each a name from the package index with optional extras, version
/// specifiers and a marker; never a pip option, a path or a URL (which could read the host's
/// files or fetch from anywhere).
pub fn validate(requirements: &[String]) -> Result<(), PackagesError> {
    if requirements.len() > MAX_PACKAGES {
        return Err(PackagesError::TooMany);
    }
    for requirement in requirements {
        let text = requirement.trim();
        let allowed = |c: char| c.is_ascii_alphanumeric() || " -_.[],<>=!~*;'\"()".contains(c);
        let plain = !text.is_empty()
            && text.len() <= MAX_REQUIREMENT_BYTES
            && text.starts_with(|c: char| c.is_ascii_alphanumeric())
            && text.chars().all(allowed);
        if !plain {
            return Err(PackagesError::Invalid(requirement.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_requirements_pass_and_options_paths_and_urls_do_not() {
        let ok = ["requests", "requests==2.*", "pydantic>=2,<3", "httpx[http2]~=0.28", "attrs; python_version>'3.8'"];
        assert!(validate(&ok.map(String::from)).is_ok());
        for bad in [
            "",
            "-r /etc/passwd",
            "--index-url=http://x",
            "/tmp/x.whl",
            "./pkg",
            "git+https://x/y",
            "pkg @ https://x",
            "a\nb",
        ] {
            assert!(validate(&[bad.to_owned()]).is_err(), "{bad}");
        }
        assert_eq!(validate(&vec!["a".to_owned(); MAX_PACKAGES + 1]), Err(PackagesError::TooMany));
    }
}
