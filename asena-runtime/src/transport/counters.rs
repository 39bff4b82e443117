//! A broker transport's counters: [`TransportStats`] as users read them, and the atomics the
//! transport's tasks add to.

// With only some broker features enabled, parts of it go unused.
#![cfg_attr(not(all(feature = "redis", feature = "nats")), allow(dead_code))]

use std::sync::atomic::{AtomicU64, Ordering};

use crate::trace::TraceLog;

/// Declares [`TransportStats`] and the atomics behind it, [`Counters`], from one list of
/// counters, and [`Counters::snapshot`], which reads the one into the other.
macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)+) => {
        /// Counters of a broker transport, as returned by `stats()`. The fleet's
        /// announcements carry them as JSON (camelCase; a missing counter reads as 0).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "camelCase", default)]
        #[non_exhaustive]
        pub struct TransportStats {
            $($(#[$doc])* pub $name: u64,)+
        }

        /// The atomics behind [`TransportStats`], shared by a transport and its tasks, and
        /// the traced messages it sent and delivered last.
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub(crate) $name: AtomicU64,)+
            pub(crate) traces: TraceLog,
        }

        impl Counters {
            pub(crate) fn snapshot(&self) -> TransportStats {
                TransportStats {
                    $($name: self.$name.load(Ordering::Relaxed),)+
                }
            }
        }
    };
}

counters! {
    /// Messages sent to the broker.
    published,
    /// Messages from other instances handed to local delivery.
    received,
    /// Outgoing messages dropped: queue full, broker down, send failed, too large for the
    /// broker, or published while the fleet was re-subscribing after an outage.
    dropped,
    /// Outgoing messages refused because they exceed the broker's largest message (NATS's
    /// `max_payload`); each is counted in `dropped` too.
    oversize,
    /// Broker errors: failed sends and connects, lost connections, malformed envelopes.
    errors,
    /// Successful reconnections after a lost connection.
    reconnects,
    /// Rooms this instance holds a subscription of its own for (interest-based routing;
    /// 0 for a transport that has one channel for everything).
    subscriptions,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
