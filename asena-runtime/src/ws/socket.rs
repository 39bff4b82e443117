//! Socket handles: the typed [`Socket<T>`] handlers receive and the untyped [`SocketRef`].

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use http::HeaderMap;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::outbox::{Outbox, Pushed};
use super::{Frame, IntoFrame, Json};
use crate::namespace::{Namespace, SlowConsumer};
use crate::rooms::Member;

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

/// Sending to a socket failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The socket is closed or closing.
    #[error("socket {0} is closed")]
    Closed(String),
    /// The socket's send queue is full (slow consumer); the message was not queued.
    #[error("socket {0} is not keeping up; message dropped")]
    Full(String),
    /// The value could not be serialised as JSON.
    #[error("message is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// What we know about the upgrade request of a connection.
#[derive(Debug, Default)]
pub(crate) struct RequestInfo {
    pub(crate) remote_addr: Option<SocketAddr>,
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) params: Vec<(String, String)>,
}

/// One live connection, shared by its tasks, the namespace and the room index.
pub(crate) struct Conn {
    pub(crate) key: u64,
    pub(crate) id: Arc<str>,
    pub(crate) ns: Namespace,
    pub(crate) outbox: Outbox,
    pub(crate) wake_reader: Notify,
    pub(crate) rooms: Mutex<Vec<Arc<str>>>,
    pub(crate) request: RequestInfo,
    pub(crate) data: Box<dyn Any + Send + Sync>,
    /// The close we initiated (code, reason), if any.
    pub(crate) closing: Mutex<Option<(u16, String)>>,
    /// The writer has put our close frame on the wire.
    pub(crate) close_written: AtomicBool,
    slow_reported: AtomicBool,
    /// The plain TCP stream, shared by the reader, the writer and the flushers.
    stream: OnceLock<Arc<TcpStream>>,
}

impl Member for Conn {
    fn key(&self) -> u64 {
        self.key
    }
}

impl Conn {
    pub(crate) fn new(
        key: u64,
        id: Arc<str>,
        ns: Namespace,
        request: RequestInfo,
        data: Box<dyn Any + Send + Sync>,
    ) -> Conn {
        Conn {
            key,
            id,
            ns,
            outbox: Outbox::new(),
            wake_reader: Notify::new(),
            rooms: Mutex::new(Vec::new()),
            request,
            data,
            closing: Mutex::new(None),
            close_written: AtomicBool::new(false),
            slow_reported: AtomicBool::new(false),
            stream: OnceLock::new(),
        }
    }

    /// Serves this connection over a plain TCP stream: when the namespace has flushers,
    /// frames queued on an idle socket are written by them (see `flush.rs`).
    pub(crate) fn attach_stream(&self, stream: Arc<TcpStream>) {
        if self.stream.set(stream).is_ok() && self.ns.flusher().is_some() {
            self.outbox.enable_direct();
        }
    }

    pub(crate) fn stream(&self) -> Option<&Arc<TcpStream>> {
        self.stream.get()
    }

    /// Queues an encoded frame, applying the slow-consumer policy when the queue is full.
    /// Returns whether the frame was queued.
    #[inline]
    pub(crate) fn push(self: &Arc<Self>, frame: &Frame) -> Result<(), SendError> {
        let limits = self.ns.limits();
        self.push_wire(frame.wire(), limits.max_queued_bytes)
    }

    /// Queues encoded bytes (see [`Conn::push`]) against `limit`.
    #[inline]
    pub(crate) fn push_wire(self: &Arc<Self>, wire: &Bytes, limit: usize) -> Result<(), SendError> {
        match self.outbox.push(wire, limit) {
            Pushed::Queued => Ok(()),
            Pushed::Schedule => {
                if let Some(flusher) = self.ns.flusher() {
                    flusher.schedule(self.clone());
                }
                Ok(())
            }
            Pushed::Closed => Err(SendError::Closed(self.id.to_string())),
            Pushed::Full => {
                self.on_full(self.ns.limits().slow_consumer);
                Err(SendError::Full(self.id.to_string()))
            }
        }
    }

    #[cold]
    fn on_full(&self, policy: SlowConsumer) {
        self.ns.stats().record_slow_consumer();
        let first = !self.slow_reported.swap(true, Ordering::Relaxed);
        match policy {
            SlowConsumer::Close => {
                tracing::warn!(
                    target: "asena::ws",
                    socket_id = %self.id,
                    path = %self.ns.path(),
                    "send queue full; closing slow consumer with 1008"
                );
                self.close(super::close_code::POLICY, "Slow consumer");
            }
            SlowConsumer::DropMessages => {
                if first {
                    tracing::warn!(
                        target: "asena::ws",
                        socket_id = %self.id,
                        path = %self.ns.path(),
                        "send queue full; dropping messages for slow consumer"
                    );
                }
            }
        }
    }

    /// Starts the closing handshake with `code`; later calls are ignored.
    pub(crate) fn close(&self, code: u16, reason: &str) {
        let mut closing = self.closing.lock().unwrap_or_else(|p| p.into_inner());
        if closing.is_some() {
            return;
        }
        *closing = Some((code, reason.to_owned()));
        drop(closing);
        self.outbox.close(Frame::close(code, reason).wire().clone());
        self.wake_reader.notify_one();
    }

    pub(crate) fn close_requested(&self) -> Option<(u16, String)> {
        self.closing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn rooms_lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<str>>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.id)
            .field("path", &self.ns.path())
            .finish()
    }
}

/// An untyped handle to a connected socket. Cheap to clone.
///
/// Handlers get a [`Socket<T>`], which dereferences to this; namespace queries such as
/// [`Namespace::sockets`] return it.
#[derive(Clone)]
pub struct SocketRef {
    pub(crate) conn: Arc<Conn>,
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
        &self.conn.ns
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

    /// A query parameter of the upgrade request (percent-decoded; first wins).
    pub fn query(&self, key: &str) -> Option<&str> {
        lookup(&self.conn.request.query, key)
    }

    /// A path parameter, e.g. `id` for a service at `/user/{id}`.
    pub fn param(&self, name: &str) -> Option<&str> {
        lookup(&self.conn.request.params, name)
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
        self.conn.push(&message.into_frame()?)
    }

    /// Sends `value` as a JSON text message.
    pub fn send_json<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<(), SendError> {
        self.conn.push(&Frame::json(value)?)
    }

    /// Sends a binary message.
    pub fn send_binary(&self, data: impl AsRef<[u8]>) -> Result<(), SendError> {
        self.conn.push(&Frame::binary(data.as_ref()))
    }

    /// Joins `room`. Returns false if the socket was already a member or is closed.
    pub fn subscribe(&self, room: &str) -> bool {
        if !self.is_open() {
            return false;
        }
        let joined = self.conn.ns.join(room, &self.conn);
        if joined {
            self.conn.rooms_lock().push(Arc::from(room));
        }
        joined
    }

    /// Leaves `room`. Returns false if the socket was not a member.
    pub fn unsubscribe(&self, room: &str) -> bool {
        let left = self.conn.ns.leave(room, &self.conn);
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
        let frame = message.into_frame()?;
        Ok(self.conn.ns.emit_room(room, &frame, Some(self.conn.key)))
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

    /// Closes the socket with `code` and `reason` (after everything already queued).
    pub fn close(&self, code: u16, reason: &str) {
        self.conn.close(code, reason);
    }
}

/// The first value for `key` in decoded request pairs (query or path parameters).
pub(crate) fn lookup<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
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
    pub(crate) fn new(conn: Arc<Conn>) -> Self {
        debug_assert!(conn.data.is::<WebSocketData<T>>());
        Socket {
            inner: SocketRef { conn },
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
