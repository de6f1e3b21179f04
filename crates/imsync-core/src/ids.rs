//! Random identifiers and opaque tokens.

use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};

/// A 17-character alphanumeric id, the shape Rocket.Chat clients expect for `_id`.
pub fn new_id() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 17)
}

/// A session token: 43 random alphanumeric characters (~256 bits).
pub fn new_token() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 43)
}

/// Tokens are stored as their SHA-256 so a leaked database does not leak sessions.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_sized() {
        let a = new_id();
        assert_eq!(a.len(), 17);
        assert_ne!(a, new_id());
        assert_eq!(new_token().len(), 43);
        assert_eq!(token_hash("x").len(), 64);
        assert_eq!(hex(&[0, 255, 16]), "00ff10");
    }
}
