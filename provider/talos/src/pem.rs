//! Tiny PEM encoder/decoder (RFC 7468 textual encoding) for the labels Talos uses.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// Encodes `der` as PEM with `label`, 64-column lines, trailing newline.
pub fn encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A decoded PEM block.
#[derive(Clone, PartialEq, Eq)]
pub struct Block {
    /// The label between `BEGIN ` and `-----`.
    pub label: String,
    /// The decoded contents.
    pub der: Vec<u8>,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Block({}, {} bytes)", self.label, self.der.len())
    }
}

/// Decodes the first PEM block in `text`. Returns `None` if there is none or it is corrupt.
pub fn decode_first(text: &str) -> Option<Block> {
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_string();
    let body_start = label_end + 5;
    let end_marker = format!("-----END {label}-----");
    let body_end = rest.find(&end_marker)?;
    if body_end < body_start {
        return None;
    }
    let body: String = rest[body_start..body_end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    // Headers (RFC 1421 style) are not used by Talos; refuse them.
    if body.contains(':') {
        return None;
    }
    let der = STANDARD.decode(body).ok()?;
    Some(Block { label, der })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let data: Vec<u8> = (0..200u8).collect();
        let pem = encode("TEST THING", &data);
        assert!(pem.starts_with("-----BEGIN TEST THING-----\n"));
        assert!(pem.lines().all(|l| l.len() <= 64));
        let b = decode_first(&pem).unwrap();
        assert_eq!(b.label, "TEST THING");
        assert_eq!(b.der, data);
        assert!(decode_first("nothing here").is_none());
        assert!(decode_first("-----BEGIN X-----\n!!!\n-----END X-----\n").is_none());
    }
}
