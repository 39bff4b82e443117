//! The managed protocol's per-client encryption, both ends: a P-256 key agreement before
//! the client authenticates, then AES-256-GCM for every message both ways. RustCrypto does
//! the cryptography (`p256`, `hkdf`, `sha2`, `aes-gcm`); this module holds the protocol
//! around it, shared by the server (`asena-runtime`) and the typed client (`asena-client`).
//! Behind the `crypto` feature.
//!
//! # The channel
//!
//! 1. The client makes a P-256 key pair ([`KeyOffer::new`]) and, as its first message, sends
//!    `{"event":"encrypt","data":{"publicKey": base64(SEC1 uncompressed, 65 bytes)}}`.
//! 2. The server ([`agree`]) makes an ephemeral P-256 key pair and a random 16-byte salt,
//!    answers (in plain text, the last plain message of the connection)
//!    `{"event":"encrypted","data":{"serverPublicKey": base64(SEC1 uncompressed), "salt": base64}}`,
//!    and both sides derive two 32-byte AES keys from the ECDH shared secret (its x
//!    coordinate) with HKDF-SHA256 and that salt: info `asena-managed-v2 client-to-server`
//!    for what the client sends, `asena-managed-v2 server-to-client` for what it receives
//!    ([`KeyOffer::complete`] on the client).
//! 3. From then on every message, both ways, is
//!    `{"event":"encrypted","data":{"iv": base64(12 bytes), "payload": base64(ciphertext and
//!    16-byte tag)}}`: the AES-256-GCM encryption of the plain message (for an event, its
//!    `{"event","data"}` JSON). The 12-byte nonce is a 4-byte direction tag (`00 00 00 01`
//!    client to server, `00 00 00 02` server to client) followed by a 64-bit big-endian
//!    counter that starts at 0 in each direction and grows by one per message; the
//!    associated data is the nonce itself, so direction and counter are bound to the
//!    ciphertext twice over (key and associated data).
//! 4. The receiver accepts exactly the next counter of its direction
//!    ([`SealedChannel::open`]). A message that is not the next one (replayed, reordered,
//!    dropped in between), was sent the other way (reflected), is cut short or altered, or
//!    is not `encrypted` at all, breaks the channel: the receiving end closes the socket with
//!    [`DECRYPTION_FAILED`](crate::close_code::DECRYPTION_FAILED) (4005).
//!
//! Base64 is the standard alphabet with padding. A `publicKey` that is not base64 of a
//! 65-byte uncompressed point of P-256 is refused ([`CryptoError`]); the server then closes
//! with 4004 "Encryption required".
//!
//! # Ignis's key exchange
//!
//! [`Flow::Ignis`]: the client sends `publicKey` inside `authenticate`, `connected` carries
//! `serverPublicKey` and `salt` in plain text, one key (HKDF info `asena-managed-v1`) serves
//! both directions, nonces are random and nothing is bound as associated data. It protects
//! against a passive observer of later messages only; replays and reflections are not
//! detected.
//!
//! ```
//! use asena_protocol::crypto::{agree, Flow, KeyOffer, Side};
//!
//! let offer = KeyOffer::new()?;                                   // the client
//! let (server, handshake) = agree(&offer.public_key().into(), Flow::Channel)?;
//! let client = offer.complete(&handshake.to_json())?;
//! let sealed = client.seal(br#"{"event":"authenticate","data":{"token":"t"}}"#)?;
//! let sealed: serde_json::Value = serde_json::from_str(&sealed)?;
//! assert_eq!(sealed["event"], "encrypted");
//! let plain = server.open(&sealed["data"])?;
//! assert!(plain.starts_with(br#"{"event":"authenticate""#));
//! assert!(server.open(&sealed["data"]).is_err());                 // a replay
//! # let _ = Side::Client;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Mutex;

use aes_gcm::aead::common::getrandom;
use aes_gcm::aead::{Aead, Generate, KeyInit, Nonce, Payload};
use aes_gcm::{Aes256Gcm, Key};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hkdf::Hkdf;
use p256::PublicKey;
use p256::ecdh::{EphemeralSecret, SharedSecret};
use p256::elliptic_curve::zeroize::Zeroize;
use serde_json::{Value, json};
use sha2::Sha256;

/// HKDF's `info` of the channel's client-to-server key.
const INFO_C2S: &[u8] = b"asena-managed-v2 client-to-server";
/// HKDF's `info` of the channel's server-to-client key.
const INFO_S2C: &[u8] = b"asena-managed-v2 server-to-client";
/// HKDF's `info` of Ignis's single key.
const INFO_IGNIS: &[u8] = b"asena-managed-v1";
/// The nonce's direction tag of client-to-server messages.
const TAG_C2S: [u8; 4] = [0, 0, 0, 1];
/// The nonce's direction tag of server-to-client messages.
const TAG_S2C: [u8; 4] = [0, 0, 0, 2];
/// Bytes of the HKDF salt.
const SALT_LEN: usize = 16;
/// Bytes of a SEC1 uncompressed P-256 point (`0x04 || x || y`).
const PUBLIC_KEY_LEN: usize = 65;

/// Why a key agreement or a message failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// No `publicKey`, and the service requires encryption.
    #[error("no `publicKey`, and the service requires encryption")]
    KeyMissing,
    /// `publicKey` (or `serverPublicKey`) is not a string.
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
    /// The server's `encrypted` answer has no base64 `salt` of 16 bytes.
    #[error("`salt` is not base64 of 16 bytes")]
    Salt,
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Rng(#[source] getrandom::Error),
    /// An `encrypted` message without base64 `iv` (12 bytes) and `payload`.
    #[error("`encrypted` needs base64 `iv` (12 bytes) and `payload`")]
    Envelope,
    /// The nonce is not the next one of this direction: replayed, reordered, reflected.
    #[error("the message is not the next one of its direction (replayed, reordered or reflected)")]
    OutOfOrder,
    /// AES-GCM refused: a wrong key, or a tampered nonce, ciphertext or tag.
    #[error("the message does not decrypt (wrong key, truncated or tampered)")]
    Aead,
    /// A direction's 2⁶⁴ messages are spent.
    #[error("the channel's message counter is exhausted")]
    Exhausted,
}

/// Which key exchange a client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// The channel: `encrypt` first, a key and a counter per direction.
    Channel,
    /// Ignis's: `publicKey` in `authenticate`, one key, random nonces.
    Ignis,
}

/// The server's half of the key agreement, for its answer.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// Base64 of the server's ephemeral public key (SEC1 uncompressed).
    pub server_public_key: String,
    /// Base64 of the HKDF salt.
    pub salt: String,
}

impl Handshake {
    /// `{"serverPublicKey", "salt"}`: the data of `encrypted` (or, Ignis's way, fields of
    /// `connected`).
    pub fn to_json(&self) -> Value {
        json!({"serverPublicKey": self.server_public_key, "salt": self.salt})
    }
}

/// The server's end of a key agreement with the client's `publicKey` (the JSON value it
/// sent): an ephemeral key pair and a salt of ours, ECDH, HKDF-SHA256. The handshake is what
/// the client needs to derive the same keys.
pub fn agree(public_key: &Value, flow: Flow) -> Result<(Session, Handshake), CryptoError> {
    let theirs = parse_public_key(public_key)?;
    let ours = EphemeralSecret::try_generate().map_err(CryptoError::Rng)?;
    let salt = <[u8; SALT_LEN]>::try_generate().map_err(CryptoError::Rng)?;
    let hkdf = Hkdf::<Sha256>::new(Some(&salt), ours.diffie_hellman(&theirs).raw_secret_bytes());
    let session = match flow {
        Flow::Channel => Inner::Channel(SealedChannel::new(
            derive(&hkdf, INFO_C2S),
            derive(&hkdf, INFO_S2C),
            Side::Server,
        )),
        Flow::Ignis => Inner::Ignis(derive(&hkdf, INFO_IGNIS)),
    };
    let handshake = Handshake {
        server_public_key: STANDARD.encode(PublicKey::from(&ours).to_sec1_bytes()),
        salt: STANDARD.encode(salt),
    };
    Ok((
        Session {
            inner: Box::new(session),
        },
        handshake,
    ))
}

/// A P-256 public key from its base64 SEC1 uncompressed form (a JSON string).
fn parse_public_key(key: &Value) -> Result<PublicKey, CryptoError> {
    let encoded = key.as_str().ok_or(CryptoError::KeyNotAString)?;
    let bytes = STANDARD.decode(encoded).map_err(CryptoError::KeyBase64)?;
    if bytes.len() != PUBLIC_KEY_LEN || bytes[0] != 0x04 {
        return Err(CryptoError::KeyShape);
    }
    PublicKey::from_sec1_bytes(&bytes).map_err(|_| CryptoError::KeyNotOnCurve)
}

/// One AES-256 key of `hkdf`, for `info`.
fn derive(hkdf: &Hkdf<Sha256>, info: &[u8]) -> Aes256Gcm {
    let mut key = [0u8; 32];
    hkdf.expand(info, &mut key)
        .expect("invariant: 32 bytes is a valid HKDF-SHA256 output length");
    let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(key));
    key.zeroize();
    cipher
}

/// The client's half of the channel's key agreement (`encrypt`): an ephemeral P-256 key
/// pair, kept until the server's `encrypted` answer completes it.
#[doc(alias = "encrypt")]
pub struct KeyOffer {
    secret: EphemeralSecret,
    public_key: String,
}

impl KeyOffer {
    /// A fresh key pair from the operating system's random number generator.
    pub fn new() -> Result<KeyOffer, CryptoError> {
        let secret = EphemeralSecret::try_generate().map_err(CryptoError::Rng)?;
        let public_key = STANDARD.encode(PublicKey::from(&secret).to_sec1_bytes());
        Ok(KeyOffer { secret, public_key })
    }

    /// Base64 of the public key (SEC1 uncompressed): `encrypt`'s `publicKey`.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// The `encrypt` message, as JSON text.
    pub fn message(&self) -> String {
        json!({"event": "encrypt", "data": {"publicKey": self.public_key}}).to_string()
    }

    /// The client's end of the channel from the data of the server's `encrypted` answer
    /// (`{"serverPublicKey", "salt"}`).
    pub fn complete(self, answer: &Value) -> Result<SealedChannel, CryptoError> {
        let server = parse_public_key(answer.get("serverPublicKey").unwrap_or(&Value::Null))?;
        let salt = answer
            .get("salt")
            .and_then(Value::as_str)
            .and_then(|s| STANDARD.decode(s).ok())
            .filter(|s| s.len() == SALT_LEN)
            .ok_or(CryptoError::Salt)?;
        let shared: SharedSecret = self.secret.diffie_hellman(&server);
        let hkdf = Hkdf::<Sha256>::new(Some(&salt), shared.raw_secret_bytes());
        Ok(SealedChannel::new(
            derive(&hkdf, INFO_C2S),
            derive(&hkdf, INFO_S2C),
            Side::Client,
        ))
    }
}

impl std::fmt::Debug for KeyOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyOffer")
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

/// The server's keys of one encrypted client: the channel's, or Ignis's single key.
pub struct Session {
    inner: Box<Inner>,
}

#[allow(
    clippy::large_enum_variant,
    reason = "boxed as a whole by `Session`, the only holder"
)]
enum Inner {
    Channel(SealedChannel),
    Ignis(Aes256Gcm),
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match *self.inner {
            Inner::Channel(_) => "Session::Channel",
            Inner::Ignis(_) => "Session::Ignis",
        })
    }
}

impl Session {
    /// Which key exchange made this session.
    pub fn flow(&self) -> Flow {
        match *self.inner {
            Inner::Channel(_) => Flow::Channel,
            Inner::Ignis(_) => Flow::Ignis,
        }
    }

    /// The channel's end, for a session of [`Flow::Channel`].
    pub fn channel(&self) -> Option<&SealedChannel> {
        match &*self.inner {
            Inner::Channel(channel) => Some(channel),
            Inner::Ignis(_) => None,
        }
    }

    /// Seals `plaintext` into an `encrypted` envelope (JSON text) and hands it to `push`, in
    /// the order of the counter: the next message is sealed only after `push` returned, and
    /// the counter moves on only when `push` succeeded (a message the queue refused is not a
    /// gap the client would have to skip).
    pub fn seal_then<E>(
        &self,
        plaintext: &[u8],
        push: impl FnOnce(String) -> Result<(), E>,
    ) -> Result<Result<(), E>, CryptoError> {
        match &*self.inner {
            Inner::Channel(channel) => channel.seal_then(plaintext, push),
            Inner::Ignis(cipher) => {
                let nonce = Nonce::<Aes256Gcm>::try_generate().map_err(CryptoError::Rng)?;
                let payload = cipher
                    .encrypt(&nonce, plaintext)
                    .map_err(|_| CryptoError::Aead)?;
                Ok(push(envelope(&nonce, &payload)))
            }
        }
    }

    /// The plaintext of an `encrypted` envelope's data (`{"iv", "payload"}`) from the client.
    pub fn open(&self, data: &Value) -> Result<Vec<u8>, CryptoError> {
        match &*self.inner {
            Inner::Channel(channel) => channel.open(data),
            Inner::Ignis(cipher) => {
                let (iv, payload) = fields(data)?;
                let nonce = Nonce::<Aes256Gcm>::try_from(iv.as_slice())
                    .map_err(|_| CryptoError::Envelope)?;
                cipher
                    .decrypt(&nonce, payload.as_slice())
                    .map_err(|_| CryptoError::Aead)
            }
        }
    }
}

/// `{"event":"encrypted","data":{"iv","payload"}}` as JSON text.
fn envelope(nonce: &[u8], payload: &[u8]) -> String {
    json!({
        "event": "encrypted",
        "data": {"iv": STANDARD.encode(nonce), "payload": STANDARD.encode(payload)},
    })
    .to_string()
}

/// The decoded `iv` and `payload` of an `encrypted` message's data.
fn fields(data: &Value) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    let field = |name: &str| {
        data.get(name)
            .and_then(Value::as_str)
            .and_then(|s| STANDARD.decode(s).ok())
            .ok_or(CryptoError::Envelope)
    };
    Ok((field("iv")?, field("payload")?))
}

/// Which end of a channel this is: it seals with its own direction's key and tag, and
/// opens the other's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The server's end: seals server-to-client, opens client-to-server.
    Server,
    /// The client's end: seals client-to-server, opens server-to-client.
    Client,
}

/// One direction of a channel: its key, nonce tag and next counter.
struct Direction {
    cipher: Aes256Gcm,
    tag: [u8; 4],
    next: u64,
}

impl Direction {
    /// The direction tagged `tag`, at counter 0.
    fn new(cipher: Aes256Gcm, tag: [u8; 4]) -> Direction {
        Direction {
            cipher,
            tag,
            next: 0,
        }
    }

    /// The nonce (and associated data) of the next message: tag, then counter.
    fn nonce(&self) -> [u8; 12] {
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&self.tag);
        nonce[4..].copy_from_slice(&self.next.to_be_bytes());
        nonce
    }

    /// `aead` (AES-GCM's encryption or decryption) of the next message's `msg`, under its
    /// nonce, which is its associated data too; returns the nonce with the output.
    fn crypt(
        &self,
        msg: &[u8],
        aead: impl FnOnce(
            &Aes256Gcm,
            &Nonce<Aes256Gcm>,
            Payload<'_, '_>,
        ) -> aes_gcm::aead::Result<Vec<u8>>,
    ) -> Result<([u8; 12], Vec<u8>), CryptoError> {
        let nonce = self.nonce();
        let output = aead(
            &self.cipher,
            &Nonce::<Aes256Gcm>::from(nonce),
            Payload { msg, aad: &nonce },
        )
        .map_err(|_| CryptoError::Aead)?;
        Ok((nonce, output))
    }

    /// Moves to the next counter.
    fn advance(&mut self) -> Result<(), CryptoError> {
        self.next = self.next.checked_add(1).ok_or(CryptoError::Exhausted)?;
        Ok(())
    }
}

/// One end of the channel (see the [module docs](self)): a key, tag and counter per
/// direction. Sealing and opening may happen from different threads.
pub struct SealedChannel {
    send: Mutex<Direction>,
    recv: Mutex<Direction>,
}

impl std::fmt::Debug for SealedChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedChannel").finish_non_exhaustive()
    }
}

impl SealedChannel {
    /// The end `side` from the two keys.
    fn new(c2s: Aes256Gcm, s2c: Aes256Gcm, side: Side) -> SealedChannel {
        let c2s = Direction::new(c2s, TAG_C2S);
        let s2c = Direction::new(s2c, TAG_S2C);
        let (send, recv) = match side {
            Side::Server => (s2c, c2s),
            Side::Client => (c2s, s2c),
        };
        SealedChannel {
            send: Mutex::new(send),
            recv: Mutex::new(recv),
        }
    }

    /// The end `side` from two fixed 32-byte keys (client-to-server, server-to-client), for
    /// tests and fuzzing: a real channel's keys come from [`agree`] and [`KeyOffer`].
    pub fn from_keys(c2s: [u8; 32], s2c: [u8; 32], side: Side) -> SealedChannel {
        let cipher = |k: [u8; 32]| Aes256Gcm::new(&Key::<Aes256Gcm>::from(k));
        SealedChannel::new(cipher(c2s), cipher(s2c), side)
    }

    /// See [`Session::seal_then`].
    pub fn seal_then<E>(
        &self,
        plaintext: &[u8],
        push: impl FnOnce(String) -> Result<(), E>,
    ) -> Result<Result<(), E>, CryptoError> {
        let mut send = self.send.lock().unwrap_or_else(|p| p.into_inner());
        if send.next == u64::MAX {
            return Err(CryptoError::Exhausted);
        }
        let (nonce, payload) = send.crypt(plaintext, |cipher, nonce, payload| {
            cipher.encrypt(nonce, payload)
        })?;
        let pushed = push(envelope(&nonce, &payload));
        if pushed.is_ok() {
            send.advance()?;
        }
        Ok(pushed)
    }

    /// `plaintext` sealed as the next message: an `encrypted` message's JSON text.
    pub fn seal(&self, plaintext: &[u8]) -> Result<String, CryptoError> {
        let mut sealed = String::new();
        self.seal_then(plaintext, |text| {
            sealed = text;
            Ok::<(), std::convert::Infallible>(())
        })?
        .unwrap_or_else(|never| match never {});
        Ok(sealed)
    }

    /// The plaintext of the next message, from an `encrypted` message's data
    /// (`{"iv", "payload"}`); an error for anything but exactly the next message of the
    /// other direction.
    pub fn open(&self, data: &Value) -> Result<Vec<u8>, CryptoError> {
        let (iv, payload) = fields(data)?;
        let mut recv = self.recv.lock().unwrap_or_else(|p| p.into_inner());
        if iv.len() != 12 {
            return Err(CryptoError::Envelope);
        }
        if iv != recv.nonce() {
            return Err(CryptoError::OutOfOrder);
        }
        let (_, plain) = recv.crypt(&payload, |cipher, nonce, payload| {
            cipher.decrypt(nonce, payload)
        })?;
        recv.advance()?;
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use p256::SecretKey;
    use p256::elliptic_curve::sec1::ToSec1Point;
    use proptest::prelude::*;

    use super::*;

    fn channel_pair(c2s: [u8; 32], s2c: [u8; 32]) -> (SealedChannel, SealedChannel) {
        (
            SealedChannel::from_keys(c2s, s2c, Side::Server),
            SealedChannel::from_keys(c2s, s2c, Side::Client),
        )
    }

    fn sealed_data(text: &str) -> Value {
        let sealed: Value = serde_json::from_str(text).expect("json");
        assert_eq!(sealed["event"], "encrypted");
        sealed["data"].clone()
    }

    #[test]
    fn both_ends_derive_the_same_keys() {
        let offer = KeyOffer::new().expect("a key");
        let (session, handshake) =
            agree(&Value::from(offer.public_key()), Flow::Channel).expect("agreed");
        let server = session.channel().expect("a channel");
        let client = offer.complete(&handshake.to_json()).expect("completed");
        for i in 0..3u8 {
            let up = client.seal(&[i]).expect("sealed");
            assert_eq!(server.open(&sealed_data(&up)).expect("opens"), [i]);
            let down = server.seal(&[i, i]).expect("sealed");
            assert_eq!(client.open(&sealed_data(&down)).expect("opens"), [i, i]);
        }
    }

    #[test]
    fn the_ignis_flow_opens_any_nonce_once_keys_agree() {
        let (session, _) = agree(
            &Value::from(KeyOffer::new().expect("a key").public_key()),
            Flow::Ignis,
        )
        .expect("agreed");
        assert_eq!(session.flow(), Flow::Ignis);
        assert!(session.channel().is_none());
        let mut sealed = String::new();
        session
            .seal_then(b"x", |text| {
                sealed = text;
                Ok::<(), ()>(())
            })
            .expect("sealed")
            .expect("pushed");
        // Its own messages use its one key both ways.
        assert_eq!(session.open(&sealed_data(&sealed)).expect("opens"), b"x");
    }

    #[test]
    fn a_bad_answer_to_encrypt_is_refused() {
        let offer = || KeyOffer::new().expect("a key");
        let (_, handshake) = agree(&Value::from(offer().public_key()), Flow::Channel).expect("ok");
        let mut no_salt = handshake.to_json();
        no_salt["salt"] = "AAAA".into();
        assert!(matches!(offer().complete(&no_salt), Err(CryptoError::Salt)));
        assert!(matches!(
            offer().complete(&json!({"salt": handshake.salt})),
            Err(CryptoError::KeyNotAString)
        ));
    }

    #[test]
    fn the_counter_waits_for_a_successful_push() {
        let (server, client) = channel_pair([1; 32], [2; 32]);
        let refused = server.seal_then(b"lost", |_| Err::<(), ()>(()));
        assert!(matches!(refused, Ok(Err(()))));
        let next = server.seal(b"next").expect("sealed");
        assert_eq!(client.open(&sealed_data(&next)).expect("opens"), b"next");
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
            let error = agree(&key, Flow::Channel).expect_err("refused").to_string();
            assert!(error.contains(expected), "{key}: {error}");
        }
    }

    /// What an attacker can do to a stream of sealed client messages.
    #[derive(Debug, Clone)]
    enum Attack {
        /// Send message `i` again after it was accepted.
        Replay(usize),
        /// Send message `i + 1` before message `i`.
        Reorder(usize),
        /// Send the server's own message back as the client's.
        Reflect,
        /// Cut the payload after `n` bytes.
        Truncate(usize, usize),
        /// Flip one bit of the payload.
        Tamper(usize, usize, u8),
        /// Flip one bit of the nonce.
        TamperIv(usize, usize, u8),
    }

    fn attack() -> impl Strategy<Value = Attack> {
        prop_oneof![
            (0..4usize).prop_map(Attack::Replay),
            (0..3usize).prop_map(Attack::Reorder),
            Just(Attack::Reflect),
            (0..4usize, 0..64usize).prop_map(|(i, n)| Attack::Truncate(i, n)),
            (0..4usize, 0..64usize, 0..8u8).prop_map(|(i, at, b)| Attack::Tamper(i, at, b)),
            (0..4usize, 0..12usize, 0..8u8).prop_map(|(i, at, b)| Attack::TamperIv(i, at, b)),
        ]
    }

    fn decoded(data: &Value, name: &str) -> Vec<u8> {
        STANDARD
            .decode(data[name].as_str().expect("a string"))
            .expect("base64")
    }

    fn with(data: &Value, iv: &[u8], payload: &[u8]) -> Value {
        let mut data = data.clone();
        data["iv"] = STANDARD.encode(iv).into();
        data["payload"] = STANDARD.encode(payload).into();
        data
    }

    proptest! {
        /// Honest messages open in order; every attack is refused at the point it is made
        /// (and the messages before it opened).
        #[test]
        fn attacks_on_the_framing_are_refused(
            messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..48), 5),
            attack in attack(),
        ) {
            let (server, client) = channel_pair([3; 32], [4; 32]);
            let sealed: Vec<Value> = messages
                .iter()
                .map(|m| sealed_data(&client.seal(m).expect("sealed")))
                .collect();
            let (accepted, forged) = match attack {
                Attack::Replay(i) => (i + 1, sealed[i].clone()),
                Attack::Reorder(i) => (i, sealed[i + 1].clone()),
                Attack::Reflect => {
                    let down = sealed_data(&server.seal(&messages[0]).expect("sealed"));
                    (0, down)
                }
                Attack::Truncate(i, n) => {
                    let payload = decoded(&sealed[i], "payload");
                    let cut = n.min(payload.len().saturating_sub(1));
                    (i, with(&sealed[i], &decoded(&sealed[i], "iv"), &payload[..cut]))
                }
                Attack::Tamper(i, at, bit) => {
                    let mut payload = decoded(&sealed[i], "payload");
                    let at = at % payload.len();
                    payload[at] ^= 1 << bit;
                    (i, with(&sealed[i], &decoded(&sealed[i], "iv"), &payload))
                }
                Attack::TamperIv(i, at, bit) => {
                    let mut iv = decoded(&sealed[i], "iv");
                    iv[at] ^= 1 << bit;
                    (i, with(&sealed[i], &iv, &decoded(&sealed[i], "payload")))
                }
            };
            for (message, data) in messages.iter().zip(&sealed).take(accepted) {
                prop_assert_eq!(&server.open(data).expect("in order"), message);
            }
            prop_assert!(server.open(&forged).is_err(), "{:?} accepted", attack);
        }
    }
}
