//! WuKongIM's per-connection encryption (docs/wukongim.md, "Encryption").
//!
//! The client sends an X25519 public key in CONNECT; the server answers its own and a salt in
//! CONNACK. Both take the AES-128 key as the first 16 characters of the hex MD5 of the base64
//! of the shared secret (the characters' ASCII bytes are the key), and the IV as the salt's
//! first 16 characters. Payloads travel as base64 text of AES-128-CBC/PKCS#7 ciphertext. A
//! packet's `msgKey` is the hex MD5 of the base64 ciphertext of its verify string, which ties
//! the packet's fields to the connection's key.

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, InnerIvInit, KeyInit};
use aes::Aes128;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use md5::{Digest, Md5};
use rand::Rng;
use std::cell::RefCell;
use x25519_dalek::{PublicKey, StaticSecret};

type Encryptor = cbc::Encryptor<Aes128>;
type Decryptor = cbc::Decryptor<Aes128>;

/// Lower-case hex MD5.
pub fn md5_hex(data: &[u8]) -> String {
    hex_of(&Md5::digest(data))
        .iter()
        .map(|b| char::from(*b))
        .collect()
}

/// The AES key of a shared secret: the ASCII of the first 16 hex digits of the MD5 of its base64.
fn session_key(shared: &[u8]) -> [u8; 16] {
    let hex = hex_of(&Md5::digest(STANDARD.encode(shared)));
    let mut key = [0u8; 16];
    key.copy_from_slice(&hex[..16]);
    key
}

/// The server's half of a connection's key exchange.
pub struct ServerKeys {
    secret: StaticSecret,
    /// Base64 of the public key, as CONNACK carries it.
    pub public: String,
    /// 16 characters, as CONNACK carries it.
    pub salt: String,
}

impl ServerKeys {
    /// Fresh keys and salt for one connection.
    pub fn generate() -> ServerKeys {
        let mut rng = rand::rng();
        let bytes: [u8; 32] = rng.random();
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let salt: String = (0..16)
            .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
            .collect();
        ServerKeys::from_parts(bytes, salt)
    }

    pub fn from_parts(secret: [u8; 32], salt: String) -> ServerKeys {
        let secret = StaticSecret::from(secret);
        let public = STANDARD.encode(PublicKey::from(&secret).as_bytes());
        ServerKeys {
            secret,
            public,
            salt,
        }
    }

    /// The connection's cipher, from the client's base64 public key; `None` for a key that is
    /// not 32 bytes of base64 or that gives no shared secret (a low-order point).
    pub fn agree(&self, client_key: &str) -> Option<Cipher> {
        let raw = STANDARD.decode(client_key.trim()).ok()?;
        let bytes: [u8; 32] = raw.try_into().ok()?;
        let shared = self.secret.diffie_hellman(&PublicKey::from(bytes));
        if !shared.was_contributory() {
            return None;
        }
        let salt = self.salt.as_bytes();
        if salt.len() < 16 {
            return None;
        }
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&salt[..16]);
        Some(Cipher::new(session_key(shared.as_bytes()), iv))
    }
}

/// A connection's AES-128-CBC key, expanded once, and IV. Every RECV encrypts its payload and
/// its `msgKey` with it, so the key schedule is not redone per packet, and the fast paths below
/// write into buffers the caller or the thread keeps instead of allocating per step.
#[derive(Clone)]
pub struct Cipher {
    aes: Aes128,
    iv: [u8; 16],
}

/// Scratch space for encryption, reused by every connection a thread serves.
struct Scratch {
    plain: Vec<u8>,
    text: Vec<u8>,
}

/// A scratch buffer larger than this (a big message went through) is given back after use.
const SCRATCH_KEEP: usize = 64 * 1024;

thread_local! {
    static SCRATCH: RefCell<Scratch> = const {
        RefCell::new(Scratch {
            plain: Vec::new(),
            text: Vec::new(),
        })
    };
}

/// The length of the PKCS#7-padded ciphertext of `n` bytes.
fn padded_len(n: usize) -> usize {
    (n / 16 + 1) * 16
}

/// The length of the base64 text of the ciphertext of `n` bytes, as [`Cipher::encrypt_b64_to`]
/// appends it.
pub fn encrypted_b64_len(n: usize) -> usize {
    padded_len(n).div_ceil(3) * 4
}

fn hex_of(digest: &[u8]) -> [u8; 32] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, b) in digest.iter().take(16).enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
    }
    out
}

impl Cipher {
    pub fn new(key: [u8; 16], iv: [u8; 16]) -> Cipher {
        Cipher {
            aes: Aes128::new(&key.into()),
            iv,
        }
    }

    fn encryptor(&self) -> Encryptor {
        Encryptor::inner_iv_init(self.aes.clone(), &self.iv.into())
    }

    /// Encrypts `buf[..len]` in place (`buf` holds the padded length) and appends the base64 of
    /// the ciphertext to `out`.
    fn seal_b64(&self, buf: &mut Vec<u8>, len: usize, out: &mut Vec<u8>) {
        buf.resize(padded_len(len), 0);
        let Ok(ct) = self.encryptor().encrypt_padded_mut::<Pkcs7>(buf, len) else {
            unreachable!("the buffer holds the padded length");
        };
        let at = out.len();
        out.resize(at + encrypted_b64_len(len), 0);
        let written = STANDARD.encode_slice(ct, &mut out[at..]);
        debug_assert_eq!(written.ok(), Some(out.len() - at));
    }

    /// Appends the base64 of the ciphertext of `plain` to `out`.
    pub fn encrypt_b64_to(&self, plain: &[u8], out: &mut Vec<u8>) {
        with_scratch(|s| {
            s.plain.clear();
            s.plain.extend_from_slice(plain);
            self.seal_b64(&mut s.plain, plain.len(), out);
        });
    }

    /// Base64 of the ciphertext.
    pub fn encrypt_b64(&self, plain: &[u8]) -> String {
        let mut out = Vec::with_capacity(encrypted_b64_len(plain.len()));
        self.encrypt_b64_to(plain, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// The plaintext of base64 ciphertext, decrypted in `buf` (which keeps its allocation for
    /// the next call); `None` for anything that is not.
    pub fn decrypt_b64_in<'b>(&self, text: &[u8], buf: &'b mut Vec<u8>) -> Option<&'b [u8]> {
        buf.clear();
        STANDARD.decode_vec(text, buf).ok()?;
        if buf.is_empty() || !buf.len().is_multiple_of(16) {
            return None;
        }
        Decryptor::inner_iv_init(self.aes.clone(), &self.iv.into())
            .decrypt_padded_mut::<Pkcs7>(buf)
            .ok()
    }

    /// The plaintext of base64 ciphertext; `None` for anything that is not.
    pub fn decrypt_b64(&self, text: &[u8]) -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        let n = self.decrypt_b64_in(text, &mut buf)?.len();
        buf.truncate(n);
        Some(buf)
    }

    /// The `msgKey` (lower-case hex) of the verify string that is `parts` one after the other,
    /// without building the string.
    pub fn msg_key_of(&self, parts: &[&[u8]]) -> [u8; 32] {
        with_scratch(|s| {
            s.plain.clear();
            for p in parts {
                s.plain.extend_from_slice(p);
            }
            s.text.clear();
            let len = s.plain.len();
            self.seal_b64(&mut s.plain, len, &mut s.text);
            hex_of(&Md5::digest(&s.text))
        })
    }

    /// The `msgKey` of a verify string.
    pub fn msg_key(&self, verify: &str) -> String {
        let key = self.msg_key_of(&[verify.as_bytes()]);
        key.iter().map(|b| char::from(*b)).collect()
    }
}

fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with_borrow_mut(|s| {
        let r = f(s);
        for b in [&mut s.plain, &mut s.text] {
            if b.capacity() > SCRATCH_KEEP {
                *b = Vec::new();
            }
        }
        r
    })
}

/// SEND's verify string: clientSeq, clientMsgNo, channelID, channelType and the payload text.
pub fn send_verify(
    client_seq: u32,
    client_msg_no: &str,
    channel_id: &str,
    channel_type: u8,
    payload: &str,
) -> String {
    format!("{client_seq}{client_msg_no}{channel_id}{channel_type}{payload}")
}

/// RECV's verify string.
#[allow(clippy::too_many_arguments)]
pub fn recv_verify(
    message_id: i64,
    message_seq: u32,
    client_msg_no: &str,
    timestamp: u32,
    from_uid: &str,
    channel_id: &str,
    channel_type: u8,
    payload: &str,
) -> String {
    format!(
        "{message_id}{message_seq}{client_msg_no}{timestamp}{from_uid}{channel_id}{channel_type}{payload}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // The vectors below were computed with the SDK's own crypto libraries (curve25519-js,
    // crypto-js, md5-typescript) from the same inputs: server secret bytes 1..=32, client
    // secret bytes 33..=64, salt "0123456789abcdef".
    const CLIENT_PUBLIC: &str = "WGmv9FBUlzLLqu1eXfmzCm2jHLDldCutWtShp2jxpns=";
    const SERVER_PUBLIC: &str = "B6N8vBQgk8i3VdwbEOhstCY3StFqqFPtC9/AsrhtHHw=";
    const PAYLOAD: &str = "Xh10EPPP5rWxvUSjeRjAuIOvBiFp/tITLUMwANS1ecI=";

    fn keys() -> ServerKeys {
        let secret: [u8; 32] = std::array::from_fn(|i| i as u8 + 1);
        ServerKeys::from_parts(secret, "0123456789abcdef".into())
    }

    #[test]
    fn key_exchange_matches_the_sdk() {
        let k = keys();
        assert_eq!(k.public, SERVER_PUBLIC);
        let client: [u8; 32] = std::array::from_fn(|i| i as u8 + 33);
        let client_pub = STANDARD.encode(PublicKey::from(&StaticSecret::from(client)).as_bytes());
        assert_eq!(client_pub, CLIENT_PUBLIC);
        let c = k.agree(CLIENT_PUBLIC).unwrap();
        // md5("qE3Hw8jwWLGy3EzR6bXcCnmH+ItqlWTN4zkfxCEVnnc=") starts 8e65549ac3e59ba4.
        let shared = k
            .secret
            .diffie_hellman(&PublicKey::from(&StaticSecret::from(client)));
        assert_eq!(&session_key(shared.as_bytes()), b"8e65549ac3e59ba4");
        assert_eq!(&c.iv, b"0123456789abcdef");
        let same = Cipher::new(*b"8e65549ac3e59ba4", *b"0123456789abcdef");
        assert_eq!(c.encrypt_b64(b"x"), same.encrypt_b64(b"x"));
    }

    #[test]
    fn payload_and_msg_keys_match_the_sdk() {
        let c = keys().agree(CLIENT_PUBLIC).unwrap();
        assert_eq!(c.encrypt_b64(br#"{"type":1,"content":"hi"}"#), PAYLOAD);
        assert_eq!(
            c.encrypt_b64(r#"{"type":1,"content":"你好"}"#.as_bytes()),
            "Xh10EPPP5rWxvUSjeRjAuA9/yzMJT+Q1KS7co/XJuio="
        );
        assert_eq!(
            c.decrypt_b64(PAYLOAD.as_bytes()).unwrap(),
            br#"{"type":1,"content":"hi"}"#
        );
        let send = send_verify(1, "cmn1", "u2", 1, PAYLOAD);
        assert_eq!(send, format!("1cmn1u21{PAYLOAD}"));
        assert_eq!(c.msg_key(&send), "149884248ce2504eb16f86a3a61cf2f4");
        let recv = recv_verify(123, 4, "cmn1", 1_700_000_000, "u1", "u1", 1, PAYLOAD);
        assert_eq!(c.msg_key(&recv), "cc79db17ae469b6b0f48b5c087756164");
        // The verify string in pieces gives the same key as whole.
        let key = c.msg_key_of(&[
            b"123",
            b"4cmn11700000000u1",
            b"",
            b"u11",
            PAYLOAD.as_bytes(),
        ]);
        assert_eq!(&key, b"cc79db17ae469b6b0f48b5c087756164");
    }

    #[test]
    fn buffers_are_reused_and_large_inputs_round_trip() {
        let c = keys().agree(CLIENT_PUBLIC).unwrap();
        let mut buf = Vec::new();
        for n in [0usize, 1, 15, 16, 17, 47, 48, 100_000] {
            let plain: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            let mut text = b"prefix".to_vec();
            c.encrypt_b64_to(&plain, &mut text);
            assert_eq!(text.len(), 6 + encrypted_b64_len(n), "{n}");
            assert_eq!(&text[6..], c.encrypt_b64(&plain).as_bytes());
            assert_eq!(c.decrypt_b64_in(&text[6..], &mut buf), Some(&plain[..]));
            assert_eq!(
                c.msg_key_of(&[&plain]),
                c.msg_key_of(&[&plain[..n / 2], &plain[n / 2..]])
            );
        }
        // Another key's text does not decrypt to the same plaintext.
        let other = Cipher::new([1; 16], [2; 16]);
        let text = other.encrypt_b64(b"secret");
        assert_ne!(
            c.decrypt_b64(text.as_bytes()).as_deref(),
            Some(&b"secret"[..])
        );
    }

    #[test]
    fn bad_input_is_refused() {
        let k = keys();
        assert!(k.agree("not base64!").is_none());
        assert!(k.agree(&STANDARD.encode([1u8; 31])).is_none());
        // The all-zero point gives no shared secret.
        assert!(k.agree(&STANDARD.encode([0u8; 32])).is_none());
        let c = k.agree(CLIENT_PUBLIC).unwrap();
        assert!(c.decrypt_b64(b"").is_none());
        assert!(c.decrypt_b64(b"%%%").is_none());
        assert!(c
            .decrypt_b64(&STANDARD.encode([7u8; 15]).into_bytes())
            .is_none());
        // Sixteen random bytes almost never unpad; whatever they give, nothing panics.
        let _ = c.decrypt_b64(&STANDARD.encode([7u8; 16]).into_bytes());
        assert!(md5_hex(b"").starts_with("d41d8cd98f00b204"));
    }
}
