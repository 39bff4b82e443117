//! The publisher task every broker transport runs: it takes what the namespaces and protocols
//! queued ([`enqueue`](super::broker::enqueue)) in batches, hands each batch to the broker,
//! reconnects with [`Backoff`] when the connection is lost, and flushes what is left on
//! shutdown.
//!
//! An outage costs what it costs, counted, never delivered late: while the connection is
//! down, and for a re-subscribe grace after it is back (while the other instances'
//! subscribers reconnect: pub/sub keeps nothing for a subscriber that is not there yet, so a
//! message published before would be lost without a trace), batches are dropped and counted
//! in [`TransportStats::dropped`](super::TransportStats::dropped).
//!
//! A broker implements [`Publish`]: how a batch is sent (and counted), how a lost connection
//! is made again, how a shutdown waits for what was written.
//!
//! | broker | a batch | a lost connection |
//! |---|---|---|
//! | Redis | one pipeline of `PUBLISH`es | [`Lost`], then [`Publish::reconnect`] and the grace |
//! | Redis Cluster | one pipeline per hash slot, at once | the client reconnects a node itself; a batch it could not send is counted as dropped |
//! | NATS | one `PUB` each, too large ones refused | the client reconnects itself; its events start the grace ([`Link`]) |

// With only some broker features enabled, parts of the shared code go unused.
#![cfg_attr(
    not(all(feature = "redis", feature = "nats")),
    allow(dead_code, unused_imports)
)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::Outbound;
use super::backoff::{Backoff, Shutdown};
use super::counters::Counters;
use crate::error::BoxError;

/// Most messages handed to the broker at once.
pub(crate) const BATCH: usize = 256;

/// How long a transport drops (and counts) what it publishes after reconnecting to its
/// broker: every other instance lost the broker at the same moment and reconnects within one
/// [`Backoff`] delay of its return (at most [`Backoff::MAX`] plus 20% jitter), and a message
/// published before it re-subscribed would reach nobody there and be lost without a trace.
pub(crate) const RESUBSCRIBE_GRACE: Duration = Duration::from_millis(3000);

/// How long a shutdown waits for queued messages to be flushed.
pub(crate) const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// The connection is gone; the task reconnects. The batch is counted as dropped.
#[derive(Debug)]
pub(crate) struct Lost(pub(crate) BoxError);

/// What differs between brokers' publishers; the task around it is [`PublisherTask`].
pub(crate) trait Publish: Send + 'static {
    /// The transport's name in logs.
    const NAME: &'static str;

    /// Sends a batch (never empty), counting what it published and what it dropped, except
    /// when the connection is lost.
    fn send(&mut self, batch: &[Outbound]) -> impl Future<Output = Result<(), Lost>> + Send;

    /// Connects again after [`Lost`]. Only a publisher that can be lost is asked; one whose
    /// client reconnects by itself keeps this default.
    fn reconnect(&mut self) -> impl Future<Output = Result<(), BoxError>> + Send {
        async { Err("this client reconnects by itself".into()) }
    }

    /// Waits until what was sent is written (on shutdown).
    fn flush(&mut self) -> impl Future<Output = Result<(), BoxError>> + Send {
        async { Ok(()) }
    }
}

/// When the connection last came back, for the re-subscribe grace: set by the task after
/// its own reconnection, or by a client that reconnects itself (NATS's events).
#[derive(Debug, Default)]
pub(crate) struct Link {
    resumed_at: Mutex<Option<Instant>>,
}

impl Link {
    pub(crate) fn resumed(&self) {
        *self.resumed_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// Whether the connection came back less than `grace` ago.
    pub(crate) fn settling(&self, grace: Duration) -> bool {
        self.resumed_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| at.elapsed() < grace)
    }
}

/// The task that sends for a transport: see the [module docs](self).
pub(crate) struct PublisherTask<P> {
    pub(crate) publish: P,
    pub(crate) counters: Arc<Counters>,
    pub(crate) rx: mpsc::Receiver<Outbound>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) link: Arc<Link>,
    /// How long after a reconnection batches are dropped (zero: never).
    pub(crate) grace: Duration,
}

impl<P: Publish> PublisherTask<P> {
    /// Runs until shutdown, then flushes what is queued.
    pub(crate) async fn run(mut self) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                _ = self.shutdown.changed() => break,
                n = self.rx.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        return;
                    }
                    if self.link.settling(self.grace) {
                        let dropped = self.counters.dropped.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                        if dropped.is_multiple_of(1000) {
                            tracing::info!(target: "asena::transport", transport = P::NAME, grace = ?self.grace, "reconnected: dropping outgoing messages while the fleet re-subscribes");
                        }
                    } else if let Err(Lost(error)) = self.publish.send(&batch).await {
                        Counters::add(&self.counters.errors, 1);
                        Counters::add(&self.counters.dropped, n as u64);
                        tracing::warn!(target: "asena::transport", transport = P::NAME, %error, dropped = n, "publish failed; reconnecting");
                        batch.clear();
                        if self.reconnect(&mut batch).await.is_err() {
                            return;
                        }
                    }
                    batch.clear();
                }
            }
        }
        self.flush().await;
    }

    /// Connects again, waiting [`Backoff`] delays between attempts and dropping (counting)
    /// what is queued meanwhile; then starts the grace. `Err` on shutdown.
    async fn reconnect(&mut self, batch: &mut Vec<Outbound>) -> Result<(), Shutdown> {
        let mut backoff = Backoff::new();
        loop {
            // The number of messages that came meanwhile, 0 once the queue is closed.
            let queued = futures_util::stream::poll_fn(|cx| {
                let n = self.rx.poll_recv_many(cx, batch, BATCH);
                batch.clear();
                n.map(Some)
            });
            let drop_queued = |n: usize| {
                if n == 0 {
                    return Err(Shutdown);
                }
                Counters::add(&self.counters.dropped, n as u64);
                Ok(())
            };
            backoff
                .wait(&mut self.shutdown, queued, drop_queued)
                .await?;
            match self.publish.reconnect().await {
                Ok(()) => {
                    Counters::add(&self.counters.reconnects, 1);
                    tracing::info!(target: "asena::transport", transport = P::NAME, "publisher reconnected");
                    self.link.resumed();
                    return Ok(());
                }
                Err(error) => {
                    Counters::add(&self.counters.errors, 1);
                    tracing::warn!(target: "asena::transport", transport = P::NAME, %error, "publisher reconnect failed");
                }
            }
        }
    }

    /// Sends what is already queued (messages from `on_close` handlers, say), within
    /// [`FLUSH_TIMEOUT`].
    async fn flush(&mut self) {
        self.rx.close();
        let mut rest = Vec::new();
        while self.rx.recv_many(&mut rest, BATCH).await > 0 {}
        let flush = async {
            for chunk in rest.chunks(BATCH) {
                self.publish
                    .send(chunk)
                    .await
                    .map_err(|Lost(error)| error)?;
            }
            self.publish.flush().await
        };
        if !matches!(tokio::time::timeout(FLUSH_TIMEOUT, flush).await, Ok(Ok(()))) {
            tracing::warn!(target: "asena::transport", transport = P::NAME, "could not flush queued messages on shutdown");
        }
    }
}
