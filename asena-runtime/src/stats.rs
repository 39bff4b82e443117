//! [`NamespaceStats`]: the counters of one namespace, updated by its connections with
//! relaxed atomic adds (no lock on any per-message path), and read at scrape time by the
//! metrics exposition (`observe/metrics.rs`).
//!
//! Per-message counting does not touch shared memory: a connection's reader counts the
//! messages of one read in locals, and the sends their handlers make (messages sent,
//! deliveries, the fan-out latency) go into a [`Tally`] of plain cells, a task-local set once
//! around the reader's whole message loop ([`counting`]; not around each dispatch, which
//! would swap it in and out per message); the reader adds everything to the namespace's
//! atomics once per read ([`end_read`]). Sends made outside a message handler (`on_open`,
//! `on_close`, another task, a component, a message from another instance) add to the atomics
//! directly. A fan-out counts its recipients once, never once per recipient. The atomics sit
//! on cache lines of their own ([`Hot`]), away from the limits every recipient's push reads.
//!
//! The fan-out latency needs a clock read, so it is measured for a sample of a connection's
//! room and broadcast sends: its first one, then each with probability 1/[`SAMPLE_EVERY`]
//! (a per-tally xorshift generator; random, not every 16th, so periodic traffic such as
//! fixed-size bursts does not always put the same position of a burst in the sample). The
//! histogram is thus a random sample of the latencies, the only skew being each connection's
//! first room send, always measured so that a connection sending once is seen; its count is
//! about 1/16 of the room sends (more with many short-lived connections), not their number.

use std::cell::{Cell, OnceCell};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

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

/// One in how many room and broadcast sends (after a connection's first) has its fan-out
/// latency measured, on average (a power of two).
pub(crate) const SAMPLE_EVERY: u32 = 16;

tokio::task_local! {
    /// The tally of the connection whose reader is running, set once around its message
    /// loop; made with the first read message (an idle socket holds no tally).
    static TALLY: OnceCell<Box<Tally>>;
}

/// Seeds of the tallies' samplers: a different sequence per connection.
static SEED: AtomicU32 = AtomicU32::new(0x9E37_79B9);

/// What one connection's reader counts between two flushes into its namespace's
/// [`NamespaceStats`]: cells, not atomics, since only the reader's task touches it.
#[derive(Debug)]
pub(crate) struct Tally {
    /// The address of the stats it flushes into: sends to another namespace bypass it.
    owner: usize,
    /// When the messages being handled arrived (the bytes of the current read were read).
    arrived: Cell<Instant>,
    /// The fan-out latency sampler's xorshift32 state (never 0); 0 until the first room
    /// send, which is always measured.
    sampler: Cell<u32>,
    seed: u32,
    /// Whether a fan-out latency was observed since the last flush.
    observed: Cell<bool>,
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
    /// A tally flushing into `stats`, its sampler seeded with `seed`.
    fn new(stats: &NamespaceStats, seed: u32) -> Box<Tally> {
        Box::new(Tally {
            owner: std::ptr::from_ref(stats) as usize,
            arrived: Cell::new(Instant::now()),
            sampler: Cell::new(0),
            seed: seed | 1,
            observed: Cell::new(false),
            sent: Cell::new(0),
            deliveries: Cell::new(0),
            fanout_buckets: Default::default(),
            fanout_sum_ns: Cell::new(0),
        })
    }

    /// Whether this room or broadcast send's fan-out latency is measured: the first one,
    /// then each with probability 1/[`SAMPLE_EVERY`].
    #[inline]
    fn sample(&self) -> bool {
        let mut x = self.sampler.get();
        if x == 0 {
            self.sampler.set(self.seed);
            return true;
        }
        // xorshift32 (Marsaglia): full period over the non-zero u32s.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.sampler.set(x);
        // The high bits are the better mixed ones.
        x >> (32 - SAMPLE_EVERY.trailing_zeros()) == 0
    }

    /// One send that queued `deliveries` frames; `fanout`: a room or broadcast send.
    #[inline]
    fn send(&self, deliveries: usize, fanout: bool) {
        add(&self.sent, 1);
        add(&self.deliveries, deliveries as u64);
        if fanout && self.sample() {
            let ns = nanos_since(self.arrived.get());
            add(&self.fanout_buckets[bucket_of(ns)], 1);
            add(&self.fanout_sum_ns, ns);
            self.observed.set(true);
        }
    }

    /// Adds what was counted to the namespace's atomics (the one it was made for).
    fn flush(&self, stats: &NamespaceStats) {
        let hot = &stats.hot;
        for (cell, total) in [
            (&self.sent, &hot.messages_sent),
            (&self.deliveries, &hot.deliveries),
        ] {
            let n = take(cell);
            if n > 0 {
                total.fetch_add(n, Ordering::Relaxed);
            }
        }
        if self.observed.replace(false) {
            hot.fanout_sum_ns
                .fetch_add(take(&self.fanout_sum_ns), Ordering::Relaxed);
            for (cell, total) in self.fanout_buckets.iter().zip(&hot.fanout_buckets) {
                let n = take(cell);
                if n > 0 {
                    total.fetch_add(n, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Runs `fut` (a connection reader's message loop) with a task-local tally for the sends
/// its handlers make (made with the first message read, [`begin_read`]); whatever it holds
/// is flushed by [`end_read`] after each read, so nothing is left in it when `fut` ends.
pub(crate) fn counting<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    // Not an `async fn`: that would keep `fut` twice, as its argument and inside the scope
    // (see "Memory per connection" in ARCHITECTURE.md).
    TALLY.scope(OnceCell::new(), fut)
}

/// Before the messages of a read are handled: they arrived at `at` (their fan-out latency
/// counts from there). Outside [`counting`], does nothing.
#[inline]
pub(crate) fn begin_read(stats: &NamespaceStats, at: Instant) {
    let _ = TALLY.try_with(|slot| {
        slot.get_or_init(|| Tally::new(stats, SEED.fetch_add(0x9E37_79B9, Ordering::Relaxed)))
            .arrived
            .set(at);
    });
}

/// After the messages of a read were handled: `received` of them, `bytes` long in all (their
/// payloads, after inflating), and whatever their handlers' sends counted in the tally, go
/// into `stats`' atomics.
#[inline]
pub(crate) fn end_read(stats: &NamespaceStats, received: u64, bytes: u64) {
    if received > 0 {
        stats
            .hot
            .messages_received
            .fetch_add(received, Ordering::Relaxed);
        stats.hot.received_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    let _ = TALLY.try_with(|slot| {
        if let Some(tally) = slot.get() {
            tally.flush(stats);
        }
    });
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
    rate_limited: AtomicU64,
    opened: AtomicU64,
    too_large: AtomicU64,
    request_timeouts: AtomicU64,
    stray_replies: AtomicU64,
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

/// The plain counters of [`NamespaceStats`], each declared once: a public reader (with its
/// documentation) for every one; for those in `cold`, which events bump one at a time, the
/// crate's `record_*` that adds one as well. The `hot` ones are added to in bulk (see
/// [`end_read`] and [`NamespaceStats::record_send`]).
macro_rules! counters {
    (
        hot { $($(#[$hot_doc:meta])* $hot:ident;)+ }
        cold { $($(#[$cold_doc:meta])* $cold:ident => $record:ident;)+ }
    ) => {
        impl NamespaceStats {
            $(
                $(#[$hot_doc])*
                pub fn $hot(&self) -> u64 {
                    self.hot.$hot.load(Ordering::Relaxed)
                }
            )+
            $(
                $(#[$cold_doc])*
                pub fn $cold(&self) -> u64 {
                    self.$cold.load(Ordering::Relaxed)
                }

                pub(crate) fn $record(&self) {
                    self.$cold.fetch_add(1, Ordering::Relaxed);
                }
            )+
        }
    };
}

counters! {
    hot {
        /// Messages read from sockets.
        messages_received;
        /// Payload bytes of the messages read from sockets (after inflating).
        received_bytes;
        /// Sends made on this instance: room, broadcast and direct ones (a room send is one,
        /// however many members it reaches).
        messages_sent;
        /// Frames queued to local sockets, by local sends and messages from other instances.
        deliveries;
    }
    cold {
        /// Messages that did not decode into the service's `receives` type or broke one of its
        /// constraints (answered by `on_invalid`; the socket stayed open).
        invalid_messages => record_invalid_message;
        /// Sends refused because the message is larger than the transport carries between
        /// instances (`MESSAGE_TOO_LARGE`): each reached nobody.
        too_large => record_too_large;
        /// Messages over their socket's inbound [`RateLimit`](crate::config::RateLimit): dropped
        /// ([`RateLimitPolicy::DropMessages`](crate::config::RateLimitPolicy::DropMessages)), or the one
        /// that closed its socket with 1008 ([`RateLimitPolicy::Close`](crate::config::RateLimitPolicy::Close)).
        /// Either way no handler saw it. They count in
        /// [`messages_received`](Self::messages_received) too.
        rate_limited => record_rate_limited;
        /// Times a full send queue triggered the slow-consumer policy: each is one frame that
        /// was not queued (dropped).
        slow_consumers => record_slow_consumer;
        /// Sockets that hit the slow-consumer policy (each counted once).
        slow_sockets => record_slow_socket;
        /// Handlers that returned `Err` or panicked.
        handler_errors => record_handler_error;
        /// Connections closed for protocol violations, bad UTF-8 or oversized messages.
        protocol_errors => record_protocol_error;
        /// Connections refused by the connection limit.
        rejected_connections => record_rejected;
        /// Connections that were admitted and started running.
        opened => record_opened;
        /// Requests to sockets that got no reply within their timeout.
        request_timeouts => record_request_timeout;
        /// Replies from clients that answered no pending request (after its timeout, a
        /// second time, an id never asked, or malformed): ignored, delivered to nobody.
        stray_replies => record_stray_reply;
    }
}

impl NamespaceStats {
    pub(crate) fn record_closed(&self, code: u16) {
        bump(&self.closed, code);
    }
    pub(crate) fn record_refused(&self, status: u16) {
        bump(&self.refused, status);
    }
    /// One send (to a room, the namespace or a socket) that queued `deliveries` frames; a
    /// room or broadcast send (`fanout`) made while handling a received message also
    /// observes the fan-out latency, for a sample of them (see the module docs).
    #[inline]
    pub(crate) fn record_send(&self, deliveries: usize, fanout: bool) {
        let owner = std::ptr::from_ref(self) as usize;
        let counted = TALLY.try_with(|slot| match slot.get() {
            Some(tally) if tally.owner == owner => {
                tally.send(deliveries, fanout);
                true
            }
            _ => false,
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

    /// Connections that ended, by the close code `on_close` saw (1006: the peer vanished).
    pub fn closed(&self) -> Vec<(u16, u64)> {
        snapshot(&self.closed)
    }
    /// Upgrade requests answered with an HTTP status instead of 101, by status.
    pub fn refused_upgrades(&self) -> Vec<(u16, u64)> {
        snapshot(&self.refused)
    }
    /// The histogram of the time from a message's arrival (its bytes read by the socket's
    /// reader) to the local fan-out of a room or broadcast message its handler sent being
    /// queued on every local member (queued, not yet written). Sampled: measured for each
    /// connection's first such send, then for one in 16 at random, so `count` is about a
    /// sixteenth of the room and broadcast sends, not their number.
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
    async fn sends_count_in_the_readers_tally_until_the_read_ends() {
        let stats = NamespaceStats::default();
        let other = NamespaceStats::default();
        counting(async {
            // Before the first read: no tally yet, straight to the atomics.
            stats.record_send(1, false);
            assert_eq!((stats.messages_sent(), stats.deliveries()), (1, 1));

            begin_read(&stats, Instant::now());
            stats.record_send(3, true);
            stats.record_send(1, false);
            // Another namespace's sends bypass the tally.
            other.record_send(2, true);
            assert_eq!((stats.messages_sent(), stats.deliveries()), (1, 1));
            assert_eq!((other.messages_sent(), other.deliveries()), (1, 2));
            assert_eq!(other.fanout_latency().count, 0);

            end_read(&stats, 1, 5);
            assert_eq!(stats.messages_received(), 1);
            assert_eq!(stats.received_bytes(), 5);
            assert_eq!((stats.messages_sent(), stats.deliveries()), (3, 5));
            // A connection's first room send is always measured.
            let latency = stats.fanout_latency();
            assert_eq!(latency.count, 1);
            assert_eq!(latency.buckets.len(), FANOUT_BUCKETS.len() + 1);
            // Ending a read twice adds nothing.
            end_read(&stats, 0, 0);
            assert_eq!((stats.messages_sent(), stats.deliveries()), (3, 5));
            assert_eq!(stats.fanout_latency().count, 1);
        })
        .await;

        // Outside any reader: straight to the atomics, no latency.
        stats.record_send(7, true);
        assert_eq!((stats.messages_sent(), stats.deliveries()), (4, 12));
        assert_eq!(stats.fanout_latency().count, 1);
    }

    #[tokio::test]
    async fn fanout_latency_is_measured_for_a_sample_of_room_sends() {
        let stats = NamespaceStats::default();
        const SENDS: u64 = 160_000;
        counting(async {
            begin_read(&stats, Instant::now());
            for _ in 0..SENDS {
                stats.record_send(32, true);
                // Direct sends are counted, never sampled.
                stats.record_send(1, false);
            }
            end_read(&stats, 1, 1);
        })
        .await;
        // Every send counts.
        assert_eq!(stats.messages_sent(), 2 * SENDS);
        assert_eq!(stats.deliveries(), 33 * SENDS);
        // About one room send in SAMPLE_EVERY has its latency measured: 10,000 expected,
        // and a binomial's standard deviation is under 100.
        let latency = stats.fanout_latency();
        let expected = SENDS / u64::from(SAMPLE_EVERY);
        assert!(
            latency.count.abs_diff(expected) < 500,
            "{} samples of {SENDS} sends",
            latency.count
        );
        assert_eq!(
            latency.buckets.iter().map(|(_, n)| n).sum::<u64>(),
            latency.count
        );
        assert!(latency.sum_seconds > 0.0);
    }

    #[test]
    fn the_sampler_is_not_periodic_in_bursts() {
        // Bursts of SAMPLE_EVERY sends: a counter would measure the same position of every
        // burst; the random sampler measures every position about as often.
        let stats = NamespaceStats::default();
        let tally = Tally::new(&stats, 12345);
        let mut by_position = [0u32; SAMPLE_EVERY as usize];
        for i in 0..(SAMPLE_EVERY as usize * 16_000) {
            if tally.sample() {
                by_position[i % SAMPLE_EVERY as usize] += 1;
            }
        }
        for n in by_position {
            assert!((800..1200).contains(&n), "{by_position:?}");
        }
    }
}
