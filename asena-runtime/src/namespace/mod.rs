//! A namespace: the sockets and rooms of one websocket service, and sending to them.
//!
//! [`Namespace`] is the one sending handle: handlers reach it as `ws.namespace()`, other
//! components through [`Ulak<N>`](crate::Ulak) (which dereferences to it), and the app with
//! [`Asena::namespace`](crate::Asena::namespace). Sockets are handed out as [`SocketRef`]
//! (without their service's types) and [`Socket<S>`] (what the handlers of a service `S`
//! get, and what `Ulak<S>` lists); every send fails with the one
//! [`SendError`]. Room messages go to local members here and to other instances through the
//! app's [`Transport`], under the topics [`wire`] defines;
//! messages from other instances come back in through `inbound.rs`.
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
//! Idle sockets hold no read buffer (reads wait for readiness first), no timer (one sweep per
//! namespace pings and closes quiet sockets, see `sweep.rs`) and no handshake data;
//! the upgrade request's headers are kept packed, and the reader's future holds no handler
//! future while idle (handlers' futures are boxed while they run). Where the bytes of an
//! idle connection go, component by component, is in ARCHITECTURE.md ("Memory per
//! connection").
//! A full queue never blocks the publisher: the slow-consumer policy applies instead.

use std::any::Any;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

mod error;
mod inbound;
mod socket;
mod sweep;

pub use error::{SendError, SendErrorCode};
pub(crate) use inbound::Namespaces;
pub use socket::{Socket, SocketRef, WebSocketData};

pub use crate::rooms::{MAX_ROOM_NAME, RoomError, validate_room};
pub use crate::stats::{FanoutHistogram, NamespaceStats};

use asena_protocol::delivery::Delivery;

use crate::channel::{Encode, Raw};
use crate::codec::Frame;
use crate::config::{Compression, Limits};
use crate::connection::flush::Flusher;
use crate::connection::{Conn, Shared};
use crate::rooms::{Change, RoomIndex};
use crate::shutdown::Tracker;
use crate::transport::{Outbound, Transport};
use crate::wire;

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
///
/// `O` is what it sends ([`Encode`]): for a service declared with `sends = ChatOut`, its
/// handles are `Namespace<ChatOut>` and accept only `ChatOut`; [`raw`](Self::raw) gives the
/// untyped `Namespace` (`Namespace<Raw>`), which sends anything [`IntoFrame`](crate::IntoFrame).
///
/// A service at a parametrised path (`/user/events/{user_id}`) has one namespace for all its
/// concrete paths; each socket is also in the room named by its concrete path
/// (`/user/events/42`), so `to("/user/events/42", ..)` reaches everyone connected there, on
/// every instance.
pub struct Namespace<O = Raw> {
    inner: Arc<Inner>,
    _out: PhantomData<fn() -> O>,
}

impl<O> Clone for Namespace<O> {
    fn clone(&self) -> Self {
        Namespace {
            inner: self.inner.clone(),
            _out: PhantomData,
        }
    }
}

struct Inner {
    /// What the namespace's connections share (path, limits, counters, flushers).
    shared: Arc<Shared>,
    name: Arc<str>,
    /// Transport topic prefix: the path without its leading `/`.
    topic: Arc<str>,
    sockets: RwLock<HashMap<Arc<str>, Arc<Conn>>>,
    rooms: RwLock<RoomIndex<Arc<Conn>>>,
    transport: Option<Arc<dyn Transport>>,
    /// State a protocol layered on the namespace keeps (the managed protocol's users).
    extension: OnceLock<Arc<dyn Any + Send + Sync>>,
    /// The liveness sweep is running (see `sweep.rs`).
    sweeping: AtomicBool,
    /// Who hears of sockets leaving rooms and closing (presence), when the app has one.
    departures: OnceLock<Arc<dyn Departures>>,
    /// Who keeps the history of rooms, when the app has one.
    keeper: OnceLock<Arc<dyn Keeps>>,
}

/// Logs, once per process, that a recoverable message was sent where nothing keeps history.
fn warn_unkept(path: &str) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            target: "asena::history",
            path,
            "a message whose type is Delivery::Recoverable was sent, but the app keeps no history (AsenaBuilder::history): delivered at most once"
        );
    }
}

/// What a layer above the namespace that keeps rooms' history does: messages to the rooms it
/// keeps go through it instead of straight to the members (it numbers and delivers them), and
/// a socket joining such a room is held out of its deliveries until positioned. Set once when
/// the app is built.
pub(crate) trait Keeps: Send + Sync + 'static {
    /// Whether `room` keeps history.
    fn keeps(&self, room: &str) -> bool;
    /// Takes a text message to `room` (sent by the socket `except`, which does not receive
    /// it); false when it cannot, and the message goes out as a plain one.
    fn append(&self, room: &str, frame: &Frame, except: Option<u64>) -> bool;
    /// Whether `conn`'s client presented a position in `room` (it got numbered messages there,
    /// whatever the rule says: a message type may choose to be kept).
    fn recovers(&self, room: &str, conn: &Conn) -> bool;
    /// `conn` is about to join `room`: hold it out of the room's deliveries.
    fn arriving(&self, room: &str, conn: &Arc<Conn>);
    /// `conn` joined `room`: position it, then let it receive.
    fn joined(&self, room: &str, conn: &Arc<Conn>);
}

/// What a layer above the namespace hears of sockets leaving rooms and closing: presence
/// untracks them. Set once when the app is built; called after the room index changed,
/// outside its lock, and never on the fan-out path.
pub(crate) trait Departures: Send + Sync + 'static {
    /// `socket` left `room`.
    fn left(&self, socket: &str, room: &str);
    /// `socket` closed and left every room.
    fn closed(&self, socket: &str);
    /// The concrete type, for the layer that set it.
    fn as_any(&self) -> &dyn Any;
}

impl<O> std::fmt::Debug for Namespace<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("path", &self.path())
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

impl Namespace {
    pub(crate) fn new(
        path: &str,
        name: &str,
        limits: Limits,
        compression: Compression,
        transport: Option<Arc<dyn Transport>>,
        tracker: Arc<Tracker>,
    ) -> Namespace {
        Namespace {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared {
                    path: Arc::from(path),
                    limits,
                    compression,
                    stats: NamespaceStats::default(),
                    flusher: Flusher::current(),
                    tracker,
                    runtime: OnceLock::new(),
                    seal_for: OnceLock::new(),
                    inspect: OnceLock::new(),
                    delivery: OnceLock::new(),
                }),
                name: Arc::from(name),
                topic: Arc::from(wire::namespace_topic(path)),
                sockets: RwLock::new(HashMap::new()),
                rooms: RwLock::new(RoomIndex::new()),
                transport,
                extension: OnceLock::new(),
                sweeping: AtomicBool::new(false),
                departures: OnceLock::new(),
                keeper: OnceLock::new(),
            }),
            _out: PhantomData,
        }
    }
}

impl<O> Namespace<O> {
    /// The untyped handle: sends anything [`IntoFrame`](crate::IntoFrame), whatever the
    /// service declares it `sends`. The escape hatch of typed services.
    pub fn raw(&self) -> Namespace {
        self.retype()
    }

    /// The namespace's extension state of type `T`, made by `init` the first time. `None`
    /// when the slot holds another type.
    pub(crate) fn extension<T: Any + Send + Sync>(
        &self,
        init: impl FnOnce() -> T,
    ) -> Option<Arc<T>> {
        self.inner
            .extension
            .get_or_init(|| Arc::new(init()))
            .clone()
            .downcast::<T>()
            .ok()
    }

    /// The same namespace sending `P`.
    pub(crate) fn retype<P>(&self) -> Namespace<P> {
        Namespace {
            inner: self.inner.clone(),
            _out: PhantomData,
        }
    }

    /// The service's path, e.g. `/chat`.
    pub fn path(&self) -> &str {
        &self.inner.shared.path
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The topic prefix used on transports (`chat` for `/chat`; see [`wire`]).
    pub fn topic(&self) -> &str {
        &self.inner.topic
    }

    /// The limits sockets of this namespace run under.
    pub fn limits(&self) -> &Limits {
        &self.inner.shared.limits
    }

    /// permessage-deflate settings of this namespace's sockets.
    pub fn compression(&self) -> &Compression {
        &self.inner.shared.compression
    }

    /// Counters.
    pub fn stats(&self) -> &NamespaceStats {
        &self.inner.shared.stats
    }

    /// What the namespace's connections share.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// Number of local sockets.
    pub fn socket_count(&self) -> usize {
        read(&self.inner.sockets).len()
    }

    /// Whether the namespace's liveness sweep (the one timer that pings and closes its quiet
    /// sockets) is running: from its first socket until a tick finds none. For tests.
    #[doc(hidden)]
    pub fn __liveness_sweep_running(&self) -> bool {
        self.inner
            .sweeping
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn handle(&self, conn: &Arc<Conn>) -> SocketRef<O> {
        SocketRef {
            conn: conn.clone(),
            ns: self.clone(),
        }
    }

    /// Every local socket.
    pub fn sockets(&self) -> Vec<SocketRef<O>> {
        read(&self.inner.sockets)
            .values()
            .map(|c| self.handle(c))
            .collect()
    }

    /// The local socket with `id`.
    pub fn socket(&self, id: &str) -> Option<SocketRef<O>> {
        read(&self.inner.sockets).get(id).map(|c| self.handle(c))
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

    /// Named rooms with their local members, sorted by name: who is in which room, as
    /// Asena's `this.rooms`. [`rooms`](Self::rooms) gives the counts alone, without taking a
    /// handle to every member.
    #[doc(alias = "this.rooms")]
    pub fn room_members(&self) -> Vec<(String, Vec<SocketRef<O>>)> {
        let mut out: Vec<(String, Vec<SocketRef<O>>)> = read(&self.inner.rooms)
            .iter()
            .map(|(name, room)| {
                let members = room.members().iter().map(|c| self.handle(c)).collect();
                (name.to_string(), members)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Local members of `room` (a socket id names that socket's personal room).
    pub fn sockets_in(&self, room: &str) -> Vec<SocketRef<O>> {
        if let Some(r) = read(&self.inner.rooms).get(room) {
            return r.members().iter().map(|c| self.handle(c)).collect();
        }
        self.socket(room).into_iter().collect()
    }

    /// Encodes a message once for a room, with the delivery its type chooses, if it does.
    pub(crate) fn encode_for_room(
        &self,
        message: impl Encode<O>,
    ) -> Result<(Frame, Option<Delivery>), SendError> {
        let delivery = match (message.message(), self.shared().delivery.get()) {
            (Some(typed), Some(delivery_of)) => delivery_of(typed),
            _ => None,
        };
        Ok((self.encode(message)?, delivery))
    }

    /// Encodes a message once, for any number of recipients.
    pub(crate) fn encode(&self, message: impl Encode<O>) -> Result<Frame, SendError> {
        message
            .encode()
            .map_err(|e| SendError::invalid_message(Some(self.path()), e))
    }

    /// Sends to every member of `room` on every instance, sender included. Returns the number
    /// of local recipients. A socket id names that socket (it is the only member of the room
    /// of its id). Reserved names ([`RoomError::Reserved`](crate::namespace::RoomError)), the broadcast
    /// room `__` among them, fail with [`InvalidRoom`](SendErrorCode::InvalidRoom): a
    /// broadcast is [`broadcast`](Self::broadcast).
    pub fn to(&self, room: &str, message: impl Encode<O>) -> Result<usize, SendError> {
        self.check_target(room)?;
        let (frame, delivery) = self.encode_for_room(message)?;
        self.check_fits(&frame)?;
        Ok(self.emit_room(room, &frame, None, delivery))
    }

    /// Sends to each of `rooms` (like calling [`to`](Self::to) for each; a socket in two of
    /// them gets the message twice). The message is encoded once. Returns local recipients.
    /// Every name is checked before anything is sent.
    pub fn to_many<'r>(
        &self,
        rooms: impl IntoIterator<Item = &'r str>,
        message: impl Encode<O>,
    ) -> Result<usize, SendError> {
        let rooms: Vec<&str> = rooms.into_iter().collect();
        for room in &rooms {
            self.check_target(room)?;
        }
        let (frame, delivery) = self.encode_for_room(message)?;
        self.check_fits(&frame)?;
        Ok(rooms
            .into_iter()
            .map(|room| self.emit_room(room, &frame, None, delivery))
            .sum())
    }

    /// Whether the transport carries `frame` to the other instances: a message it would
    /// refuse is sent to nobody, and the caller is told.
    pub(crate) fn check_fits(&self, frame: &Frame) -> Result<(), SendError> {
        let Some(max) = self
            .inner
            .transport
            .as_ref()
            .and_then(|t| t.max_message_size())
        else {
            return Ok(());
        };
        let len = frame.payload().len();
        let size = if frame.is_text() {
            len
        } else {
            len.div_ceil(3) * 4
        };
        if size <= max {
            return Ok(());
        }
        self.stats().record_too_large();
        Err(SendError::new(
            SendErrorCode::MessageTooLarge,
            Some(self.path()),
            format!("a message of {size} bytes on the wire is larger than the transport's {max}"),
        ))
    }

    /// A room server code may send to: any name but a reserved one.
    fn check_target(&self, room: &str) -> Result<(), SendError> {
        crate::rooms::validate_target(room)
            .map_err(|e| SendError::invalid_room(Some(self.path()), room, e))
    }

    /// Sends to every socket of the namespace on every instance (Asena's `this.in(data)`).
    /// Returns the number of local recipients.
    #[doc(alias = "in")]
    pub fn broadcast(&self, message: impl Encode<O>) -> Result<usize, SendError> {
        let frame = self.encode(message)?;
        self.check_fits(&frame)?;
        Ok(self.emit_all(&frame))
    }

    /// Sends to one socket by id, and to nobody else: the message goes to the socket, never
    /// through a room a client could have joined (no client can join a room named like a
    /// socket id). Locally unknown ids go to the other instances when the app has a
    /// transport, and fail with [`SocketNotFound`](SendErrorCode::SocketNotFound) when it
    /// does not or when `id` is not a socket id at all; a local socket that is closing or
    /// not keeping up fails with [`SendFailed`](SendErrorCode::SendFailed).
    pub fn to_socket(&self, id: &str, message: impl Encode<O>) -> Result<(), SendError> {
        let frame = self.encode(message)?;
        if let Some(socket) = self.socket(id) {
            socket.push(&frame)?;
            self.stats().record_send(1, false);
            return Ok(());
        }
        if self.inner.transport.is_some() && uuid::Uuid::try_parse(id).is_ok() {
            self.check_fits(&frame)?;
            self.emit_room(id, &frame, None, None);
            return Ok(());
        }
        let shown: String = id.chars().take(64).collect();
        Err(SendError::new(
            SendErrorCode::SocketNotFound,
            Some(self.path()),
            format!("no socket with id {shown:?}"),
        ))
    }

    /// Hands a message to the transport, if any; `interest` when only the members of a named
    /// room receive it (see [`Route::Topic`](crate::transport::Route::Topic)).
    fn publish(&self, topic: String, frame: &Frame, interest: bool) {
        if let Some(t) = &self.inner.transport {
            t.publish(Outbound::topic(
                topic,
                frame.payload_bytes(),
                !frame.is_text(),
                interest,
            ));
        }
    }

    /// Local fan-out to a room plus publication to other instances (one message sent), or,
    /// for a text message to a room that keeps history, to the keeper, which numbers and
    /// delivers it (0 local recipients now). The name was checked by the caller: it is
    /// never the broadcast room.
    ///
    /// `delivery` is what the message's type chose, if it did: [`Delivery::AtMostOnce`] is
    /// never kept, [`Delivery::Recoverable`] is kept in any named room; `None` leaves it to
    /// the history's rule.
    pub(crate) fn emit_room(
        &self,
        room: &str,
        frame: &Frame,
        except: Option<u64>,
        delivery: Option<Delivery>,
    ) -> usize {
        let keeper = self.inner.keeper.get();
        let kept = frame.is_text()
            && match delivery {
                None => keeper.is_some_and(|k| k.keeps(room)),
                Some(Delivery::Recoverable) => {
                    if keeper.is_none() {
                        warn_unkept(self.path());
                    }
                    keeper.is_some() && wire::routes_by_interest(room)
                }
                Some(_) => false,
            };
        if kept
            && let Some(keeper) = keeper
            && keeper.append(room, frame, except)
        {
            self.stats().record_send(0, true);
            return 0;
        }
        self.emit_plain(room, frame, except)
    }

    /// [`emit_room`](Self::emit_room) without history.
    pub(crate) fn emit_plain(&self, room: &str, frame: &Frame, except: Option<u64>) -> usize {
        let n = self.deliver_room(room, frame, except);
        self.stats().record_send(n, true);
        if self.inner.transport.is_some() {
            let interest = wire::routes_by_interest(room);
            self.publish(wire::room_topic(&self.inner.topic, room), frame, interest);
        }
        n
    }

    /// Local fan-out to every socket plus publication to other instances.
    pub(crate) fn emit_all(&self, frame: &Frame) -> usize {
        let n = self.deliver_all(frame, None);
        self.stats().record_send(n, true);
        if self.inner.transport.is_some() {
            self.publish(wire::broadcast_topic(&self.inner.topic), frame, false);
        }
        n
    }

    /// Local-only fan-out to a room (or a personal room), skipping `except`.
    pub(crate) fn deliver_room(&self, room: &str, frame: &Frame, except: Option<u64>) -> usize {
        self.deliver_room_unless(room, frame, |key| Some(key) == except)
    }

    /// Local-only fan-out to a room (or a personal room), skipping the connections whose key
    /// `skip` picks.
    pub(crate) fn deliver_room_unless(
        &self,
        room: &str,
        frame: &Frame,
        skip: impl Fn(u64) -> bool,
    ) -> usize {
        let rooms = read(&self.inner.rooms);
        if let Some(r) = rooms.get(room) {
            let mut n = 0;
            for conn in r.members() {
                if !skip(conn.key) && conn.push(frame).is_ok() {
                    n += 1;
                }
            }
            return n;
        }
        drop(rooms);
        match read(&self.inner.sockets).get(room) {
            Some(conn) if !skip(conn.key) => usize::from(conn.push(frame).is_ok()),
            _ => 0,
        }
    }

    /// The local member `key` of the named room `room`.
    #[cfg_attr(
        not(feature = "redis"),
        allow(dead_code, reason = "history needs redis")
    )]
    pub(crate) fn member(&self, room: &str, key: u64) -> Option<Arc<Conn>> {
        read(&self.inner.rooms)
            .get(room)?
            .members()
            .iter()
            .find(|c| c.key == key)
            .cloned()
    }

    /// Local members of the named room `room`.
    #[cfg_attr(
        not(feature = "redis"),
        allow(dead_code, reason = "history needs redis")
    )]
    pub(crate) fn room_size(&self, room: &str) -> usize {
        read(&self.inner.rooms).get(room).map_or(0, |r| r.len())
    }

    /// Local-only fan-out to every socket, skipping `except`.
    pub(crate) fn deliver_all(&self, frame: &Frame, except: Option<u64>) -> usize {
        read(&self.inner.sockets)
            .values()
            .filter(|c| Some(c.key) != except && c.push(frame).is_ok())
            .count()
    }

    /// Adds `conn` to `room`; returns the room's name as the index holds it (for the
    /// connection's own list, so it costs no copy) when it was not a member yet.
    pub(crate) fn join(&self, room: &str, conn: &Arc<Conn>) -> Option<Arc<str>> {
        let keeper = self.inner.keeper.get().filter(|k| {
            (k.keeps(room) || k.recovers(room, conn)) && !self.has_member(room, conn.key)
        });
        if let Some(keeper) = keeper {
            keeper.arriving(room, conn);
        }
        let (change, name) = {
            let mut index = write(&self.inner.rooms);
            let change = index.join(room, conn.clone());
            (change, index.name(room))
        };
        if change == Change::Room
            && let Some(t) = &self.inner.transport
            && wire::routes_by_interest(room)
        {
            t.subscribe(&wire::room_topic(&self.inner.topic, room));
        }
        if let Some(keeper) = keeper {
            keeper.joined(room, conn);
        }
        name.filter(|_| change != Change::None)
    }

    pub(crate) fn leave(&self, room: &str, conn: &Conn) -> bool {
        let change = write(&self.inner.rooms).leave(room, conn.key);
        if change == Change::Room
            && let Some(t) = &self.inner.transport
            && wire::routes_by_interest(room)
        {
            t.unsubscribe(&wire::room_topic(&self.inner.topic, room));
        }
        if change != Change::None
            && let Some(departures) = self.inner.departures.get()
        {
            departures.left(&conn.id, room);
        }
        change != Change::None
    }

    /// Adds a new connection; fails when the connection limit is reached.
    pub(crate) fn insert(&self, conn: Arc<Conn>) -> bool {
        let mut sockets = write(&self.inner.sockets);
        if let Some(max) = self.limits().max_connections
            && sockets.len() >= max
        {
            return false;
        }
        sockets.insert(conn.id.clone(), conn);
        sweep::ensure(&self.inner);
        true
    }

    /// Removes a connection and all its memberships.
    pub(crate) fn remove(&self, conn: &Conn) {
        let rooms: Vec<Arc<str>> = conn.rooms_lock().clone();
        if !rooms.is_empty() {
            let mut index = write(&self.inner.rooms);
            for room in &rooms {
                if index.leave(room, conn.key) == Change::Room
                    && let Some(t) = &self.inner.transport
                    && wire::routes_by_interest(room)
                {
                    t.unsubscribe(&wire::room_topic(&self.inner.topic, room));
                }
            }
        }
        write(&self.inner.sockets).remove(&conn.id);
        if let Some(departures) = self.inner.departures.get() {
            departures.closed(&conn.id);
        }
    }

    /// Closes every local socket with `code`.
    pub(crate) fn close_all(&self, code: u16, reason: &str) {
        for conn in read(&self.inner.sockets).values() {
            conn.close(code, reason);
        }
    }

    /// Sets who hears of departures (once; later calls are ignored).
    pub(crate) fn set_departures(&self, departures: Arc<dyn Departures>) {
        let _ = self.inner.departures.set(departures);
    }

    /// Sets who keeps rooms' history (once; later calls are ignored).
    #[cfg_attr(
        not(feature = "redis"),
        allow(dead_code, reason = "history needs redis")
    )]
    pub(crate) fn set_keeper(&self, keeper: Arc<dyn Keeps>) {
        let _ = self.inner.keeper.set(keeper);
    }

    /// Who hears of departures, when someone does.
    pub(crate) fn departures(&self) -> Option<&Arc<dyn Departures>> {
        self.inner.departures.get()
    }

    /// Whether the connection `key` is a member of the named room `room`.
    pub(crate) fn has_member(&self, room: &str, key: u64) -> bool {
        read(&self.inner.rooms).contains(room, key)
    }

    /// Number of rooms in the index (for leak checks).
    pub fn room_count(&self) -> usize {
        read(&self.inner.rooms).len()
    }
}
