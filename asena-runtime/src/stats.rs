//! [`NamespaceStats`]: the counters of one namespace, updated by its connections with
//! relaxed atomic adds (no lock on any per-message path), and read at scrape time by the
//! metrics exposition (`app/metrics.rs`).
//!
//! Per-message counting does not touch shared memory: while a connection's reader handles
//! the messages of one read, it counts them, and the sends their handlers make (messages
//! sent, deliveries, the fan-out latency), in a [`Tally`] of plain cells that travels with
//! the dispatch as a task-local, and adds the tally to the namespace's atomics once per read.
//! Sends made outside a handler (another task, a component, a message from another instance)
//! add to the atomics directly. A fan-out counts its recipients once, never once per
//! recipient. The atomics sit on cache lines of their own ([`Hot`]), away from the limits
//! every recipient's push reads.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

/// Upper bounds (seconds) of the fan-out latency histogram's buckets; the last bucket is
/// `+Inf`.
pub(crate) const FANOUT_BUCKETS: [f64; 14] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 1.0,
];

/// The same bounds in nanoseconds, for the hot path (no float work per observation).
const FANOUT_BOUNDS_NS: [u64; 14] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    1_000_000_000,
];

tokio::task_local! {
    /// The tally of the reader whose message is being handled, set around each dispatch.
    static DISPATCH: Box<Tally>;
}

/// What one connection's reader counts between two flushes into its namespace's
/// [`NamespaceStats`]: cells, not atomics, since only the reader's task touches it.
#[derive(Debug)]
pub(crate) struct Tally {
    /// The address of the stats it flushes into: sends to another namespace bypass it.
    owner: usize,
    /// When the message being handled arrived (its bytes were read).
    arrived: Cell<Instant>,
    received: Cell<u64>,
    received_bytes: Cell<u64>,
    sent: Cell<u64>,
    deliveries: Cell<u64>,
    fanout_buckets: [Cell<u64>; FANOUT_BUCKETS.len() + 1],
    fanout_sum_ns: Cell<u64>,
}

fn take(cell: &Cell<u64>) -> u64 {
    cell.replace(0)
}

fn add(cell: &Cell<u64>, n: u64) {
    cell.set(cell.get() + n);
}

fn bucket_of(ns: u64) -> usize {
    FANOUT_BOUNDS_NS
        .iter()
        .position(|&b| ns <= b)
        .unwrap_or(FANOUT_BOUNDS_NS.len())
}

impl Tally {
    /// A tally flushing into `stats`.
    pub(crate) fn new(stats: &NamespaceStats) -> Box<Tally> {
        Box::new(Tally {
            owner: std::ptr::from_ref(stats) as usize,
            arrived: Cell::new(Instant::now()),
            received: Cell::new(0),
            received_bytes: Cell::new(0),
            sent: Cell::new(0),
            deliveries: Cell::new(0),
            fanout_buckets: Default::default(),
            fanout_sum_ns: Cell::new(0),
        })
    }

    /// One message read, `bytes` long (its payload, after inflating), that arrived at
    /// `arrived`.
    #[inline]
    pub(crate) fn received(&self, bytes: usize, arrived: Instant) {
        add(&self.received, 1);
        add(&self.received_bytes, bytes as u64);
        self.arrived.set(arrived);
    }

    /// Adds what was counted to the namespace's atomics (the one it was made for).
    pub(crate) fn flush(&self, stats: &NamespaceStats) {
        let hot = &stats.hot;
        for (cell, total) in [
            (&self.received, &hot.messages_received),
            (&self.received_bytes, &hot.received_bytes),
            (&self.sent, &hot.messages_sent),
            (&self.deliveries, &hot.deliveries),
            (&self.fanout_sum_ns, &hot.fanout_sum_ns),
        ] {
            let n = take(cell);
            if n > 0 {
                total.fetch_add(n, Ordering::Relaxed);
            }
        }
        for (cell, total) in self.fanout_buckets.iter().zip(&hot.fanout_buckets) {
            let n = take(cell);
            if n > 0 {
                total.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

/// Runs `fut` (the handling of one received message) with the reader's tally as a
/// task-local, so the sends it makes count there; the tally goes back into `slot`.
pub(crate) async fn dispatch<F: Future>(slot: &mut Option<Box<Tally>>, fut: F) -> F::Output {
    let Some(tally) = slot.take() else {
        return fut.await;
    };
    let mut scoped = std::pin::pin!(DISPATCH.scope(tally, fut));
    let output = scoped.as_mut().await;
    *slot = scoped.as_mut().take_value();
    output
}

/// The counters updated per message, on cache lines of their own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Hot {
    messages_received: AtomicU64,
    received_bytes: AtomicU64,
    messages_sent: AtomicU64,
    deliveries: AtomicU64,
    /// Fan-out latency: one count per bucket (the last is `+Inf`), and the sum in ns.
    fanout_buckets: [AtomicU64; FANOUT_BUCKETS.len() + 1],
    fanout_sum_ns: AtomicU64,
}

/// Counters of a namespace.
#[derive(Debug, Default)]
pub struct NamespaceStats {
    hot: Hot,
    slow_consumers: AtomicU64,
    slow_sockets: AtomicU64,
    handler_errors: AtomicU64,
    protocol_errors: AtomicU64,
    rejected_connections: AtomicU64,
    invalid_messages: AtomicU64,
    opened: AtomicU64,
    /// Connections closed, by close code: once per connection, never per message.
    closed: Mutex<BTreeMap<u16, u64>>,
    /// Upgrade requests answered with an HTTP error instead of 101, by status.
    refused: Mutex<BTreeMap<u16, u64>>,
}

/// A snapshot of the fan-out latency histogram ([`NamespaceStats::fanout_latency`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FanoutHistogram {
    /// Each bucket's upper bound in seconds (10 µs up to 1 s, then `f64::INFINITY`) and the
    /// observations that fell in it (not cumulative).
    pub buckets: Vec<(f64, u64)>,
    /// Number of observations.
    pub count: u64,
    /// Sum of the observations, in seconds.
    pub sum_seconds: f64,
}

fn nanos_since(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn bump(map: &Mutex<BTreeMap<u16, u64>>, key: u16) {
    *map.lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_default() += 1;
}

fn snapshot(map: &Mutex<BTreeMap<u16, u64>>) -> Vec<(u16, u64)> {
    map.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(k, v)| (*k, *v))
        .collect()
}

impl NamespaceStats {
    pub(crate) fn record_slow_consumer(&self) {
        self.slow_consumers.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn record_slow_socket(&self) {
        self.slow_sockets.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn record_handler_error(&self) {
        self.handler_errors.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn record_protocol_error(&self) {
        self.protocol_errors.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn record_rejected(&self) {
        self.rejected_connections.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn record_invalid_message(&self) {
        self.invalid_messages.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn record_opened(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn record_closed(&self, code: u16) {
        bump(&self.closed, code);
    }
    pub(crate) fn record_refused(&self, status: u16) {
        bump(&self.refused, status);
    }
    /// One send (to a room, the namespace or a socket) that queued `deliveries` frames; a
    /// room or broadcast send (`fanout`) also observes the fan-out latency when it was made
    /// while handling a received message.
    #[inline]
    pub(crate) fn record_send(&self, deliveries: usize, fanout: bool) {
        let owner = std::ptr::from_ref(self) as usize;
        let counted = DISPATCH.try_with(|tally| {
            if tally.owner != owner {
                return false;
            }
            add(&tally.sent, 1);
            add(&tally.deliveries, deliveries as u64);
            if fanout {
                let ns = nanos_since(tally.arrived.get());
                add(&tally.fanout_buckets[bucket_of(ns)], 1);
                add(&tally.fanout_sum_ns, ns);
            }
            true
        });
        if counted != Ok(true) {
            self.hot.messages_sent.fetch_add(1, Ordering::Relaxed);
            self.record_deliveries(deliveries);
        }
    }
    /// Frames queued to sockets by one local fan-out of a message from another instance.
    #[inline]
    pub(crate) fn record_deliveries(&self, deliveries: usize) {
        if deliveries > 0 {
            self.hot
                .deliveries
                .fetch_add(deliveries as u64, Ordering::Relaxed);
        }
    }

    /// Messages that did not decode into the service's `receives` type or broke one of its
    /// constraints (answered by `on_invalid`; the socket stayed open).
    pub fn invalid_messages(&self) -> u64 {
        self.invalid_messages.load(Ordering::Relaxed)
    }
    /// Times a full send queue triggered the slow-consumer policy: each is one frame that
    /// was not queued (dropped).
    pub fn slow_consumers(&self) -> u64 {
        self.slow_consumers.load(Ordering::Relaxed)
    }
    /// Sockets that hit the slow-consumer policy (each counted once).
    pub fn slow_sockets(&self) -> u64 {
        self.slow_sockets.load(Ordering::Relaxed)
    }
    /// Handlers that returned `Err` or panicked.
    pub fn handler_errors(&self) -> u64 {
        self.handler_errors.load(Ordering::Relaxed)
    }
    /// Connections closed for protocol violations, bad UTF-8 or oversized messages.
    pub fn protocol_errors(&self) -> u64 {
        self.protocol_errors.load(Ordering::Relaxed)
    }
    /// Connections refused by the connection limit.
    pub fn rejected_connections(&self) -> u64 {
        self.rejected_connections.load(Ordering::Relaxed)
    }
    /// Connections that were admitted and started running.
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }
    /// Connections that ended, by the close code `on_close` saw (1006: the peer vanished).
    pub fn closed(&self) -> Vec<(u16, u64)> {
        snapshot(&self.closed)
    }
    /// Upgrade requests answered with an HTTP status instead of 101, by status.
    pub fn refused_upgrades(&self) -> Vec<(u16, u64)> {
        snapshot(&self.refused)
    }
    /// Messages read from sockets.
    pub fn messages_received(&self) -> u64 {
        self.hot.messages_received.load(Ordering::Relaxed)
    }
    /// Payload bytes of the messages read from sockets (after inflating).
    pub fn received_bytes(&self) -> u64 {
        self.hot.received_bytes.load(Ordering::Relaxed)
    }
    /// Sends made on this instance: room, broadcast and direct ones (a room send is one,
    /// however many members it reaches).
    pub fn messages_sent(&self) -> u64 {
        self.hot.messages_sent.load(Ordering::Relaxed)
    }
    /// Frames queued to local sockets, by local sends and messages from other instances.
    pub fn deliveries(&self) -> u64 {
        self.hot.deliveries.load(Ordering::Relaxed)
    }
    /// The histogram of the time from a message's arrival (its bytes read by the socket's
    /// reader) to the local fan-out of a room or broadcast message its handler sent being
    /// queued on every local member (queued, not yet written).
    pub fn fanout_latency(&self) -> FanoutHistogram {
        let buckets: Vec<(f64, u64)> = FANOUT_BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(&self.hot.fanout_buckets)
            .map(|(bound, n)| (bound, n.load(Ordering::Relaxed)))
            .collect();
        FanoutHistogram {
            count: buckets.iter().map(|(_, n)| n).sum(),
            buckets,
            sum_seconds: self.hot.fanout_sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sends_count_in_the_readers_tally_until_it_is_flushed() {
        let stats = NamespaceStats::default();
        let other = NamespaceStats::default();
        let mut slot = Some(Tally::new(&stats));
        if let Some(tally) = &slot {
            tally.received(5, Instant::now());
        }
        dispatch(&mut slot, async {
            stats.record_send(3, true);
            stats.record_send(1, false);
            // Another namespace's sends bypass the tally.
            other.record_send(2, true);
        })
        .await;
        assert_eq!((stats.messages_sent(), stats.deliveries()), (0, 0));
        assert_eq!((other.messages_sent(), other.deliveries()), (1, 2));
        assert_eq!(other.fanout_latency().count, 0);

        let tally = slot.expect("the tally comes back after the dispatch");
        tally.flush(&stats);
        assert_eq!(stats.messages_received(), 1);
        assert_eq!(stats.received_bytes(), 5);
        assert_eq!((stats.messages_sent(), stats.deliveries()), (2, 4));
        let latency = stats.fanout_latency();
        assert_eq!(latency.count, 1);
        assert_eq!(latency.buckets.len(), FANOUT_BUCKETS.len() + 1);
        // Flushing twice adds nothing.
        tally.flush(&stats);
        assert_eq!(stats.messages_sent(), 2);

        // Outside any dispatch: straight to the atomics.
        stats.record_send(7, true);
        assert_eq!((stats.messages_sent(), stats.deliveries()), (3, 11));
    }
}
