//! [`ContextImage`]: a context's instance state, and its byte format.
//!
//! Layout: the magic `SBCTX001`, a little-endian `u32` header length, the header (JSON: the
//! module it belongs to, the memory size, the globals, the changed chunks as runs, the
//! monotonic clock), the changed chunks' bytes in order, and a blake3 hash of everything
//! before it. Decoding checks the magic, every length and the hash before it returns
//! anything, so a truncated or corrupted image is refused whole, never half-applied.

use super::CheckpointError;
use super::dirty::CHUNK_BYTES;
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 8] = b"SBCTX001";
const HASH_BYTES: usize = 32;

/// One mutable global's value, by type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "bits", rename_all = "snake_case")]
pub enum GlobalValue {
    /// An `i32`.
    I32(i32),
    /// An `i64`.
    I64(i64),
    /// An `f32`, as its bits.
    F32(u32),
    /// An `f64`, as its bits.
    F64(u64),
    /// A `v128`, as its bits (a string: JSON numbers are not that wide).
    V128(#[serde(with = "u128_text")] u128),
}

/// Everything an instance of a known module needs to become the captured context again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextImage {
    /// What the image holds besides the pages' bytes.
    pub header: Header,
    /// The changed chunks' bytes, [`CHUNK_BYTES`] each, in the order of `header.chunks`.
    pub data: Vec<u8>,
}

/// The image's header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// The module's identity (its cache key's content): an image restores only into it.
    pub module: String,
    /// The memory's size in wasm pages.
    pub memory_pages: u64,
    /// Every mutable global, by absolute index.
    pub globals: Vec<(u32, GlobalValue)>,
    /// Runs of changed chunks: `(first chunk index, count)`.
    pub chunks: Vec<(u32, u32)>,
    /// The guest's monotonic clock when captured.
    pub monotonic_ns: u64,
}

impl Header {
    /// Chunk indices, in order.
    pub fn chunk_indices(&self) -> impl Iterator<Item = u32> + '_ {
        self.chunks.iter().flat_map(|&(first, count)| first..first.saturating_add(count))
    }

    fn chunk_count(&self) -> usize {
        self.chunks.iter().map(|&(_, count)| count as usize).sum()
    }
}

/// `indices` (ascending) as runs.
pub fn runs(indices: &[u32]) -> Vec<(u32, u32)> {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &index in indices {
        match runs.last_mut() {
            Some((first, count)) if *first + *count == index => *count += 1,
            _ => runs.push((index, 1)),
        }
    }
    runs
}

impl ContextImage {
    /// The image's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&self.header).expect("a header always serializes");
        let mut bytes = Vec::with_capacity(MAGIC.len() + 4 + header.len() + self.data.len() + HASH_BYTES);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&u32::try_from(header.len()).expect("a header is small").to_le_bytes());
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&self.data);
        let hash = blake3::hash(&bytes);
        bytes.extend_from_slice(hash.as_bytes());
        bytes
    }

    /// Reads an image, refusing anything that is not a whole, intact one.
    pub fn decode(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let corrupt = |why: &str| CheckpointError::Corrupt(why.to_owned());
        if bytes.len() < MAGIC.len() + 4 + HASH_BYTES || &bytes[..MAGIC.len()] != MAGIC {
            return Err(corrupt("not a SoulBox context image (wrong magic or too short)"));
        }
        let (body, hash) = bytes.split_at(bytes.len() - HASH_BYTES);
        if blake3::hash(body).as_bytes() != hash {
            return Err(corrupt("its checksum does not match (truncated or altered)"));
        }
        let header_len = u32::from_le_bytes(body[8..12].try_into().expect("4 bytes")) as usize;
        let header_bytes = body.get(12..12 + header_len).ok_or_else(|| corrupt("its header is cut short"))?;
        let header: Header =
            serde_json::from_slice(header_bytes).map_err(|e| CheckpointError::Corrupt(format!("its header: {e}")))?;
        let data = &body[12 + header_len..];
        if data.len() != header.chunk_count() * CHUNK_BYTES {
            return Err(corrupt("its memory data does not match its header"));
        }
        Ok(ContextImage { header, data: data.to_vec() })
    }
}

mod u128_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u128, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u128, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ContextImage {
        let header = Header {
            module: "python:abc".into(),
            memory_pages: 3,
            globals: vec![(0, GlobalValue::I32(-5)), (2, GlobalValue::V128(u128::MAX))],
            chunks: runs(&[1, 2, 3, 9]),
            monotonic_ns: 42,
        };
        ContextImage { header, data: (0..4 * CHUNK_BYTES).map(|i| i as u8).collect() }
    }

    #[test]
    fn round_trips_and_groups_chunks_into_runs() {
        let image = image();
        assert_eq!(image.header.chunks, vec![(1, 3), (9, 1)]);
        assert_eq!(image.header.chunk_indices().collect::<Vec<_>>(), vec![1, 2, 3, 9]);
        assert_eq!(ContextImage::decode(&image.encode()).unwrap(), image);
    }

    #[test]
    fn refuses_a_truncated_or_altered_image_whole() {
        let bytes = image().encode();
        for bad in [&bytes[..bytes.len() - 1], &bytes[..20], &[]] {
            assert!(matches!(ContextImage::decode(bad), Err(CheckpointError::Corrupt(_))));
        }
        let mut flipped = bytes.clone();
        flipped[100] ^= 1;
        let error = ContextImage::decode(&flipped).unwrap_err();
        assert!(error.to_string().contains("checksum"), "{error}");
    }
}
