//! Transports carry room messages between app instances.
//!
//! Every namespace delivers to its local sockets itself; a transport only moves messages to
//! *other* instances, which deliver them to *their* local sockets. Topics are
//! `"<namespace>.<room>"` (the namespace is the service path without its leading `/`), a
//! socket's personal room is its id, and a broadcast to a whole namespace uses the bare
//! namespace as topic.
//!
//! [`LocalTransport`] is the default: nothing leaves the process and the fan-out path does
//! not even check for a transport.
//!
//! # Wire format
//! The broker transports ([`RedisTransport`], [`NatsTransport`]) and the [`Emitter`] send
//! one JSON envelope per message, compatible with Asena's Redis transport so mixed fleets
//! work: `{"d": data, "t": topic, "o": podId}`, plus `"b": 1` when `d` is base64-encoded
//! binary. Redis uses the channel `asena:ws:transport`, NATS the subject
//! `asena.ws.transport`. Every instance has a random pod id and drops its own messages, so
//! each socket receives a message exactly once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::BoxError;
use crate::namespace::Namespace;
use crate::ws::Frame;

mod emitter;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "redis")]
pub mod redis;

pub use emitter::{Emitter, NATS_SUBJECT, REDIS_CHANNEL, TransportStats};
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
    #[error("invalid transport URL `{0}`: expected redis://host:port or nats://host:port")]
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
    /// `"<namespace>.<room>"`, or `"<namespace>"` for a broadcast.
    pub topic: String,
    /// The message bytes (text is UTF-8).
    pub payload: Bytes,
    /// Whether the message is binary.
    pub binary: bool,
}

impl Outbound {
    pub(crate) fn new(topic: String, frame: &Frame) -> Outbound {
        Outbound {
            topic,
            payload: frame.payload_bytes(),
            binary: !frame.is_text(),
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

    /// True only for [`LocalTransport`]: the app then skips transports entirely.
    fn is_local(&self) -> bool {
        false
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
#[derive(Clone, Debug)]
pub struct Inbound {
    namespaces: Arc<[Namespace]>,
}

impl Inbound {
    pub(crate) fn new(namespaces: Arc<[Namespace]>) -> Inbound {
        Inbound { namespaces }
    }

    /// Delivers a message from another instance to the local sockets of `topic`. Returns the
    /// number of local recipients (0 for unknown namespaces).
    pub fn deliver(&self, topic: &str, payload: &[u8], binary: bool) -> usize {
        let frame = if binary {
            Frame::binary(payload)
        } else {
            match std::str::from_utf8(payload) {
                Ok(text) => Frame::text(text),
                Err(_) => {
                    tracing::warn!(target: "asena::transport", topic, "dropping remote text message that is not UTF-8");
                    return 0;
                }
            }
        };
        // Longest namespace prefix wins: "<ns>" broadcasts, "<ns>.<room>" targets a room.
        let mut best: Option<(&Namespace, Option<&str>)> = None;
        for ns in self.namespaces.iter() {
            let t = ns.topic();
            let hit = if topic == t {
                Some(None)
            } else {
                topic
                    .strip_prefix(t)
                    .and_then(|rest| rest.strip_prefix('.'))
                    .map(Some)
            };
            if let Some(room) = hit
                && best.is_none_or(|(b, _)| b.topic().len() < t.len())
            {
                best = Some((ns, room));
            }
        }
        match best {
            Some((ns, Some(room))) => ns.deliver_room(room, &frame, None),
            Some((ns, None)) => ns.deliver_all(&frame),
            None => 0,
        }
    }

    /// Paths of the namespaces this app serves.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.namespaces.iter().map(|n| n.path())
    }
}

/// The transport named by `ASENA_TRANSPORT`: unset, empty or `local` → `None` (local only);
/// `redis://…` → Redis; `nats://…` → NATS. Anything else is an error, never a silent
/// fallback to local.
pub fn from_env() -> Result<Option<Arc<dyn Transport>>, TransportError> {
    match std::env::var("ASENA_TRANSPORT") {
        Err(_) => Ok(None),
        Ok(v) if v.trim().is_empty() || v.trim() == "local" => Ok(None),
        Ok(url) => from_url(url.trim()).map(Some),
    }
}

/// The transport for a broker URL (`redis://…` or `nats://…`).
pub fn from_url(url: &str) -> Result<Arc<dyn Transport>, TransportError> {
    #[cfg(feature = "redis")]
    if url.starts_with("redis://") || url.starts_with("rediss://") {
        return Ok(Arc::new(RedisTransport::new(url)));
    }
    #[cfg(feature = "nats")]
    if url.starts_with("nats://") {
        return Ok(Arc::new(NatsTransport::new(url)));
    }
    Err(TransportError::InvalidUrl(url.to_owned()))
}
