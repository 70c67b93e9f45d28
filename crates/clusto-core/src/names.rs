//! Name and key syntax.

use crate::error::CoreError;

/// Entity names: letters, digits, `.`, `_`, `-`; first a letter or digit.
pub fn valid_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphanumeric())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// Attribute keys and subkeys: `^[A-Za-z_][0-9A-Za-z_-]*$`.
pub fn valid_key(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'))
}

pub fn check_name(s: &str) -> Result<(), CoreError> {
    if valid_name(s) {
        Ok(())
    } else {
        Err(CoreError::InvalidName(s.to_string()))
    }
}

pub fn check_key(s: &str) -> Result<(), CoreError> {
    if valid_key(s) {
        Ok(())
    } else {
        Err(CoreError::InvalidKey(s.to_string()))
    }
}

/// Normalises a MAC address to lower-case colon form; accepts `-`, `:` or
/// bare hex.
pub fn normalize_mac(s: &str) -> Option<String> {
    let hex: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect();
    if hex.len() != 12 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let hex = hex.to_ascii_lowercase();
    let parts: Vec<&str> = (0..6).map(|i| &hex[i * 2..i * 2 + 2]).collect();
    Some(parts.join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("s0001"));
        assert!(valid_name("sv3-001.rack_a"));
        assert!(valid_name("1u"));
        assert!(!valid_name(""));
        assert!(!valid_name("-x"));
        assert!(!valid_name(".x"));
        assert!(!valid_name("a b"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name("é"));
    }

    #[test]
    fn keys() {
        assert!(valid_key("system"));
        assert!(valid_key("_hidden"));
        assert!(valid_key("ipmi-mac"));
        assert!(!valid_key("9lives"));
        assert!(!valid_key("a.b"));
        assert!(!valid_key(""));
        assert!(!valid_key("-a"));
    }

    #[test]
    fn macs() {
        assert_eq!(
            normalize_mac("00-1A-2b-3c-4d-5e").unwrap(),
            "00:1a:2b:3c:4d:5e"
        );
        assert_eq!(normalize_mac("001a2b3c4d5e").unwrap(), "00:1a:2b:3c:4d:5e");
        assert!(normalize_mac("00:1a:2b:3c:4d").is_none());
        assert!(normalize_mac("zz:1a:2b:3c:4d:5e").is_none());
    }
}
