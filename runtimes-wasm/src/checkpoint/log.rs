//! [`CaptureLog`]: a live context's checkpoints as a log, so the next one costs only what
//! changed.
//!
//! A context's first checkpoint lays its changed memory out by fixed range, one part per
//! range (the base). Each later checkpoint of the same live context keeps those parts and
//! appends one part holding only the chunks that changed since the last checkpoint (a delta):
//! a cell that touches a hundred scattered pages adds one small part, and the parts before it
//! are the very same bytes, which a content-addressed store keeps once. A restore applies the
//! parts in order, a later part's chunk replacing an earlier one's.
//!
//! Invariant: applying the parts in order to the module's initial image gives the live memory
//! as of the last [`CaptureLog::record`]. Every chunk that differs from the initial image is in
//! some part with its current bytes; a chunk a part holds that went back to the initial
//! image's bytes is written again, with those bytes, by a later one.
//!
//! The log holds its parts' bytes (about what the context's checkpoint holds, a few MiB at
//! most) for as long as the context is live. When the deltas together outgrow [`DELTA_BUDGET`] times the base,
//! or there are [`MAX_DELTAS`] of them, the next checkpoint starts a new base: a restore never
//! replays a long history, and stale chunks do not pile up.

use super::dirty::CHUNK_BYTES;
use super::image;
use std::collections::HashMap;
use std::sync::Arc;

/// The most deltas a log keeps before it starts a new base.
pub const MAX_DELTAS: usize = 64;
/// How many times the base's bytes the deltas may hold together before a new base.
pub const DELTA_BUDGET: usize = 2;

/// One part: its chunks as `(range, mask)` pairs, ascending, and their bytes in that order.
pub type Part = (Vec<(u32, u64)>, Arc<[u8]>);

/// A live context's checkpoint history (see the module's documentation).
#[derive(Debug, Default)]
pub struct CaptureLog {
    parts: Vec<Part>,
    /// Where each chunk's latest bytes are: `(part, offset)`.
    latest: HashMap<u32, (usize, usize)>,
    base_bytes: usize,
    delta_bytes: usize,
    deltas: usize,
    /// The last checkpoint's header, while no guest code has run since: a checkpoint now is
    /// that one again, at no cost.
    unchanged: Option<super::image::Header>,
    /// How many leading parts the last [`CaptureLog::record`] kept from the one before.
    kept: usize,
}

impl CaptureLog {
    /// Brings the log up to date with `live`, whose chunks `changed` (ascending) are those that
    /// differ from the initial image.
    pub fn record(&mut self, live: &[u8], changed: &[u32]) {
        if self.parts.is_empty() {
            return self.rebase(live, changed);
        }
        self.kept = self.parts.len();
        let chunk = |index: u32| &live[index as usize * CHUNK_BYTES..(index as usize + 1) * CHUNK_BYTES];
        let mut delta: Vec<u32> = changed
            .iter()
            .copied()
            .filter(|&index| match self.latest.get(&index) {
                Some(&(part, offset)) => self.parts[part].1[offset..offset + CHUNK_BYTES] != *chunk(index),
                None => true,
            })
            .collect();
        // A chunk back to its initial bytes: written again, as they are now.
        let now_changed: std::collections::HashSet<u32> = changed.iter().copied().collect();
        delta.extend(self.latest.keys().copied().filter(|index| !now_changed.contains(index)));
        delta.sort_unstable();
        delta.dedup();
        if delta.is_empty() {
            return;
        }
        let bytes = delta.len() * CHUNK_BYTES;
        if self.deltas >= MAX_DELTAS || self.delta_bytes + bytes > self.base_bytes * DELTA_BUDGET {
            return self.rebase(live, changed);
        }
        let part = self.parts.len();
        let mut data = Vec::with_capacity(bytes);
        for (offset, &index) in delta.iter().enumerate() {
            data.extend_from_slice(chunk(index));
            self.latest.insert(index, (part, offset * CHUNK_BYTES));
        }
        self.parts.push((image::group(&delta), Arc::from(data)));
        self.delta_bytes += bytes;
        self.deltas += 1;
    }

    /// Starts afresh: one part per range of `changed` chunks.
    fn rebase(&mut self, live: &[u8], changed: &[u32]) {
        *self = CaptureLog::default();
        for (range, mask) in image::group(changed) {
            let part = self.parts.len();
            let mut data = Vec::with_capacity(mask.count_ones() as usize * CHUNK_BYTES);
            for (slot, index) in image::chunks_of(range, mask).enumerate() {
                let start = index as usize * CHUNK_BYTES;
                data.extend_from_slice(&live[start..start + CHUNK_BYTES]);
                self.latest.insert(index, (part, slot * CHUNK_BYTES));
            }
            self.base_bytes += data.len();
            self.parts.push((vec![(range, mask)], Arc::from(data)));
        }
    }

    /// The parts, in order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// How many leading parts the last record kept, byte for byte, from the record before it
    /// (0 after a new base).
    pub fn kept(&self) -> usize {
        self.kept
    }

    /// Notes that guest code is about to run: the context may change.
    pub fn touch(&mut self) {
        self.unchanged = None;
    }

    /// Notes the checkpoint just taken, whose header is `header`.
    pub fn taken(&mut self, header: super::image::Header) {
        self.unchanged = Some(header);
    }

    /// The last checkpoint's header, if no guest code ran since it was taken.
    pub fn unchanged(&self) -> Option<&super::image::Header> {
        self.unchanged.as_ref()
    }
}

/// Writes `parts` over `memory`, in order (a restore; the caller checked every chunk lies
/// within it).
pub fn apply(memory: &mut [u8], parts: &[Part]) {
    for (chunks, data) in parts {
        let indices = chunks.iter().flat_map(|&(range, mask)| image::chunks_of(range, mask));
        for (index, bytes) in indices.zip(data.chunks_exact(CHUNK_BYTES)) {
            let start = index as usize * CHUNK_BYTES;
            memory[start..start + CHUNK_BYTES].copy_from_slice(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::dirty::changed_chunks;

    /// A pseudo-random sequence (xorshift), so the test is the same every run.
    struct Steps(u64);

    impl Steps {
        fn next(&mut self, below: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % below as u64) as usize
        }
    }

    #[test]
    fn replaying_the_parts_gives_the_live_memory_after_every_record() {
        let chunks = 300;
        let pristine: Vec<u8> = (0..chunks * CHUNK_BYTES).map(|i| (i % 251) as u8).collect();
        let mut live = pristine.clone();
        live.resize(400 * CHUNK_BYTES, 0); // grown past the initial image
        let mut log = CaptureLog::default();
        let mut steps = Steps(0x9e37_79b9_7f4a_7c15);
        let (mut deltas, mut rebases) = (0, 0);
        for round in 0..200 {
            // A few writes, some of them putting a chunk back to its initial bytes.
            for _ in 0..1 + steps.next(12) {
                let index = steps.next(400);
                let start = index * CHUNK_BYTES;
                if steps.next(4) == 0 {
                    let original =
                        pristine.get(start..start + CHUNK_BYTES).map_or(vec![0; CHUNK_BYTES], <[u8]>::to_vec);
                    live[start..start + CHUNK_BYTES].copy_from_slice(&original);
                } else {
                    live[start + steps.next(CHUNK_BYTES)] = round as u8 ^ 0x5a;
                }
            }
            let parts_before = log.parts().len();
            log.record(&live, &changed_chunks(&live, &pristine, []));
            match log.parts().len() {
                n if n == parts_before + 1 => deltas += 1,
                n if n < parts_before || parts_before == 0 => rebases += 1,
                _ => {}
            }
            let mut replayed = pristine.clone();
            replayed.resize(live.len(), 0);
            apply(&mut replayed, log.parts());
            assert!(replayed == live, "round {round}: the parts do not replay to the live memory");
        }
        assert!(deltas > 100 && rebases > 1, "both paths taken: {deltas} deltas, {rebases} rebases");
    }

    #[test]
    fn an_unchanged_memory_adds_no_part_and_a_small_change_one_small_part() {
        let pristine = vec![0u8; 256 * CHUNK_BYTES];
        let mut live = pristine.clone();
        for index in 0..128 {
            live[index * 2 * CHUNK_BYTES] = 1;
        }
        let mut log = CaptureLog::default();
        log.record(&live, &changed_chunks(&live, &pristine, []));
        let base = log.parts().len();
        log.record(&live, &changed_chunks(&live, &pristine, []));
        assert_eq!(log.parts().len(), base, "nothing changed");
        live[10 * CHUNK_BYTES + 5] = 9;
        log.record(&live, &changed_chunks(&live, &pristine, []));
        assert_eq!(log.parts().len(), base + 1);
        assert_eq!(log.parts().last().unwrap().1.len(), CHUNK_BYTES, "only the chunk that changed");
    }
}
