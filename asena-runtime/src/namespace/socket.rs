//! Socket handles: the untyped [`SocketRef`] the namespace hands out, and the typed
//! [`Socket<T>`] handlers receive.

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use http::HeaderMap;

use super::Namespace;
use super::error::{SendError, SendErrorCode};
use crate::conn::{Conn, PushError};
use crate::frame::{Frame, IntoFrame, Json};
use crate::request;

/// The values middleware stored for a connection, with its id and path.
#[derive(Debug, Clone, Default)]
pub struct WebSocketData<T> {
    /// What the last middleware passed to `set_websocket_value` (or `T::default()`).
    pub values: T,
    /// The socket id (a UUID v7 string).
    pub id: String,
    /// The request path the socket connected to.
    pub path: String,
}

/// An untyped handle to a connected socket. Cheap to clone.
///
/// Handlers get a [`Socket<T>`], which dereferences to this; namespace queries such as
/// [`Namespace::sockets`] return it.
#[derive(Clone)]
pub struct SocketRef {
    pub(crate) conn: Arc<Conn>,
    pub(crate) ns: Namespace,
}

impl fmt::Debug for SocketRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketRef")
            .field("id", &self.conn.id)
            .finish()
    }
}

impl PartialEq for SocketRef {
    fn eq(&self, other: &Self) -> bool {
        self.conn.key == other.conn.key
    }
}

impl Eq for SocketRef {}

impl SocketRef {
    /// The socket id, a UUID v7 string. It is also the name of the socket's personal room.
    pub fn id(&self) -> &str {
        &self.conn.id
    }

    /// The request path the socket connected to (with parameters filled in).
    pub fn path(&self) -> &str {
        &self.conn.request.path
    }

    /// The namespace (websocket service) this socket belongs to.
    pub fn namespace(&self) -> &Namespace {
        &self.ns
    }

    /// The peer's address, when the server knows it.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.conn.request.remote_addr
    }

    /// Headers of the upgrade request.
    pub fn headers(&self) -> &HeaderMap {
        &self.conn.request.headers
    }

    /// A header of the upgrade request, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.conn
            .request
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
    }

    /// The subprotocol chosen at the upgrade (`Sec-WebSocket-Protocol` on the 101), one of
    /// the service's [`PROTOCOLS`](crate::WebSocketService::PROTOCOLS); `None` when the
    /// client offered none of them or the service declares none.
    pub fn protocol(&self) -> Option<&str> {
        self.conn.request.protocol
    }

    /// A query parameter of the upgrade request (percent-decoded; first wins).
    pub fn query(&self, key: &str) -> Option<&str> {
        request::lookup(&self.conn.request.query, key)
    }

    /// A path parameter, e.g. `id` for a service at `/user/{id}`.
    pub fn param(&self, name: &str) -> Option<&str> {
        request::lookup(&self.conn.request.params, name)
    }

    /// The typed values, if `T` is the service's `Data` type.
    pub fn data<T: 'static>(&self) -> Option<&WebSocketData<T>> {
        self.conn.data.downcast_ref::<WebSocketData<T>>()
    }

    /// Whether the socket is open (no close started).
    pub fn is_open(&self) -> bool {
        !self.conn.outbox.is_sealed()
    }

    /// Sends a message to this socket: strings as text, bytes as binary, [`Json`] as JSON.
    pub fn send(&self, message: impl IntoFrame) -> Result<(), SendError> {
        let frame = message
            .into_frame()
            .map_err(|e| SendError::invalid_message(Some(self.ns.path()), e))?;
        self.push(&frame)
    }

    /// Sends `value` as a JSON text message.
    pub fn send_json<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<(), SendError> {
        self.send(Json(value))
    }

    /// Sends a binary message.
    pub fn send_binary(&self, data: impl AsRef<[u8]>) -> Result<(), SendError> {
        self.push(&Frame::binary(data.as_ref()))
    }

    /// Queues an encoded frame on this socket.
    pub(crate) fn push(&self, frame: &Frame) -> Result<(), SendError> {
        self.conn.push(frame).map_err(|e| {
            let message = match e {
                PushError::Closed => format!("socket {} is closed", self.conn.id),
                PushError::Full => {
                    format!("socket {} is not keeping up; message dropped", self.conn.id)
                }
            };
            SendError::new(SendErrorCode::SendFailed, Some(self.ns.path()), message)
        })
    }

    /// Joins `room`. Returns false if the socket was already a member or is closed.
    pub fn subscribe(&self, room: &str) -> bool {
        if !self.is_open() {
            return false;
        }
        let joined = self.ns.join(room, &self.conn);
        if joined {
            self.conn.rooms_lock().push(Arc::from(room));
        }
        joined
    }

    /// Leaves `room`. Returns false if the socket was not a member.
    pub fn unsubscribe(&self, room: &str) -> bool {
        let left = self.ns.leave(room, &self.conn);
        if left {
            self.conn.rooms_lock().retain(|r| &**r != room);
        }
        left
    }

    /// Whether the socket is in `room`.
    pub fn in_room(&self, room: &str) -> bool {
        room == &*self.conn.id || self.conn.rooms_lock().iter().any(|r| &**r == room)
    }

    /// Sends to every member of `room` except this socket, on every instance. Returns the
    /// number of local recipients.
    pub fn publish(&self, room: &str, message: impl IntoFrame) -> Result<usize, SendError> {
        let frame = self.ns.encode(message)?;
        Ok(self.ns.emit_room(room, &frame, Some(self.conn.key)))
    }

    /// [`publish`](Self::publish) for a JSON value.
    pub fn publish_json<T: serde::Serialize + ?Sized>(
        &self,
        room: &str,
        value: &T,
    ) -> Result<usize, SendError> {
        self.publish(room, Json(value))
    }

    /// The rooms this socket joined, its personal room (its id) first.
    pub fn rooms(&self) -> Vec<String> {
        let mut out = vec![self.conn.id.to_string()];
        out.extend(self.conn.rooms_lock().iter().map(|r| r.to_string()));
        out
    }

    /// Bytes queued for this socket and not yet handed to the kernel.
    pub fn queued_bytes(&self) -> usize {
        self.conn.outbox.queued_bytes()
    }

    /// Closes the socket with `code` and `reason` (after everything already queued). Codes
    /// that may not go on the wire ([`close_code::is_sendable`](crate::close_code::is_sendable):
    /// 1005, 1006, 1015, unassigned ones) become 1000, with a log line. Messages the socket
    /// sent that were not handled yet are not dispatched any more.
    pub fn close(&self, code: u16, reason: &str) {
        self.conn.close(code, reason);
    }
}

/// The socket a handler works with; `T` is the service's `Data` type.
///
/// Dereferences to [`SocketRef`] for everything but [`data`](Socket::data).
pub struct Socket<T> {
    inner: SocketRef,
    _values: PhantomData<fn() -> T>,
}

impl<T> Clone for Socket<T> {
    fn clone(&self) -> Self {
        Socket {
            inner: self.inner.clone(),
            _values: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Socket<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.inner.conn.id)
            .finish()
    }
}

impl<T: Send + Sync + 'static> Socket<T> {
    pub(crate) fn new(socket: SocketRef) -> Self {
        debug_assert!(socket.conn.data.is::<WebSocketData<T>>());
        Socket {
            inner: socket,
            _values: PhantomData,
        }
    }

    /// The connection's typed values, id and path.
    pub fn data(&self) -> &WebSocketData<T> {
        self.inner
            .conn
            .data
            .downcast_ref::<WebSocketData<T>>()
            .expect("invariant: a Socket<T> is only built over WebSocketData<T>")
    }

    /// The untyped handle.
    pub fn as_socket_ref(&self) -> &SocketRef {
        &self.inner
    }
}

impl<T> AsRef<SocketRef> for Socket<T> {
    fn as_ref(&self) -> &SocketRef {
        &self.inner
    }
}

impl<T> Deref for Socket<T> {
    type Target = SocketRef;
    fn deref(&self) -> &SocketRef {
        &self.inner
    }
}
