//! [`NatsTransport`]: fan-out across instances over NATS core pub/sub.
//!
//! The same semantics as [`RedisTransport`](super::RedisTransport): a fleet subject
//! (`asena.ws.transport` unless [`NatsTransport::subject`] names another), the same [`wire`]
//! envelope, a random pod id per instance to drop our own messages. The NATS client
//! reconnects (and re-subscribes) on its own with backoff; while the server is away local
//! delivery goes on and disconnections are logged and counted.
//!
//! # Outages
//! NATS core pub/sub keeps nothing for an instance that is not subscribed, and the client
//! would hold what is published while the server is away and send it on reconnection,
//! before the other instances are back and subscribed: lost without a trace. So, as the
//! Redis transport does, what an outage costs is dropped and counted
//! ([`TransportStats::dropped`]) instead: messages published while the connection is down,
//! and for [`NatsTransport::resubscribe_grace`] (default 3 s, longer than the reconnect
//! backoff of every instance) after it is back, while the rest of the fleet reconnects.
//! Messages already written to the socket when the server dies are lost with it, uncounted;
//! no fire-and-forget transport can know.
//!
//! # Message size
//! The server refuses a message larger than its `max_payload` (1 MiB by default; from its
//! `INFO`). Such a publish is refused up front: counted in [`TransportStats::oversize`] and
//! [`TransportStats::dropped`] and logged (the first, then every 1000th), never sent; the
//! [`Emitter`](crate::transport::Emitter) returns an error. The check uses the envelope's size: a binary
//! message grows by a third (base64).
//!
//! # Interest-based routing (the default)
//! A message to a named room goes on that room's own subject
//! ([`wire::nats_room_subject`]: `<subject>.r.<topic>`), and an instance subscribes to a
//! room's subject when its first local member joins and unsubscribes when the last one
//! leaves, so an instance receives the messages of its own rooms, not the whole fleet's.
//! Subscription changes go through one task that never blocks a join; an unsubscription
//! waits [`LINGER`](super::subscriber::LINGER) first and is cancelled by a join in the meantime, so a room whose members
//! come and go does not churn. A message published while a room's subscription is being set
//! up may miss the member that just joined; members already joined are subscribed already.
//! Broadcasts, messages to one socket (its personal room) and the fleet's announcements stay
//! on the fleet subject, which every instance receives; so do room messages from an
//! [`Emitter`](crate::transport::Emitter), and each instance still delivers them to its local members.
//!
//! [`NatsTransport::single_subject`] sends everything on the fleet subject instead (every
//! instance receives everything): for a fleet that mixes with instances that do not route by
//! interest.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::{AbortHandle, Abortable};

use super::backoff::Backoff;
use super::broker::{
    BrokerCore, CONNECT_TIMEOUT, Tasks, broker_methods, broker_transport_methods, encode_outbound,
};
use super::counters::{Counters, TransportStats};
use super::publisher::{Link, Lost, Publish, RESUBSCRIBE_GRACE};
use super::subscriber::{Event, Failed, Interest, Subscription};
use super::{BoxFuture, Inbound, Outbound, Route, Transport, TransportError};
use crate::error::BoxError;
use crate::wire;

/// Fan-out across instances over NATS.
///
/// ```no_run
/// use asena_runtime::{Asena};
/// use asena_runtime::transport::NatsTransport;
/// # async fn run() -> Result<(), asena_runtime::Error> {
/// let app = Asena::builder()
///     .transport(NatsTransport::new("nats://127.0.0.1:4222"))
///     .build()
///     .await?; // fails when NATS cannot be reached
/// # Ok(()) }
/// ```
pub struct NatsTransport {
    core: BrokerCore<async_nats::Client>,
    /// Room messages on their rooms' subjects (the default), or everything on one subject.
    by_interest: bool,
    /// The server's `max_payload` (0 until connected).
    max_payload: Arc<AtomicUsize>,
    /// How long publishing waits after a reconnection (module docs).
    grace: Duration,
}

impl NatsTransport {
    /// A transport to the NATS server at `url` (`nats://host:port`). Nothing connects until
    /// the app starts; an unreachable server then fails the startup.
    pub fn new(url: impl Into<String>) -> NatsTransport {
        NatsTransport {
            core: BrokerCore::new(url.into(), wire::NATS_SUBJECT),
            by_interest: true,
            max_payload: Arc::new(AtomicUsize::new(0)),
            grace: RESUBSCRIBE_GRACE,
        }
    }

    /// How long, after reconnecting to the server, publishing drops (and counts) messages
    /// while the rest of the fleet reconnects and re-subscribes (default 3 s; module docs).
    /// Shorter loses fewer messages after an outage, but any shorter than the other
    /// instances' reconnect delay (at most 2.4 s) loses some of them uncounted.
    pub fn resubscribe_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The server's largest message (`max_payload` from its `INFO`), once connected.
    pub fn max_payload(&self) -> Option<usize> {
        Some(self.max_payload.load(Ordering::Relaxed)).filter(|&m| m > 0)
    }

    /// Sends every message on the one fleet subject, and every instance receives all of
    /// them: for a fleet that mixes with instances that do not route by interest. The
    /// default routes room messages by interest (module docs).
    pub fn single_subject(mut self) -> Self {
        self.by_interest = false;
        self
    }

    /// Whether room messages go on their rooms' own subjects (the default).
    pub fn routes_by_interest(&self) -> bool {
        self.by_interest
    }

    async fn start(&self, inbound: Inbound) -> Result<(), TransportError> {
        self.core.check_startable("nats")?;
        let connect_error = |source: BoxError| self.core.connect_error(source);
        let counters = self.core.counters.clone();
        let connected_once = Arc::new(AtomicBool::new(false));
        let link = Arc::new(Link::default());
        let events_link = link.clone();
        let options = async_nats::ConnectOptions::new()
            .name(format!("asena-{}", self.core.pod_id))
            .no_echo()
            .connection_timeout(CONNECT_TIMEOUT)
            .max_reconnects(None)
            .reconnect_delay_callback(Backoff::delay)
            .event_callback(move |event| {
                let counters = counters.clone();
                let connected_once = connected_once.clone();
                let link = events_link.clone();
                async move { on_event(event, &counters, &connected_once, &link) }
            });
        let client = tokio::time::timeout(CONNECT_TIMEOUT, options.connect(self.core.url.as_str()))
            .await
            .map_err(|e| connect_error(Box::new(e)))?
            .map_err(|e| connect_error(Box::new(e)))?;
        let subscribed = async {
            let fleet = client.subscribe(self.core.channel.clone()).await?;
            let mut subscriber = Subscriber::new(client.clone(), self.core.channel.clone(), fleet);
            for prefix in inbound.channel_prefixes() {
                let wildcard = wire::nats_channel_wildcard(&self.core.channel, &prefix);
                subscriber.channels(client.subscribe(wildcard).await?);
            }
            confirm_subscription(&client, &self.core.channel, &self.core.pod_id).await?;
            Ok::<_, BoxError>(subscriber)
        };
        let subscriber = match tokio::time::timeout(CONNECT_TIMEOUT, subscribed).await {
            Ok(Ok(sub)) => sub,
            Ok(Err(e)) => {
                let _ = client.drain().await;
                return Err(connect_error(e));
            }
            Err(e) => {
                let _ = client.drain().await;
                return Err(connect_error(Box::new(e)));
            }
        };

        self.max_payload
            .store(client.server_info().max_payload, Ordering::Relaxed);
        let publish = Publisher {
            client: client.clone(),
            subject: self.core.channel.clone().into(),
            pod_id: self.core.pod_id.clone(),
            counters: self.core.counters.clone(),
            by_interest: self.by_interest,
            link: link.clone(),
            grace: self.grace,
            max_payload: self.max_payload.clone(),
            down: false,
        };
        self.core.run(
            Tasks {
                publish,
                subscription: subscriber,
                inbound,
                by_interest: self.by_interest,
                link,
                grace: self.grace,
            },
            client,
        );
        Ok(())
    }
}

/// Waits until the server has processed our SUB, so messages other instances publish once
/// `init` returned are not missed. `flush` only writes the socket; a request to a subject
/// nobody serves is a real round trip on this connection, answered with "no responders"
/// after everything sent before it.
async fn confirm_subscription(
    client: &async_nats::Client,
    subject: &str,
    pod_id: &str,
) -> Result<(), BoxError> {
    use async_nats::RequestErrorKind;
    let probe = client.request(format!("{subject}.ready.{pod_id}"), Bytes::new());
    match tokio::time::timeout(CONNECT_TIMEOUT, probe).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.kind() == RequestErrorKind::NoResponders => Ok(()),
        Ok(Err(e)) => Err(Box::new(e)),
        Err(e) => Err(Box::new(e)),
    }
}

fn on_event(
    event: async_nats::Event,
    counters: &Counters,
    connected_once: &AtomicBool,
    link: &Link,
) {
    match event {
        async_nats::Event::Connected => {
            if connected_once.swap(true, Ordering::AcqRel) {
                link.resumed();
                Counters::add(&counters.reconnects, 1);
                tracing::info!(target: "asena::transport", transport = "nats", "reconnected");
            }
        }
        async_nats::Event::Disconnected => {
            Counters::add(&counters.errors, 1);
            tracing::warn!(target: "asena::transport", transport = "nats", "disconnected; reconnecting");
        }
        async_nats::Event::ClientError(error) => {
            Counters::add(&counters.errors, 1);
            tracing::warn!(target: "asena::transport", transport = "nats", %error, "client error");
        }
        async_nats::Event::ServerError(error) => {
            Counters::add(&counters.errors, 1);
            tracing::warn!(target: "asena::transport", transport = "nats", %error, "server error");
        }
        async_nats::Event::SlowConsumer(_) => {
            Counters::add(&counters.errors, 1);
            tracing::warn!(target: "asena::transport", transport = "nats", "slow consumer: messages from other instances were dropped");
        }
        other => {
            tracing::debug!(target: "asena::transport", transport = "nats", event = %other, "event");
        }
    }
}

/// A stream of what one NATS subscription receives, as the subscriber task's events.
type Events = futures_util::stream::BoxStream<'static, Event<Bytes>>;

/// The subscription of a NATS client, which reconnects (and subscribes again) itself: the
/// fleet subject, the named channels' wildcards and one subscription per room with local
/// members, merged into one stream. Aborting a room's stream ends it, and dropping its
/// subscriber unsubscribes.
struct Subscriber {
    client: async_nats::Client,
    /// The fleet subject.
    base: String,
    streams: futures_util::stream::SelectAll<Abortable<Events>>,
    rooms: std::collections::HashMap<String, AbortHandle>,
}

impl Subscriber {
    fn new(client: async_nats::Client, base: String, fleet: async_nats::Subscriber) -> Subscriber {
        let mut subscriber = Subscriber {
            client,
            base,
            streams: futures_util::stream::SelectAll::new(),
            rooms: std::collections::HashMap::new(),
        };
        subscriber.add(fleet.map(|msg| Event::Envelope(msg.payload)).boxed());
        subscriber
    }

    /// Adds the subscription to a wildcard of named channels.
    fn channels(&mut self, wildcard: async_nats::Subscriber) {
        let base = self.base.clone();
        self.add(
            wildcard
                .map(
                    move |msg| match wire::nats_subject_channel(&base, &msg.subject) {
                        Some(channel) => Event::Channel(channel, msg.payload),
                        None => Event::Other,
                    },
                )
                .boxed(),
        );
    }

    fn add(&mut self, events: Events) -> AbortHandle {
        let (events, handle) = futures_util::stream::abortable(events);
        self.streams.push(events);
        handle
    }
}

impl Subscription for Subscriber {
    type Payload = Bytes;
    const NAME: &'static str = "nats";

    async fn next(&mut self) -> Event<Bytes> {
        // The fleet's stream ends only when the client is closed.
        self.streams.next().await.unwrap_or(Event::Lost)
    }

    async fn subscribe(&mut self, rooms: Vec<String>) -> Result<(), Failed> {
        let mut failed = Vec::new();
        for subject in rooms {
            match self.client.subscribe(subject.clone()).await {
                Ok(room) => {
                    let handle = self.add(room.map(|msg| Event::Envelope(msg.payload)).boxed());
                    self.rooms.insert(subject, handle);
                }
                Err(error) => {
                    tracing::debug!(target: "asena::transport", transport = "nats", %subject, %error, "SUB failed");
                    failed.push(subject);
                }
            }
        }
        // One round trip for the whole batch: once answered, the server has every SUB.
        if let Err(error) = confirm_subscription(&self.client, &self.base, "rooms").await {
            tracing::debug!(target: "asena::transport", transport = "nats", %error, "room subscriptions not confirmed yet");
        }
        match failed.is_empty() {
            true => Ok(()),
            false => Err(Failed::Rooms(failed)),
        }
    }

    async fn unsubscribe(&mut self, rooms: Vec<String>) -> Result<(), Failed> {
        for subject in rooms {
            if let Some(room) = self.rooms.remove(&subject) {
                room.abort();
            }
        }
        Ok(())
    }
}

/// Publishes on NATS: refuses what the server would not take, and drops (counting) what the
/// connection being down would lose (module docs).
struct Publisher {
    client: async_nats::Client,
    /// The fleet subject.
    subject: async_nats::Subject,
    pod_id: String,
    counters: Arc<Counters>,
    by_interest: bool,
    link: Arc<Link>,
    grace: Duration,
    max_payload: Arc<AtomicUsize>,
    /// Whether the last message found the connection down.
    down: bool,
}

impl Publish for Publisher {
    const NAME: &'static str = "nats";

    /// Sends each message: the client reconnects itself, so the connection is never lost
    /// here, only found down (that message dropped). Found back, the rest of the batch waits
    /// out the grace as later batches do (dropped).
    async fn send(&mut self, batch: &[Outbound]) -> Result<(), Lost> {
        for (at, msg) in batch.iter().enumerate() {
            if !self.connected() {
                Counters::add(&self.counters.dropped, 1);
                continue;
            }
            if self.link.settling(self.grace) {
                Counters::add(&self.counters.dropped, (batch.len() - at) as u64);
                break;
            }
            self.send_one(msg).await;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), BoxError> {
        Ok(self.client.flush().await?)
    }
}

impl Publisher {
    /// Whether the connection is up; found back before the client's event said so, the
    /// grace starts now.
    fn connected(&mut self) -> bool {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            if !self.down {
                self.down = true;
                tracing::warn!(target: "asena::transport", transport = "nats", "server away: dropping outgoing messages until it is back");
            }
            return false;
        }
        if self.down {
            self.down = false;
            self.link.resumed();
        }
        true
    }

    /// Sends one message, unless it is too large.
    async fn send_one(&mut self, msg: &Outbound) {
        let body = Bytes::from(encode_outbound(msg, &self.pod_id));
        let max_payload = self.client.max_payload();
        self.max_payload.store(max_payload, Ordering::Relaxed);
        if body.len() > max_payload {
            refuse_oversize(&self.counters, body.len(), max_payload, msg.address());
            return;
        }
        let subject = match &msg.route {
            Route::Topic {
                topic,
                interest: true,
            } if self.by_interest => wire::nats_room_subject(&self.subject, topic)
                .map_or_else(|| self.subject.clone(), async_nats::Subject::from),
            Route::Topic { .. } => self.subject.clone(),
            Route::Channel(channel) => match wire::nats_channel_subject(&self.subject, channel) {
                Some(subject) => async_nats::Subject::from(subject),
                None => {
                    Counters::add(&self.counters.dropped, 1);
                    Counters::add(&self.counters.errors, 1);
                    tracing::warn!(target: "asena::transport", transport = "nats", "a named channel without a prefix, or too long for a NATS subject; not sent");
                    return;
                }
            },
        };
        match self.client.publish(subject, body).await {
            Ok(()) => Counters::add(&self.counters.published, 1),
            Err(error) => {
                Counters::add(&self.counters.errors, 1);
                Counters::add(&self.counters.dropped, 1);
                tracing::warn!(target: "asena::transport", transport = "nats", %error, "publish failed");
            }
        }
    }
}

/// Counts (and logs, the first and every 1000th) a message too large for the server.
fn refuse_oversize(counters: &Counters, size: usize, max_payload: usize, topic: &str) {
    Counters::add(&counters.dropped, 1);
    let refused = counters.oversize.fetch_add(1, Ordering::Relaxed);
    if refused.is_multiple_of(1000) {
        // The topic names a room, which a client may have chosen: cut short.
        let topic: String = topic.chars().take(64).collect();
        tracing::warn!(target: "asena::transport", transport = "nats", size, max_payload, %topic, refused = refused + 1, "message larger than the server's max_payload; not sent");
    }
}

/// The least an outgoing message's envelope can take: its payload, base64 for binary.
fn envelope_size_at_least(msg: &Outbound) -> usize {
    match msg.binary {
        true => msg.payload.len().div_ceil(3) * 4,
        false => msg.payload.len(),
    }
}

broker_methods! {
    NatsTransport,
    /// Uses `subject` instead of the default [`wire::NATS_SUBJECT`]: instances (and emitters)
    /// share rooms only on the same NATS subject.
    subject,
    /// The NATS subject this transport publishes to and listens on.
    subject_name
}

impl Transport for NatsTransport {
    broker_transport_methods!("nats");

    fn publish(&self, message: Outbound) {
        // Refused here, before it is queued, when even its payload is too large.
        let max_payload = self.max_payload.load(Ordering::Relaxed);
        let least = envelope_size_at_least(&message);
        if max_payload > 0 && least > max_payload {
            refuse_oversize(&self.core.counters, least, max_payload, message.address());
            return;
        }
        self.core.enqueue("nats", message);
    }

    fn routes_by_interest(&self) -> bool {
        self.by_interest
    }

    fn max_message_size(&self) -> Option<usize> {
        self.max_payload()
    }

    fn subscribe(&self, topic: &str) {
        if let Some(subject) = wire::nats_room_subject(&self.core.channel, topic) {
            self.core.want(|| Interest::Add(subject));
        }
    }

    fn unsubscribe(&self, topic: &str) {
        if let Some(subject) = wire::nats_room_subject(&self.core.channel, topic) {
            self.core.want(|| Interest::Remove(subject));
        }
    }

    fn destroy(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(client) = self.core.stop().await else {
                return;
            };
            // Drain closes the connection once pending messages are out.
            let _ = client.drain().await;
            tracing::info!(target: "asena::transport", transport = "nats", pod_id = %self.core.pod_id, "disconnected");
        })
    }
}
