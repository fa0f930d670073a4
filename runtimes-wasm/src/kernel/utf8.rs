//! Output taps that turn a guest's byte writes into text events without splitting a UTF-8
//! character across two events.

use soulbox_engine::kernel::{EventSender, ExecutionEvent};
use soulbox_engine::text::Utf8Stream;
use soulbox_host_api::OutputTap;
use std::sync::{Arc, Mutex};

/// A tap sending each write to `events` as `make(text)`; an incomplete trailing character is
/// held back until the next write completes it.
pub(crate) fn tap(events: EventSender, make: fn(String) -> ExecutionEvent) -> OutputTap {
    let decoder = Mutex::new(Utf8Stream::default());
    Arc::new(move |bytes: &[u8]| {
        let text = decoder.lock().unwrap_or_else(|e| e.into_inner()).push(bytes);
        if !text.is_empty() {
            // A closed receiver means nobody listens any more; the cell still runs to its end.
            let _ = events.send(make(text));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_split_across_writes_arrives_whole() {
        let euro = "€".as_bytes();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let (tx, mut rx) = soulbox_engine::events::channel(until);
        let tap = tap(tx, |text| ExecutionEvent::Stdout { text });
        tap(&[b'x', euro[0]]);
        tap(&euro[1..]);
        drop(tap);
        let mut seen = String::new();
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        while let std::task::Poll::Ready(Some(ExecutionEvent::Stdout { text })) = rx.poll_recv(&mut cx) {
            seen.push_str(&text);
        }
        assert_eq!(seen, "x€");
    }
}
