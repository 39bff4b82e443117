//! Per-connection configuration: [`Limits`], the [`SlowConsumer`] policy and
//! [`Compression`].
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
///
/// The three liveness durations (`idle_timeout`, `ping_interval`, `ping_timeout`) are checked
/// by one timer per namespace, every quarter of the shortest of them (at least every second,
/// at most every 10 ms): a ping or a close comes up to that much later than the duration
/// says (with the defaults, within a second).
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
    /// Pongs count: a peer that answers pings is never idle.
    pub idle_timeout: Option<Duration>,
    /// Ping a socket that has been quiet this long (default 30 s); `None` disables pings.
    pub ping_interval: Option<Duration>,
    /// Close (1001 "Ping timeout") a socket that sends nothing within this long of a ping
    /// (default 30 s).
    pub ping_timeout: Duration,
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
            ping_interval: Some(Duration::from_secs(30)),
            ping_timeout: Duration::from_secs(30),
            max_connections: None,
        }
    }
}

/// permessage-deflate (RFC 7692) for the sockets of a service.
///
/// Negotiated per connection: a client that does not offer it gets uncompressed frames. The
/// server compresses each message on its own (no context takeover), so a room message is
/// compressed once and the same compressed frame goes to every compressing member; members
/// without compression get the plain frame. Messages from clients are limited by their
/// inflated size ([`Limits::max_message_size`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    /// Accept the extension when a client offers it (default `true`).
    pub enabled: bool,
    /// Messages shorter than this many bytes go out uncompressed (default 256).
    pub threshold: usize,
    /// zlib compression level, 0–9 (default 1: fastest; each message is compressed once
    /// however many sockets receive it).
    pub level: u32,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            enabled: true,
            threshold: 256,
            level: 1,
        }
    }
}

impl Compression {
    /// No compression: the extension is never negotiated.
    pub fn disabled() -> Compression {
        Compression {
            enabled: false,
            ..Compression::default()
        }
    }
}
