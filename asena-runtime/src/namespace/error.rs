//! [`SendError`]: the one error of every send, whether through a [`Socket`](crate::Socket),
//! a [`Namespace`](crate::Namespace), an [`Ulak<N>`](crate::Ulak) or the
//! [`UlakBroker`](crate::UlakBroker).

use std::fmt;

use crate::error::BoxError;

/// What went wrong, as a stable code (Asena's names, see [`as_str`](Self::as_str)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SendErrorCode {
    /// No websocket service is registered at that path
    /// ([`UlakBroker::namespace`](crate::UlakBroker::namespace), bulk items).
    NamespaceNotFound,
    /// The path is not a namespace path (it must start with `/`).
    InvalidNamespace,
    /// The message could not be encoded (JSON serialisation failed).
    InvalidMessage,
    /// A send to a local socket failed: it is closing, or its send queue is full (the
    /// slow-consumer policy was applied).
    SendFailed,
    /// `to_socket`: no local socket has that id and no transport could carry the message
    /// to another instance.
    SocketNotFound,
    /// The room name is not one this send may name ([`RoomError`](crate::namespace::RoomError)): a
    /// reserved name such as the broadcast room `__` for any send, or another socket's id for
    /// a socket's own `publish`.
    InvalidRoom,
    /// The message is larger than the transport carries between instances
    /// ([`Transport::max_message_size`](crate::transport::Transport::max_message_size)); it was sent to
    /// nobody.
    MessageTooLarge,
}

impl SendErrorCode {
    /// The code as Asena spells it on the wire and in logs (`"NAMESPACE_NOT_FOUND"`).
    pub fn as_str(self) -> &'static str {
        match self {
            SendErrorCode::NamespaceNotFound => "NAMESPACE_NOT_FOUND",
            SendErrorCode::InvalidNamespace => "INVALID_NAMESPACE",
            SendErrorCode::InvalidMessage => "INVALID_MESSAGE",
            SendErrorCode::SendFailed => "SEND_FAILED",
            SendErrorCode::SocketNotFound => "SOCKET_NOT_FOUND",
            SendErrorCode::InvalidRoom => "INVALID_ROOM",
            SendErrorCode::MessageTooLarge => "MESSAGE_TOO_LARGE",
        }
    }
}

impl fmt::Display for SendErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A send failed.
#[derive(Debug, thiserror::Error)]
#[error("{code}{}: {message}", namespace.as_deref().map(|n| format!(" on {n}")).unwrap_or_default())]
#[non_exhaustive]
pub struct SendError {
    /// The code.
    pub code: SendErrorCode,
    /// The namespace involved, if known.
    pub namespace: Option<String>,
    /// What happened.
    pub message: String,
    /// The underlying error, if any.
    #[source]
    pub source: Option<BoxError>,
}

impl SendError {
    pub(crate) fn new(
        code: SendErrorCode,
        namespace: Option<&str>,
        message: impl Into<String>,
    ) -> SendError {
        SendError {
            code,
            namespace: namespace.map(str::to_owned),
            message: message.into(),
            source: None,
        }
    }

    /// A room name refused by [`validate_room`](crate::namespace::validate_room); the name is quoted
    /// up to 64 characters.
    pub(crate) fn invalid_room(
        namespace: Option<&str>,
        room: &str,
        error: crate::namespace::RoomError,
    ) -> SendError {
        let shown: String = room.chars().take(64).collect();
        let cut = if shown.len() < room.len() { "…" } else { "" };
        SendError::new(
            SendErrorCode::InvalidRoom,
            namespace,
            format!("room {shown:?}{cut}: {error}"),
        )
    }

    pub(crate) fn invalid_message(
        namespace: Option<&str>,
        err: impl std::error::Error + Send + Sync + 'static,
    ) -> SendError {
        SendError {
            source: Some(Box::new(err)),
            ..SendError::new(
                SendErrorCode::InvalidMessage,
                namespace,
                "message could not be encoded as JSON",
            )
        }
    }
}

impl From<serde_json::Error> for SendError {
    fn from(err: serde_json::Error) -> SendError {
        SendError::invalid_message(None, err)
    }
}
