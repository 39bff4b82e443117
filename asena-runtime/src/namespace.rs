//! A namespace: the sockets and rooms of one websocket service, and fan-out to them.
//!
//! # The hot path
//! A room message is encoded once into a [`Frame`] (header + payload in one shared buffer).
//! Fan-out takes the room index's read lock, walks the room's dense member list, and appends
//! the same encoded bytes to each member's queue: frames up to 512 bytes are copied into the
//! queue's contiguous byte buffer (cheaper than bumping a reference count that every core
//! fanning out the same message would fight over), larger ones are queued as a
//! reference-counted clone. Nothing is encoded or serialised per recipient.
//!
//! The first frame queued on an idle socket puts the connection on a flusher's list (one list
//! per runtime worker). The flusher writes the listed sockets in the order they became ready,
//! 64 at a time with a poll for I/O in between, each with one non-blocking write of
//! everything it has queued: a burst of N messages costs one write per recipient, not N, and
//! no recipient of a room waits behind a thousand task wake-ups in the runtime's queue. A
//! socket whose send buffer is full is handed, with the unwritten rest, to its own writer
//! task, which waits until it is writable; the closing handshake and `on_drain` are the
//! writer task's too, and the queue records who owns the socket so writes never interleave.
//! Idle sockets hold no read buffer (reads wait for readiness first) and no handshake data.
//! A full queue never blocks the publisher: the slow-consumer policy applies instead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use crate::rooms::{Change, RoomIndex};
use crate::transport::{Outbound, Transport};
use crate::ws::{Conn, Flusher, Frame, IntoFrame, SendError, SocketRef};

/// What happens when a socket's send queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SlowConsumer {
    /// Close the socket with 1008 "Slow consumer" (default).
    #[default]
    Close,
    /// Drop messages for that socket until its queue has room again.
    DropMessages,
}

/// Per-connection limits of a namespace.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest message accepted from a client (default 1 MiB); larger closes with 1009.
    pub max_message_size: usize,
    /// Bytes a socket's send queue may hold before the slow-consumer policy applies
    /// (default 16 MiB).
    pub max_queued_bytes: usize,
    /// What to do with a slow consumer.
    pub slow_consumer: SlowConsumer,
    /// Close a socket that sent nothing for this long (default 120 s); `None` disables it.
    pub idle_timeout: Option<Duration>,
    /// Most sockets the namespace accepts; more are closed with 1008 (default unlimited).
    pub max_connections: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 1 << 20,
            max_queued_bytes: 16 << 20,
            slow_consumer: SlowConsumer::Close,
            idle_timeout: Some(Duration::from_secs(120)),
            max_connections: None,
        }
    }
}

/// Counters of a namespace.
#[derive(Debug, Default)]
pub struct NamespaceStats {
    slow_consumers: AtomicU64,
    handler_errors: AtomicU64,
    protocol_errors: AtomicU64,
    rejected_connections: AtomicU64,
}

impl NamespaceStats {
    pub(crate) fn record_slow_consumer(&self) {
        self.slow_consumers.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn record_handler_error(&self) {
        self.handler_errors.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn record_protocol_error(&self) {
        self.protocol_errors.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn record_rejected(&self) {
        self.rejected_connections.fetch_add(1, Ordering::Relaxed);
    }
    /// Times a full send queue triggered the slow-consumer policy.
    pub fn slow_consumers(&self) -> u64 {
        self.slow_consumers.load(Ordering::Relaxed)
    }
    /// Handlers that returned `Err` or panicked.
    pub fn handler_errors(&self) -> u64 {
        self.handler_errors.load(Ordering::Relaxed)
    }
    /// Connections closed for protocol violations, bad UTF-8 or oversized messages.
    pub fn protocol_errors(&self) -> u64 {
        self.protocol_errors.load(Ordering::Relaxed)
    }
    /// Connections refused by the connection limit.
    pub fn rejected_connections(&self) -> u64 {
        self.rejected_connections.load(Ordering::Relaxed)
    }
}

/// A room and how many local sockets are in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    /// The room name.
    pub name: String,
    /// Local members.
    pub size: usize,
}

/// Handle to the namespace of one websocket service. Cheap to clone.
///
/// Available to handlers as `ws.namespace()`, to any component through `Ulak<N>`, and from the
/// app with [`Asena::namespace`](crate::Asena::namespace).
#[derive(Clone)]
pub struct Namespace {
    inner: Arc<Inner>,
}

struct Inner {
    path: Arc<str>,
    name: Arc<str>,
    /// Transport topic prefix: the path without its leading `/`.
    topic: Arc<str>,
    sockets: RwLock<HashMap<Arc<str>, Arc<Conn>>>,
    rooms: RwLock<RoomIndex<Arc<Conn>>>,
    limits: Limits,
    stats: NamespaceStats,
    transport: Option<Arc<dyn Transport>>,
    live_tasks: Arc<Tracker>,
    /// Writes fan-out to idle sockets (`None` when created outside a runtime).
    flusher: Option<Arc<Flusher>>,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("path", &self.inner.path)
            .field("name", &self.inner.name)
            .field("sockets", &self.socket_count())
            .finish()
    }
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// Counts the live connection tasks of an app, so shutdown can wait for every `on_close`.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    live: AtomicUsize,
    idle: tokio::sync::Notify,
}

/// Keeps a connection counted as live until dropped.
#[derive(Debug)]
pub(crate) struct LiveGuard(Arc<Tracker>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Tracker {
    pub(crate) fn enter(self: &Arc<Self>) -> LiveGuard {
        self.live.fetch_add(1, Ordering::AcqRel);
        LiveGuard(self.clone())
    }

    /// Waits until no connection task is live, or `limit` passes. Returns whether it got idle.
    pub(crate) async fn wait_idle(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, async {
            loop {
                let idle = self.idle.notified();
                if self.live.load(Ordering::Acquire) == 0 {
                    return;
                }
                idle.await;
            }
        })
        .await
        .is_ok()
    }
}

impl Namespace {
    pub(crate) fn new(
        path: &str,
        name: &str,
        limits: Limits,
        transport: Option<Arc<dyn Transport>>,
        live_tasks: Arc<Tracker>,
    ) -> Namespace {
        Namespace {
            inner: Arc::new(Inner {
                path: Arc::from(path),
                name: Arc::from(name),
                topic: Arc::from(path.trim_start_matches('/')),
                sockets: RwLock::new(HashMap::new()),
                rooms: RwLock::new(RoomIndex::new()),
                limits,
                stats: NamespaceStats::default(),
                transport,
                live_tasks,
                flusher: Flusher::current(),
            }),
        }
    }

    /// The service's path, e.g. `/chat`.
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The topic prefix used on transports (`chat` for `/chat`).
    pub fn topic(&self) -> &str {
        &self.inner.topic
    }

    /// The transport topic of `room`: `"<namespace>.<room>"`.
    fn room_topic(&self, room: &str) -> String {
        format!("{}.{}", self.inner.topic, room)
    }

    /// The limits sockets of this namespace run under.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Counters.
    pub fn stats(&self) -> &NamespaceStats {
        &self.inner.stats
    }

    pub(crate) fn tracker(&self) -> &Arc<Tracker> {
        &self.inner.live_tasks
    }

    /// Number of local sockets.
    pub fn socket_count(&self) -> usize {
        read(&self.inner.sockets).len()
    }

    /// Every local socket.
    pub fn sockets(&self) -> Vec<SocketRef> {
        read(&self.inner.sockets)
            .values()
            .map(|c| SocketRef { conn: c.clone() })
            .collect()
    }

    /// The local socket with `id`.
    pub fn socket(&self, id: &str) -> Option<SocketRef> {
        read(&self.inner.sockets)
            .get(id)
            .map(|c| SocketRef { conn: c.clone() })
    }

    /// Named rooms with their local member counts, sorted by name. Personal rooms (socket
    /// ids) are addressable but not listed.
    pub fn rooms(&self) -> Vec<RoomInfo> {
        let mut out: Vec<RoomInfo> = read(&self.inner.rooms)
            .iter()
            .map(|(name, room)| RoomInfo {
                name: name.to_string(),
                size: room.len(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Local members of `room` (a socket id names that socket's personal room).
    pub fn sockets_in(&self, room: &str) -> Vec<SocketRef> {
        if let Some(r) = read(&self.inner.rooms).get(room) {
            return r
                .members()
                .iter()
                .map(|c| SocketRef { conn: c.clone() })
                .collect();
        }
        self.socket(room).into_iter().collect()
    }

    /// Sends to every member of `room` on every instance, sender included. Returns the number
    /// of local recipients.
    pub fn to(&self, room: &str, message: impl IntoFrame) -> Result<usize, SendError> {
        let frame = message.into_frame()?;
        Ok(self.emit_room(room, &frame, None))
    }

    /// Sends to every socket of the namespace on every instance. Returns the number of local
    /// recipients.
    pub fn broadcast(&self, message: impl IntoFrame) -> Result<usize, SendError> {
        let frame = message.into_frame()?;
        Ok(self.emit_all(&frame))
    }

    /// Local fan-out to a room plus publication to other instances.
    pub(crate) fn emit_room(&self, room: &str, frame: &Frame, except: Option<u64>) -> usize {
        let n = self.deliver_room(room, frame, except);
        if let Some(t) = &self.inner.transport {
            t.publish(Outbound::new(self.room_topic(room), frame));
        }
        n
    }

    /// Local fan-out to every socket plus publication to other instances.
    pub(crate) fn emit_all(&self, frame: &Frame) -> usize {
        let n = self.deliver_all(frame);
        if let Some(t) = &self.inner.transport {
            t.publish(Outbound::new(self.inner.topic.to_string(), frame));
        }
        n
    }

    pub(crate) fn flusher(&self) -> Option<&Arc<Flusher>> {
        self.inner.flusher.as_ref()
    }

    /// Whether messages can reach sockets on other instances.
    pub(crate) fn has_transport(&self) -> bool {
        self.inner.transport.is_some()
    }

    /// Local-only fan-out to a room (or a personal room), skipping `except`.
    pub(crate) fn deliver_room(&self, room: &str, frame: &Frame, except: Option<u64>) -> usize {
        let rooms = read(&self.inner.rooms);
        if let Some(r) = rooms.get(room) {
            let mut n = 0;
            for conn in r.members() {
                if Some(conn.key) != except && conn.push(frame).is_ok() {
                    n += 1;
                }
            }
            return n;
        }
        drop(rooms);
        match read(&self.inner.sockets).get(room) {
            Some(conn) if Some(conn.key) != except => usize::from(conn.push(frame).is_ok()),
            _ => 0,
        }
    }

    /// Local-only fan-out to every socket.
    pub(crate) fn deliver_all(&self, frame: &Frame) -> usize {
        read(&self.inner.sockets)
            .values()
            .filter(|c| c.push(frame).is_ok())
            .count()
    }

    pub(crate) fn join(&self, room: &str, conn: &Arc<Conn>) -> bool {
        let change = write(&self.inner.rooms).join(room, conn.clone());
        if change == Change::Room
            && let Some(t) = &self.inner.transport
        {
            t.subscribe(&self.room_topic(room));
        }
        change != Change::None
    }

    pub(crate) fn leave(&self, room: &str, conn: &Conn) -> bool {
        let change = write(&self.inner.rooms).leave(room, conn.key);
        if change == Change::Room
            && let Some(t) = &self.inner.transport
        {
            t.unsubscribe(&self.room_topic(room));
        }
        change != Change::None
    }

    /// Adds a new connection; fails when the connection limit is reached.
    pub(crate) fn insert(&self, conn: Arc<Conn>) -> bool {
        let mut sockets = write(&self.inner.sockets);
        if let Some(max) = self.inner.limits.max_connections
            && sockets.len() >= max
        {
            return false;
        }
        sockets.insert(conn.id.clone(), conn);
        true
    }

    /// Removes a connection and all its memberships.
    pub(crate) fn remove(&self, conn: &Conn) {
        let rooms: Vec<Arc<str>> = conn.rooms.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if !rooms.is_empty() {
            let mut index = write(&self.inner.rooms);
            for room in &rooms {
                if index.leave(room, conn.key) == Change::Room
                    && let Some(t) = &self.inner.transport
                {
                    t.unsubscribe(&self.room_topic(room));
                }
            }
        }
        write(&self.inner.sockets).remove(&conn.id);
    }

    /// Closes every local socket with `code`.
    pub(crate) fn close_all(&self, code: u16, reason: &str) {
        for conn in read(&self.inner.sockets).values() {
            conn.close(code, reason);
        }
    }

    pub(crate) fn next_key() -> u64 {
        NEXT_KEY.fetch_add(1, Ordering::Relaxed)
    }

    /// Number of rooms in the index (for leak checks).
    pub fn room_count(&self) -> usize {
        read(&self.inner.rooms).len()
    }
}
