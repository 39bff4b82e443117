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
//! [`NatsTransport`] share (counters, queue, backoff) lives in `broker.rs`; the [`Emitter`]
//! publishes into a fleet from a process without a server.
//!
//! Managed services (Ignis's model: authenticated clients with user ids, rooms) talk over
//! Redis in Ignis's layout instead, one channel per target: the format is
//! [`asena_protocol::managed`] ([`ManagedEnvelope`]), and [`ignis`] holds the [`IgnisBus`]
//! that carries it (feature `redis`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::BoxError;

mod broker;
mod emitter;
#[cfg(feature = "redis")]
pub mod ignis;
#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "redis")]
mod redis;

pub use asena_protocol::managed::{ManagedEnvelope, TargetKind};
pub use broker::TransportStats;
pub use emitter::Emitter;
#[cfg(feature = "redis")]
pub use ignis::{IgnisBus, IgnisSink};
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
    /// The topic (see [`wire`](crate::wire)): `"<namespace>.<room>"`, or
    /// `"<namespace>.__"` for a broadcast.
    pub topic: String,
    /// The message bytes (text is UTF-8).
    pub payload: Bytes,
    /// Whether the message is binary.
    pub binary: bool,
    /// Whether only the members of a named room receive it ([`wire::routes_by_interest`](crate::wire::routes_by_interest)):
    /// a transport that routes by interest sends it only to the instances that subscribed to
    /// its topic (see [`Transport::subscribe`]). False for broadcasts, messages to one
    /// socket and the fleet's announcements, which every instance receives.
    pub interest: bool,
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
    /// [`subscribe`](Self::subscribe) and [`Outbound::interest`]); false for a transport
    /// whose instances all receive everything.
    fn routes_by_interest(&self) -> bool {
        false
    }

    /// The largest message the broker takes, in bytes, when it has a limit (NATS: the
    /// server's `max_payload`). A send whose payload cannot fit (binary payloads count as
    /// base64) is refused before anything is sent, with
    /// [`MessageTooLarge`](crate::SendErrorCode::MessageTooLarge).
    fn max_message_size(&self) -> Option<usize> {
        None
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

/// Where a transport hands messages from other instances: the app's namespaces.
#[derive(Clone)]
pub struct Inbound {
    local: Arc<dyn Deliver>,
}

/// Local delivery of messages from other instances, implemented by the app's namespaces.
pub(crate) trait Deliver: Send + Sync + 'static {
    /// Delivers to the local sockets `topic` addresses; returns how many there were.
    fn deliver(&self, topic: &str, payload: &[u8], binary: bool) -> usize;
    /// Paths of the namespaces served here.
    fn paths(&self) -> Vec<&str>;
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("namespaces", &self.local.paths())
            .finish()
    }
}

impl Inbound {
    pub(crate) fn new(local: Arc<dyn Deliver>) -> Inbound {
        Inbound { local }
    }

    /// Delivers a message from another instance to the local sockets `topic` addresses (see
    /// [`wire`](crate::wire) for the scheme). Returns the number of local recipients (0 for
    /// unknown namespaces).
    pub fn deliver(&self, topic: &str, payload: &[u8], binary: bool) -> usize {
        self.local.deliver(topic, payload, binary)
    }

    /// Paths of the namespaces this app serves.
    pub fn namespaces(&self) -> Vec<&str> {
        self.local.paths()
    }
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
