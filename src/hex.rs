//! Lowercase hex of large byte strings (a block for `getblock` verbosity 0): a table lookup per
//! byte into one buffer, several times faster than a formatter per byte.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `bytes` as lowercase hex.
pub fn lower(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    push_lower(&mut out, bytes);
    // Only ASCII digits were written.
    String::from_utf8(out).unwrap_or_default()
}

/// `bytes` as a JSON string of lowercase hex (no escaping is ever needed).
pub fn json_string(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2 + 2);
    out.push(b'"');
    push_lower(&mut out, bytes);
    out.push(b'"');
    String::from_utf8(out).unwrap_or_default()
}

fn push_lower(out: &mut Vec<u8>, bytes: &[u8]) {
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0x0f)]);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_the_usual_encoding() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(
            super::lower(&bytes),
            bitcoin::hex::DisplayHex::to_lower_hex_string(&bytes[..])
        );
        assert_eq!(super::lower(&[]), "");
        assert_eq!(super::json_string(&[0xab, 0x01]), "\"ab01\"");
    }
}
