//! Per-client encryption of managed services: a P-256 key agreement before the client
//! authenticates, then AES-256-GCM for every message both ways. The key agreement, the key
//! derivation and the sealed channel are `asena_protocol::crypto`'s (shared with the typed
//! client, `asena-client`); RustCrypto does the cryptography. This module is the protocol as
//! the server applies it.
//!
//! # The channel
//!
//! 1. The client makes a P-256 key pair and, as its first message, sends
//!    `{"event":"encrypt","data":{"publicKey": base64(SEC1 uncompressed, 65 bytes)}}`.
//! 2. The server makes an ephemeral P-256 key pair and a random 16-byte salt, answers
//!    (in plain text, the last plain message of the connection)
//!    `{"event":"encrypted","data":{"serverPublicKey": base64(SEC1 uncompressed), "salt": base64}}`,
//!    and both sides derive two 32-byte AES keys from the ECDH shared secret (its x
//!    coordinate) with HKDF-SHA256 and that salt: info `asena-managed-v2 client-to-server`
//!    for what the client sends, `asena-managed-v2 server-to-client` for what it receives.
//! 3. From then on every message, both ways, is
//!    `{"event":"encrypted","data":{"iv": base64(12 bytes), "payload": base64(ciphertext and
//!    16-byte tag)}}`: the AES-256-GCM encryption of the plain message (for an event, its
//!    `{"event","data"}` JSON). The 12-byte nonce is a 4-byte direction tag (`00 00 00 01`
//!    client to server, `00 00 00 02` server to client) followed by a 64-bit big-endian
//!    counter that starts at 0 in each direction and grows by one per message; the
//!    associated data is the nonce itself, so direction and counter are bound to the
//!    ciphertext twice over (key and associated data).
//! 4. The receiver accepts exactly the next counter of its direction. A message that is
//!    not the next one (replayed, reordered, dropped in between), was sent the other way
//!    (reflected), is cut short or altered, or is not `encrypted` at all, closes the socket
//!    with [`DECRYPTION_FAILED`](super::close::DECRYPTION_FAILED) (4005).
//!
//! `authenticate` and its credentials then travel inside the channel. Base64 is the
//! standard alphabet with padding. A `publicKey` that is not base64 of a 65-byte
//! uncompressed point of P-256 closes the socket with 4004 "Encryption required".
//!
//! # Ignis's key exchange (opt-in)
//!
//! With [`ManagedOptions::ignis_key_exchange`](super::ManagedOptions::ignis_key_exchange)
//! the client sends `publicKey` inside `authenticate` (so its credentials travel in plain
//! text), `connected` carries `serverPublicKey` and `salt` in plain text, one key (HKDF info
//! `asena-managed-v1`) serves both directions, nonces are random, nothing is bound as
//! associated data, and the client may keep sending plain messages. It protects against a
//! passive observer of later messages only; replays and reflections are not detected.

pub(crate) use asena_protocol::crypto::{CryptoError, Flow, Handshake, Session, agree};

/// Both ends of a channel over fixed keys (for the fuzz targets).
#[cfg(fuzzing)]
pub(crate) fn channel_pair(
    c2s: [u8; 32],
    s2c: [u8; 32],
) -> (
    asena_protocol::crypto::SealedChannel,
    asena_protocol::crypto::SealedChannel,
) {
    use asena_protocol::crypto::{SealedChannel, Side};
    (
        SealedChannel::from_keys(c2s, s2c, Side::Server),
        SealedChannel::from_keys(c2s, s2c, Side::Client),
    )
}

/// Fuzz entry: `data` as the JSON data of an `encrypted` message from a client, opened by a
/// server end that expects counter 0 of fixed keys; then a sealed message of the client end,
/// with `data` as its plaintext, opens once and only once. Never panics.
#[cfg(fuzzing)]
pub(crate) fn fuzz_encrypted_frame(data: &[u8]) {
    use serde_json::Value;
    let (server, client) = channel_pair([7; 32], [9; 32]);
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        // A fuzzer cannot forge a tag: anything it makes is refused.
        assert!(server.open(&value).is_err());
    }
    let sealed: Value = match client.seal(data).map(|s| serde_json::from_str(&s)) {
        Ok(Ok(sealed)) => sealed,
        other => panic!("sealing failed: {other:?}"),
    };
    let opened = server
        .open(&sealed["data"])
        .expect("the next message opens");
    assert_eq!(opened, data);
    assert!(server.open(&sealed["data"]).is_err(), "a replay opens");
}
