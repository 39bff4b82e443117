//! Socket handles: the [`SocketRef`] the namespace hands out, and the [`Socket<S>`] the
//! handlers of a service `S` receive.

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use http::HeaderMap;

use super::Namespace;
use super::error::{SendError, SendErrorCode};
use crate::channel::{Channel, Encode, Raw};
use crate::codec::{Frame, Json};
use crate::connection::{Conn, PushError};
use crate::request;
use crate::rooms::{RoomError, validate_room};

/// The values middleware stored for a connection, with its id and path.
///
/// `id` and `path` are the connection's own strings, shared (not copies): they dereference
/// to `&str`, and `.to_string()` makes an owned copy.
#[derive(Debug, Clone, Default)]
pub struct WebSocketData<T> {
    /// What the last middleware passed to `set_websocket_value` (or `T::default()`).
    pub values: T,
    /// The socket id (a UUID v7 string).
    pub id: Arc<str>,
    /// The request path the socket connected to.
    pub path: Arc<str>,
}

/// A handle to a connected socket, without its service's types: its request, rooms and
/// sends. Cheap to clone.
///
/// Handlers get a [`Socket<S>`], which dereferences to this; the namespace's queries such as
/// [`Namespace::sockets`] return it (a service's [`Ulak`](crate::Ulak) lists its sockets as
/// `Socket<S>`, with their typed parameters and state). `O` is what it sends ([`Encode`]): a
/// typed service's sockets accept only its `sends` type, and [`raw`](Self::raw) gives the
/// untyped handle.
pub struct SocketRef<O = Raw> {
    pub(crate) conn: Arc<Conn>,
    pub(crate) ns: Namespace<O>,
}

impl<O> Clone for SocketRef<O> {
    fn clone(&self) -> Self {
        SocketRef {
            conn: self.conn.clone(),
            ns: self.ns.clone(),
        }
    }
}

impl<O> fmt::Debug for SocketRef<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketRef")
            .field("id", &self.conn.id)
            .finish()
    }
}

impl<O> PartialEq for SocketRef<O> {
    fn eq(&self, other: &Self) -> bool {
        self.conn.key == other.conn.key
    }
}

impl<O> Eq for SocketRef<O> {}

impl<O> SocketRef<O> {
    /// The untyped handle: sends anything [`IntoFrame`](crate::IntoFrame), whatever the
    /// service declares it `sends`.
    pub fn raw(&self) -> SocketRef {
        self.retype()
    }

    /// The same socket sending `P`.
    pub(crate) fn retype<P>(&self) -> SocketRef<P> {
        SocketRef {
            conn: self.conn.clone(),
            ns: self.ns.retype(),
        }
    }

    /// The socket id, a UUID v7 string. It is also the name of the socket's personal room.
    pub fn id(&self) -> &str {
        &self.conn.id
    }

    /// The request path the socket connected to (with parameters filled in).
    pub fn path(&self) -> &str {
        &self.conn.request.path
    }

    /// The namespace (websocket service) this socket belongs to.
    pub fn namespace(&self) -> &Namespace<O> {
        &self.ns
    }

    /// The peer's address, when the server knows it.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.conn.request.remote_addr
    }

    /// Headers of the upgrade request, without those of the handshake itself (`Connection`,
    /// `Upgrade`, `Sec-WebSocket-Key`, `Sec-WebSocket-Version`, `Sec-WebSocket-Extensions`),
    /// which every socket would otherwise keep for nothing: middleware, which runs before
    /// the upgrade, sees them all.
    pub fn headers(&self) -> &HeaderMap {
        self.conn.request.headers.map()
    }

    /// A header of the upgrade request, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.conn.request.headers.get(name)
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

    /// Whether the socket is open (no close started).
    pub fn is_open(&self) -> bool {
        !self.conn.outbox.is_sealed()
    }

    /// Sends a message to this socket. Untyped: strings as text, bytes as binary, [`Json`] as
    /// JSON. Typed: the service's `sends` type, as JSON.
    pub fn send(&self, message: impl Encode<O>) -> Result<(), SendError> {
        let frame = self.ns.encode(message)?;
        self.push(&frame)?;
        self.ns.stats().record_send(1, false);
        Ok(())
    }

    /// Queues an encoded frame on this socket.
    pub(crate) fn push(&self, frame: &Frame) -> Result<(), SendError> {
        self.conn.push(frame).map_err(|e| {
            let message = match e {
                PushError::Closed => format!("socket {} is closed", self.conn.id),
                PushError::Full => {
                    format!("socket {} is not keeping up; message dropped", self.conn.id)
                }
                PushError::Withheld => {
                    format!("socket {} may not receive this message now", self.conn.id)
                }
            };
            SendError::new(SendErrorCode::SendFailed, Some(self.ns.path()), message)
        })
    }

    /// Joins `room`: `Ok(true)` when it joined, `Ok(false)` when it was already a member or
    /// is closed. A name no client may use is refused with the [`RoomError`] that says why
    /// ([`validate_room`](crate::namespace::validate_room): empty, too long, reserved such as the
    /// broadcast room `__`, or another socket's id), so a room name taken from a client can be
    /// passed straight in: `ws.subscribe(room)?`.
    pub fn subscribe(&self, room: &str) -> Result<bool, RoomError> {
        validate_room(room)?;
        Ok(self.join(room))
    }

    /// Joins `room` without checking its name: for the framework's own rooms (the concrete
    /// path of a parametrised service).
    pub(crate) fn join(&self, room: &str) -> bool {
        if !self.is_open() {
            return false;
        }
        let Some(name) = self.ns.join(room, &self.conn) else {
            return false;
        };
        // Most sockets are in one or two rooms: the list grows one at a time up to four (a
        // `Vec`'s first growth would make room for four at once), then as usual.
        let mut rooms = self.conn.rooms_lock();
        if rooms.capacity() < 4 {
            rooms.reserve_exact(1);
        }
        rooms.push(name);
        true
    }

    /// How many rooms the socket joined (its personal room not counted).
    pub(crate) fn joined_count(&self) -> usize {
        self.conn.rooms_lock().len()
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
    /// number of local recipients. The socket speaks for its client, so `room` must be a name
    /// a client may use ([`validate_room`](crate::namespace::validate_room)); anything else fails with
    /// [`InvalidRoom`](SendErrorCode::InvalidRoom) and reaches nobody.
    pub fn publish(&self, room: &str, message: impl Encode<O>) -> Result<usize, SendError> {
        validate_room(room).map_err(|e| SendError::invalid_room(Some(self.ns.path()), room, e))?;
        let (frame, delivery) = self.ns.encode_for_room(message)?;
        self.ns.check_fits(&frame)?;
        Ok(self
            .ns
            .emit_room(room, &frame, Some(self.conn.key), delivery))
    }

    /// The rooms this socket joined, its personal room (its id) first.
    pub fn rooms(&self) -> Vec<String> {
        let mut out = vec![self.conn.id.to_string()];
        out.extend(self.conn.rooms_lock().iter().map(|r| r.to_string()));
        out
    }

    /// What the inspector shows of its state: its service's
    /// [`Protocol::inspect`](crate::protocol::Protocol::inspect) (null before the app started
    /// the service).
    pub(crate) fn inspected_data(&self) -> serde_json::Value {
        self.conn
            .shared
            .inspect
            .get()
            .map_or(serde_json::Value::Null, |inspect| inspect(&*self.conn.data))
    }

    /// Bytes queued for this socket and not yet handed to the kernel.
    pub fn queued_bytes(&self) -> usize {
        self.conn.outbox.queued_bytes()
    }

    /// Closes the socket normally (1000, no reason), after everything already queued; see
    /// [`close_with`](Self::close_with).
    #[doc(alias = "close()")]
    pub fn close(&self) {
        self.close_with(crate::close_code::NORMAL, "");
    }

    /// Closes the socket with `code` and `reason` (after everything already queued). Codes
    /// that may not go on the wire ([`close_code::is_sendable`](crate::close_code::is_sendable):
    /// 1005, 1006, 1015, unassigned ones) become 1000, with a log line. Messages the socket
    /// sent that were not handled yet are not dispatched any more.
    pub fn close_with(&self, code: u16, reason: &str) {
        self.conn.close(code, reason);
    }
}

/// Shorthands of the untyped handle (typed services send their `sends` type with
/// [`send`](SocketRef::send) and [`publish`](SocketRef::publish)).
impl SocketRef {
    /// Sends `value` as a JSON text message.
    pub fn send_json<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<(), SendError> {
        self.send(Json(value))
    }

    /// Sends a binary message.
    pub fn send_binary(&self, data: impl AsRef<[u8]>) -> Result<(), SendError> {
        self.push(&Frame::binary(data.as_ref()))?;
        self.ns.stats().record_send(1, false);
        Ok(())
    }

    /// [`publish`](Self::publish) for a JSON value.
    pub fn publish_json<T: serde::Serialize + ?Sized>(
        &self,
        room: &str,
        value: &T,
    ) -> Result<usize, SendError> {
        self.publish(room, Json(value))
    }
}

/// The socket a handler of the service `S` works with: `ws: &Socket<Self>` in every handler
/// of a [`WebSocketService`](crate::WebSocketService) or
/// [`ManagedService`](crate::managed::ManagedService).
///
/// What the service declares is reached through its types, so a mistake is a compile error:
/// - [`params`](Socket::params) is the service's `params` type (`()` when it declares none),
///   deserialized before the upgrade;
/// - [`data`](Socket::data) holds the connection's state: what middleware stored, of the
///   service's `Data` type (for a managed service, its
///   [`ManagedClient`](crate::managed::ManagedClient));
/// - a managed service's socket also has [`managed`](Socket::managed), its protocol's sender;
/// - sending ([`send`](SocketRef::send), [`publish`](SocketRef::publish)) takes the
///   service's `sends` type; [`raw`](SocketRef::raw) gives the untyped [`SocketRef`], which
///   sends anything [`IntoFrame`](crate::IntoFrame) (the escape hatch of typed services).
///
/// Dereferences to [`SocketRef`] (sending `S`'s `sends` type) for everything else. Cheap to
/// clone.
pub struct Socket<S: Channel> {
    inner: SocketRef<S::Out>,
    _service: PhantomData<fn() -> S>,
}

impl<S: Channel> Clone for Socket<S> {
    fn clone(&self) -> Self {
        Socket {
            inner: self.inner.clone(),
            _service: PhantomData,
        }
    }
}

impl<S: Channel> fmt::Debug for Socket<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("service", &S::NAME)
            .field("id", &self.inner.conn.id)
            .finish()
    }
}

impl<S: Channel> Socket<S> {
    /// A socket of `S`'s namespace: one admitted by `S`'s upgrade, which stored its typed
    /// parameters and its connection state.
    pub(crate) fn of_service(socket: SocketRef<S::Out>) -> Self {
        Socket {
            inner: socket,
            _service: PhantomData,
        }
    }

    /// The path parameters, deserialized into the service's `params` type before the upgrade
    /// (a request whose parameters do not deserialize is refused with 400 and never becomes
    /// a socket). `&()` for a service that declares none; [`param`](SocketRef::param) reads
    /// one as a string.
    pub fn params(&self) -> &S::Params {
        self.inner
            .conn
            .request
            .typed_params
            .as_deref()
            .and_then(|params| params.downcast_ref::<S::Params>())
            .expect("invariant: a Socket<S> is only made over a connection S's upgrade admitted")
    }

    /// The [`SocketRef`] this socket dereferences to: the same handle, sending the service's
    /// `sends` type, without its `params` and `data`.
    pub fn as_socket_ref(&self) -> &SocketRef<S::Out> {
        &self.inner
    }
}

impl<S: Channel> AsRef<SocketRef<S::Out>> for Socket<S> {
    fn as_ref(&self) -> &SocketRef<S::Out> {
        &self.inner
    }
}

impl<S: Channel> Deref for Socket<S> {
    type Target = SocketRef<S::Out>;
    fn deref(&self) -> &SocketRef<S::Out> {
        &self.inner
    }
}
