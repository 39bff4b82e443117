//! The Redis Cluster mode of [`RedisTransport`](super::RedisTransport)
//! ([`RedisTransport::cluster`](super::RedisTransport::cluster)): room messages on sharded
//! pub/sub, everything else on the fleet channel's classic pub/sub.
//!
//! Classic pub/sub on a cluster sends every message over the cluster bus to every node,
//! whoever listens. Sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`, Redis 7) keeps a channel on the
//! node that owns its hash slot: a room's messages reach that node and the instances
//! subscribed there, and no other node sees them. The fleet channel stays classic, because
//! every instance needs what it carries anyway, and because the [`Emitter`] (and any
//! `PUBLISH` from outside the fleet) reaches a cluster only that way.
//!
//! The cluster-aware client keeps one connection per node, follows the slot map, reconnects
//! to a node that went away and subscribes it again to what it owned; this module only turns
//! joins and leaves into `SSUBSCRIBE`/`SUNSUBSCRIBE` (one channel per command: a command's
//! channels must share a slot) and groups outgoing messages into one pipeline per slot, so a
//! room's messages stay in order.
//!
//! [`Emitter`]: crate::transport::Emitter

use std::sync::Arc;

use futures_util::future::join_all;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use crate::error::BoxError;
use crate::transport::broker::{CONNECT_TIMEOUT, encode_outbound};
use crate::transport::counters::Counters;
use crate::transport::publisher::{Lost, Publish};
use crate::transport::subscriber::{Event, Failed, Subscription};
use crate::transport::{Outbound, Route};
use crate::wire;

/// The app's own settings of a cluster client, applied before the transport's.
pub(super) type Configure = Arc<dyn Fn(ClusterClientBuilder) -> ClusterClientBuilder + Send + Sync>;

/// A client for the cluster that `nodes` (some of its nodes, `redis://host:port`) belong to,
/// with the app's settings; with `pushes`, over RESP3 with subscription messages sent there.
///
/// A command whose node is away is retried every 100–500 ms (the client's default starts
/// at 1.28 s) for at most [`CONNECT_TIMEOUT`] in all, then fails: a node back within that
/// time loses nothing, and a longer outage costs what was published meanwhile (counted as
/// dropped) instead of stalling the publisher for minutes.
pub(super) fn client(
    nodes: &[String],
    configure: Option<&Configure>,
    pushes: Option<mpsc::UnboundedSender<PushInfo>>,
) -> redis::RedisResult<ClusterClient> {
    let mut builder = ClusterClientBuilder::new(nodes.iter().map(String::as_str));
    if let Some(configure) = configure {
        builder = configure(builder);
    }
    let builder = builder
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(CONNECT_TIMEOUT)
        .overall_response_timeout(Some(CONNECT_TIMEOUT))
        .min_retry_wait(100)
        .max_retry_wait(500);
    match pushes {
        Some(pushes) => builder
            .use_protocol(ProtocolVersion::RESP3)
            .push_sender(pushes)
            .build(),
        None => builder.build(),
    }
}

/// Connects to the cluster (every node in its slot map), within [`CONNECT_TIMEOUT`].
pub(super) async fn connect(client: &ClusterClient) -> Result<ClusterConnection, BoxError> {
    Ok(
        tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_connection())
            .await
            .map_err(|_| "timed out")??,
    )
}

/// Publishes on the cluster: one pipeline per hash slot, the slots' pipelines at once.
pub(super) struct Publisher {
    pub(super) conn: ClusterConnection,
    pub(super) channel: String,
    pub(super) pod_id: String,
    pub(super) counters: Arc<Counters>,
}

impl Publish for Publisher {
    const NAME: &'static str = "redis-cluster";

    /// The client repairs its connections itself: a failed pipeline is counted (dropped,
    /// and one error per batch), never a lost connection. A node away holds the batch (and
    /// the ones behind it, which keeps every room's order) for at most the client's overall
    /// timeout.
    async fn send(&mut self, batch: &[Outbound]) -> Result<(), Lost> {
        if let Err(error) = self.publish(batch).await {
            Counters::add(&self.counters.errors, 1);
            tracing::warn!(target: "asena::transport", transport = Self::NAME, %error, "publish failed");
        }
        Ok(())
    }
}

impl Publisher {
    /// Publishes `batch`: room messages with `SPUBLISH` on their rooms' channels, the rest
    /// with `PUBLISH` on the fleet channel. Counts what was published and what was dropped;
    /// returns the first error.
    async fn publish(&self, batch: &[Outbound]) -> redis::RedisResult<()> {
        let mut pipes: Vec<(Slot, redis::Pipeline, u64)> = Vec::new();
        for msg in batch {
            // Named channels use classic pub/sub: their listeners subscribe by pattern, which
            // sharded pub/sub does not have.
            let (command, channel) = match &msg.route {
                Route::Topic {
                    topic,
                    interest: true,
                } => ("SPUBLISH", wire::redis_room_channel(&self.channel, topic)),
                Route::Topic { .. } => ("PUBLISH", self.channel.clone()),
                Route::Channel(named) => ("PUBLISH", named.clone()),
            };
            let slot = Slot::for_key(&channel);
            let at = match pipes.iter().position(|(s, _, _)| *s == slot) {
                Some(at) => at,
                None => {
                    pipes.push((slot, redis::pipe(), 0));
                    pipes.len() - 1
                }
            };
            let (_, pipe, count) = &mut pipes[at];
            pipe.cmd(command)
                .arg(channel)
                .arg(encode_outbound(msg, &self.pod_id))
                .ignore();
            *count += 1;
        }
        let sent = join_all(pipes.iter().map(|(_, pipe, count)| {
            let mut conn = self.conn.clone();
            async move { (pipe.query_async::<()>(&mut conn).await, *count) }
        }))
        .await;
        let mut first_error = None;
        for (result, count) in sent {
            match result {
                Ok(()) => Counters::add(&self.counters.published, count),
                Err(error) => {
                    Counters::add(&self.counters.dropped, count);
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// The subscription of a cluster: the cluster client's connections, which it makes again
/// (and subscribes again) itself, and the messages it pushes.
pub(super) struct Subscriber {
    conn: ClusterConnection,
    pushes: mpsc::UnboundedReceiver<PushInfo>,
    /// A node's connection dropped; the next subscription reply is its resubscription.
    disconnected: bool,
}

impl Subscriber {
    pub(super) fn new(
        conn: ClusterConnection,
        pushes: mpsc::UnboundedReceiver<PushInfo>,
    ) -> Subscriber {
        Subscriber {
            conn,
            pushes,
            disconnected: false,
        }
    }

    /// Runs `command` for each channel at once, one command per channel (the channels of
    /// one command would have to share a hash slot); returns the channels that failed.
    async fn each_channel(
        &self,
        channels: Vec<String>,
        command: impl AsyncFn(ClusterConnection, &str) -> redis::RedisResult<()>,
    ) -> Vec<(String, redis::RedisError)> {
        let command = &command;
        join_all(channels.into_iter().map(|channel| {
            let conn = self.conn.clone();
            async move { command(conn, &channel).await.err().map(|e| (channel, e)) }
        }))
        .await
        .into_iter()
        .flatten()
        .collect()
    }
}

impl Subscription for Subscriber {
    type Payload = Vec<u8>;
    const NAME: &'static str = "redis-cluster";

    async fn next(&mut self) -> Event<Vec<u8>> {
        let Some(push) = self.pushes.recv().await else {
            return Event::Lost;
        };
        match push.kind {
            PushKind::Message | PushKind::SMessage => match <[Value; 2]>::try_from(push.data) {
                Ok([_, Value::BulkString(payload)]) => Event::Envelope(payload),
                _ => Event::Other,
            },
            PushKind::PMessage => match <[Value; 3]>::try_from(push.data) {
                Ok([_, Value::BulkString(channel), Value::BulkString(payload)]) => {
                    Event::Channel(String::from_utf8_lossy(&channel).into_owned(), payload)
                }
                _ => Event::Other,
            },
            PushKind::Disconnection => {
                self.disconnected = true;
                Event::Interrupted
            }
            PushKind::Subscribe | PushKind::PSubscribe | PushKind::SSubscribe
                if self.disconnected =>
            {
                self.disconnected = false;
                Event::Resumed
            }
            _ => Event::Other,
        }
    }

    async fn subscribe(&mut self, rooms: Vec<String>) -> Result<(), Failed> {
        let failed = self
            .each_channel(rooms, async |mut conn, channel| {
                conn.ssubscribe(channel).await
            })
            .await;
        if failed.is_empty() {
            return Ok(());
        }
        if let Some((_, error)) = failed.first() {
            tracing::debug!(target: "asena::transport", transport = Self::NAME, %error, "SSUBSCRIBE failed");
        }
        Err(Failed::Rooms(
            failed.into_iter().map(|(channel, _)| channel).collect(),
        ))
    }

    async fn unsubscribe(&mut self, rooms: Vec<String>) -> Result<(), Failed> {
        // A failure means the node is away, and its subscription with it.
        for (channel, error) in self
            .each_channel(rooms, async |mut conn, channel| {
                conn.sunsubscribe(channel).await
            })
            .await
        {
            tracing::debug!(target: "asena::transport", transport = Self::NAME, %channel, %error, "room unsubscription failed");
        }
        Ok(())
    }
}
