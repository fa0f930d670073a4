//! Output taps that turn a guest's byte writes into text events without splitting a UTF-8
//! character across two events.

use soulbox_engine::kernel::{EventSender, ExecutionEvent};
use soulbox_host_api::OutputTap;
use std::sync::{Arc, Mutex};

/// A tap sending each write to `events` as `make(text)`; an incomplete trailing character is
/// held back until the next write completes it.
pub(crate) fn tap(events: EventSender, make: fn(String) -> ExecutionEvent) -> OutputTap {
    let pending = Mutex::new(Vec::new());
    Arc::new(move |bytes: &[u8]| {
        let mut pending = pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.extend_from_slice(bytes);
        let complete = complete_prefix(&pending);
        if complete == 0 {
            return;
        }
        let text = String::from_utf8_lossy(&pending[..complete]).into_owned();
        pending.drain(..complete);
        // A closed receiver means nobody listens any more; the cell still runs to its end.
        let _ = events.send(make(text));
    })
}

/// How many leading bytes of `bytes` end on a character boundary (invalid bytes count as
/// complete: they become U+FFFD). At most 3 bytes are held back.
fn complete_prefix(bytes: &[u8]) -> usize {
    let len = bytes.len();
    for back in 1..=3.min(len) {
        let byte = bytes[len - back];
        if byte & 0xC0 != 0x80 {
            // A lead byte (or ASCII): is its sequence complete?
            let needed = match byte {
                0xF0..=0xF7 => 4,
                0xE0..=0xEF => 3,
                0xC0..=0xDF => 2,
                _ => 1,
            };
            return if needed > back { len - back } else { len };
        }
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_only_an_incomplete_character() {
        let euro = "€".as_bytes();
        assert_eq!(complete_prefix(b"abc"), 3);
        assert_eq!(complete_prefix(&[b'a', euro[0], euro[1]]), 1);
        assert_eq!(complete_prefix(&[b'a', euro[0], euro[1], euro[2]]), 4);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let tap = tap(tx, |text| ExecutionEvent::Stdout { text });
        tap(&[b'x', euro[0]]);
        tap(&euro[1..]);
        let mut seen = String::new();
        while let Ok(ExecutionEvent::Stdout { text }) = rx.try_recv() {
            seen.push_str(&text);
        }
        assert_eq!(seen, "x€");
    }
}
