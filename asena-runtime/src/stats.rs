//! [`NamespaceStats`]: the counters of one namespace, updated by its connections with
//! relaxed atomic adds (no lock on any path).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of a namespace.
#[derive(Debug, Default)]
pub struct NamespaceStats {
    slow_consumers: AtomicU64,
    handler_errors: AtomicU64,
    protocol_errors: AtomicU64,
    rejected_connections: AtomicU64,
    invalid_messages: AtomicU64,
}

impl NamespaceStats {
    pub(crate) fn record_slow_consumer(&self) {
        self.slow_consumers.fetch_add(1, Ordering::Relaxed);
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
    /// Messages that did not decode into the service's `receives` type or broke one of its
    /// constraints (answered by `on_invalid`; the socket stayed open).
    pub fn invalid_messages(&self) -> u64 {
        self.invalid_messages.load(Ordering::Relaxed)
    }
    /// Times a full send queue triggered the slow-consumer policy.
    pub fn slow_consumers(&self) -> u64 {
        self.slow_consumers.load(Ordering::Relaxed)
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
}
