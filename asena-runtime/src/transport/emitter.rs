//! The wire format shared by the broker transports, their counters, and the [`Emitter`].
//!
//! Every message that crosses instances is one JSON envelope, compatible with Asena's Redis
//! transport so mixed fleets work:
//!
//! ```json
//! {"d": "<text, or base64 when b is 1>", "t": "chat.general", "o": "<pod id>", "b": 1}
//! ```
//!
//! `t` is the topic (`"<namespace>.<room>"`, or the bare namespace for a broadcast), `o` the
//! pod id of the publisher (receivers drop their own messages), and `b` is present (as `1`)
//! only when `d` carries base64-encoded binary data.

// With only some broker features enabled, parts of the shared code go unused.
#![cfg_attr(
    not(all(feature = "redis", feature = "nats")),
    allow(dead_code, unreachable_code, unused_imports, unused_variables)
)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use super::{Outbound, TransportError};
use crate::ws::{Frame, IntoFrame};

/// The Redis pub/sub channel every instance publishes to and listens on.
pub const REDIS_CHANNEL: &str = "asena:ws:transport";

/// The NATS subject every instance publishes to and listens on.
pub const NATS_SUBJECT: &str = "asena.ws.transport";

/// How long connecting to a broker may take before it counts as unreachable.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Capacity of a transport's outgoing queue; beyond it messages are dropped (and counted)
/// rather than blocking the fan-out path.
pub(crate) const QUEUE_CAPACITY: usize = 64 * 1024;

/// A fresh random pod id.
pub(crate) fn new_pod_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    d: &'a str,
    t: &'a str,
    o: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    b: Option<u8>,
}

#[derive(Deserialize)]
struct EnvelopeIn {
    d: serde_json::Value,
    t: String,
    o: String,
    #[serde(default)]
    b: Option<serde_json::Value>,
}

/// Encodes a message as the JSON envelope.
pub(crate) fn encode(topic: &str, payload: &[u8], binary: bool, pod_id: &str) -> Vec<u8> {
    let (data, b) = if binary {
        (std::borrow::Cow::Owned(BASE64.encode(payload)), Some(1))
    } else {
        // Text frames always hold UTF-8; lossy conversion is only a safety net.
        (String::from_utf8_lossy(payload), None)
    };
    let env = EnvelopeOut {
        d: &data,
        t: topic,
        o: pod_id,
        b,
    };
    // Serialising strings into a Vec cannot fail.
    serde_json::to_vec(&env).unwrap_or_default()
}

/// Encodes an outgoing message as the JSON envelope.
pub(crate) fn encode_outbound(msg: &Outbound, pod_id: &str) -> Vec<u8> {
    encode(&msg.topic, &msg.payload, msg.binary, pod_id)
}

/// A decoded envelope.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Decoded {
    pub(crate) topic: String,
    pub(crate) origin: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) binary: bool,
}

/// Decodes a JSON envelope. `d` may be a string (text, or base64 when `b` is truthy) or,
/// from other publishers, any JSON value, which is delivered as its JSON text.
pub(crate) fn decode(raw: &[u8]) -> Result<Decoded, String> {
    let env: EnvelopeIn =
        serde_json::from_slice(raw).map_err(|e| format!("malformed envelope: {e}"))?;
    let binary = match &env.b {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::Number(n)) => n.as_u64() != Some(0),
        Some(other) => return Err(format!("malformed envelope: unexpected b = {other}")),
    };
    let payload = match (env.d, binary) {
        (serde_json::Value::String(s), true) => BASE64
            .decode(s.as_bytes())
            .map_err(|e| format!("malformed envelope: bad base64 in d: {e}"))?,
        (serde_json::Value::String(s), false) => s.into_bytes(),
        (_, true) => return Err("malformed envelope: binary d is not a string".into()),
        (other, false) => other.to_string().into_bytes(),
    };
    Ok(Decoded {
        topic: env.t,
        origin: env.o,
        payload,
        binary,
    })
}

/// Counters of a broker transport, as returned by `stats()`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransportStats {
    /// Messages sent to the broker.
    pub published: u64,
    /// Messages from other instances handed to local delivery.
    pub received: u64,
    /// Outgoing messages dropped: queue full, broker down, or send failed.
    pub dropped: u64,
    /// Broker errors: failed sends and connects, lost connections, malformed envelopes.
    pub errors: u64,
    /// Successful reconnections after a lost connection.
    pub reconnects: u64,
}

/// What every broker transport holds: where it connects, who it is (the pod id its envelopes
/// carry), its counters, its outgoing queue (set once started) and whether it was destroyed.
#[derive(Debug)]
pub(crate) struct BrokerCore {
    pub(crate) url: String,
    pub(crate) pod_id: String,
    pub(crate) counters: Arc<Counters>,
    pub(crate) queue: OnceLock<tokio::sync::mpsc::Sender<Outbound>>,
    pub(crate) destroyed: AtomicBool,
}

impl BrokerCore {
    pub(crate) fn new(url: String) -> BrokerCore {
        BrokerCore {
            url,
            pod_id: new_pod_id(),
            counters: Arc::new(Counters::default()),
            queue: OnceLock::new(),
            destroyed: AtomicBool::new(false),
        }
    }

    /// A transport instance starts once: not twice, and not after `destroy`.
    pub(crate) fn check_startable(&self, transport: &'static str) -> Result<(), TransportError> {
        if self.destroyed.load(Ordering::Acquire) {
            return Err(TransportError::Closed);
        }
        if self.queue.get().is_some() {
            return Err(TransportError::Other(
                format!("{transport} transport is already started; use one transport per app")
                    .into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn connect_error(
        &self,
        source: impl Into<crate::error::BoxError>,
    ) -> TransportError {
        TransportError::Connect {
            url: self.url.clone(),
            source: source.into(),
        }
    }
}

/// Queues an outgoing message for the transport's sender task without blocking; with no
/// queue yet, or a full or closed one, the message is dropped and counted.
pub(crate) fn enqueue(
    queue: Option<&tokio::sync::mpsc::Sender<Outbound>>,
    counters: &Counters,
    transport: &'static str,
    message: Outbound,
) {
    use tokio::sync::mpsc::error::TrySendError;
    let Some(queue) = queue else {
        Counters::add(&counters.dropped, 1);
        return;
    };
    match queue.try_send(message) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            let dropped = counters.dropped.fetch_add(1, Ordering::Relaxed);
            if dropped.is_multiple_of(1000) {
                tracing::warn!(target: "asena::transport", transport, "outgoing queue full, dropping messages");
            }
        }
        Err(TrySendError::Closed(_)) => Counters::add(&counters.dropped, 1),
    }
}

/// Tells a transport's tasks to stop and waits for each at most `grace`, aborting stragglers.
pub(crate) async fn stop_tasks(
    shutdown: &tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    grace: Duration,
) {
    let _ = shutdown.send(true);
    for mut task in tasks {
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) reconnects: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> TransportStats {
        TransportStats {
            published: self.published.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
        }
    }
}

/// Exponential backoff with jitter: 100 ms doubling up to 2 s.
#[derive(Debug)]
pub(crate) struct Backoff {
    attempt: u32,
}

impl Backoff {
    pub(crate) const MIN: Duration = Duration::from_millis(100);
    pub(crate) const MAX: Duration = Duration::from_secs(2);

    pub(crate) fn new() -> Backoff {
        Backoff { attempt: 0 }
    }

    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The delay before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = Self::delay(self.attempt as usize);
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// The delay before attempt number `attempt` (0-based).
    pub(crate) fn delay(attempt: usize) -> Duration {
        let exp = Self::MIN.saturating_mul(1u32 << attempt.min(5));
        let base = exp.min(Self::MAX);
        // Up to 20% jitter so a fleet does not reconnect in lockstep.
        let jitter_ms =
            (uuid::Uuid::new_v4().as_u128() % 1000) as u64 * base.as_millis() as u64 / 5000;
        base + Duration::from_millis(jitter_ms)
    }
}

/// Delivers one raw envelope received from the broker, dropping our own messages.
pub(crate) fn handle_incoming(
    raw: &[u8],
    pod_id: &str,
    inbound: &super::Inbound,
    counters: &Counters,
    transport: &'static str,
) {
    match decode(raw) {
        Ok(msg) if msg.origin == pod_id => {}
        Ok(msg) => {
            Counters::add(&counters.received, 1);
            inbound.deliver(&msg.topic, &msg.payload, msg.binary);
        }
        Err(error) => {
            Counters::add(&counters.errors, 1);
            tracing::warn!(target: "asena::transport", transport, %error, "dropping message from broker");
        }
    }
}

/// The topic of `room` in the namespace at `path` (`/chat`, `general` → `chat.general`).
fn room_topic(path: &str, room: &str) -> String {
    format!("{}.{}", path.trim_start_matches('/'), room)
}

enum Backend {
    #[cfg(feature = "redis")]
    Redis(::redis::aio::MultiplexedConnection),
    #[cfg(feature = "nats")]
    Nats(async_nats::Client),
    /// No broker feature is enabled: an emitter cannot exist.
    #[cfg(not(any(feature = "redis", feature = "nats")))]
    None(std::convert::Infallible),
}

/// Publishes into a fleet from a process that runs no server (a worker, a cron job, a CLI).
///
/// The emitter speaks the transports' wire format over Redis (`redis://…`) or NATS
/// (`nats://…`), with its own random pod id, so every instance delivers its messages to its
/// local sockets:
///
/// ```no_run
/// # async fn run() -> Result<(), asena_runtime::TransportError> {
/// use asena_runtime::Emitter;
/// let emitter = Emitter::connect("redis://127.0.0.1:6379").await?;
/// emitter
///     .to_room("/chat", "general", r#"{"type":"announcement","message":"hi"}"#)
///     .await?;
/// emitter.close().await;
/// # Ok(())
/// # }
/// ```
pub struct Emitter {
    backend: Backend,
    pod_id: String,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.backend {
            #[cfg(feature = "redis")]
            Backend::Redis(_) => "redis",
            #[cfg(feature = "nats")]
            Backend::Nats(_) => "nats",
            #[cfg(not(any(feature = "redis", feature = "nats")))]
            Backend::None(n) => match *n {},
        };
        f.debug_struct("Emitter")
            .field("backend", &kind)
            .field("pod_id", &self.pod_id)
            .finish()
    }
}

impl Emitter {
    /// Connects to the broker at `url` (`redis://…` or `nats://…`).
    pub async fn connect(url: &str) -> Result<Emitter, TransportError> {
        let connect_err = |source: crate::error::BoxError| TransportError::Connect {
            url: url.to_owned(),
            source,
        };
        let backend = if url.starts_with("redis://") || url.starts_with("rediss://") {
            #[cfg(feature = "redis")]
            {
                let client = ::redis::Client::open(url)
                    .map_err(|_| TransportError::InvalidUrl(url.to_owned()))?;
                let config = ::redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(CONNECT_TIMEOUT));
                let conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(|e| connect_err(Box::new(e)))?;
                Backend::Redis(conn)
            }
            #[cfg(not(feature = "redis"))]
            return Err(TransportError::InvalidUrl(url.to_owned()));
        } else if url.starts_with("nats://") {
            #[cfg(feature = "nats")]
            {
                let client = tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    async_nats::ConnectOptions::new()
                        .connection_timeout(CONNECT_TIMEOUT)
                        .name("asena-emitter")
                        .connect(url),
                )
                .await
                .map_err(|e| connect_err(Box::new(e)))?
                .map_err(|e| connect_err(Box::new(e)))?;
                Backend::Nats(client)
            }
            #[cfg(not(feature = "nats"))]
            return Err(TransportError::InvalidUrl(url.to_owned()));
        } else {
            return Err(TransportError::InvalidUrl(url.to_owned()));
        };
        Ok(Emitter {
            backend,
            pod_id: new_pod_id(),
        })
    }

    /// This emitter's pod id (the `o` of its envelopes).
    pub fn pod_id(&self) -> &str {
        &self.pod_id
    }

    /// Sends to every member of `room` of the namespace at `namespace` (e.g. `/chat`), on
    /// every instance.
    pub async fn to_room(
        &self,
        namespace: &str,
        room: &str,
        message: impl IntoFrame,
    ) -> Result<(), TransportError> {
        self.publish(&room_topic(namespace, room), message).await
    }

    /// Sends to one socket by id, on whichever instance holds it.
    pub async fn to_socket(
        &self,
        namespace: &str,
        id: &str,
        message: impl IntoFrame,
    ) -> Result<(), TransportError> {
        self.publish(&room_topic(namespace, id), message).await
    }

    /// Sends to every socket of the namespace at `namespace`, on every instance.
    pub async fn broadcast(
        &self,
        namespace: &str,
        message: impl IntoFrame,
    ) -> Result<(), TransportError> {
        self.publish(namespace.trim_start_matches('/'), message)
            .await
    }

    /// Publishes `message` under a raw transport topic (`"<namespace>.<room>"` or
    /// `"<namespace>"`). Returns once the broker has the message.
    pub async fn publish(
        &self,
        topic: &str,
        message: impl IntoFrame,
    ) -> Result<(), TransportError> {
        let frame: Frame = message
            .into_frame()
            .map_err(|e| TransportError::Other(Box::new(e)))?;
        let body = encode(topic, frame.payload(), !frame.is_text(), &self.pod_id);
        match &self.backend {
            #[cfg(feature = "redis")]
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                ::redis::cmd("PUBLISH")
                    .arg(REDIS_CHANNEL)
                    .arg(body)
                    .query_async::<i64>(&mut conn)
                    .await
                    .map_err(|e| TransportError::Other(Box::new(e)))?;
            }
            #[cfg(feature = "nats")]
            Backend::Nats(client) => {
                client
                    .publish(NATS_SUBJECT, bytes::Bytes::from(body))
                    .await
                    .map_err(|e| TransportError::Other(Box::new(e)))?;
                client
                    .flush()
                    .await
                    .map_err(|e| TransportError::Other(Box::new(e)))?;
            }
            #[cfg(not(any(feature = "redis", feature = "nats")))]
            Backend::None(n) => match *n {},
        }
        Ok(())
    }

    /// Flushes and disconnects.
    pub async fn close(self) {
        match self.backend {
            #[cfg(feature = "redis")]
            Backend::Redis(conn) => drop(conn),
            #[cfg(feature = "nats")]
            Backend::Nats(client) => {
                let _ = client.flush().await;
                let _ = client.drain().await;
            }
            #[cfg(not(any(feature = "redis", feature = "nats")))]
            Backend::None(n) => match n {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip() {
        let raw = encode("chat.general", b"{\"a\":1}", false, "pod-1");
        let v: serde_json::Value = serde_json::from_slice(&raw).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"d": "{\"a\":1}", "t": "chat.general", "o": "pod-1"})
        );
        let d = decode(&raw).expect("decode");
        assert_eq!(d.topic, "chat.general");
        assert_eq!(d.origin, "pod-1");
        assert_eq!(d.payload, b"{\"a\":1}");
        assert!(!d.binary);
    }

    #[test]
    fn binary_round_trip() {
        let raw = encode("chat", &[0, 255, 7], true, "p");
        let v: serde_json::Value = serde_json::from_slice(&raw).expect("json");
        assert_eq!(v["b"], 1);
        assert_eq!(v["d"], "AP8H");
        let d = decode(&raw).expect("decode");
        assert_eq!(d.payload, vec![0, 255, 7]);
        assert!(d.binary);
    }

    #[test]
    fn foreign_json_data_is_delivered_as_json_text() {
        let d = decode(br#"{"d":{"x":1},"t":"chat.r","o":"ts-pod"}"#).expect("decode");
        assert_eq!(d.payload, br#"{"x":1}"#);
        assert!(decode(b"not json").is_err());
        assert!(decode(br#"{"d":"!!","t":"x","o":"p","b":1}"#).is_err());
    }

    #[test]
    fn backoff_grows_and_caps() {
        let mut b = Backoff::new();
        let first = b.next_delay();
        assert!(first >= Backoff::MIN && first < Backoff::MIN * 2);
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d <= Backoff::MAX + Backoff::MAX / 5);
        }
    }
}
