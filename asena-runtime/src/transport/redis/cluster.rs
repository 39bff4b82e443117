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

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::future::join_all;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::{mpsc, watch};

use super::{BATCH, FLUSH_TIMEOUT};
use crate::error::BoxError;
use crate::transport::broker::{
    CONNECT_TIMEOUT, Counters, Interest, LINGER, Rooms, encode_outbound, handle_channel,
    handle_incoming,
};
use crate::transport::{Inbound, Outbound, Route};
use crate::wire;

/// A client for the cluster that `nodes` (some of its nodes, `redis://host:port`) belong to;
/// with `pushes`, over RESP3 with subscription messages sent there.
///
/// A command whose node is away is retried every 100–500 ms (the client's default starts
/// at 1.28 s) for at most [`CONNECT_TIMEOUT`] in all, then fails: a node back within that
/// time loses nothing, and a longer outage costs what was published meanwhile (counted as
/// dropped) instead of stalling the publisher for minutes.
pub(super) fn client(
    nodes: &[String],
    pushes: Option<mpsc::UnboundedSender<PushInfo>>,
) -> redis::RedisResult<ClusterClient> {
    let builder = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
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

/// Sends queued messages: one pipeline per hash slot, the slots' pipelines at once.
pub(super) struct Publisher {
    pub(super) conn: ClusterConnection,
    pub(super) channel: String,
    pub(super) pod_id: String,
    pub(super) counters: Arc<Counters>,
    pub(super) rx: mpsc::Receiver<Outbound>,
    pub(super) shutdown: watch::Receiver<bool>,
}

impl Publisher {
    pub(super) async fn run(mut self) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                _ = self.shutdown.changed() => {
                    // Flush what is already queued (e.g. messages from on_close handlers).
                    self.rx.close();
                    let mut rest = Vec::new();
                    while self.rx.recv_many(&mut rest, BATCH).await > 0 {}
                    let flush = async {
                        for chunk in rest.chunks(BATCH) {
                            self.send(chunk).await?;
                        }
                        Ok::<_, redis::RedisError>(())
                    };
                    if !matches!(tokio::time::timeout(FLUSH_TIMEOUT, flush).await, Ok(Ok(()))) {
                        tracing::warn!(target: "asena::transport", transport = "redis-cluster", "could not flush queued messages on shutdown");
                    }
                    return;
                }
                n = self.rx.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        return;
                    }
                    // The client repairs its connections itself; a failed batch is counted. A
                    // node away holds the batch (and the ones behind it, which keeps every
                    // room's order) for at most the client's overall timeout.
                    if let Err(error) = self.send(&batch).await {
                        Counters::add(&self.counters.errors, 1);
                        tracing::warn!(target: "asena::transport", transport = "redis-cluster", %error, "publish failed");
                    }
                    batch.clear();
                }
            }
        }
    }

    /// Publishes `batch`: room messages with `SPUBLISH` on their rooms' channels, the rest
    /// with `PUBLISH` on the fleet channel. Counts what was published and what was dropped;
    /// returns the first error.
    async fn send(&self, batch: &[Outbound]) -> redis::RedisResult<()> {
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

/// Receives the fleet channel's and the rooms' messages, and keeps the rooms subscribed.
pub(super) struct Subscriber {
    pub(super) conn: ClusterConnection,
    pub(super) pushes: mpsc::UnboundedReceiver<PushInfo>,
    pub(super) pod_id: String,
    pub(super) counters: Arc<Counters>,
    pub(super) inbound: Inbound,
    pub(super) shutdown: watch::Receiver<bool>,
    pub(super) changes: mpsc::UnboundedReceiver<Interest>,
    pub(super) rooms: Rooms,
}

impl Subscriber {
    pub(super) async fn run(mut self) {
        // Rooms whose SSUBSCRIBE failed (their node was away): tried again at every sweep.
        let mut retry: HashSet<String> = HashSet::new();
        // A node's connection dropped; the next subscription reply is its resubscription.
        let mut disconnected = false;
        let mut sweep = tokio::time::interval(LINGER / 2);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.changed() => return,
                Some(push) = self.pushes.recv() => match push.kind {
                    PushKind::Message | PushKind::SMessage => {
                        if let [_, Value::BulkString(payload)] = push.data.as_slice() {
                            handle_incoming(payload, &self.pod_id, &self.inbound, &self.counters, "redis-cluster");
                        }
                    }
                    PushKind::PMessage => {
                        if let [_, Value::BulkString(channel), Value::BulkString(payload)] = push.data.as_slice() {
                            let channel = String::from_utf8_lossy(channel);
                            handle_channel(&channel, payload, &self.inbound, &self.counters, "redis-cluster");
                        }
                    }
                    PushKind::Disconnection => {
                        disconnected = true;
                        Counters::add(&self.counters.errors, 1);
                        tracing::warn!(target: "asena::transport", transport = "redis-cluster", "lost a node's connection; the client reconnects and subscribes again");
                    }
                    PushKind::Subscribe | PushKind::PSubscribe | PushKind::SSubscribe if disconnected => {
                        disconnected = false;
                        Counters::add(&self.counters.reconnects, 1);
                        tracing::info!(target: "asena::transport", transport = "redis-cluster", "subscribed again after a reconnection");
                    }
                    _ => {}
                },
                Some(change) = self.changes.recv() => {
                    let mut add: Vec<String> = self.rooms.apply(change).into_iter().collect();
                    while let Ok(change) = self.changes.try_recv() {
                        add.extend(self.rooms.apply(change));
                    }
                    if !add.is_empty() {
                        self.subscribe(add, &mut retry).await;
                        self.set_subscriptions(&retry);
                    }
                }
                _ = sweep.tick() => {
                    let gone = self.rooms.expired();
                    for channel in &gone {
                        retry.remove(channel);
                    }
                    let again: Vec<String> = retry.drain().filter(|c| self.rooms.wanted.contains(c)).collect();
                    if !gone.is_empty() || !again.is_empty() {
                        self.unsubscribe(gone).await;
                        self.subscribe(again, &mut retry).await;
                        self.set_subscriptions(&retry);
                    }
                }
            }
        }
    }

    /// Runs `command` for each channel at once, one command per channel (the channels of
    /// one command would have to share a hash slot); returns each channel's result.
    async fn each_channel(
        &self,
        channels: Vec<String>,
        command: impl AsyncFn(ClusterConnection, &str) -> redis::RedisResult<()>,
    ) -> Vec<(String, redis::RedisResult<()>)> {
        let command = &command;
        join_all(channels.into_iter().map(|channel| {
            let conn = self.conn.clone();
            async move {
                let result = command(conn, &channel).await;
                (channel, result)
            }
        }))
        .await
    }

    /// `SSUBSCRIBE`s each channel (all at once, one command each); failures go to `retry`.
    async fn subscribe(&self, channels: Vec<String>, retry: &mut HashSet<String>) {
        let results = self
            .each_channel(channels, async |mut conn, channel| {
                conn.ssubscribe(channel).await
            })
            .await;
        for (channel, result) in results {
            if let Err(error) = result {
                Counters::add(&self.counters.errors, 1);
                tracing::warn!(target: "asena::transport", transport = "redis-cluster", %channel, %error, "room subscription failed; trying again");
                retry.insert(channel);
            }
        }
    }

    /// `SUNSUBSCRIBE`s each channel; a failure is logged (the node is away, and so is the
    /// subscription).
    async fn unsubscribe(&self, channels: Vec<String>) {
        let results = self
            .each_channel(channels, async |mut conn, channel| {
                conn.sunsubscribe(channel).await
            })
            .await;
        for (channel, result) in results {
            if let Err(error) = result {
                tracing::debug!(target: "asena::transport", transport = "redis-cluster", %channel, %error, "room unsubscription failed");
            }
        }
    }

    /// Counts the room channels the cluster confirmed (wanted, and not waiting for a retry).
    fn set_subscriptions(&self, retry: &HashSet<String>) {
        let confirmed = self
            .rooms
            .wanted
            .iter()
            .filter(|c| !retry.contains(*c))
            .count();
        self.counters
            .subscriptions
            .store(confirmed as u64, Ordering::Relaxed);
    }
}
