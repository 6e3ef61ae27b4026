//! 16-byte ids (cluster fsid, OSD uuid) in their usual text form
//! `8-4-4-4-12` hex.

/// `00112233-4455-6677-8899-aabbccddeeff`.
pub fn format(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Parses the text form (dashes optional); `None` if it is not 32 hex digits.
pub fn parse(s: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = s.bytes().filter(|&c| c != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = digit(hex[2 * i])? << 4 | digit(hex[2 * i + 1])?;
    }
    Some(out)
}

/// A random (version 4) uuid.
pub fn random() -> [u8; 16] {
    let mut u = [0u8; 16];
    // Entropy failure leaves a fixed id; callers that need uniqueness
    // (fsid) also carry names, so this degrades, never panics.
    let _ = getrandom::getrandom(&mut u);
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        let u = super::random();
        assert_eq!(super::parse(&super::format(&u)), Some(u));
        assert_eq!(super::parse("nope"), None);
        assert_eq!(super::parse("0011223344556677889900aabbccddeg"), None);
        assert_eq!(super::format(&[0xab; 16]), "abababab-abab-abab-abab-abababababab");
    }
}
