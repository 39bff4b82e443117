//! Presence: who is in a room, on every instance (Phoenix.Presence's model).
//!
//! A handler marks its socket present in a room with metadata the service chooses (a JSON
//! object) under a key (a user id; the socket id by default), and may update and untrack it;
//! leaving the room or closing the socket untracks it. One key may hold several entries
//! (several tabs or devices), each with its own `phx_ref`. [`Presence::list`] gives the room's
//! entries on every instance, key → metas; the room's members get `presence_diff` frames, the
//! socket that tracks gets `presence_state`, and the service can read the diffs as a stream
//! ([`Presence::diffs`]). Enabled with [`AsenaBuilder::presence`](crate::AsenaBuilder::presence).
//!
//! ```no_run
//! use asena_runtime::prelude::*;
//!
//! #[websocket(path = "/chat")]
//! struct Chat;
//!
//! impl WebSocketService for Chat {
//!     type Data = ();
//!     async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
//!         let name = ws.query("name").unwrap_or("anonymous").to_owned();
//!         ws.presence().track_as("lobby", &name, &json!({"typing": false}))?;
//!         Ok(())
//!     }
//!     async fn on_message(&self, ws: &Socket<Self>, _msg: Message) -> Result<()> {
//!         // who is in the lobby on every instance: key -> {"metas": [..]}
//!         ws.send_json(&ws.namespace().presence().list("lobby"))?;
//!         Ok(())
//!     }
//! }
//! ```
//!
//! # What clients receive
//! A plain service's sockets get JSON text frames (a managed service's get the same objects
//! as the `data` of `{"event":"presence_state"|"presence_diff","data":..}`):
//!
//! ```json
//! {"type":"presence_state","room":"lobby","state":{"ada":{"metas":[{"typing":false,"phx_ref":"…"}]}}}
//! {"type":"presence_diff","room":"lobby","joins":{"bob":{"metas":[…]}},"leaves":{}}
//! ```
//!
//! These shapes are `asena_protocol::presence`'s (the frame types, re-exported here, are
//! defined there), so the typed client reads them with the same types: `asena-client` yields
//! them as `Event::Presence` and keeps a room's list with `Presences`.
//!
//! The room's members receive each diff (the socket whose own track it is excepted: it got
//! the state, which holds its entry). An update is a leave of the old ref and a join of a new
//! one, as in Phoenix.
//!
//! # Across instances, without a CRDT
//! Every entry has one writer: the instance of the socket that tracked it. Each instance
//! publishes its own changes as diffs numbered by a per-instance sequence, and a heartbeat
//! with its latest number every [`PresenceOptions::heartbeat`]. A receiver holds, per other
//! instance, that instance's latest snapshot plus the diffs after it, and applies a diff only
//! when its number is the next one; a gap, a heartbeat with another number, or an instance
//! it does not know makes it ask that instance for its full state (sent in parts, all carrying
//! the number of the last diff they include). A starting instance asks everyone. An instance
//! silent for three of its own intervals is dropped with leave diffs for all its entries, and
//! one that shuts down says goodbye, so no entry outlives its writer (no ghosts).
//!
//! The state of a room is then the union, over the live instances, of each one's entries as
//! its writer last published them. No two instances ever write the same entry, so there are
//! no concurrent updates to merge, which is what a CRDT (Phoenix's delta-state ORSWOT) is
//! for; ordering within one writer is its sequence number, and the broker keeps one
//! publisher's messages in order. What is lost in an outage is repaired by the next heartbeat
//! (a mismatch asks for the state) or the timeout (a dead writer's entries go).
//!
//! # Bounds
//! Metadata is at most [`PresenceOptions::max_meta_bytes`] as JSON (1 KiB by default), keys
//! 1 to 128 bytes, a socket holds at most [`PresenceOptions::max_entries_per_socket`] entries
//! (16) and a room at most [`PresenceOptions::max_entries_per_room`] as this instance knows it
//! (10 000); each is a [`PresenceError`]. From the bus: a message over
//! [`PresenceOptions::max_message_bytes`] (1 MiB) is dropped before it is parsed, a malformed
//! one is dropped with a bounded log line, at most 1024 other instances and 100 000 entries
//! per instance are kept, and a remote join into a full room is dropped. Room names pass
//! [`validate_room`](crate::namespace::validate_room). Sockets that never track pay nothing on
//! the fan-out path; leaving a room and closing cost one lookup when the app has presence.

mod bus;

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::asyncapi::{ChannelSpec, ProtocolMessage};
use crate::codec::Frame;
use crate::error::Result;
use crate::namespace::{Departures, Namespace, RoomError, SocketRef};
use crate::protocol::Fleet;
use crate::transport::{Heard, Hears, Outbound, Transport};

use bus::{Entry, Kind, Message};

/// The default prefix of presence's named channel on the transport.
const PREFIX: &str = "asena-presence";

/// How many of its own intervals another instance may stay silent before its entries go.
const SILENT_INTERVALS: u32 = 3;

/// The most other instances kept.
const MAX_INSTANCES: usize = 1024;

/// The most entries kept of one other instance.
const MAX_ENTRIES_PER_INSTANCE: usize = 100_000;

/// The longest key, in bytes.
pub const MAX_KEY: usize = 128;

/// How many diffs the stream of [`Presence::diffs`] holds for a slow reader.
const DIFFS_BUFFER: usize = 1024;

/// How presence behaves: intervals and bounds. Pass it to
/// [`AsenaBuilder::presence`](crate::AsenaBuilder::presence).
#[derive(Debug, Clone)]
pub struct PresenceOptions {
    heartbeat: Duration,
    max_meta_bytes: usize,
    max_entries_per_socket: usize,
    max_entries_per_room: usize,
    max_message_bytes: usize,
    channel_prefix: String,
}

impl Default for PresenceOptions {
    fn default() -> Self {
        PresenceOptions {
            heartbeat: Duration::from_secs(2),
            max_meta_bytes: 1024,
            max_entries_per_socket: 16,
            max_entries_per_room: 10_000,
            max_message_bytes: 1 << 20,
            channel_prefix: PREFIX.to_owned(),
        }
    }
}

impl PresenceOptions {
    /// How often the instance tells the others it is alive (default 2 s, at least 10 ms);
    /// another instance silent for three of its intervals loses its entries.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every.max(Duration::from_millis(10));
        self
    }

    /// The largest metadata, as JSON bytes (default 1024).
    pub fn max_meta_bytes(mut self, bytes: usize) -> Self {
        self.max_meta_bytes = bytes;
        self
    }

    /// The most entries one socket may hold, over all rooms (default 16).
    pub fn max_entries_per_socket(mut self, entries: usize) -> Self {
        self.max_entries_per_socket = entries;
        self
    }

    /// The most entries in one room, over the fleet as this instance knows it (default
    /// 10 000).
    pub fn max_entries_per_room(mut self, entries: usize) -> Self {
        self.max_entries_per_room = entries;
        self
    }

    /// The largest presence message accepted from the bus (default 1 MiB); a full state is
    /// sent in parts of at most half of it.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes.max(4096);
        self
    }

    /// The prefix of the named channel presence uses on the transport (default
    /// `asena-presence`, the channel `asena-presence:fleet`): fleets sharing a broker keep
    /// apart with their own (on Redis a named channel is the same for every client of the
    /// server). 1 to 64 ASCII letters, digits, `-` or `_`, else the app does not start.
    pub fn channel_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.channel_prefix = prefix.into();
        self
    }

    /// How many entries a part of a state message holds.
    fn entries_per_part(&self) -> usize {
        (self.max_message_bytes / 2 / (self.max_meta_bytes + 1024)).max(1)
    }
}

/// Why a presence call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PresenceError {
    /// The app was built without [`AsenaBuilder::presence`](crate::AsenaBuilder::presence).
    #[error("presence is not enabled: build the app with AsenaBuilder::presence")]
    Disabled,
    /// The room name is not one a client may use.
    #[error("invalid room: {0}")]
    InvalidRoom(#[from] RoomError),
    /// The socket is closed, or left the room while tracking.
    #[error("the socket is closed or not in the room")]
    NotInRoom,
    /// The key is empty or longer than [`MAX_KEY`] bytes.
    #[error("a presence key is 1 to 128 bytes, not {0}")]
    InvalidKey(usize),
    /// The metadata is not a JSON object.
    #[error("presence metadata must serialize to a JSON object")]
    NotAnObject,
    /// The metadata is larger than [`PresenceOptions::max_meta_bytes`].
    #[error("presence metadata of {size} bytes is over the limit of {limit}")]
    MetaTooLarge {
        /// Its size as JSON.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The socket holds [`PresenceOptions::max_entries_per_socket`] entries already.
    #[error("the socket already holds {0} presence entries, the limit")]
    SocketFull(usize),
    /// The room holds [`PresenceOptions::max_entries_per_room`] entries already.
    #[error("the room already holds {0} presence entries, the limit")]
    RoomFull(usize),
    /// The socket is tracked under this key in this room already (update it instead).
    #[error("already tracked under this key in this room")]
    AlreadyTracked,
    /// The socket is not tracked under this key in this room.
    #[error("not tracked under this key in this room")]
    NotTracked,
    /// The metadata did not serialize.
    #[error("presence metadata does not serialize: {0}")]
    Serialize(#[source] serde_json::Error),
}

use asena_protocol::presence::PresenceState;
pub use asena_protocol::presence::{PresenceDiff, PresenceList, PresenceMeta, PresenceMetas};

/// A room of a namespace: (namespace path, room name).
type RoomKey = (Arc<str>, Arc<str>);

/// An entry as a room holds it.
struct Item {
    key: Arc<str>,
    meta: Arc<Map<String, Value>>,
}

/// One of this instance's entries.
struct Own {
    room: RoomKey,
    socket: Arc<str>,
    key: Arc<str>,
}

/// What this instance keeps of another.
struct Peer {
    /// The number of its last diff applied here.
    seq: u64,
    /// Whether a state of it arrived: diffs apply only then.
    synced: bool,
    every: Duration,
    seen: Instant,
    asked: Option<Instant>,
    /// Its entries: ref → room.
    refs: HashMap<Arc<str>, RoomKey>,
    /// A state arriving in parts.
    snapshot: Option<Snapshot>,
}

struct Snapshot {
    seq: u64,
    next: u32,
    entries: Vec<Entry>,
}

#[derive(Default)]
struct State {
    /// The number of this instance's last diff.
    seq: u64,
    rooms: HashMap<RoomKey, HashMap<Arc<str>, Item>>,
    own: HashMap<Arc<str>, Own>,
    /// Socket id → the refs of its entries.
    sockets: HashMap<Arc<str>, Vec<Arc<str>>>,
    peers: HashMap<Arc<str>, Peer>,
}

/// Joins and leaves per room, gathered under the lock and sent once.
#[derive(Default)]
struct Changes(BTreeMap<RoomKey, (PresenceList, PresenceList)>);

impl Changes {
    fn add(
        &mut self,
        join: bool,
        room: &RoomKey,
        key: &str,
        phx_ref: &str,
        meta: &Map<String, Value>,
    ) {
        let (joins, leaves) = self.0.entry(room.clone()).or_default();
        let list = if join { joins } else { leaves };
        list.entry(key.to_owned())
            .or_default()
            .metas
            .push(PresenceMeta {
                meta: meta.clone(),
                phx_ref: phx_ref.to_owned(),
            });
    }
}

/// One namespace as presence serves it.
struct Served {
    ns: Namespace,
    diffs: broadcast::Sender<PresenceDiff>,
}

/// The app's presence: its entries, the other instances', and its task on the bus.
pub(crate) struct Hub {
    id: Arc<str>,
    options: PresenceOptions,
    served: HashMap<Arc<str>, Served>,
    state: Mutex<State>,
    transport: std::sync::OnceLock<Arc<dyn Transport>>,
    /// `<prefix>:fleet`.
    channel: String,
    /// A state was asked for.
    wake: Notify,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// What a namespace holds to reach the hub (weakly: the hub holds the namespaces).
struct Slot(Weak<Hub>);

impl Departures for Slot {
    fn left(&self, socket: &str, room: &str) {
        if let Some(hub) = self.0.upgrade() {
            hub.untrack_where(socket, Some(room));
        }
    }
    fn closed(&self, socket: &str) {
        if let Some(hub) = self.0.upgrade() {
            hub.untrack_where(socket, None);
        }
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A new entry reference, unique across the fleet.
fn new_ref() -> Arc<str> {
    Arc::from(uuid::Uuid::new_v4().simple().to_string())
}

impl Hears for Hub {
    /// A message from the bus.
    fn hear(&self, payload: &[u8]) -> Heard {
        let limit = self.options.max_message_bytes;
        if payload.len() > limit {
            return Heard::Refused(format!(
                "a presence message of {} bytes is over the limit of {limit}",
                payload.len()
            ));
        }
        let message: Message = match serde_json::from_slice(payload) {
            Ok(message) => message,
            Err(e) => {
                return Heard::Refused(format!("malformed presence message: {}", bus::bounded(&e)));
            }
        };
        if *message.from == *self.id {
            return Heard::Own;
        }
        if message.v != bus::VERSION {
            return Heard::Refused(format!("presence message of version {}", message.v));
        }
        if message.from.is_empty() || message.from.len() > bus::MAX_ID {
            return Heard::Refused("presence message from an invalid instance id".to_owned());
        }
        if message.kind == Kind::Ask {
            if message.to.as_deref().is_none_or(|to| to == &*self.id) {
                self.wake.notify_one();
            }
            return Heard::Delivered;
        }
        let mut changes = Changes::default();
        let mut state = lock(&self.state);
        let heard = self.apply(&mut state, message, &mut changes);
        self.emit(changes, None);
        heard
    }
}

impl Hub {
    /// The presence of `namespaces`, each told of it.
    pub(crate) fn new(options: PresenceOptions, namespaces: &[Namespace]) -> Arc<Hub> {
        let served = namespaces
            .iter()
            .map(|ns| {
                let served = Served {
                    ns: ns.clone(),
                    diffs: broadcast::channel(DIFFS_BUFFER).0,
                };
                (Arc::from(ns.path()), served)
            })
            .collect();
        let hub = Arc::new(Hub {
            id: Arc::from(uuid::Uuid::new_v4().simple().to_string()),
            channel: format!("{}:fleet", options.channel_prefix),
            options,
            served,
            state: Mutex::new(State::default()),
            transport: std::sync::OnceLock::new(),
            wake: Notify::new(),
            task: Mutex::new(None),
        });
        for ns in namespaces {
            ns.set_departures(Arc::new(Slot(Arc::downgrade(&hub))));
        }
        hub
    }

    /// Listens on the fleet's transport (nothing to do on a single instance).
    pub(crate) fn listen(self: &Arc<Self>, fleet: &Fleet) -> Result<()> {
        let prefix = &self.options.channel_prefix;
        if let Some(transport) = fleet.listen_weakly(prefix, "presence", self)? {
            let _ = self.transport.set(transport);
        }
        Ok(())
    }

    /// Starts the heartbeat, once the transport runs, and asks every instance for its state.
    pub(crate) fn start(self: &Arc<Self>) {
        if self.transport.get().is_none() {
            return;
        }
        self.publish(&Message::new(&self.id, Kind::Ask));
        let hub = Arc::downgrade(self);
        let every = self.options.heartbeat;
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let Some(live) = hub.upgrade() else { return };
                tokio::select! {
                    _ = tick.tick() => live.beat(),
                    () = live.wake.notified() => {
                        live.send_state();
                        drop(live);
                        // At most four states per interval, however often asked.
                        tokio::time::sleep(every / 4).await;
                    }
                }
            }
        });
        *self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(task);
    }

    /// Stops the heartbeat and says goodbye.
    pub(crate) fn stop(&self) {
        let task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.abort();
            self.publish(&Message::new(&self.id, Kind::Bye));
        }
    }

    fn publish(&self, message: &Message) {
        if let Some(t) = self.transport.get() {
            t.publish(Outbound::channel(self.channel.clone(), message.encode()));
        }
    }

    /// A diff of this instance's own entries, numbered (under the state's lock, so the
    /// numbers go out in order).
    fn publish_diff(&self, state: &mut State, joins: Vec<Entry>, leaves: Vec<String>) {
        state.seq += 1;
        if self.transport.get().is_none() {
            return;
        }
        let mut message = Message::new(&self.id, Kind::Diff);
        message.seq = state.seq;
        message.every_ms = millis(self.options.heartbeat);
        message.entries = joins;
        message.leaves = leaves;
        self.publish(&message);
    }

    /// Heartbeat: tells the fleet the number of the last diff; drops silent instances and
    /// asks again for states that did not come.
    fn beat(&self) {
        let now = Instant::now();
        let mut changes = Changes::default();
        {
            let mut state = lock(&self.state);
            let mut message = Message::new(&self.id, Kind::Beat);
            message.seq = state.seq;
            message.every_ms = millis(self.options.heartbeat);
            self.publish(&message);
            let silent: Vec<Arc<str>> = state
                .peers
                .iter()
                .filter(|(_, p)| now.duration_since(p.seen) > p.every * SILENT_INTERVALS)
                .map(|(id, _)| id.clone())
                .collect();
            for id in silent {
                tracing::info!(target: "asena::presence", instance = %id, "instance silent: its presence is removed");
                drop_peer(&mut state, &id, &mut changes);
            }
            let unsynced: Vec<Arc<str>> = state
                .peers
                .iter_mut()
                .filter(|(_, p)| {
                    !p.synced && p.asked.is_none_or(|at| now.duration_since(at) >= p.every)
                })
                .map(|(id, p)| {
                    p.asked = Some(now);
                    id.clone()
                })
                .collect();
            for id in unsynced {
                self.ask(&id);
            }
            self.emit(changes, None);
        }
    }

    fn ask(&self, id: &str) {
        let mut message = Message::new(&self.id, Kind::Ask);
        message.to = Some(id.to_owned());
        self.publish(&message);
    }

    /// Publishes this instance's whole state, in parts.
    fn send_state(&self) {
        let state = lock(&self.state);
        let entries: Vec<Entry> = state
            .own
            .iter()
            .filter_map(|(phx_ref, own)| {
                let item = state.rooms.get(&own.room)?.get(phx_ref)?;
                Some(entry(&own.room, phx_ref, item))
            })
            .collect();
        let per_part = self.options.entries_per_part();
        let parts: Vec<Vec<Entry>> = if entries.is_empty() {
            vec![Vec::new()]
        } else {
            entries.chunks(per_part).map(<[Entry]>::to_vec).collect()
        };
        let count = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            let mut message = Message::new(&self.id, Kind::State);
            message.seq = state.seq;
            message.every_ms = millis(self.options.heartbeat);
            message.part = u32::try_from(i).unwrap_or(u32::MAX);
            message.last = i + 1 == count;
            message.entries = part;
            self.publish(&message);
        }
    }

    /// Applies a message of another instance (under the lock).
    fn apply(&self, state: &mut State, message: Message, changes: &mut Changes) -> Heard {
        let from: Arc<str> = Arc::from(message.from.as_str());
        if message.kind == Kind::Bye {
            if state.peers.contains_key(&from) {
                tracing::info!(target: "asena::presence", instance = %from, "instance said goodbye: its presence is removed");
                drop_peer(state, &from, changes);
            }
            return Heard::Delivered;
        }
        let now = Instant::now();
        if !state.peers.contains_key(&from) {
            if state.peers.len() >= MAX_INSTANCES {
                return Heard::Refused(format!(
                    "over {MAX_INSTANCES} instances: presence of a new one ignored"
                ));
            }
            state.peers.insert(
                from.clone(),
                Peer {
                    seq: 0,
                    synced: false,
                    every: self.options.heartbeat,
                    seen: now,
                    asked: None,
                    refs: HashMap::new(),
                    snapshot: None,
                },
            );
        }
        let Some(peer) = state.peers.get_mut(&from) else {
            return Heard::Delivered;
        };
        peer.seen = now;
        if message.every_ms > 0 {
            peer.every = Duration::from_millis(message.every_ms.clamp(10, 3_600_000));
        }
        match message.kind {
            Kind::Beat if peer.synced && message.seq == peer.seq => {}
            Kind::Beat => peer.synced = false,
            Kind::Diff if peer.synced && message.seq == peer.seq.wrapping_add(1) => {
                peer.seq = message.seq;
                let mut dropped = 0;
                for phx_ref in &message.leaves {
                    remove_remote(state, &from, phx_ref, changes);
                }
                for e in message.entries {
                    dropped += usize::from(!self.insert_remote(state, &from, e, changes));
                }
                if dropped > 0 {
                    tracing::debug!(target: "asena::presence", instance = %from, dropped, "remote presence entries dropped (invalid, or over a bound)");
                }
                return Heard::Delivered;
            }
            Kind::Diff if peer.synced && message.seq <= peer.seq => {}
            Kind::Diff => peer.synced = false,
            Kind::State => return self.take_state(state, &from, message, changes),
            Kind::Ask | Kind::Bye => {}
        }
        if let Some(peer) = state.peers.get_mut(&from)
            && !peer.synced
            && peer
                .asked
                .is_none_or(|at| now.duration_since(at) >= peer.every)
        {
            peer.asked = Some(now);
            self.ask(&from);
        }
        Heard::Delivered
    }

    /// A part of another instance's state; the last part replaces what is known of it.
    fn take_state(
        &self,
        state: &mut State,
        from: &Arc<str>,
        message: Message,
        changes: &mut Changes,
    ) -> Heard {
        let Some(peer) = state.peers.get_mut(from) else {
            return Heard::Delivered;
        };
        if peer.synced && message.seq <= peer.seq {
            // A state asked for by another instance: nothing new for this one.
            return Heard::Delivered;
        }
        if message.part == 0 {
            peer.snapshot = Some(Snapshot {
                seq: message.seq,
                next: 0,
                entries: Vec::new(),
            });
        }
        let Some(snapshot) = peer.snapshot.as_mut() else {
            return Heard::Delivered;
        };
        if snapshot.seq != message.seq || snapshot.next != message.part {
            peer.snapshot = None;
            return Heard::Refused("presence state parts out of order".to_owned());
        }
        if snapshot.entries.len() + message.entries.len() > MAX_ENTRIES_PER_INSTANCE {
            peer.snapshot = None;
            return Heard::Refused(format!(
                "a presence state of over {MAX_ENTRIES_PER_INSTANCE} entries is ignored"
            ));
        }
        snapshot.next += 1;
        snapshot.entries.extend(message.entries);
        if !message.last {
            return Heard::Delivered;
        }
        let Some(snapshot) = peer.snapshot.take() else {
            return Heard::Delivered;
        };
        peer.seq = snapshot.seq;
        peer.synced = true;
        let wanted: std::collections::HashSet<&str> =
            snapshot.entries.iter().map(|e| &*e.phx_ref).collect();
        let gone: Vec<Arc<str>> = peer
            .refs
            .keys()
            .filter(|r| !wanted.contains(&***r))
            .cloned()
            .collect();
        for phx_ref in gone {
            remove_remote(state, from, &phx_ref, changes);
        }
        for e in snapshot.entries {
            let known = state
                .peers
                .get(from)
                .is_some_and(|p| p.refs.contains_key(&e.phx_ref));
            if !known {
                self.insert_remote(state, from, e, changes);
            }
        }
        Heard::Delivered
    }

    /// Adds an entry of another instance, when it is valid and within the bounds.
    fn insert_remote(
        &self,
        state: &mut State,
        from: &Arc<str>,
        e: Entry,
        changes: &mut Changes,
    ) -> bool {
        let valid = self.served.contains_key(&e.ns)
            && crate::namespace::validate_room(&e.room).is_ok()
            && (1..=MAX_KEY).contains(&e.key.len())
            && (1..=bus::MAX_ID).contains(&e.phx_ref.len());
        let Some(peer) = state.peers.get_mut(from) else {
            return false;
        };
        if !valid || peer.refs.len() >= MAX_ENTRIES_PER_INSTANCE {
            return false;
        }
        let room: RoomKey = (e.ns.clone(), e.room.clone());
        let items = state.rooms.entry(room.clone()).or_default();
        if items.len() >= self.options.max_entries_per_room || items.contains_key(&e.phx_ref) {
            if items.is_empty() {
                state.rooms.remove(&room);
            }
            return false;
        }
        changes.add(true, &room, &e.key, &e.phx_ref, &e.meta);
        peer.refs.insert(e.phx_ref.clone(), room);
        items.insert(
            e.phx_ref,
            Item {
                key: e.key,
                meta: e.meta,
            },
        );
        true
    }

    /// Sends each room's diff to its local members (but `except`) and the service's stream.
    fn emit(&self, changes: Changes, except: Option<u64>) {
        for ((ns, room), (joins, leaves)) in changes.0 {
            let Some(served) = self.served.get(&ns) else {
                continue;
            };
            let diff = PresenceDiff {
                room: room.to_string(),
                joins,
                leaves,
            };
            if let Some(frame) = frame(&served.ns, "presence_diff", &diff) {
                served.ns.deliver_room(&room, &frame, except);
            }
            let _ = served.diffs.send(diff);
        }
    }

    /// The entries of `room` in the namespace `ns`.
    fn list(&self, ns: &str, room: &str) -> PresenceList {
        list_in(&lock(&self.state), ns, room)
    }

    /// Tracks `socket` in `room` under `key`; `replace` updates instead (the entry must
    /// exist). Returns the new entry's `phx_ref`.
    fn track<O>(
        &self,
        socket: &SocketRef<O>,
        room: &str,
        key: &str,
        meta: Map<String, Value>,
        replace: bool,
    ) -> Result<String, PresenceError> {
        let ns_path: Arc<str> = Arc::from(socket.ns.path());
        let room_key: RoomKey = (ns_path, Arc::from(room));
        let mut changes = Changes::default();
        let mut state = lock(&self.state);
        if !socket.ns.has_member(room, socket.conn.key) {
            return Err(PresenceError::NotInRoom);
        }
        let socket_id: Arc<str> = socket.conn.id.clone();
        let existing = state.sockets.get(&socket_id).and_then(|refs| {
            refs.iter()
                .find(|r| {
                    state
                        .own
                        .get(*r)
                        .is_some_and(|o| o.room == room_key && &*o.key == key)
                })
                .cloned()
        });
        let held = state.sockets.get(&socket_id).map_or(0, Vec::len);
        let mut leaves = Vec::new();
        match (replace, existing) {
            (false, Some(_)) => return Err(PresenceError::AlreadyTracked),
            (true, None) => return Err(PresenceError::NotTracked),
            (false, None) => {
                if held >= self.options.max_entries_per_socket {
                    return Err(PresenceError::SocketFull(held));
                }
                let size = state.rooms.get(&room_key).map_or(0, HashMap::len);
                if size >= self.options.max_entries_per_room {
                    return Err(PresenceError::RoomFull(size));
                }
            }
            (true, Some(old)) => {
                remove_own(&mut state, &old, &mut changes);
                leaves.push(old.to_string());
            }
        }
        let phx_ref = new_ref();
        let key: Arc<str> = Arc::from(key);
        let meta = Arc::new(meta);
        changes.add(true, &room_key, &key, &phx_ref, &meta);
        let item = Item {
            key: key.clone(),
            meta,
        };
        let joined = entry(&room_key, &phx_ref, &item);
        state
            .rooms
            .entry(room_key.clone())
            .or_default()
            .insert(phx_ref.clone(), item);
        state.own.insert(
            phx_ref.clone(),
            Own {
                room: room_key,
                socket: socket_id.clone(),
                key,
            },
        );
        state
            .sockets
            .entry(socket_id)
            .or_default()
            .push(phx_ref.clone());
        self.publish_diff(&mut state, vec![joined], leaves);
        if !replace {
            let list = list_in(&state, socket.ns.path(), room);
            let _ = push_state(socket, room, list);
        }
        // Under the lock: every member sees one room's diffs in the order they happened.
        self.emit(changes, (!replace).then_some(socket.conn.key));
        Ok(phx_ref.to_string())
    }

    /// Untracks the socket's entries in `room` under `key` (every key when `None`).
    fn untrack<O>(&self, socket: &SocketRef<O>, room: &str, key: Option<&str>) -> usize {
        let room_key: RoomKey = (Arc::from(socket.ns.path()), Arc::from(room));
        self.untrack_matching(&socket.conn.id, |own| {
            own.room == room_key && key.is_none_or(|k| &*own.key == k)
        })
    }

    /// The socket left `room` (or every room when `None`): its entries there go.
    fn untrack_where(&self, socket: &str, room: Option<&str>) {
        self.untrack_matching(socket, |own| room.is_none_or(|r| &*own.room.1 == r));
    }

    fn untrack_matching(&self, socket: &str, matches: impl Fn(&Own) -> bool) -> usize {
        let mut changes = Changes::default();
        let mut state = lock(&self.state);
        let Some(refs) = state.sockets.get(socket) else {
            return 0;
        };
        let gone: Vec<Arc<str>> = refs
            .iter()
            .filter(|r| state.own.get(*r).is_some_and(&matches))
            .cloned()
            .collect();
        if gone.is_empty() {
            return 0;
        }
        for phx_ref in &gone {
            remove_own(&mut state, phx_ref, &mut changes);
        }
        self.publish_diff(
            &mut state,
            Vec::new(),
            gone.iter().map(|r| r.to_string()).collect(),
        );
        self.emit(changes, None);
        gone.len()
    }

    /// Sends `room`'s `presence_state` to `socket`.
    fn send_state_to<O>(&self, socket: &SocketRef<O>, room: &str) -> bool {
        let state = lock(&self.state);
        push_state(socket, room, list_in(&state, socket.ns.path(), room))
    }
}

/// The entries of `room` in the namespace `ns`, each key's ordered by `phx_ref`.
fn list_in(state: &State, ns: &str, room: &str) -> PresenceList {
    let key: RoomKey = (Arc::from(ns), Arc::from(room));
    let mut list = PresenceList::new();
    if let Some(items) = state.rooms.get(&key) {
        for (phx_ref, item) in items {
            list.entry(item.key.to_string())
                .or_default()
                .metas
                .push(PresenceMeta {
                    meta: (*item.meta).clone(),
                    phx_ref: phx_ref.to_string(),
                });
        }
    }
    for metas in list.values_mut() {
        metas.metas.sort_by(|a, b| a.phx_ref.cmp(&b.phx_ref));
    }
    list
}

/// Queues `{"type":"presence_state","room","state"}` on `socket`.
fn push_state<O>(socket: &SocketRef<O>, room: &str, state: PresenceList) -> bool {
    let ns = socket.ns.raw();
    let body = PresenceState {
        room: room.to_owned(),
        state,
    };
    frame(&ns, "presence_state", &body).is_some_and(|f| socket.push(&f).is_ok())
}

/// Whether the sockets of `ns` speak the managed protocol's events (it seals their frames).
fn speaks_events(ns: &Namespace) -> bool {
    ns.shared().seal_for.get().is_some()
}

/// Adds `presence_state` and `presence_diff` to the AsyncAPI document of the service of `ns`,
/// in the form its sockets receive them.
pub(crate) fn describe(spec: &mut ChannelSpec, ns: &Namespace) {
    let list = serde_json::json!({
        "type": "object",
        "description": "key → its entries, each the service's metadata with its `phx_ref`",
        "additionalProperties": {
            "type": "object",
            "required": ["metas"],
            "properties": { "metas": { "type": "array", "items": {
                "type": "object",
                "required": ["phx_ref"],
                "properties": { "phx_ref": { "type": "string" } },
            } } },
        },
    });
    let metas =
        serde_json::json!({ "ada": { "metas": [{ "typing": false, "phx_ref": "0190a1b2c3d4" }] } });
    let messages = [
        (
            "presence_state",
            "Who is in the room on every instance, sent to a socket that tracks itself in it.",
            vec![("state", list.clone())],
            serde_json::json!({ "room": "lobby", "state": metas }),
        ),
        (
            "presence_diff",
            "Entries that joined and left the room, sent to its members (Phoenix's `presence_diff`).",
            vec![("joins", list.clone()), ("leaves", list)],
            serde_json::json!({ "room": "lobby", "joins": metas, "leaves": {} }),
        ),
    ];
    let managed = speaks_events(ns);
    for (name, description, fields, example) in messages {
        let mut properties = Map::new();
        properties.insert("room".to_owned(), serde_json::json!({ "type": "string" }));
        let mut required = vec!["room"];
        for (field, schema) in fields {
            properties.insert(field.to_owned(), schema);
            required.push(field);
        }
        let body =
            serde_json::json!({ "type": "object", "required": required, "properties": properties });
        let message = if managed {
            let payload = serde_json::json!({
                "type": "object",
                "required": ["event", "data"],
                "properties": { "event": { "type": "string", "const": name }, "data": body },
            });
            let example = serde_json::json!({ "event": name, "data": example });
            ProtocolMessage::new(
                &format!("managed.send.{name}"),
                name,
                description,
                payload,
                example,
            )
        } else {
            let mut payload = body;
            payload["properties"]["type"] = serde_json::json!({ "type": "string", "const": name });
            if let Some(required) = payload["required"].as_array_mut() {
                required.insert(0, Value::from("type"));
            }
            let mut example = example;
            example["type"] = Value::from(name);
            ProtocolMessage::new(
                &format!("asena.{name}"),
                name,
                description,
                payload,
                example,
            )
        };
        spec.protocol.sends.push(message);
    }
}

/// A frame for the sockets of `ns`: `{"type": kind, ..body}`, or for a managed service
/// `{"event": kind, "data": body}`.
fn frame<T: Serialize>(ns: &Namespace, kind: &str, body: &T) -> Option<Frame> {
    let value = serde_json::to_value(body).ok()?;
    let message = if speaks_events(ns) {
        serde_json::json!({ "event": kind, "data": value })
    } else {
        let mut object = Map::new();
        object.insert("type".to_owned(), Value::from(kind));
        if let Value::Object(fields) = value {
            object.extend(fields);
        }
        Value::Object(object)
    };
    Frame::json(&message).ok()
}

fn entry(room: &RoomKey, phx_ref: &Arc<str>, item: &Item) -> Entry {
    Entry {
        ns: room.0.clone(),
        room: room.1.clone(),
        key: item.key.clone(),
        phx_ref: phx_ref.clone(),
        meta: item.meta.clone(),
    }
}

/// Removes one of this instance's entries.
fn remove_own(state: &mut State, phx_ref: &Arc<str>, changes: &mut Changes) {
    let Some(own) = state.own.remove(phx_ref) else {
        return;
    };
    if let Some(refs) = state.sockets.get_mut(&own.socket) {
        refs.retain(|r| r != phx_ref);
        if refs.is_empty() {
            state.sockets.remove(&own.socket);
        }
    }
    remove_item(state, &own.room, phx_ref, changes);
}

/// Removes an entry of another instance.
fn remove_remote(state: &mut State, from: &Arc<str>, phx_ref: &str, changes: &mut Changes) {
    let Some(room) = state
        .peers
        .get_mut(from)
        .and_then(|p| p.refs.remove(phx_ref))
    else {
        return;
    };
    remove_item(state, &room, phx_ref, changes);
}

fn remove_item(state: &mut State, room: &RoomKey, phx_ref: &str, changes: &mut Changes) {
    let Some(items) = state.rooms.get_mut(room) else {
        return;
    };
    if let Some(item) = items.remove(phx_ref) {
        changes.add(false, room, &item.key, phx_ref, &item.meta);
    }
    if items.is_empty() {
        state.rooms.remove(room);
    }
}

/// Forgets another instance, with leaves for all its entries.
fn drop_peer(state: &mut State, id: &Arc<str>, changes: &mut Changes) {
    let Some(peer) = state.peers.remove(id) else {
        return;
    };
    for (phx_ref, room) in peer.refs {
        remove_item(state, &room, &phx_ref, changes);
    }
}

/// A namespace's presence: who is in its rooms on every instance, and the stream of what
/// changes. Get it with `ns.presence()` (also `ws.namespace().presence()`,
/// `ulak.presence()`). Cheap to clone.
#[derive(Clone)]
pub struct Presence {
    hub: Option<Arc<Hub>>,
    ns: Namespace,
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.hub.is_some() { "on" } else { "off" };
        write!(f, "Presence({}: {state})", self.ns.path())
    }
}

impl Presence {
    /// Whether the app has presence ([`AsenaBuilder::presence`](crate::AsenaBuilder::presence)).
    pub fn is_enabled(&self) -> bool {
        self.hub.is_some()
    }

    /// Who is present in `room`, on every instance: key → metas (empty without presence).
    pub fn list(&self, room: &str) -> PresenceList {
        self.hub
            .as_ref()
            .map(|hub| hub.list(self.ns.path(), room))
            .unwrap_or_default()
    }

    /// Every diff of the namespace's rooms from now on, local and remote, as the members
    /// receive them. A reader more than 1024 diffs behind skips ahead
    /// (`RecvError::Lagged`); `None` without presence.
    pub fn diffs(&self) -> Option<broadcast::Receiver<PresenceDiff>> {
        let hub = self.hub.as_ref()?;
        Some(hub.served.get(self.ns.path())?.diffs.subscribe())
    }

    /// Sends `room`'s `presence_state` to `socket` (a socket that watches a room without
    /// tracking itself). False when it could not be queued or presence is off.
    pub fn send_state<O>(&self, socket: &SocketRef<O>, room: &str) -> bool {
        self.hub
            .as_ref()
            .is_some_and(|hub| hub.send_state_to(socket, room))
    }
}

impl<O> Namespace<O> {
    /// This namespace's [`Presence`].
    pub fn presence(&self) -> Presence {
        let hub = self
            .departures()
            .and_then(|d| d.as_any().downcast_ref::<Slot>())
            .and_then(|slot| slot.0.upgrade());
        Presence {
            hub,
            ns: self.raw(),
        }
    }
}

/// A socket's presence: track, update and untrack its entries. Get it with `ws.presence()`.
pub struct SocketPresence<'a, O> {
    socket: &'a SocketRef<O>,
    presence: Presence,
}

impl<O> std::fmt::Debug for SocketPresence<'_, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketPresence")
            .field("socket", &self.socket.id())
            .field("presence", &self.presence)
            .finish()
    }
}

impl<O> SocketRef<O> {
    /// This socket's presence: [`track`](SocketPresence::track) and the rest.
    pub fn presence(&self) -> SocketPresence<'_, O> {
        SocketPresence {
            socket: self,
            presence: self.ns.presence(),
        }
    }
}

impl<O> SocketPresence<'_, O> {
    /// Tracks the socket in `room` under its id with `meta` (a value serializing to a JSON
    /// object); see [`track_as`](Self::track_as).
    pub fn track<M: Serialize + ?Sized>(
        &self,
        room: &str,
        meta: &M,
    ) -> Result<String, PresenceError> {
        self.track_as(room, self.socket.id(), meta)
    }

    /// Tracks the socket in `room` under `key` with `meta`: joins the room if it is not a
    /// member, sends it the room's `presence_state` and the other members a
    /// `presence_diff`, on every instance. Returns the entry's `phx_ref`. Fails when
    /// presence is off, the room name is not one a client may use, the key or metadata is
    /// out of bounds, the socket or room holds its most entries, or the socket is tracked
    /// under `key` in `room` already.
    pub fn track_as<M: Serialize + ?Sized>(
        &self,
        room: &str,
        key: &str,
        meta: &M,
    ) -> Result<String, PresenceError> {
        crate::namespace::validate_room(room)?;
        let (hub, meta) = self.checked(key, meta)?;
        self.socket.subscribe(room)?;
        hub.track(self.socket, room, key, meta, false)
    }

    /// Replaces the metadata of the socket's entry under `key` in `room` (a leave of the old
    /// `phx_ref` and a join of a new one, which it returns).
    pub fn update<M: Serialize + ?Sized>(
        &self,
        room: &str,
        key: &str,
        meta: &M,
    ) -> Result<String, PresenceError> {
        let (hub, meta) = self.checked(key, meta)?;
        hub.track(self.socket, room, key, meta, true)
    }

    /// Untracks the socket's entry under `key` in `room`; false when there was none.
    pub fn untrack(&self, room: &str, key: &str) -> bool {
        self.presence
            .hub
            .as_ref()
            .is_some_and(|hub| hub.untrack(self.socket, room, Some(key)) > 0)
    }

    /// Who is present in `room`, on every instance.
    pub fn list(&self, room: &str) -> PresenceList {
        self.presence.list(room)
    }

    /// The hub, with the key and metadata checked against the bounds.
    fn checked<M: Serialize + ?Sized>(
        &self,
        key: &str,
        meta: &M,
    ) -> Result<(&Arc<Hub>, Map<String, Value>), PresenceError> {
        let hub = self.presence.hub.as_ref().ok_or(PresenceError::Disabled)?;
        if !(1..=MAX_KEY).contains(&key.len()) {
            return Err(PresenceError::InvalidKey(key.len()));
        }
        let bytes = serde_json::to_vec(meta).map_err(PresenceError::Serialize)?;
        let limit = hub.options.max_meta_bytes;
        if bytes.len() > limit {
            return Err(PresenceError::MetaTooLarge {
                size: bytes.len(),
                limit,
            });
        }
        match serde_json::from_slice::<Value>(&bytes).map_err(PresenceError::Serialize)? {
            Value::Object(mut map) => {
                map.remove("phx_ref");
                Ok((hub, map))
            }
            _ => Err(PresenceError::NotAnObject),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Compression, Limits};

    fn hub() -> Arc<Hub> {
        let ns = Namespace::new(
            "/chat",
            "Chat",
            Limits::default(),
            Compression::default(),
            None,
            Arc::default(),
        );
        Hub::new(PresenceOptions::default(), &[ns])
    }

    fn message(kind: Kind, seq: u64) -> Message {
        let mut m = Message::new("peer", kind);
        m.seq = seq;
        m.every_ms = 1000;
        m
    }

    fn joined(phx_ref: &str, key: &str) -> Entry {
        Entry {
            ns: Arc::from("/chat"),
            room: Arc::from("lobby"),
            key: Arc::from(key),
            phx_ref: Arc::from(phx_ref),
            meta: Arc::default(),
        }
    }

    fn hear(hub: &Hub, m: &Message) -> Heard {
        hub.hear(&m.encode())
    }

    fn keys(hub: &Hub) -> Vec<String> {
        hub.list("/chat", "lobby").into_keys().collect()
    }

    #[test]
    fn diffs_apply_only_in_sequence_after_a_state() {
        let hub = hub();
        // Unknown instance: its diff is not applied (a state is asked for).
        let mut diff = message(Kind::Diff, 1);
        diff.entries = vec![joined("r1", "ada")];
        assert_eq!(hear(&hub, &diff), Heard::Delivered);
        assert!(keys(&hub).is_empty());

        let mut state = message(Kind::State, 1);
        state.last = true;
        state.entries = vec![joined("r1", "ada")];
        hear(&hub, &state);
        assert_eq!(keys(&hub), ["ada"]);

        // The next diff applies; a duplicate does nothing; a gap is not applied.
        let mut next = message(Kind::Diff, 2);
        next.entries = vec![joined("r2", "bob")];
        hear(&hub, &next);
        hear(&hub, &next);
        assert_eq!(keys(&hub), ["ada", "bob"]);
        let mut gap = message(Kind::Diff, 5);
        gap.entries = vec![joined("r5", "cy")];
        hear(&hub, &gap);
        assert_eq!(keys(&hub), ["ada", "bob"]);

        // A later state replaces what was known: leaves for what it lacks.
        let mut state = message(Kind::State, 5);
        state.last = true;
        state.entries = vec![joined("r5", "cy")];
        hear(&hub, &state);
        assert_eq!(keys(&hub), ["cy"]);

        hear(&hub, &message(Kind::Bye, 0));
        assert!(keys(&hub).is_empty());
    }

    #[test]
    fn hostile_messages_are_refused_with_bounded_reasons() {
        let hub = hub();
        let huge = vec![b'x'; (1 << 20) + 1];
        let Heard::Refused(why) = hub.hear(&huge) else {
            panic!("a huge message is refused")
        };
        assert!(why.contains("over the limit"), "{why}");

        let long = format!(
            "{{\"v\":1,\"from\":\"{}\",\"kind\":\"nope\"}}",
            "y".repeat(10_000)
        );
        let Heard::Refused(why) = hub.hear(long.as_bytes()) else {
            panic!("an unknown kind is refused")
        };
        assert!(why.chars().count() < 200, "{why}");

        let mut m = message(Kind::Beat, 0);
        m.from = "z".repeat(65);
        assert!(matches!(hear(&hub, &m), Heard::Refused(_)));

        // Entries of unknown namespaces, invalid rooms or keys are dropped.
        let mut state = message(Kind::State, 1);
        state.last = true;
        let mut other_ns = joined("a", "ada");
        other_ns.ns = Arc::from("/elsewhere");
        let mut bad_room = joined("b", "bob");
        bad_room.room = Arc::from("__");
        let mut no_key = joined("c", "");
        no_key.key = Arc::from("");
        state.entries = vec![other_ns, bad_room, no_key];
        hear(&hub, &state);
        assert!(keys(&hub).is_empty());
        assert!(lock(&hub.state).rooms.is_empty());
    }

    #[test]
    fn another_instance_cannot_take_over_a_ref() {
        let hub = hub();
        let mut state = message(Kind::State, 1);
        state.last = true;
        state.entries = vec![joined("r1", "ada")];
        hear(&hub, &state);
        let mut thief = state.clone();
        thief.from = "thief".to_owned();
        thief.entries = vec![joined("r1", "mallory")];
        hear(&hub, &thief);
        assert_eq!(keys(&hub), ["ada"]);
        // Its goodbye takes nothing of the writer's.
        hear(&hub, &Message::new("thief", Kind::Bye));
        assert_eq!(keys(&hub), ["ada"]);
        hear(&hub, &message(Kind::Bye, 0));
        assert!(keys(&hub).is_empty());
        assert!(lock(&hub.state).rooms.is_empty());
    }
}
