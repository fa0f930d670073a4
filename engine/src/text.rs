//! Turning a stream of output bytes into text without splitting a character.

/// Decodes bytes that arrive in pieces into UTF-8 text: an incomplete trailing character is
/// held back until the next piece completes it; invalid bytes become U+FFFD.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// The text `bytes` completes (possibly empty).
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let complete = complete_prefix(&self.pending);
        let text = String::from_utf8_lossy(&self.pending[..complete]).into_owned();
        self.pending.drain(..complete);
        text
    }

    /// Whatever is held back, at the end of the stream.
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
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
        let mut stream = Utf8Stream::default();
        assert_eq!(stream.push(&[b'x', euro[0]]), "x");
        assert_eq!(stream.push(&euro[1..]), "€");
        assert_eq!(stream.push(&[0xE2]), "");
        assert_eq!(stream.finish(), "\u{FFFD}");
    }
}
