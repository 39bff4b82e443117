//! The task that sends a Redis transport's queued messages: pipelined batches of `PUBLISH`
//! on a multiplexed connection, reconnecting with backoff, dropping (and counting) what is
//! queued while Redis is away and for [`RESUBSCRIBE_GRACE`] after it is back (while the
//! other instances' subscribers reconnect: pub/sub keeps nothing for a subscriber that is
//! not there yet, so what is published before would be lost uncounted), and flushing what is
//! left on shutdown. Shared by
//! [`RedisTransport`](super::RedisTransport) (Asena's envelopes) and the
//! [`IgnisBus`](crate::transport::IgnisBus) (Ignis's), which differ only in how a message
//! becomes a command.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::transport::broker::{Backoff, CONNECT_TIMEOUT, Counters, RESUBSCRIBE_GRACE};

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

/// Adds one message's command (a `PUBLISH`, its reply ignored) to a pipeline.
pub(crate) type Command<M> = Box<dyn Fn(&M, &mut redis::Pipeline) + Send + Sync>;

/// Sends the messages queued on `rx` until shutdown.
pub(crate) struct Publisher<M> {
    /// For logs: `"redis"`, `"ignis"`.
    pub(crate) transport: &'static str,
    pub(crate) client: Client,
    pub(crate) counters: Arc<Counters>,
    /// Whether the connection is up (false from a failed send until a reconnection).
    pub(crate) connected: Arc<AtomicBool>,
    pub(crate) rx: mpsc::Receiver<M>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) command: Command<M>,
}

impl<M: Send + 'static> Publisher<M> {
    pub(crate) async fn run(mut self, conn: MultiplexedConnection) {
        let transport = self.transport;
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
                                self.connected.store(true, Ordering::Relaxed);
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
                            send(c, chunk, &self.command, &self.counters).await?;
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
                    if let Err(error) = send(c, &batch, &self.command, &self.counters).await {
                        Counters::add(&self.counters.errors, 1);
                        Counters::add(&self.counters.dropped, n as u64);
                        tracing::warn!(target: "asena::transport", transport, %error, dropped = n, "publish failed; reconnecting");
                        self.connected.store(false, Ordering::Relaxed);
                        conn = None;
                        next_attempt = Instant::now() + backoff.next_delay();
                    }
                    batch.clear();
                }
            }
        }
    }
}

/// Sends `batch` as one pipeline and counts it as published.
async fn send<M>(
    conn: &mut MultiplexedConnection,
    batch: &[M],
    command: &Command<M>,
    counters: &Counters,
) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    for msg in batch {
        command(msg, &mut pipe);
    }
    pipe.query_async::<()>(conn).await?;
    Counters::add(&counters.published, batch.len() as u64);
    Ok(())
}
