//! History and recovery: rooms that keep their last messages in Redis, number each one, and
//! give a client that comes back what it missed (Centrifugo's model).
//!
//! Enabled with [`AsenaBuilder::history`](crate::AsenaBuilder::history). A room the
//! [`HistoryOptions::rooms`] rule picks keeps its last [`size`](HistoryOptions::size)
//! messages, each under an *offset* (1, 2, 3, … per room) within an *epoch* (an id that
//! changes only when the room's history is lost). A client's position in a room is the
//! epoch and the offset of the last message it got; it presents its positions when it
//! connects again, and when the service joins it to the room it first receives every message
//! after its position, in order and once, then the live ones.
//!
//! ```no_run
//! use std::time::Duration;
//! use asena_runtime::history::HistoryOptions;
//! # async fn run() -> Result<(), asena_runtime::Error> {
//! let app = asena_runtime::Asena::builder()
//!     .history(
//!         HistoryOptions::redis("redis://127.0.0.1:6379")
//!             .size(100)
//!             .ttl(Duration::from_secs(300))
//!             .rooms(|_path, room| room.starts_with("chat:")),
//!     )
//!     .build()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # What clients send and receive
//! A message to a room with history reaches its members as
//!
//! ```json
//! {"$room":"chat:general","$offset":42,"data":{"text":"hi"}}
//! ```
//!
//! (`data` is the message when it is JSON; other text comes as the string `"text"`).
//! Every time a socket joins such a room it first receives its position in it:
//!
//! ```json
//! {"$history":{"room":"chat:general","epoch":"9f2c41d07ab3e815","offset":41,"recovered":true}}
//! ```
//!
//! A socket that sent a message with [`SocketRef::publish`](crate::SocketRef::publish) (the sender
//! excepted) gets that frame too, with the message's offset, instead of the message: its
//! position moves past its own message, which is never replayed to it.
//!
//! When it connects again, the client adds one query parameter per room,
//! `recover=<epoch>:<offset>:<room>` (`recover=9f2c41d07ab3e815:41:chat:general`). On the
//! join, the messages after that offset come first, then the `$history` frame with
//! `"recovered": true`. When the position cannot be served — another epoch, or messages
//! after it were already trimmed from the history — nothing is replayed and the frame says
//! `"recovered": false`: the client must reload the room's state some other way (its
//! position is the frame's). Without `recover`, `recovered` is absent. `asena-client`
//! does all of this by itself.
//!
//! Binary messages to a room with history are delivered as usual, without an offset, and are
//! not kept.
//!
//! # Which messages are kept
//! The [`rooms`](HistoryOptions::rooms) rule picks rooms; a message type can overrule it,
//! message by message, by implementing [`Delivered`](crate::Delivered):
//! [`Delivery::Recoverable`](crate::Delivery::Recoverable) is kept in any named room,
//! [`Delivery::AtMostOnce`](crate::Delivery::AtMostOnce) never. A socket joining a room the
//! rule leaves out is positioned (and replayed to) when its client presents a position
//! there. Numbered messages reach the members after Redis answered, so a plain message sent
//! after a numbered one to the same room may arrive before it.
//!
//! # Order and exactly once, across instances
//! Redis gives the offsets: an append is one Lua script that increments the room's counter
//! and adds the message to its stream (`store.rs`). The appending instance publishes the
//! message with its offset to every instance on the transport's named channel
//! `asena-history:feed`. Each instance delivers a room's messages in offset order from one
//! task: a message whose offset is not the next one waits (at most [`GAP_WAIT`]) for the ones
//! before it, which are then read from Redis if the bus lost them; an offset already
//! delivered is dropped. So every member of a room receives the same messages in the same
//! order on every instance, whoever sent them.
//!
//! A socket joining a room with history is held out of the room's deliveries from the join
//! until that task has read its position (and replayed what it missed): nothing arrives
//! before the replay, nothing twice.
//!
//! # When Redis is away
//! A message to a room with history that cannot be appended (Redis unreachable, or the
//! queue to the task full) is delivered as a plain room message, without an offset, and
//! counted; clients miss nothing live, and a client recovering across that time is told to
//! resync only if it missed a numbered message.
//!
//! # Bounds
//! `recover` values are read only for the room joined: an epoch of 1 to 32 hex digits, an
//! offset, a room name ([`validate_room`](crate::namespace::validate_room)); anything else is
//! ignored. A replay is at most [`size`](HistoryOptions::size) messages. From the bus, a
//! message is checked like a client's (namespace, room, epoch, size) before it is used.

mod store;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::codec::Frame;
use crate::connection::Conn;
use crate::error::Result;
use crate::namespace::{Keeps, Namespace};
use crate::protocol::Fleet;
use crate::transport::{Heard, Hears, Outbound, Transport};
use crate::wire;
use store::Store;

/// The prefix of history's named channel on the transport.
const PREFIX: &str = "asena-history";

/// How long a message waits for the ones before it before they are read from Redis.
pub const GAP_WAIT: Duration = Duration::from_millis(250);

/// Messages waiting for the task (appends and messages from other instances).
const QUEUE: usize = 16 * 1024;

/// The most appends sent to Redis in one round trip.
const BATCH: usize = 256;

/// The longest epoch accepted, in hex digits.
const MAX_EPOCH: usize = 32;

/// A room of a namespace (by its index in the app's list).
type RoomKey = (usize, Arc<str>);

/// A rule picking the rooms that keep history: `(namespace path, room) -> bool`.
type Rooms = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// Where and how much history rooms keep. Pass it to
/// [`AsenaBuilder::history`](crate::AsenaBuilder::history).
#[derive(Clone)]
pub struct HistoryOptions {
    url: String,
    size: u64,
    ttl: Duration,
    rooms: Rooms,
}

impl std::fmt::Debug for HistoryOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryOptions")
            .field("size", &self.size)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl HistoryOptions {
    /// History in the Redis server at `url` (`redis://host:port`, `rediss://` for TLS),
    /// for every named room of every websocket service, keeping the last 100 messages of a
    /// room for 5 minutes after its last one.
    pub fn redis(url: impl Into<String>) -> HistoryOptions {
        HistoryOptions {
            url: url.into(),
            size: 100,
            ttl: Duration::from_secs(300),
            rooms: Arc::new(|_, _| true),
        }
    }

    /// How many messages a room keeps (default 100, at least 1, at most 100 000): a client
    /// that missed more must resync.
    pub fn size(mut self, messages: u64) -> Self {
        self.size = messages.clamp(1, 100_000);
        self
    }

    /// How long a room's messages are kept after its last one (default 5 minutes, at least
    /// 1 s).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// Which rooms keep history: `rule(namespace path, room)` (default: every named room).
    /// A socket's own room (its id) and broadcasts never do.
    pub fn rooms(mut self, rule: impl Fn(&str, &str) -> bool + Send + Sync + 'static) -> Self {
        self.rooms = Arc::new(rule);
        self
    }
}

/// What the task does next.
enum Event {
    /// A message sent here, to be appended.
    Append {
        ns: usize,
        room: Arc<str>,
        frame: Frame,
        except: Option<u64>,
    },
    /// A numbered message, from another instance.
    Live {
        ns: usize,
        room: Arc<str>,
        epoch: Arc<str>,
        offset: u64,
        payload: Bytes,
    },
}

/// A socket joined a room with history and waits for its position.
struct Join {
    ns: usize,
    room: Arc<str>,
    conn: Arc<Conn>,
}

/// Counters, for logs and tests.
#[derive(Debug, Default)]
struct Counters {
    appended: AtomicU64,
    fallbacks: AtomicU64,
    recovered: AtomicU64,
    resyncs: AtomicU64,
    gaps_filled: AtomicU64,
}

/// The app's history: one task for every namespace.
pub(crate) struct Archive {
    id: Arc<str>,
    options: HistoryOptions,
    served: Vec<Namespace>,
    /// Sockets held out of a room's deliveries until their position is read:
    /// `(namespace, room)` → connection keys.
    held: Mutex<HashMap<RoomKey, HashSet<u64>>>,
    events: mpsc::Sender<Event>,
    joins: mpsc::UnboundedSender<Join>,
    inbox: Mutex<Option<(mpsc::Receiver<Event>, mpsc::UnboundedReceiver<Join>)>>,
    transport: OnceLock<Arc<dyn Transport>>,
    task: Mutex<Option<JoinHandle<()>>>,
    counters: Counters,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A namespace's view of the archive.
struct Slot {
    archive: Weak<Archive>,
    ns: usize,
}

impl Keeps for Slot {
    fn keeps(&self, room: &str) -> bool {
        self.archive.upgrade().is_some_and(|a| {
            wire::routes_by_interest(room) && (a.options.rooms)(a.served[self.ns].path(), room)
        })
    }

    fn append(&self, room: &str, frame: &Frame, except: Option<u64>) -> bool {
        let Some(archive) = self.archive.upgrade() else {
            return false;
        };
        let sent = archive.events.try_send(Event::Append {
            ns: self.ns,
            room: Arc::from(room),
            frame: frame.clone(),
            except,
        });
        if sent.is_err() {
            archive.counters.fallbacks.fetch_add(1, Ordering::Relaxed);
        }
        sent.is_ok()
    }

    fn recovers(&self, room: &str, conn: &Conn) -> bool {
        wire::routes_by_interest(room) && presented(&conn.request.query, room).is_some()
    }

    fn arriving(&self, room: &str, conn: &Arc<Conn>) {
        if let Some(archive) = self.archive.upgrade() {
            lock(&archive.held)
                .entry((self.ns, Arc::from(room)))
                .or_default()
                .insert(conn.key);
        }
    }

    fn joined(&self, room: &str, conn: &Arc<Conn>) {
        let Some(archive) = self.archive.upgrade() else {
            return;
        };
        let join = Join {
            ns: self.ns,
            room: Arc::from(room),
            conn: conn.clone(),
        };
        if archive.joins.send(join).is_err() {
            archive.release(self.ns, room, conn.key);
        }
    }
}

/// A numbered message between instances, on `asena-history:feed`.
#[derive(Debug, Serialize, Deserialize)]
struct BusMessage<'a> {
    v: u8,
    #[serde(borrow)]
    from: Cow<'a, str>,
    #[serde(borrow)]
    ns: Cow<'a, str>,
    #[serde(borrow)]
    room: Cow<'a, str>,
    #[serde(borrow)]
    epoch: Cow<'a, str>,
    offset: u64,
    /// The message text.
    #[serde(borrow)]
    d: Cow<'a, str>,
}

impl Hears for Archive {
    /// A numbered message from the bus.
    fn hear(&self, payload: &[u8]) -> Heard {
        let message: BusMessage<'_> = match serde_json::from_slice(payload) {
            Ok(m) => m,
            Err(e) => return Heard::Refused(e.to_string().chars().take(120).collect()),
        };
        if *message.from == *self.id {
            return Heard::Own;
        }
        let Some(ns) = self.served.iter().position(|n| n.path() == message.ns) else {
            return Heard::Refused("not a namespace served here".to_owned());
        };
        if message.offset == 0
            || !valid_epoch(&message.epoch)
            || crate::rooms::validate_target(&message.room).is_err()
        {
            return Heard::Refused("invalid room, epoch or offset".to_owned());
        }
        let event = Event::Live {
            ns,
            room: Arc::from(&*message.room),
            epoch: Arc::from(&*message.epoch),
            offset: message.offset,
            payload: Bytes::copy_from_slice(message.d.as_bytes()),
        };
        // A message lost here is read from Redis when the next one shows the gap.
        match self.events.try_send(event) {
            Ok(()) => Heard::Delivered,
            Err(_) => Heard::Refused("history queue full".to_owned()),
        }
    }
}

impl Archive {
    /// The history of `namespaces`, each told of it.
    pub(crate) fn new(options: HistoryOptions, namespaces: &[Namespace]) -> Arc<Archive> {
        let (events, events_rx) = mpsc::channel(QUEUE);
        let (joins, joins_rx) = mpsc::unbounded_channel();
        let archive = Arc::new(Archive {
            id: Arc::from(uuid::Uuid::new_v4().simple().to_string()),
            options,
            served: namespaces.to_vec(),
            held: Mutex::new(HashMap::new()),
            events,
            joins,
            inbox: Mutex::new(Some((events_rx, joins_rx))),
            transport: OnceLock::new(),
            task: Mutex::new(None),
            counters: Counters::default(),
        });
        for (ns, namespace) in namespaces.iter().enumerate() {
            namespace.set_keeper(Arc::new(Slot {
                archive: Arc::downgrade(&archive),
                ns,
            }));
        }
        archive
    }

    /// Listens on the fleet's transport (nothing to do on a single instance).
    pub(crate) fn listen(self: &Arc<Self>, fleet: &Fleet) -> Result<()> {
        if let Some(transport) = fleet.listen_weakly(PREFIX, "history", self)? {
            let _ = self.transport.set(transport);
        }
        Ok(())
    }

    /// Starts the task that appends, orders and delivers.
    pub(crate) fn start(self: &Arc<Self>) -> Result<()> {
        let Some((events, joins)) = lock(&self.inbox).take() else {
            return Ok(());
        };
        let ttl_ms = u64::try_from(self.options.ttl.as_millis()).unwrap_or(u64::MAX);
        let store = Store::new(&self.options.url, self.options.size, ttl_ms)?;
        let task = Task {
            archive: Arc::downgrade(self),
            store,
            feeds: HashMap::new(),
            gaps: None,
        };
        *lock(&self.task) = Some(tokio::spawn(task.run(events, joins)));
        Ok(())
    }

    /// Stops the task.
    pub(crate) fn stop(&self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }

    /// Lets `key` receive `room`'s messages again.
    fn release(&self, ns: usize, room: &str, key: u64) {
        let mut held = lock(&self.held);
        let slot = (ns, Arc::<str>::from(room));
        if let Some(keys) = held.get_mut(&slot) {
            keys.remove(&key);
            if keys.is_empty() {
                held.remove(&slot);
            }
        }
    }

    /// Delivers `frame` to the local members of `room` but the held ones and `except`.
    fn deliver(&self, ns: usize, room: &Arc<str>, frame: &Frame, except: Option<u64>) -> usize {
        let held = lock(&self.held);
        let keys = held.get(&(ns, room.clone()));
        let n = self.served[ns].deliver_room_unless(room, frame, |key| {
            Some(key) == except || keys.is_some_and(|k| k.contains(&key))
        });
        drop(held);
        self.served[ns].stats().record_deliveries(n);
        n
    }

    /// Delivers the message at `offset` of `room`; its sender `except` (when it is here) gets
    /// its position instead, so it never has its own message replayed.
    fn deliver_numbered(
        &self,
        ns: usize,
        room: &Arc<str>,
        epoch: &str,
        offset: u64,
        payload: &[u8],
        except: Option<u64>,
    ) {
        self.deliver(ns, room, &numbered(room, offset, payload), except);
        if let Some(sender) = except.and_then(|key| self.served[ns].member(room, key)) {
            let _ = sender.push(&position(room, epoch, offset, None));
        }
    }

    fn publish(&self, ns: usize, room: &str, epoch: &str, offset: u64, text: &str) {
        let Some(t) = self.transport.get() else {
            return;
        };
        let message = BusMessage {
            v: 1,
            from: Cow::Borrowed(&self.id),
            ns: Cow::Borrowed(self.served[ns].path()),
            room: Cow::Borrowed(room),
            epoch: Cow::Borrowed(epoch),
            offset,
            d: Cow::Borrowed(text),
        };
        let payload = serde_json::to_vec(&message).expect("invariant: serializable");
        t.publish(Outbound::channel(format!("{PREFIX}:feed"), payload.into()));
    }
}

/// Whether `epoch` is 1 to 32 lower-case hex digits.
fn valid_epoch(epoch: &str) -> bool {
    (1..=MAX_EPOCH).contains(&epoch.len())
        && epoch
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A new epoch: 16 random hex digits.
fn new_epoch() -> String {
    let mut id = uuid::Uuid::new_v4().simple().to_string();
    id.truncate(16);
    id
}

/// The position a client presented for `room`: the first `recover=<epoch>:<offset>:<room>`
/// of its query naming that room.
fn presented(query: &[(String, String)], room: &str) -> Option<(String, u64)> {
    query
        .iter()
        .filter(|(k, _)| k == "recover")
        .find_map(|(_, v)| {
            let (epoch, rest) = v.split_once(':')?;
            let (offset, named) = rest.split_once(':')?;
            (named == room && valid_epoch(epoch))
                .then(|| Some((epoch.to_owned(), offset.parse().ok()?)))
                .flatten()
        })
}

/// The frame a member receives for the message `payload` at `offset` of `room`.
fn numbered(room: &str, offset: u64, payload: &[u8]) -> Frame {
    let room_json = serde_json::to_string(room).expect("invariant: a str serializes");
    let mut text = String::with_capacity(payload.len() + room_json.len() + 40);
    let _ = write!(text, "{{\"$room\":{room_json},\"$offset\":{offset},");
    let is_json = serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok();
    match std::str::from_utf8(payload) {
        Ok(json) if is_json => {
            text.push_str("\"data\":");
            text.push_str(json);
        }
        Ok(other) => {
            text.push_str("\"text\":");
            text.push_str(&serde_json::to_string(other).expect("invariant: a str serializes"));
        }
        Err(_) => text.push_str("\"text\":\"\""),
    }
    text.push('}');
    Frame::text(&text)
}

/// The `$history` frame: the socket's position in `room`, and whether its own was recovered.
fn position(room: &str, epoch: &str, offset: u64, recovered: Option<bool>) -> Frame {
    #[derive(Serialize)]
    struct Position<'a> {
        room: &'a str,
        epoch: &'a str,
        offset: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
    }
    #[derive(Serialize)]
    struct Wrapper<'a> {
        #[serde(rename = "$history")]
        history: Position<'a>,
    }
    let wrapper = Wrapper {
        history: Position {
            room,
            epoch,
            offset,
            recovered,
        },
    };
    Frame::text(&serde_json::to_string(&wrapper).expect("invariant: serializable"))
}

/// One room's stream of numbered messages on this instance.
struct Feed {
    epoch: Arc<str>,
    /// The next offset to deliver.
    next: u64,
    /// Messages that came before their turn, by offset, with the socket that sent each (here).
    waiting: BTreeMap<u64, (Bytes, Option<u64>)>,
    /// When the oldest of them came.
    since: Option<Instant>,
}

impl Feed {
    /// Delivers `payload` as the message at `next` (sent by `except`, which gets its new
    /// position instead), then every waiting message that follows it.
    fn deliver(
        &mut self,
        archive: &Archive,
        ns: usize,
        room: &Arc<str>,
        payload: &[u8],
        except: Option<u64>,
    ) {
        archive.deliver_numbered(ns, room, &self.epoch, self.next, payload, except);
        self.next += 1;
        while let Some((payload, except)) = self.waiting.remove(&self.next) {
            archive.deliver_numbered(ns, room, &self.epoch, self.next, &payload, except);
            self.next += 1;
        }
        if self.waiting.is_empty() {
            self.since = None;
        }
    }

    /// Delivers what `entries` (read from Redis, in order) holds from `next` on.
    fn catch_up(
        &mut self,
        archive: &Archive,
        ns: usize,
        room: &Arc<str>,
        entries: &[(u64, Bytes)],
    ) {
        for (offset, payload) in entries {
            if *offset == self.next {
                let except = self.waiting.remove(offset).and_then(|(_, except)| except);
                self.deliver(archive, ns, room, payload, except);
            }
        }
    }
}

/// The task: appends, orders, delivers and positions.
struct Task {
    archive: Weak<Archive>,
    store: Store,
    feeds: HashMap<RoomKey, Feed>,
    /// The earliest moment a waiting message's gap is read from Redis.
    gaps: Option<Instant>,
}

impl Task {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<Event>,
        mut joins: mpsc::UnboundedReceiver<Join>,
    ) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let gap = self.gaps;
            tokio::select! {
                biased;
                Some(join) = joins.recv() => self.position(join).await,
                n = events.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        return;
                    }
                    self.handle(&mut batch).await;
                }
                () = async {
                    match gap {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => self.fill_gaps().await,
            }
        }
    }

    /// Appends what was sent here in one round trip, then delivers everything in order.
    async fn handle(&mut self, batch: &mut Vec<Event>) {
        let Some(archive) = self.archive.upgrade() else {
            return;
        };
        let appends: Vec<(String, Bytes)> = batch
            .iter()
            .filter_map(|event| match event {
                Event::Append {
                    ns, room, frame, ..
                } => Some((
                    wire::room_topic(archive.served[*ns].topic(), room),
                    frame.payload_bytes(),
                )),
                Event::Live { .. } => None,
            })
            .collect();
        let mut positions = if appends.is_empty() {
            Vec::new()
        } else {
            match self.store.append(&appends, &new_epoch()).await {
                Ok(positions) => positions,
                Err(error) => {
                    tracing::warn!(target: "asena::history", %error, messages = appends.len(), "history unreachable: sending without offsets");
                    Vec::new()
                }
            }
        }
        .into_iter();
        for event in batch.drain(..) {
            match event {
                Event::Append {
                    ns,
                    room,
                    frame,
                    except,
                } => match positions.next() {
                    Some((epoch, offset)) => {
                        archive.counters.appended.fetch_add(1, Ordering::Relaxed);
                        let text = String::from_utf8_lossy(frame.payload());
                        archive.publish(ns, &room, &epoch, offset, &text);
                        let payload = frame.payload_bytes();
                        self.live(
                            &archive,
                            ns,
                            room,
                            Arc::from(epoch),
                            offset,
                            payload,
                            except,
                        );
                    }
                    None => {
                        archive.counters.fallbacks.fetch_add(1, Ordering::Relaxed);
                        archive.served[ns].emit_plain(&room, &frame, except);
                    }
                },
                Event::Live {
                    ns,
                    room,
                    epoch,
                    offset,
                    payload,
                } => self.live(&archive, ns, room, epoch, offset, payload, None),
            }
        }
    }

    /// A numbered message: delivered now when it is the next, kept when it is early, dropped
    /// when it was delivered.
    #[allow(clippy::too_many_arguments)]
    fn live(
        &mut self,
        archive: &Archive,
        ns: usize,
        room: Arc<str>,
        epoch: Arc<str>,
        offset: u64,
        payload: Bytes,
        except: Option<u64>,
    ) {
        let key = (ns, room.clone());
        if archive.served[ns].room_size(&room) == 0 {
            // Nobody here: whoever joins reads its position from Redis.
            self.feeds.remove(&key);
            return;
        }
        let feed = self.feeds.entry(key).or_insert_with(|| Feed {
            epoch: Arc::from(""),
            next: offset,
            waiting: BTreeMap::new(),
            since: None,
        });
        if feed.epoch != epoch {
            // A new history (or the first message this feed sees): everyone starts here.
            feed.epoch = epoch.clone();
            feed.next = offset;
            feed.waiting.clear();
            feed.since = None;
            let frame = position(&room, &epoch, offset.saturating_sub(1), None);
            archive.deliver(ns, &room, &frame, None);
        }
        if offset < feed.next {
            return;
        }
        if offset > feed.next {
            feed.waiting.insert(offset, (payload, except));
            if feed.since.is_none() {
                let at = Instant::now() + GAP_WAIT;
                feed.since = Some(at);
                self.gaps = Some(self.gaps.map_or(at, |g| g.min(at)));
            }
            return;
        }
        feed.deliver(archive, ns, &room, &payload, except);
    }

    /// Reads from Redis what the bus lost before the messages waiting past their time.
    async fn fill_gaps(&mut self) {
        self.gaps = None;
        let Some(archive) = self.archive.upgrade() else {
            return;
        };
        let now = Instant::now();
        let due: Vec<RoomKey> = self
            .feeds
            .iter()
            .filter(|(_, f)| f.since.is_some_and(|at| at <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for (ns, room) in due {
            let topic = wire::room_topic(archive.served[ns].topic(), &room);
            let next = self.feeds[&(ns, room.clone())].next;
            let read = self.store.read(&topic, next, &new_epoch()).await;
            let feed = self
                .feeds
                .get_mut(&(ns, room.clone()))
                .expect("invariant: listed");
            let mut missing = true;
            if let Ok(read) = read
                && *read.epoch == *feed.epoch
            {
                let before = feed.next;
                feed.catch_up(&archive, ns, &room, &read.entries);
                archive
                    .counters
                    .gaps_filled
                    .fetch_add(feed.next - before, Ordering::Relaxed);
                missing = false;
            }
            // What is still missing is gone: members skip it and are told to resync.
            if let Some((&first, _)) = feed.waiting.first_key_value()
                && first > feed.next
            {
                missing = true;
                feed.next = first;
                let (payload, except) = feed.waiting.remove(&first).expect("invariant: first");
                feed.deliver(&archive, ns, &room, &payload, except);
            }
            if missing {
                tracing::warn!(target: "asena::history", room = %room, "messages lost before offset {}: members told to resync", feed.next);
                let frame = position(&room, &feed.epoch, feed.next - 1, Some(false));
                archive.deliver(ns, &room, &frame, None);
            }
            feed.since = (!feed.waiting.is_empty()).then(|| now + GAP_WAIT);
            if let Some(at) = feed.since {
                self.gaps = Some(self.gaps.map_or(at, |g| g.min(at)));
            }
        }
    }

    /// Gives a socket that joined a room with history its position, replaying what it missed
    /// when it presented a position, then lets it receive the room's messages.
    async fn position(&mut self, join: Join) {
        let Some(archive) = self.archive.upgrade() else {
            return;
        };
        let Join { ns, room, conn } = join;
        let asked = presented(&conn.request.query, &room);
        let key = (ns, room.clone());
        let next = self.feeds.get(&key).map(|feed| feed.next);
        // What to read: from the older of the socket's next message and the feed's, so the
        // feed can catch up to a socket that saw more on another instance.
        let from = match (&asked, next) {
            (None, Some(_)) => None,
            (None, None) => Some(u64::MAX),
            (Some((_, offset)), next) => {
                Some(next.map_or(u64::MAX, |n| n).min(offset.saturating_add(1)))
            }
        };
        let read = match from {
            None => None,
            Some(from) => {
                let topic = wire::room_topic(archive.served[ns].topic(), &room);
                match self.store.read(&topic, from, &new_epoch()).await {
                    Ok(read) => Some(read),
                    Err(error) => {
                        tracing::warn!(target: "asena::history", %error, "history unreachable: the socket joins without a position");
                        archive.release(ns, &room, conn.key);
                        return;
                    }
                }
            }
        };
        let feed = self.feeds.entry(key).or_insert_with(|| {
            let read = read
                .as_ref()
                .expect("invariant: read when there is no feed");
            Feed {
                epoch: Arc::from(read.epoch.as_str()),
                next: read.top + 1,
                waiting: BTreeMap::new(),
                since: None,
            }
        });
        let current = read.as_ref().filter(|read| *read.epoch == *feed.epoch);
        // The feed catches up with what Redis holds (the socket itself is still held).
        feed.catch_up(
            &archive,
            ns,
            &room,
            current.map_or(&[][..], |read| &read.entries),
        );
        let last = feed.next - 1;
        let recovered = asked.map(|(epoch, offset)| {
            let entries = current.map_or(&[][..], |read| &read.entries);
            let served = current.is_some()
                && *epoch == *feed.epoch
                && offset <= last
                && (offset == last || entries.iter().any(|(o, _)| *o == offset + 1));
            if served {
                for (o, payload) in entries {
                    if *o > offset && *o <= last {
                        let _ = conn.push(&numbered(&room, *o, payload));
                    }
                }
            }
            let counter = if served {
                &archive.counters.recovered
            } else {
                &archive.counters.resyncs
            };
            counter.fetch_add(1, Ordering::Relaxed);
            served
        });
        let _ = conn.push(&position(&room, &feed.epoch, last, recovered));
        archive.release(ns, &room, conn.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn text_of(frame: &Frame) -> &str {
        std::str::from_utf8(frame.payload()).expect("a text frame")
    }

    #[test]
    fn a_presented_position_names_its_room_whole() {
        let q = query(&[
            ("recover", "ab12:7:chat:general"),
            ("recover", "ab12:9:lobby"),
            ("name", "ada"),
        ]);
        assert_eq!(presented(&q, "chat:general"), Some(("ab12".into(), 7)));
        assert_eq!(presented(&q, "lobby"), Some(("ab12".into(), 9)));
        assert_eq!(presented(&q, "chat"), None);
        assert_eq!(
            presented(&query(&[("recover", "XY:7:lobby")]), "lobby"),
            None
        );
        assert_eq!(
            presented(&query(&[("recover", "ab:-1:lobby")]), "lobby"),
            None
        );
        assert_eq!(presented(&query(&[("recover", "ab:7")]), "7"), None);
    }

    #[test]
    fn a_numbered_frame_embeds_json_and_quotes_other_text() {
        let json = numbered("a\"b", 3, br#"{"x":1}"#);
        assert_eq!(
            text_of(&json),
            r#"{"$room":"a\"b","$offset":3,"data":{"x":1}}"#
        );
        let text = numbered("r", 4, b"hi \"there\"");
        assert_eq!(
            text_of(&text),
            r#"{"$room":"r","$offset":4,"text":"hi \"there\""}"#
        );
    }

    #[test]
    fn the_position_frame_says_recovered_only_when_asked() {
        let frame = position("lobby", "ab", 4, None);
        assert_eq!(
            text_of(&frame),
            r#"{"$history":{"room":"lobby","epoch":"ab","offset":4}}"#
        );
        let frame = position("lobby", "ab", 4, Some(false));
        assert!(text_of(&frame).ends_with(r#""recovered":false}}"#));
    }

    #[test]
    fn epochs_are_short_lower_case_hex() {
        assert!(valid_epoch(&new_epoch()));
        assert!(!valid_epoch(""));
        assert!(!valid_epoch("ABC"));
        assert!(!valid_epoch(&"a".repeat(33)));
    }
}
