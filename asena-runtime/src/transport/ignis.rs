//! The [`IgnisBus`]: carries the managed protocol's envelopes
//! ([`ManagedEnvelope`], Ignis's Redis layout,
//! defined in [`asena_protocol::managed`]) between the servers of a fleet.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use redis::Client;
use redis::aio::PubSub;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::TransportError;
use super::broker::{
    Backoff, CONNECT_TIMEOUT, Counters, QUEUE_CAPACITY, TransportStats, stop_tasks,
};
use super::redis::publisher::{self, FLUSH_TIMEOUT, Publisher};
use crate::error::BoxError;

pub use asena_protocol::managed::{
    BROADCAST_CHANNEL, CLIENT_PREFIX, DEFAULT_PREFIX, EMITTER_SERVER_ID, ManagedEnvelope,
    ROOM_PREFIX, TargetKind, USER_PREFIX,
};

/// Where an [`IgnisBus`] hands the envelopes other servers (and emitters) published: the
/// managed service, which delivers them to its local connections.
///
/// `deliver` runs on the bus's receiving task, one envelope at a time in the order Redis sent
/// them: it must not block (hand slow work to a task). A panic is caught, logged and counted.
pub trait IgnisSink: Send + Sync + 'static {
    /// Delivers one envelope from another server to the local connections it targets.
    fn deliver(&self, envelope: ManagedEnvelope);
}

/// One server's connections to a fleet's Redis in Ignis's layout: publishes envelopes and
/// receives everyone else's.
///
/// Two connections: a publisher (multiplexed; envelopes are queued and sent in pipelined
/// batches from a task, so [`publish`](IgnisBus::publish) never blocks) and a subscriber on
/// [`BROADCAST_CHANNEL`] and the `ws:room:*`, `ws:client:*`, `ws:user:*` patterns. Both
/// reconnect on their own with exponential backoff (the subscriber subscribes again). While
/// Redis is away outgoing envelopes are dropped; every failure is logged (target
/// `asena::transport`) and counted ([`stats`](IgnisBus::stats)).
///
/// Cheap to clone; the connections close on [`shutdown`](IgnisBus::shutdown) or when the last
/// clone is dropped.
///
/// ```no_run
/// use std::sync::Arc;
/// use asena_runtime::transport::ignis::{IgnisBus, ManagedEnvelope, IgnisSink};
///
/// struct Print;
/// impl IgnisSink for Print {
///     fn deliver(&self, envelope: ManagedEnvelope) {
///         println!("{} for {:?}", envelope.event, envelope.target);
///     }
/// }
///
/// # async fn run() -> Result<(), asena_runtime::TransportError> {
/// let server_id = uuid::Uuid::new_v4().to_string();
/// let bus = IgnisBus::connect("redis://127.0.0.1:6379", server_id, Arc::new(Print)).await?;
/// bus.publish(ManagedEnvelope::room(bus.server_id(), "lobby", "hello", serde_json::json!({}), &[]));
/// bus.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct IgnisBus {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    server_id: String,
    counters: Arc<Counters>,
    queue: mpsc::Sender<ManagedEnvelope>,
    /// Whether the publisher is connected: envelopes published meanwhile are dropped at once.
    connected: Arc<AtomicBool>,
    running: Mutex<Option<Running>>,
}

struct Running {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for IgnisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IgnisBus")
            .field("url", &self.inner.url)
            .field("server_id", &self.inner.server_id)
            .field("stats", &self.stats())
            .finish()
    }
}

impl IgnisBus {
    /// Connects to the Redis at `url` as the server `server_id` and starts handing the
    /// fleet's envelopes to `sink`, except those carrying `server_id` (its own).
    ///
    /// Fails when Redis cannot be reached, when `url` is not a Redis URL, and when
    /// `server_id` is empty or [`EMITTER_SERVER_ID`] (the bus would drop every emitter's
    /// messages). Once this returns, the subscriptions are in place.
    pub async fn connect(
        url: &str,
        server_id: String,
        sink: Arc<dyn IgnisSink>,
    ) -> Result<IgnisBus, TransportError> {
        IgnisBus::connect_under(DEFAULT_PREFIX, url, server_id, sink).await
    }

    /// [`connect`](Self::connect) with the channels under `prefix` instead of `ws` (see
    /// [`DEFAULT_PREFIX`]): the bus publishes and hears only `{prefix}:…` channels. The
    /// prefix must be non-empty and hold no `:`, `*`, `?` or `[` (it is part of a pattern).
    pub async fn connect_under(
        prefix: &str,
        url: &str,
        server_id: String,
        sink: Arc<dyn IgnisSink>,
    ) -> Result<IgnisBus, TransportError> {
        if prefix.is_empty() || prefix.contains([':', '*', '?', '[', ']', '\\']) {
            return Err(TransportError::Other(
                format!("a managed channel prefix must be non-empty without `:`, `*`, `?`, `[`, `]` or `\\`, got {prefix:?}").into(),
            ));
        }
        let prefix: Arc<str> = Arc::from(prefix);
        if server_id.is_empty() || server_id == EMITTER_SERVER_ID {
            return Err(TransportError::Other(
                format!("an Ignis server id must be unique and not empty or `{EMITTER_SERVER_ID}`, got `{server_id}`").into(),
            ));
        }
        let connect_error = |source: BoxError| TransportError::Connect {
            url: url.to_owned(),
            source,
        };
        let client = Client::open(url).map_err(|_| TransportError::InvalidUrl(url.to_owned()))?;
        let publisher = publisher::connect(&client)
            .await
            .map_err(|e| connect_error(Box::new(e)))?;
        let subscriber = connect_subscriber(&client, &prefix)
            .await
            .map_err(connect_error)?;

        let counters = Arc::new(Counters::default());
        let connected = Arc::new(AtomicBool::new(true));
        let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let pub_task = tokio::spawn(
            Publisher {
                transport: "ignis",
                client: client.clone(),
                counters: counters.clone(),
                connected: connected.clone(),
                rx,
                shutdown: shutdown_rx.clone(),
                command: {
                    let prefix = prefix.clone();
                    Box::new(
                        move |envelope: &ManagedEnvelope, pipe: &mut redis::Pipeline| {
                            pipe.cmd("PUBLISH")
                                .arg(envelope.channel_under(&prefix))
                                .arg(envelope.encode())
                                .ignore();
                        },
                    )
                },
            }
            .run(publisher),
        );
        let sub_task = tokio::spawn(
            SubscriberTask {
                client,
                prefix: prefix.clone(),
                server_id: server_id.clone(),
                counters: counters.clone(),
                sink,
                shutdown: shutdown_rx,
                malformed: 0,
            }
            .run(subscriber),
        );
        tracing::info!(target: "asena::transport", transport = "ignis", %url, %server_id, "connected");
        Ok(IgnisBus {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                server_id,
                counters,
                queue,
                connected,
                running: Mutex::new(Some(Running {
                    shutdown,
                    tasks: vec![pub_task, sub_task],
                })),
            }),
        })
    }

    /// This server's id: the `serverId` its envelopes should carry, and the one it drops.
    pub fn server_id(&self) -> &str {
        &self.inner.server_id
    }

    /// The Redis URL.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Sends `envelope` on its [channel](ManagedEnvelope::channel) without waiting: it is
    /// queued for the publishing task. When the queue is full, while Redis is away and after
    /// [`shutdown`](IgnisBus::shutdown) the envelope is dropped, counted and logged.
    ///
    /// The envelope goes out as given: give it this bus's [`server_id`](IgnisBus::server_id)
    /// so the fleet knows where it came from and this server does not receive it back.
    pub fn publish(&self, envelope: ManagedEnvelope) {
        let counters = &self.inner.counters;
        if !self.inner.connected.load(Ordering::Relaxed) {
            let dropped = counters.dropped.fetch_add(1, Ordering::Relaxed);
            if dropped.is_multiple_of(1000) {
                tracing::warn!(target: "asena::transport", transport = "ignis", dropped = dropped + 1, "Redis is away, dropping envelopes");
            }
            return;
        }
        match self.inner.queue.try_send(envelope) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let dropped = counters.dropped.fetch_add(1, Ordering::Relaxed);
                if dropped.is_multiple_of(1000) {
                    tracing::warn!(target: "asena::transport", transport = "ignis", dropped = dropped + 1, "outgoing queue full, dropping envelopes");
                }
            }
            Err(TrySendError::Closed(_)) => Counters::add(&counters.dropped, 1),
        }
    }

    /// Counters: envelopes published, received (handed to the sink), dropped, errors
    /// (failed sends and connects, lost connections, malformed messages) and reconnects.
    pub fn stats(&self) -> TransportStats {
        self.inner.counters.snapshot()
    }

    /// Flushes what is queued (for at most two seconds) and disconnects. Idempotent; any
    /// clone may call it, and every clone is closed afterwards.
    pub async fn shutdown(&self) {
        let running = self
            .inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(running) = running else { return };
        self.inner.connected.store(false, Ordering::Relaxed);
        stop_tasks(
            &running.shutdown,
            running.tasks,
            FLUSH_TIMEOUT + Duration::from_secs(1),
        )
        .await;
        tracing::info!(target: "asena::transport", transport = "ignis", server_id = %self.inner.server_id, "disconnected");
    }
}

/// A pub/sub connection subscribed to everything a server under `prefix` listens on.
async fn connect_subscriber(client: &Client, prefix: &str) -> Result<PubSub, BoxError> {
    let patterns = ["room", "client", "user"].map(|kind| format!("{prefix}:{kind}:*"));
    let fut = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(format!("{prefix}:broadcast")).await?;
        pubsub.psubscribe(&patterns[..]).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    Ok(tokio::time::timeout(CONNECT_TIMEOUT, fut)
        .await
        .map_err(|_| "timed out")??)
}

struct SubscriberTask {
    client: Client,
    /// The channels' first part; an envelope must arrive on its own channel under it.
    prefix: Arc<str>,
    server_id: String,
    counters: Arc<Counters>,
    sink: Arc<dyn IgnisSink>,
    shutdown: watch::Receiver<bool>,
    /// Malformed messages seen, to log the first few and then one in a thousand.
    malformed: u64,
}

impl SubscriberTask {
    async fn run(mut self, pubsub: PubSub) {
        let mut pubsub = Some(pubsub);
        let mut backoff = Backoff::new();
        loop {
            if let Some(p) = pubsub.take() {
                let mut stream = p.into_on_message();
                loop {
                    tokio::select! {
                        _ = self.shutdown.changed() => return,
                        msg = stream.next() => match msg {
                            Some(msg) => self.handle(msg.get_channel_name(), msg.get_payload_bytes()),
                            None => break,
                        }
                    }
                }
                Counters::add(&self.counters.errors, 1);
                tracing::warn!(target: "asena::transport", transport = "ignis", "subscriber lost its connection; reconnecting");
            }
            let delay = backoff.next_delay();
            tokio::select! {
                _ = self.shutdown.changed() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            match connect_subscriber(&self.client, &self.prefix).await {
                Ok(p) => {
                    Counters::add(&self.counters.reconnects, 1);
                    tracing::info!(target: "asena::transport", transport = "ignis", "subscriber reconnected");
                    backoff.reset();
                    pubsub = Some(p);
                }
                Err(error) => {
                    Counters::add(&self.counters.errors, 1);
                    tracing::warn!(target: "asena::transport", transport = "ignis", %error, "subscriber reconnect failed");
                }
            }
        }
    }

    /// Hands one message to the sink, unless it is ours or not an envelope.
    fn handle(&mut self, channel: &str, payload: &[u8]) {
        let envelope = match ManagedEnvelope::decode(payload) {
            Ok(e) if e.target.is_none() && e.kind != TargetKind::Broadcast => {
                self.malformed(
                    channel,
                    &format!("a `{:?}` message without a target", e.kind),
                );
                return;
            }
            Ok(e) => e,
            Err(error) => {
                self.malformed(channel, &error.to_string());
                return;
            }
        };
        if envelope.server_id == self.server_id {
            return;
        }
        // The channel says whom a message is for; the envelope must agree (a `client`
        // message published on a room's channel is not delivered to that client).
        if envelope.channel_under(&self.prefix) != channel {
            self.malformed(channel, "the envelope's target is not its channel's");
            return;
        }
        Counters::add(&self.counters.received, 1);
        let sink = &self.sink;
        if std::panic::catch_unwind(AssertUnwindSafe(|| sink.deliver(envelope))).is_err() {
            Counters::add(&self.counters.errors, 1);
            tracing::error!(target: "asena::transport", transport = "ignis", channel, "the Ignis sink panicked; envelope lost");
        }
    }

    fn malformed(&mut self, channel: &str, error: &str) {
        Counters::add(&self.counters.errors, 1);
        self.malformed += 1;
        if self.malformed <= 10 || self.malformed.is_multiple_of(1000) {
            tracing::warn!(target: "asena::transport", transport = "ignis", channel, error, malformed = self.malformed, "dropping a message that is not an Ignis envelope");
        } else {
            tracing::debug!(target: "asena::transport", transport = "ignis", channel, error, "dropping a message that is not an Ignis envelope");
        }
    }
}
