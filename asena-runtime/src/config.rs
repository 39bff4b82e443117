//! Per-connection configuration: [`Limits`] and the [`SlowConsumer`] policy.
//!
//! Set app-wide on the builder ([`AsenaBuilder::max_message_size`](crate::AsenaBuilder::max_message_size)
//! and its siblings) or per service with
//! [`AsenaBuilder::limits_for`](crate::AsenaBuilder::limits_for).

use std::time::Duration;

/// What happens when a socket's send queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SlowConsumer {
    /// Close the socket with 1008 "Slow consumer" (default).
    #[default]
    Close,
    /// Drop messages for that socket until its queue has room again.
    DropMessages,
}

/// Per-connection limits of a namespace.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest message accepted from a client (default 1 MiB); larger closes with 1009.
    pub max_message_size: usize,
    /// Bytes a socket's send queue may hold before the slow-consumer policy applies
    /// (default 16 MiB).
    pub max_queued_bytes: usize,
    /// What to do with a slow consumer.
    pub slow_consumer: SlowConsumer,
    /// Close a socket that sent nothing for this long (default 120 s); `None` disables it.
    pub idle_timeout: Option<Duration>,
    /// Most sockets the namespace accepts; more are closed with 1008 (default unlimited).
    pub max_connections: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 1 << 20,
            max_queued_bytes: 16 << 20,
            slow_consumer: SlowConsumer::Close,
            idle_timeout: Some(Duration::from_secs(120)),
            max_connections: None,
        }
    }
}
