//! Random identifiers and opaque tokens.

use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};

/// Digits in ASCII order, so that ids compare like the times they begin with.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A 17-character alphanumeric id, the shape Rocket.Chat clients expect for `_id`: 7 characters
/// of creation time in milliseconds, then 10 random ones (59 bits). Ids made in the same period
/// land next to each other in an index, so a write touches the index's last page rather than a
/// random one.
pub fn new_id() -> String {
    let mut ms = crate::time::now_ms().max(0) as u64;
    let mut head = [b'0'; 7];
    for slot in head.iter_mut().rev() {
        *slot = BASE62[(ms % 62) as usize];
        ms /= 62;
    }
    let mut id = String::with_capacity(17);
    id.extend(head.iter().map(|&b| b as char));
    Alphanumeric.append_string(&mut rand::rng(), &mut id, 10);
    id
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
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(new_id()[..7] > a[..7], "later ids sort after earlier ones");
        assert_eq!(new_token().len(), 43);
        assert_eq!(token_hash("x").len(), 64);
        assert_eq!(hex(&[0, 255, 16]), "00ff10");
    }
}
