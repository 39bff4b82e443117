//! A broker transport's counters: [`TransportStats`] as users read them, and the atomics the
//! transport's tasks add to.

// With only some broker features enabled, parts of it go unused.
#![cfg_attr(not(all(feature = "redis", feature = "nats")), allow(dead_code))]

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of a broker transport, as returned by `stats()`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransportStats {
    /// Messages sent to the broker.
    pub published: u64,
    /// Messages from other instances handed to local delivery.
    pub received: u64,
    /// Outgoing messages dropped: queue full, broker down, send failed, too large for the
    /// broker, or published while the fleet was re-subscribing after an outage.
    pub dropped: u64,
    /// Outgoing messages refused because they exceed the broker's largest message (NATS's
    /// `max_payload`); each is counted in `dropped` too.
    pub oversize: u64,
    /// Broker errors: failed sends and connects, lost connections, malformed envelopes.
    pub errors: u64,
    /// Successful reconnections after a lost connection.
    pub reconnects: u64,
    /// Rooms this instance holds a subscription of its own for (interest-based routing;
    /// 0 for a transport that has one channel for everything).
    pub subscriptions: u64,
}

/// The atomics behind [`TransportStats`], shared by a transport and its tasks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) oversize: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) subscriptions: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> TransportStats {
        TransportStats {
            published: self.published.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            oversize: self.oversize.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            subscriptions: self.subscriptions.load(Ordering::Relaxed),
        }
    }
}
