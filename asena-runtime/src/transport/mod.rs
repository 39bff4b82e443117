//! Transports carry room messages between app instances.
//!
//! Every namespace delivers to its local sockets itself; a transport only moves messages to
//! *other* instances, which deliver them to *their* local sockets through the [`Inbound`]
//! handed to [`Transport::init`]. What crosses the broker (topics, the JSON envelope, channel
//! names) is defined in [`wire`](crate::wire), compatible with Asena's Redis transport so
//! mixed fleets work. Every instance has a random pod id and drops its own messages, so each
//! socket receives a message exactly once.
//!
//! [`LocalTransport`] is the default: nothing leaves the process and the fan-out path does
//! not even check for a transport. The broker plumbing [`RedisTransport`] and
//! [`NatsTransport`] share lives in `broker.rs` (the core each is built on, with the
//! queue and the running state), `publisher.rs` and `subscriber.rs` (the one task that
//! sends and the one that receives, for every broker), `counters.rs` and `backoff.rs`; the [`Emitter`]
//! publishes into a fleet from a process without a server.
//!
//! One bus carries two layouts of channels ([`Route`]): Asena's topics, wrapped in the
//! [`wire`](crate::wire) envelope, which the namespaces deliver; and named channels
//! `<prefix>:<rest>`, carried as they are, which a protocol's [`Listener`] takes. The
//! managed protocol uses the second for Ignis's layout (`ws:room:{room}`, one channel per
//! target; [`envelope`](crate::managed::envelope) holds the format), so managed services reach every instance over any
//! transport: Redis, a Redis Cluster or NATS.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::BoxError;
use crate::trace::TraceParent;

mod backoff;
mod broker;
mod counters;
mod emitter;
#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "redis")]
mod redis;
mod publisher;
mod subscriber;

pub use counters::TransportStats;
pub use emitter::{Emitter, ManagedEmitter};
#[cfg(feature = "nats")]
pub use nats::NatsTransport;
#[cfg(feature = "redis")]
pub use redis::RedisTransport;

/// A boxed future, as transports return from their async methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A transport failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The broker could not be reached.
    #[error("could not connect to {url}: {source}")]
    Connect {
        /// Where we tried to connect.
        url: String,
        /// Why it failed.
        #[source]
        source: BoxError,
    },
    /// The URL is not one this transport understands.
    #[error(
        "invalid transport URL `{0}`: expected redis://host:port, redis-cluster://host:port,host:port or nats://host:port"
    )]
    InvalidUrl(String),
    /// The transport was already destroyed.
    #[error("transport is closed")]
    Closed,
    /// Any other broker error.
    #[error("transport error: {0}")]
    Other(#[source] BoxError),
}

/// A message leaving this instance.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// Where it goes.
    pub route: Route,
    /// The message bytes (text is UTF-8).
    pub payload: Bytes,
    /// Whether the message is binary.
    pub binary: bool,
    /// The trace it was sent in ([`trace`](crate::trace)): on a topic the transport puts it
    /// in the envelope (`tp`); a named channel's payload carries its own.
    pub trace: Option<TraceParent>,
}

/// Where an [`Outbound`] message goes: one bus, two layouts of channels on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A topic of Asena's layout (see [`wire`](crate::wire)): `"<namespace>.<room>"`, or
    /// `"<namespace>.__"` for a broadcast. The transport wraps the payload in the fleet
    /// envelope and picks the channel.
    Topic {
        /// The topic.
        topic: String,
        /// Whether only the members of a named room receive it
        /// ([`wire::routes_by_interest`](crate::wire::routes_by_interest)): a transport that
        /// routes by interest sends it only to the instances that subscribed to its topic
        /// (see [`Transport::subscribe`]). False for broadcasts, messages to one socket and
        /// the fleet's announcements, which every instance receives.
        interest: bool,
    },
    /// A named channel of a protocol's own layout, `<prefix>:<rest>` (the managed
    /// protocol's `ws:room:lobby`): the payload travels as it is, and reaches the
    /// [`Listener`] of its prefix on every instance, this one included.
    Channel(String),
}

impl Outbound {
    /// A message on an Asena topic, in the current task's trace if it runs in one
    /// ([`trace::current`](crate::trace::current)).
    pub fn topic(topic: String, payload: Bytes, binary: bool, interest: bool) -> Outbound {
        let trace = crate::trace::hop(&topic);
        Outbound {
            route: Route::Topic { topic, interest },
            trace,
            payload,
            binary,
        }
    }

    /// A text message on a named channel.
    pub fn channel(channel: String, payload: Bytes) -> Outbound {
        Outbound {
            route: Route::Channel(channel),
            payload,
            binary: false,
            trace: None,
        }
    }

    /// The topic or channel, for logs.
    pub fn address(&self) -> &str {
        match &self.route {
            Route::Topic { topic, .. } => topic,
            Route::Channel(channel) => channel,
        }
    }
}

/// Moves messages between app instances.
///
/// Implementations must never block in [`publish`](Transport::publish) (queue and send from
/// a task), must drop messages they published themselves when they come back, and must
/// reconnect on their own, logging and counting failures while local delivery goes on.
pub trait Transport: Send + Sync + 'static {
    /// A short name for logs (`"redis"`, `"nats"`).
    fn name(&self) -> &'static str;

    /// Connects and starts delivering messages from other instances to `inbound`.
    fn init(&self, inbound: Inbound) -> BoxFuture<'_, Result<(), TransportError>>;

    /// Sends a message to the other instances.
    fn publish(&self, message: Outbound);

    /// Hint: a local socket joined a room nobody else here was in.
    fn subscribe(&self, topic: &str) {
        let _ = topic;
    }

    /// Hint: the last local socket left a room.
    fn unsubscribe(&self, topic: &str) {
        let _ = topic;
    }

    /// Disconnects. Idempotent; always called on shutdown.
    fn destroy(&self) -> BoxFuture<'_, ()>;

    /// Whether room messages go only to the instances subscribed to their topic (see
    /// [`subscribe`](Self::subscribe) and [`Route::Topic`]); false for a transport
    /// whose instances all receive everything.
    fn routes_by_interest(&self) -> bool {
        false
    }

    /// The largest message the broker takes, in bytes, when it has a limit (NATS: the
    /// server's `max_payload`). A send whose payload cannot fit (binary payloads count as
    /// base64) is refused before anything is sent, with
    /// [`MessageTooLarge`](crate::namespace::SendErrorCode::MessageTooLarge).
    fn max_message_size(&self) -> Option<usize> {
        None
    }

    /// The last messages this instance sent or delivered within a trace (at most 32,
    /// oldest first), for the inspector; empty for a transport that keeps none.
    fn recent_traces(&self) -> Vec<crate::trace::TracedMessage> {
        Vec::new()
    }

    /// True only for [`LocalTransport`]: the app then skips transports entirely.
    fn is_local(&self) -> bool {
        false
    }

    /// The transport's counters, for [`Asena::transport_stats`](crate::Asena::transport_stats);
    /// `None` when it keeps none.
    fn stats(&self) -> Option<TransportStats> {
        None
    }
}

/// The default transport: a single instance, nothing leaves the process.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalTransport;

impl Transport for LocalTransport {
    fn name(&self) -> &'static str {
        "local"
    }
    fn init(&self, _inbound: Inbound) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async { Ok(()) })
    }
    fn publish(&self, _message: Outbound) {}
    fn destroy(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    fn is_local(&self) -> bool {
        true
    }
}

/// Where a transport hands what arrives: the app's namespaces (Asena's topics) and the
/// protocols' listeners (named channels).
#[derive(Clone)]
pub struct Inbound {
    local: Arc<dyn Deliver>,
    listeners: Listeners,
}

/// Local delivery of messages from other instances, implemented by the app's namespaces.
pub(crate) trait Deliver: Send + Sync + 'static {
    /// Delivers to the local sockets `topic` addresses; returns how many there were.
    fn deliver(&self, topic: &str, payload: &[u8], binary: bool) -> usize;
    /// Paths of the namespaces served here.
    fn paths(&self) -> Vec<&str>;
}

/// Takes the messages of the named channels under one prefix ([`Route::Channel`]), from
/// every instance (its own included: a listener recognises and skips its own messages).
///
/// `deliver` runs on the transport's receiving task, one message at a time in the order the
/// broker sent them: it must not block. A panic is caught, logged and counted.
pub trait Listener: Send + Sync + 'static {
    /// A message arrived on `channel`.
    fn deliver(&self, channel: &str, payload: &[u8]) -> Heard;
}

/// A layer that listens on a named channel but does not let its listener keep it alive
/// (presence, history): [`Weakly`] hands it the messages while it lives.
pub(crate) trait Hears: Send + Sync + 'static {
    /// A message on the layer's channel.
    fn hear(&self, payload: &[u8]) -> Heard;
}

/// A [`Listener`] holding its layer weakly; once the layer is gone, messages are refused as
/// "`<name>` stopped".
pub(crate) struct Weakly<T>(pub(crate) std::sync::Weak<T>, pub(crate) &'static str);

impl<T: Hears> Listener for Weakly<T> {
    fn deliver(&self, _channel: &str, payload: &[u8]) -> Heard {
        match self.0.upgrade() {
            Some(layer) => layer.hear(payload),
            None => Heard::Refused(format!("{} stopped", self.1)),
        }
    }
}

/// What a [`Listener`] made of a message; the transport counts it
/// ([`TransportStats::received`] or [`errors`](TransportStats::errors)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// Delivered to the local sockets it addresses.
    Delivered,
    /// This instance's own message, back from the broker: skipped.
    Own,
    /// Not a message of the listener's layout, or not for the channel it came on; dropped.
    Refused(String),
}

/// The listeners of an app, by channel prefix (`ws` listens on `ws:…`). Filled while the
/// app starts its services, before the transport starts, which subscribes to every prefix.
#[derive(Clone, Default)]
pub(crate) struct Listeners(Arc<std::sync::RwLock<std::collections::HashMap<String, Owned>>>);

/// A listener and the service it listens for.
type Owned = (&'static str, Arc<dyn Listener>);

impl Listeners {
    /// Adds the listener of `prefix` for `service`; when the prefix already has one, fails
    /// with the service that has it.
    pub(crate) fn add(
        &self,
        prefix: &str,
        service: &'static str,
        listener: Arc<dyn Listener>,
    ) -> Result<(), &'static str> {
        let mut map = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((other, _)) = map.get(prefix) {
            return Err(other);
        }
        map.insert(prefix.to_owned(), (service, listener));
        Ok(())
    }

    fn get(&self, prefix: &str) -> Option<Arc<dyn Listener>> {
        let map = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(prefix).map(|(_, listener)| listener.clone())
    }

    fn prefixes(&self) -> Vec<String> {
        let map = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.keys().cloned().collect()
    }
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("namespaces", &self.local.paths())
            .field("channel_prefixes", &self.listeners.prefixes())
            .finish()
    }
}

impl Inbound {
    pub(crate) fn new(local: Arc<dyn Deliver>, listeners: Listeners) -> Inbound {
        Inbound { local, listeners }
    }

    /// Delivers a message from another instance to the local sockets `topic` addresses (see
    /// [`wire`](crate::wire) for the scheme). Returns the number of local recipients (0 for
    /// unknown namespaces).
    pub fn deliver(&self, topic: &str, payload: &[u8], binary: bool) -> usize {
        self.local.deliver(topic, payload, binary)
    }

    /// Hands a message on a named channel (`<prefix>:<rest>`) to the listener of its prefix
    /// (refused when there is none).
    pub fn deliver_channel(&self, channel: &str, payload: &[u8]) -> Heard {
        let listener = channel
            .split_once(':')
            .and_then(|(prefix, _)| self.listeners.get(prefix));
        match listener {
            Some(listener) => listener.deliver(channel, payload),
            None => Heard::Refused("no listener for this channel".to_owned()),
        }
    }

    /// Paths of the namespaces this app serves.
    pub fn namespaces(&self) -> Vec<&str> {
        self.local.paths()
    }

    /// The prefixes of the named channels listened to here: a transport subscribes to every
    /// channel under each (`<prefix>:*`) when it starts.
    pub fn channel_prefixes(&self) -> Vec<String> {
        self.listeners.prefixes()
    }
}

/// Whether `prefix` can name a family of channels on every transport: 1 to 64 ASCII letters,
/// digits, `-` and `_` (it becomes a Redis pattern and a NATS subject token).
pub fn is_channel_prefix(prefix: &str) -> bool {
    (1..=64).contains(&prefix.len())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The transport named by `ASENA_TRANSPORT`: unset, empty or `local` → `None` (local only);
/// `redis://…` → Redis; `redis-cluster://host:port,host:port` → a Redis Cluster
/// ([`RedisTransport::cluster`]); `nats://…` → NATS. Anything else is an error, never a silent
/// fallback to local.
pub fn from_env() -> Result<Option<Arc<dyn Transport>>, TransportError> {
    match std::env::var("ASENA_TRANSPORT") {
        Err(_) => Ok(None),
        Ok(v) if v.trim().is_empty() || v.trim() == "local" => Ok(None),
        Ok(url) => from_url(url.trim()).map(Some),
    }
}

/// The transport for a broker URL (`redis://…`, `redis-cluster://…` or `nats://…`).
pub fn from_url(url: &str) -> Result<Arc<dyn Transport>, TransportError> {
    #[cfg(feature = "redis")]
    if url.starts_with("redis://") || url.starts_with("rediss://") {
        return Ok(Arc::new(RedisTransport::new(url)));
    }
    #[cfg(feature = "redis")]
    if url.starts_with(redis::CLUSTER_SCHEME) {
        return RedisTransport::from_cluster_url(url)
            .map(|t| Arc::new(t) as Arc<dyn Transport>)
            .ok_or_else(|| TransportError::InvalidUrl(url.to_owned()));
    }
    #[cfg(feature = "nats")]
    if url.starts_with("nats://") {
        return Ok(Arc::new(NatsTransport::new(url)));
    }
    Err(TransportError::InvalidUrl(url.to_owned()))
}
