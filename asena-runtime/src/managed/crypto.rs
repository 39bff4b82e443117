//! Per-client encryption of managed services: a P-256 key agreement when the client
//! authenticates, then AES-256-GCM for every message to (and, if the client likes, from) it.
//! RustCrypto does the cryptography (`p256`, `hkdf`, `sha2`, `aes-gcm`); this module only
//! wires it to the protocol.
//!
//! # The protocol
//!
//! 1. The client makes a P-256 key pair and sends its public key with its credentials:
//!    `{"event":"authenticate","data":{.., "publicKey": base64(SEC1 uncompressed, 65 bytes)}}`.
//! 2. Once the service's `authenticate` admits the client, the server makes an ephemeral
//!    P-256 key pair and a random 16-byte salt, and derives the 32-byte AES key as
//!    `HKDF-SHA256(ikm = ECDH shared secret (the x coordinate), salt, info = "asena-managed-v1")`.
//! 3. `connected` (in plain text) carries the server's half:
//!    `{"id", "userId", "time", "serverPublicKey": base64(SEC1 uncompressed), "salt": base64}`.
//!    The client derives the same key.
//! 4. From then on every message to the client, system events included, is
//!    `{"event":"encrypted","data":{"iv": base64(12 random bytes), "payload": base64(ciphertext
//!    and 16-byte tag)}}`, the AES-256-GCM encryption (no associated data) of the plain
//!    `{"event","data"}` JSON. The client may send the same shape (any event, `heartbeat`
//!    too); the server decrypts it and handles the inner envelope as if it had come plain. A
//!    message that does not decrypt gets `error` "Decryption failed" (and counts as an
//!    invalid message); the socket stays open.
//!
//! Base64 is the standard alphabet with padding. `publicKey` that is not base64 of a
//! 65-byte uncompressed point of P-256 closes the socket with 4004 "Encryption required",
//! and so does a missing one when the service sets
//! [`require_encryption`](super::ManagedOptions::require_encryption); without that option a
//! client that sends no key stays plain. Nonces are random, so one key should not seal more
//! than 2³² messages: a connection that needs more should reconnect.

use aes_gcm::aead::common::getrandom;
use aes_gcm::aead::{Aead, Generate, KeyInit, Nonce};
use aes_gcm::{Aes256Gcm, Key};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hkdf::Hkdf;
use p256::PublicKey;
use p256::ecdh::EphemeralSecret;
use p256::elliptic_curve::zeroize::Zeroize;
use serde_json::{Value, json};
use sha2::Sha256;

use super::client::{ManagedClient, OutboundTransform};

/// HKDF's `info`: binds the key to this protocol and its version.
const INFO: &[u8] = b"asena-managed-v1";
/// Bytes of the HKDF salt.
const SALT_LEN: usize = 16;
/// Bytes of a SEC1 uncompressed P-256 point (`0x04 || x || y`).
const PUBLIC_KEY_LEN: usize = 65;

/// Why a key agreement or a message failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CryptoError {
    /// No `publicKey`, and the service requires encryption.
    #[error("no `publicKey`, and the service requires encryption")]
    KeyMissing,
    /// `publicKey` is not a string.
    #[error("`publicKey` is not a string")]
    KeyNotAString,
    /// `publicKey` is not standard base64.
    #[error("`publicKey` is not base64")]
    KeyBase64(#[source] base64::DecodeError),
    /// `publicKey` is not 65 bytes starting with 0x04.
    #[error("`publicKey` is not a SEC1 uncompressed point (65 bytes starting with 0x04)")]
    KeyShape,
    /// `publicKey` has the right shape but is not a point of P-256.
    #[error("`publicKey` is not a point of P-256")]
    KeyNotOnCurve,
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Rng(#[source] getrandom::Error),
    /// An `encrypted` message without base64 `iv` (12 bytes) and `payload`.
    #[error("`encrypted` needs base64 `iv` (12 bytes) and `payload`")]
    Envelope,
    /// AES-GCM refused: a wrong key, or a tampered nonce, ciphertext or tag.
    #[error("the message does not decrypt (wrong key or tampered)")]
    Aead,
    /// The service gave the client an outbound transformer of its own before the key
    /// agreement; the two cannot both apply.
    #[error("the client already has an outbound transformer")]
    TransformTaken,
}

/// The key agreement of `authenticate`, once the service admitted the client: with a
/// `publicKey` the client becomes encrypted and this returns the server's half for
/// `connected`; without one it stays plain (`None`) unless encryption is `required`. `Err`
/// closes the client with 4004.
pub(crate) fn negotiate(
    client: &ManagedClient,
    public_key: Option<&Value>,
    required: bool,
) -> Result<Option<Handshake>, CryptoError> {
    let Some(public_key) = public_key else {
        return if required {
            Err(CryptoError::KeyMissing)
        } else {
            Ok(None)
        };
    };
    let (session, handshake) = Session::agree(public_key)?;
    if !client.set_encryption(std::sync::Arc::new(session)) {
        return Err(CryptoError::TransformTaken);
    }
    Ok(Some(handshake))
}

/// The AES-256-GCM key of one encrypted client. As its [`OutboundTransform`] it seals
/// every delivery into an `encrypted` envelope.
pub(crate) struct Session {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

/// The server's half of the key agreement, for `connected`.
#[derive(Debug)]
pub(crate) struct Handshake {
    /// Base64 of our ephemeral public key (SEC1 uncompressed).
    pub(crate) server_public_key: String,
    /// Base64 of the HKDF salt.
    pub(crate) salt: String,
}

impl Session {
    /// Agrees a key with the client's `publicKey` (the value from `authenticate`'s data): an
    /// ephemeral key pair and a salt of ours, ECDH, HKDF-SHA256.
    pub(crate) fn agree(public_key: &Value) -> Result<(Session, Handshake), CryptoError> {
        let encoded = public_key.as_str().ok_or(CryptoError::KeyNotAString)?;
        let bytes = STANDARD.decode(encoded).map_err(CryptoError::KeyBase64)?;
        if bytes.len() != PUBLIC_KEY_LEN || bytes[0] != 0x04 {
            return Err(CryptoError::KeyShape);
        }
        let theirs = PublicKey::from_sec1_bytes(&bytes).map_err(|_| CryptoError::KeyNotOnCurve)?;
        let ours = EphemeralSecret::try_generate().map_err(CryptoError::Rng)?;
        let salt = <[u8; SALT_LEN]>::try_generate().map_err(CryptoError::Rng)?;
        let shared = ours.diffie_hellman(&theirs);
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(Some(&salt), shared.raw_secret_bytes())
            .expand(INFO, &mut key)
            .expect("invariant: 32 bytes is a valid HKDF-SHA256 output length");
        let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(key));
        key.zeroize();
        let handshake = Handshake {
            server_public_key: STANDARD.encode(PublicKey::from(&ours).to_sec1_bytes()),
            salt: STANDARD.encode(salt),
        };
        Ok((Session { cipher }, handshake))
    }

    /// The `encrypted` envelope of `plaintext`, as JSON text.
    pub(crate) fn seal(&self, plaintext: &[u8]) -> Result<String, CryptoError> {
        let nonce = Nonce::<Aes256Gcm>::try_generate().map_err(CryptoError::Rng)?;
        let payload = self
            .cipher
            .encrypt(&nonce, plaintext)
            .map_err(|_| CryptoError::Aead)?;
        Ok(json!({
            "event": "encrypted",
            "data": {"iv": STANDARD.encode(nonce), "payload": STANDARD.encode(payload)},
        })
        .to_string())
    }

    /// The plaintext of an `encrypted` envelope's data (`{"iv", "payload"}`).
    pub(crate) fn open(&self, data: &Value) -> Result<Vec<u8>, CryptoError> {
        let field = |name: &str| {
            data[name]
                .as_str()
                .and_then(|s| STANDARD.decode(s).ok())
                .ok_or(CryptoError::Envelope)
        };
        let iv = field("iv")?;
        let payload = field("payload")?;
        let nonce =
            Nonce::<Aes256Gcm>::try_from(iv.as_slice()).map_err(|_| CryptoError::Envelope)?;
        self.cipher
            .decrypt(&nonce, payload.as_slice())
            .map_err(|_| CryptoError::Aead)
    }
}

impl OutboundTransform for Session {
    fn transform(&self, plaintext: &[u8]) -> Result<String, crate::BoxError> {
        Ok(self.seal(plaintext)?)
    }
}

#[cfg(test)]
mod tests {
    use p256::SecretKey;
    use p256::elliptic_curve::sec1::ToSec1Point;

    use super::*;

    /// The client's side: a key pair, and the key derived from `connected`'s half.
    fn client_key(secret: &SecretKey, handshake: &Handshake) -> Aes256Gcm {
        let server = STANDARD
            .decode(&handshake.server_public_key)
            .expect("base64");
        assert_eq!(server.len(), PUBLIC_KEY_LEN);
        let server = PublicKey::from_sec1_bytes(&server).expect("a point");
        let salt = STANDARD.decode(&handshake.salt).expect("base64");
        assert_eq!(salt.len(), SALT_LEN);
        let shared = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), server.as_affine());
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(Some(&salt), shared.raw_secret_bytes())
            .expand(INFO, &mut key)
            .expect("32 bytes");
        Aes256Gcm::new(&Key::<Aes256Gcm>::from(key))
    }

    fn public_key_b64(secret: &SecretKey) -> Value {
        Value::String(STANDARD.encode(secret.public_key().to_sec1_bytes()))
    }

    #[test]
    fn both_sides_derive_the_same_key() {
        let secret = SecretKey::generate();
        let (session, handshake) = Session::agree(&public_key_b64(&secret)).expect("agreed");
        let client = client_key(&secret, &handshake);

        // Server to client.
        let sealed: Value =
            serde_json::from_str(&session.seal(br#"{"event":"x"}"#).expect("sealed"))
                .expect("json");
        assert_eq!(sealed["event"], "encrypted");
        let iv = STANDARD
            .decode(sealed["data"]["iv"].as_str().expect("iv"))
            .expect("b64");
        let payload = STANDARD
            .decode(sealed["data"]["payload"].as_str().expect("payload"))
            .expect("b64");
        let nonce = Nonce::<Aes256Gcm>::try_from(iv.as_slice()).expect("12 bytes");
        assert_eq!(
            client.decrypt(&nonce, payload.as_slice()).expect("opens"),
            br#"{"event":"x"}"#
        );

        // Client to server, then tampered.
        let nonce = Nonce::<Aes256Gcm>::generate();
        let mut payload = client.encrypt(&nonce, &b"hello"[..]).expect("sealed");
        let data = |payload: &[u8]| json!({"iv": STANDARD.encode(nonce), "payload": STANDARD.encode(payload)});
        assert_eq!(session.open(&data(&payload)).expect("opens"), b"hello");
        payload[0] ^= 1;
        assert!(matches!(
            session.open(&data(&payload)),
            Err(CryptoError::Aead)
        ));
        assert!(matches!(
            session.open(&json!({"iv": "AAAA"})),
            Err(CryptoError::Envelope)
        ));
    }

    #[test]
    fn malformed_public_keys_are_refused() {
        let secret = SecretKey::generate();
        let compressed = STANDARD.encode(secret.public_key().to_sec1_point(true).as_bytes());
        let mut off_curve = vec![0x04];
        off_curve.extend([0x01; 64]);
        for (key, expected) in [
            (json!(5), "not a string"),
            (json!("%%%"), "not base64"),
            (json!(compressed), "SEC1 uncompressed"),
            (json!(STANDARD.encode(off_curve)), "not a point"),
        ] {
            let error = Session::agree(&key).expect_err("refused").to_string();
            assert!(error.contains(expected), "{key}: {error}");
        }
    }
}
