//! [`ContextImage`]: a context's instance state, and its encoding as parts.
//!
//! The memory parts come first, the header last. The header is the magic `SBCTX002`, then
//! JSON (the module it belongs to, the memory size, the globals, the monotonic clock, and each
//! memory part's chunks as `(range, mask)` pairs, a range being [`RANGE_CHUNKS`] chunks). Each
//! memory part holds its chunks' bytes in that order; a restore applies them in order, a later
//! part's chunk replacing an earlier one's. How the memory is cut into parts ([`super::log`])
//! keeps a checkpoint after a cell the same leading parts as the one before plus one holding
//! what the cell changed, so a content-addressed store writes only that (and, told how many
//! lead the same, need not even read the others again).
//!
//! Each part's integrity is its store's business (the engine names every part by its blake3
//! hash and checks it on read); decoding checks the magic, the header and that every part's
//! length matches its mask before it returns anything, so a wrong or missing part is refused
//! whole, never half-applied.

use super::CheckpointError;
use super::dirty::CHUNK_BYTES;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"SBCTX002";
/// Chunks per range: one bit each in a range's `u64` mask.
pub const RANGE_CHUNKS: u32 = 64;

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
    /// Each memory part's chunks' bytes, [`CHUNK_BYTES`] each, in the order of
    /// `header.parts`.
    pub memory: Vec<Arc<[u8]>>,
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
    /// Each memory part's chunks: `(range index, mask of its chunks)` pairs, ascending.
    pub parts: Vec<Vec<(u32, u64)>>,
    /// The guest's monotonic clock when captured.
    pub monotonic_ns: u64,
}

/// Groups changed chunk indices (ascending) into ranges: each range's index and mask.
pub fn group(indices: &[u32]) -> Vec<(u32, u64)> {
    let mut ranges: Vec<(u32, u64)> = Vec::new();
    for &index in indices {
        let (range, bit) = (index / RANGE_CHUNKS, 1u64 << (index % RANGE_CHUNKS));
        match ranges.last_mut() {
            Some((last, mask)) if *last == range => *mask |= bit,
            _ => ranges.push((range, bit)),
        }
    }
    ranges
}

/// The chunk indices of range `range` whose bits are set in `mask`, ascending.
pub fn chunks_of(range: u32, mask: u64) -> impl Iterator<Item = u32> {
    (0..RANGE_CHUNKS).filter(move |bit| mask & (1 << bit) != 0).map(move |bit| range * RANGE_CHUNKS + bit)
}

impl ContextImage {
    /// The image as parts: the memory parts, then the header.
    pub fn encode(self) -> Vec<Arc<[u8]>> {
        let mut header = MAGIC.to_vec();
        serde_json::to_writer(&mut header, &self.header).expect("a header always serializes");
        let mut parts = self.memory;
        parts.push(Arc::from(header));
        parts
    }

    /// Reads an image from its parts, refusing anything that is not a whole, intact one.
    pub fn decode(parts: &[Arc<[u8]>]) -> Result<Self, CheckpointError> {
        let corrupt = |why: &str| CheckpointError::Corrupt(why.to_owned());
        let (header, memory) = parts.split_last().ok_or_else(|| corrupt("it has no parts"))?;
        let json = header.strip_prefix(MAGIC).ok_or_else(|| corrupt("not a SoulBox context image (wrong magic)"))?;
        let header: Header =
            serde_json::from_slice(json).map_err(|e| CheckpointError::Corrupt(format!("its header: {e}")))?;
        if memory.len() != header.parts.len() {
            return Err(corrupt("its memory parts do not match its header"));
        }
        for (chunks, part) in header.parts.iter().zip(memory) {
            let count: usize = chunks.iter().map(|&(_, mask)| mask.count_ones() as usize).sum();
            if part.len() != count * CHUNK_BYTES {
                return Err(corrupt("a memory part's length does not match its header"));
            }
        }
        Ok(ContextImage { header, memory: memory.to_vec() })
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
            parts: vec![group(&[1, 2, 3]), group(&[70, 200])],
            monotonic_ns: 42,
        };
        let memory = vec![Arc::from(vec![1u8; 3 * CHUNK_BYTES]), Arc::from(vec![2u8; 2 * CHUNK_BYTES])];
        ContextImage { header, memory }
    }

    #[test]
    fn round_trips_and_groups_chunks_into_ranges() {
        let image = image();
        assert_eq!(image.header.parts[1], vec![(1, 1 << 6), (3, 1 << 8)]);
        assert_eq!(chunks_of(1, 0b100_0000).collect::<Vec<_>>(), vec![70]);
        assert_eq!(ContextImage::decode(&image.clone().encode()).unwrap(), image);
    }

    #[test]
    fn refuses_a_short_or_mismatched_image_whole() {
        let parts = image().encode();
        assert!(matches!(ContextImage::decode(&parts[..2]), Err(CheckpointError::Corrupt(_))));
        assert!(matches!(ContextImage::decode(&[]), Err(CheckpointError::Corrupt(_))));
        let mut short = parts.clone();
        short[0] = Arc::from(&short[0][1..]);
        assert!(matches!(ContextImage::decode(&short), Err(CheckpointError::Corrupt(_))));
        let mut wrong = parts.clone();
        let mut header = wrong.last().unwrap().to_vec();
        header[0] = b'X';
        *wrong.last_mut().unwrap() = Arc::from(header);
        let error = ContextImage::decode(&wrong).unwrap_err();
        assert!(error.to_string().contains("magic"), "{error}");
    }
}
