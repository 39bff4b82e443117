//! [`NamespaceStats`]: the counters of one namespace, updated by its connections with
//! relaxed atomic adds (no lock on any per-message path), and read at scrape time by the
//! metrics exposition (`app/metrics.rs`).
//!
//! The counters the fan-out touches on every room message (messages sent, deliveries, the
//! latency histogram) and the reader touches on every message received sit on cache lines of
//! their own ([`Hot`]), away from the limits every recipient's push reads, so counting does
//! not make other cores re-fetch those. A fan-out adds its recipient count once, never once
//! per recipient.

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
    /// When the message being handled arrived (read from the socket), set around the dispatch
    /// of each received message.
    static ARRIVAL: Instant;
}

/// Runs `fut` (the handling of one received message) with `arrived` as the arrival time that
/// room sends made from it are measured from.
pub(crate) async fn with_arrival<F: Future>(arrived: Instant, fut: F) -> F::Output {
    ARRIVAL.scope(arrived, fut).await
}

/// The arrival time of the message being handled, if this task is handling one.
fn arrival() -> Option<Instant> {
    ARRIVAL.try_with(|t| *t).ok()
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
    /// One message read from a socket, `bytes` long (its payload, after inflating).
    #[inline]
    pub(crate) fn record_received(&self, bytes: usize) {
        self.hot.messages_received.fetch_add(1, Ordering::Relaxed);
        self.hot
            .received_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }
    /// One send (to a room, the namespace or a socket) that queued `deliveries` frames.
    #[inline]
    pub(crate) fn record_sent(&self, deliveries: usize) {
        self.hot.messages_sent.fetch_add(1, Ordering::Relaxed);
        self.record_deliveries(deliveries);
    }
    /// Frames queued to sockets by one local fan-out (messages from other instances too).
    #[inline]
    pub(crate) fn record_deliveries(&self, deliveries: usize) {
        if deliveries > 0 {
            self.hot
                .deliveries
                .fetch_add(deliveries as u64, Ordering::Relaxed);
        }
    }
    /// The local fan-out of a room message is queued: when the message being handled
    /// arrived from a socket of this app, observes the time since it was read.
    #[inline]
    pub(crate) fn record_fanout_queued(&self) {
        if let Some(arrived) = arrival() {
            let ns = u64::try_from(arrived.elapsed().as_nanos()).unwrap_or(u64::MAX);
            let bucket = FANOUT_BOUNDS_NS
                .iter()
                .position(|&b| ns <= b)
                .unwrap_or(FANOUT_BOUNDS_NS.len());
            self.hot.fanout_buckets[bucket].fetch_add(1, Ordering::Relaxed);
            self.hot.fanout_sum_ns.fetch_add(ns, Ordering::Relaxed);
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
