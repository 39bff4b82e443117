//! A connection's outbound seal: the one hook through which a protocol above the connection
//! layer sees every data frame sent to a connection before it is queued, and queues it as
//! is, rewritten for that peer (encrypted, say), or not at all.
//!
//! The connection layer knows nothing of the protocols: a namespace whose protocol needs a
//! seal sets a [`SealFor`] on its [`Shared`](super::Shared) when the app is built, and each
//! new connection asks it for its seal once, from the connection's typed values. A
//! connection without one (every socket of a plain service) pays one branch on a field per
//! send; fan-out to it stays the shared encoded frame.
//!
//! Control frames (pings, pongs, the close) never pass through a seal.

use std::any::Any;
use std::sync::Arc;

use super::{Conn, PushError};
use crate::codec::Frame;

/// Who sent a frame: the application (a socket, a namespace, a room, the transport), or the
/// connection's own protocol (its handshake and system events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Anything the application or another instance sends.
    App,
    /// The protocol's own events to this peer (which a seal lets through before the peer
    /// is admitted).
    Protocol,
}

/// Decides what a connection is sent.
pub(crate) trait Seal: Send + Sync + 'static {
    /// Queues `frame` (a data frame) for `conn`'s peer with [`Conn::push_unsealed`], as is
    /// or rewritten, or refuses it ([`PushError::Withheld`]).
    fn push(&self, conn: &Arc<Conn>, frame: &Frame, origin: Origin) -> Result<(), PushError>;
}

/// Finds a new connection's seal in its typed values (`None`: the connection has none).
pub(crate) type SealFor = fn(&(dyn Any + Send + Sync)) -> Option<Arc<dyn Seal>>;
