//! What a client's event stream yields.

use crate::ClientError;
use crate::presence::PresenceFrame;

/// One event from a [`Client`](crate::Client): a decoded server message, a message that did
/// not decode, or a change of the connection.
///
/// `T` is the channel's `Out`, the type the server sends.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<T> {
    /// A message from the server, decoded from JSON (text or binary frames).
    Message(T),
    /// A presence frame of a room (`presence_state` or `presence_diff`) that does not
    /// decode into `T`; [`Presences::apply`](crate::presence::Presences::apply) keeps the
    /// room's list from them.
    Presence(PresenceFrame),
    /// A message from the server that does not decode into `T`. The stream goes on.
    Undecodable {
        /// The message as received (binary messages lossily decoded as UTF-8).
        text: String,
        /// serde's reason, e.g. ``unknown variant `nope`, expected `pong` or `said` ``.
        error: serde_json::Error,
    },
    /// The connection was lost: the server closed it, an I/O error, or the heartbeat found it
    /// dead. With reconnect on, the client is reconnecting; otherwise the stream ends next.
    Disconnected {
        /// The server's close code (`1001` when the server shuts down), `None` when the
        /// connection ended without a close frame.
        code: Option<u16>,
        /// The server's close reason, or what went wrong.
        reason: String,
    },
    /// The client connected again after a [`Disconnected`](Event::Disconnected). Messages
    /// sent meanwhile were queued and go out now. The server sees a new socket: its
    /// `on_open` runs again, and whatever the old socket had (rooms joined later, its data)
    /// is gone, so resend what re-establishes it here.
    Reconnected,
    /// The client came back to a room that keeps history (the server's `history` module), but
    /// the server could not replay what it missed there: its position was of an earlier
    /// history, or older than what the room keeps. Reload the room's state; its messages
    /// go on from here. (When it could, the missed messages simply arrive first, in order,
    /// as [`Message`](Event::Message)s.)
    Resync {
        /// The room.
        room: String,
    },
    /// Reconnecting failed `attempts` times in a row, the limit set by
    /// [`Backoff::max_attempts`](crate::Backoff::max_attempts). The stream ends next.
    GaveUp {
        /// How many attempts were made.
        attempts: u32,
        /// Why the last one failed.
        error: ClientError,
    },
}
