//! The task that sends a Redis transport's queued messages: pipelined batches of `PUBLISH`
//! on a multiplexed connection, reconnecting with backoff, dropping (and counting) what is
//! queued while Redis is away and for [`RESUBSCRIBE_GRACE`] after it is back (while the
//! other instances' subscribers reconnect: pub/sub keeps nothing for a subscriber that is
//! not there yet, so what is published before would be lost uncounted), and flushing what is
//! left on shutdown.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::transport::broker::{
    Backoff, CONNECT_TIMEOUT, Counters, RESUBSCRIBE_GRACE, encode_outbound,
};
use crate::transport::{Outbound, Route};
use crate::wire;

/// Most messages sent to Redis in one pipeline.
pub(crate) const BATCH: usize = 256;

/// How long a shutdown waits for queued messages to be flushed.
pub(crate) const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// A multiplexed connection for publishing, within [`CONNECT_TIMEOUT`].
pub(crate) async fn connect(client: &Client) -> redis::RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(CONNECT_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Sends the messages queued on `rx` until shutdown.
pub(crate) struct Publisher {
    pub(crate) client: Client,
    /// The fleet channel.
    pub(crate) channel: String,
    pub(crate) pod_id: String,
    /// Whether room messages go on their rooms' channels.
    pub(crate) by_interest: bool,
    pub(crate) counters: Arc<Counters>,
    pub(crate) rx: mpsc::Receiver<Outbound>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl Publisher {
    pub(crate) async fn run(mut self, conn: MultiplexedConnection) {
        let transport = "redis";
        let mut conn = Some(conn);
        let mut backoff = Backoff::new();
        let mut next_attempt = Instant::now();
        // Until when, after a reconnection, batches are dropped while the fleet re-subscribes.
        let mut settling_until: Option<Instant> = None;
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let Some(c) = conn.as_mut() else {
                // Disconnected: reconnect when the backoff allows, drop what comes meanwhile.
                tokio::select! {
                    _ = self.shutdown.changed() => return,
                    _ = tokio::time::sleep_until(next_attempt) => {
                        match connect(&self.client).await {
                            Ok(c) => {
                                Counters::add(&self.counters.reconnects, 1);
                                tracing::info!(target: "asena::transport", transport, "publisher reconnected");
                                backoff.reset();
                                settling_until = Some(Instant::now() + RESUBSCRIBE_GRACE);
                                conn = Some(c);
                            }
                            Err(error) => {
                                Counters::add(&self.counters.errors, 1);
                                let delay = backoff.next_delay();
                                tracing::warn!(target: "asena::transport", transport, %error, retry_in = ?delay, "publisher reconnect failed");
                                next_attempt = Instant::now() + delay;
                            }
                        }
                    }
                    n = self.rx.recv_many(&mut batch, BATCH) => {
                        if n == 0 {
                            return;
                        }
                        Counters::add(&self.counters.dropped, n as u64);
                        batch.clear();
                    }
                }
                continue;
            };
            tokio::select! {
                _ = self.shutdown.changed() => {
                    // Flush what is already queued (e.g. messages from on_close handlers).
                    self.rx.close();
                    let mut rest = Vec::new();
                    while self.rx.recv_many(&mut rest, BATCH).await > 0 {}
                    let flush = async {
                        for chunk in rest.chunks(BATCH) {
                            self.send(c, chunk).await?;
                        }
                        Ok::<_, redis::RedisError>(())
                    };
                    if !matches!(tokio::time::timeout(FLUSH_TIMEOUT, flush).await, Ok(Ok(()))) {
                        tracing::warn!(target: "asena::transport", transport, "could not flush queued messages on shutdown");
                    }
                    return;
                }
                n = self.rx.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        return;
                    }
                    if settling_until.is_some_and(|until| Instant::now() < until) {
                        Counters::add(&self.counters.dropped, n as u64);
                        batch.clear();
                        continue;
                    }
                    settling_until = None;
                    if let Err(error) = self.send(c, &batch).await {
                        Counters::add(&self.counters.errors, 1);
                        Counters::add(&self.counters.dropped, n as u64);
                        tracing::warn!(target: "asena::transport", transport, %error, dropped = n, "publish failed; reconnecting");
                        conn = None;
                        next_attempt = Instant::now() + backoff.next_delay();
                    }
                    batch.clear();
                }
            }
        }
    }
}

impl Publisher {
    /// Sends `batch` as one pipeline of `PUBLISH`es (their replies ignored) and counts it as
    /// published.
    async fn send(
        &self,
        conn: &mut MultiplexedConnection,
        batch: &[Outbound],
    ) -> redis::RedisResult<()> {
        let mut pipe = redis::pipe();
        for msg in batch {
            let cmd = pipe.cmd("PUBLISH");
            match &msg.route {
                Route::Topic {
                    topic,
                    interest: true,
                } if self.by_interest => cmd.arg(wire::redis_room_channel(&self.channel, topic)),
                Route::Topic { .. } => cmd.arg(&self.channel),
                Route::Channel(named) => cmd.arg(named),
            };
            cmd.arg(encode_outbound(msg, &self.pod_id)).ignore();
        }
        pipe.query_async::<()>(conn).await?;
        Counters::add(&self.counters.published, batch.len() as u64);
        Ok(())
    }
}
