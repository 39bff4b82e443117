//! The outbound seal of a managed client: every data frame the client is sent, from any
//! path (its socket, a namespace or room send, a broadcast, `Ulak`, an emitter or another
//! instance, a failing handler's error reply, the protocol's own events), passes here on its
//! way into the connection's queue.
//!
//! Before the client authenticates only the protocol's own events reach it (the key
//! agreement, `connected`, errors); everything else is withheld. After that, a client that
//! agreed a key gets each frame sealed for it (see [`crypto`](super::crypto)), a client with
//! an [`OutboundTransform`] gets it rewritten, and a plain client gets the shared frame as
//! is: other recipients of a fan-out keep sharing one encoded frame.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use super::crypto::Session;
use crate::codec::Frame;
use crate::connection::seal::{Origin, Seal};
use crate::connection::{Conn, PushError};

/// Rewrites what one client receives: every message to a client with a transformer, from
/// any send path, is encoded for that client alone (the per-client path), while the other
/// members of a room keep sharing one encoded frame. Per-client encryption is the built-in
/// one; a client has one or the other.
pub trait OutboundTransform: Send + Sync + std::fmt::Debug + 'static {
    /// The text frame's payload for this client, from the plain message (the
    /// `{"event","data"}` JSON of an event, or whatever else was sent). `Err` drops the
    /// delivery to this client (logged).
    fn transform(&self, plaintext: &[u8]) -> Result<String, crate::BoxError>;
}

/// The seal of one managed client (held by its [`ManagedClient`](super::ManagedClient) and its
/// connection).
#[derive(Debug, Default)]
pub(crate) struct Gate {
    /// The client authenticated: application traffic may pass.
    open: AtomicBool,
    /// The client's outbound transformer: a service's own, or its encryption.
    outbound: OnceLock<Outbound>,
}

#[derive(Debug)]
enum Outbound {
    Transform(Arc<dyn OutboundTransform>),
    Encrypted(Arc<Session>),
}

impl Gate {
    /// Lets application traffic through (the client authenticated) or not (it left).
    pub(crate) fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::Release);
    }

    /// Sets a service's transformer; false if the client has one, or encryption.
    pub(crate) fn set_transform(&self, transform: Arc<dyn OutboundTransform>) -> bool {
        self.outbound.set(Outbound::Transform(transform)).is_ok()
    }

    /// Makes the client encrypted; false if it already has a transformer or a session.
    pub(crate) fn set_session(&self, session: Arc<Session>) -> bool {
        self.outbound.set(Outbound::Encrypted(session)).is_ok()
    }

    pub(crate) fn transform(&self) -> Option<&Arc<dyn OutboundTransform>> {
        match self.outbound.get() {
            Some(Outbound::Transform(t)) => Some(t),
            _ => None,
        }
    }

    pub(crate) fn session(&self) -> Option<&Arc<Session>> {
        match self.outbound.get() {
            Some(Outbound::Encrypted(s)) => Some(s),
            _ => None,
        }
    }
}

impl Seal for Gate {
    fn push(&self, conn: &Arc<Conn>, frame: &Frame, origin: Origin) -> Result<(), PushError> {
        if !frame.is_data() {
            return conn.push_unsealed(frame);
        }
        if origin == Origin::App && !self.open.load(Ordering::Acquire) {
            return Err(PushError::Withheld);
        }
        match self.outbound.get() {
            None => conn.push_unsealed(frame),
            Some(Outbound::Encrypted(session)) => {
                let payload = frame.payload_bytes();
                match session.seal_then(&payload, |text| conn.push_unsealed(&Frame::text(&text))) {
                    Ok(pushed) => pushed,
                    Err(error) => {
                        // Only a spent counter or a failed RNG get here: the channel cannot
                        // go on.
                        tracing::warn!(target: "asena::managed", socket_id = %conn.id, %error, "encryption failed; closing");
                        conn.close(super::close::DECRYPTION_FAILED, "Encryption failed");
                        Err(PushError::Withheld)
                    }
                }
            }
            Some(Outbound::Transform(transform)) => {
                match transform.transform(frame.payload_bytes().as_ref()) {
                    Ok(text) => conn.push_unsealed(&Frame::text(&text)),
                    Err(error) => {
                        tracing::warn!(target: "asena::managed", socket_id = %conn.id, %error, "outbound transform failed; delivery dropped");
                        Err(PushError::Withheld)
                    }
                }
            }
        }
    }
}
