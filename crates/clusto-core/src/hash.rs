//! A digest that is the same in every build and on every platform (std's
//! hasher is not), for what gets stored: applied-state hashes, VM spec
//! fingerprints, lease keys.

/// FNV-1a, 64 bits.
pub fn fnv64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
