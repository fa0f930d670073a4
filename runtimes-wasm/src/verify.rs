//! SHA-256 checks for runtime files.

use crate::error::RuntimeError;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::Path;

/// Lower-case hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<String, RuntimeError> {
    let file = std::fs::File::open(path).map_err(|e| RuntimeError::io(path, e))?;
    sha256_reader_to(file, &mut std::io::sink()).map_err(|e| RuntimeError::io(path, e))
}

/// Lower-case hex SHA-256 of bytes.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Streams `reader` into `writer`, returning the lower-case hex SHA-256 of what passed.
pub fn sha256_reader_to(mut reader: impl Read, writer: &mut impl Write) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        writer.write_all(&buf[..n])?;
    }
    writer.flush()?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
