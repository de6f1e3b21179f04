//! WuKongIM's per-connection encryption (docs/wukongim.md, "Encryption").
//!
//! The client sends an X25519 public key in CONNECT; the server answers its own and a salt in
//! CONNACK. Both take the AES-128 key as the first 16 characters of the hex MD5 of the base64
//! of the shared secret (the characters' ASCII bytes are the key), and the IV as the salt's
//! first 16 characters. Payloads travel as base64 text of AES-128-CBC/PKCS#7 ciphertext. A
//! packet's `msgKey` is the hex MD5 of the base64 ciphertext of its verify string, which ties
//! the packet's fields to the connection's key.

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use md5::{Digest, Md5};
use rand::Rng;
use x25519_dalek::{PublicKey, StaticSecret};

type Encryptor = cbc::Encryptor<aes::Aes128>;
type Decryptor = cbc::Decryptor<aes::Aes128>;

/// Lower-case hex MD5. Every RECV computes one (its `msgKey`), so the digits come from a table,
/// not from the formatting machinery.
pub fn md5_hex(data: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digest = Md5::digest(data);
    let mut out = String::with_capacity(32);
    for b in digest.iter() {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
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
        let hex = md5_hex(STANDARD.encode(shared.as_bytes()).as_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&hex.as_bytes()[..16]);
        let salt = self.salt.as_bytes();
        if salt.len() < 16 {
            return None;
        }
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&salt[..16]);
        Some(Cipher { key, iv })
    }
}

/// A connection's AES-128-CBC key and IV.
#[derive(Clone)]
pub struct Cipher {
    key: [u8; 16],
    iv: [u8; 16],
}

impl Cipher {
    pub fn new(key: [u8; 16], iv: [u8; 16]) -> Cipher {
        Cipher { key, iv }
    }

    /// Base64 of the ciphertext.
    pub fn encrypt_b64(&self, plain: &[u8]) -> String {
        let ct = Encryptor::new(&self.key.into(), &self.iv.into())
            .encrypt_padded_vec_mut::<Pkcs7>(plain);
        STANDARD.encode(ct)
    }

    /// The plaintext of base64 ciphertext; `None` for anything that is not.
    pub fn decrypt_b64(&self, text: &[u8]) -> Option<Vec<u8>> {
        let ct = STANDARD.decode(text).ok()?;
        if ct.is_empty() || ct.len() % 16 != 0 {
            return None;
        }
        Decryptor::new(&self.key.into(), &self.iv.into())
            .decrypt_padded_vec_mut::<Pkcs7>(&ct)
            .ok()
    }

    /// The `msgKey` of a verify string.
    pub fn msg_key(&self, verify: &str) -> String {
        md5_hex(self.encrypt_b64(verify.as_bytes()).as_bytes())
    }
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
        assert_eq!(&c.key, b"8e65549ac3e59ba4");
        assert_eq!(&c.iv, b"0123456789abcdef");
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
