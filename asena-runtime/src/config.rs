//! Per-connection configuration: [`Limits`], the [`SlowConsumer`] policy, the inbound
//! [`RateLimit`] and [`Compression`].
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
    /// How many messages and bytes per second each socket may send (default
    /// [`RateLimit::default`]: 1,000 messages and 4 MiB a second, a second's worth as burst,
    /// over it closes with 1008); `None` disables it.
    pub rate_limit: Option<RateLimit>,
    /// Requests the server may await replies to on one socket at once (default 256): one
    /// more fails at once with [`AckError::TooManyPending`](crate::ack::AckError::TooManyPending).
    pub max_pending_requests: usize,
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
            rate_limit: Some(RateLimit::default()),
            max_pending_requests: 256,
        }
    }
}

/// What happens to a message over a socket's [`RateLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RateLimitPolicy {
    /// Close the socket with 1008 "rate limit exceeded" (policy violation; default): the
    /// message is not handled, and neither is anything the socket sent after it.
    #[default]
    Close,
    /// Drop the message (it never reaches a handler) and keep the socket open; counted in
    /// [`NamespaceStats::rate_limited`](crate::namespace::NamespaceStats::rate_limited).
    DropMessages,
}

/// The inbound rate limit of each socket of a namespace: messages and payload bytes per
/// second, each a token bucket holding [`burst`](Self::burst) worth of its rate.
///
/// Checked as each message is read, before it is decoded into the service's `receives`
/// type or handed to a handler: the bucket is two timestamps in the connection's reader
/// (a generic cell rate algorithm: no timer, no task, refilled by the clock at each read).
/// Bytes are the message's payload after inflating, as
/// [`NamespaceStats::received_bytes`](crate::namespace::NamespaceStats::received_bytes) counts them;
/// a single message up to [`Limits::max_message_size`] always fits a full bucket. Control
/// frames (pings, pongs, close) are not counted: pongs are bounded by the outbox.
///
/// The defaults, 1,000 messages and 4 MiB a second with one second of burst, are far
/// above what an interactive client sends (a 120 Hz game loop is 120 messages a second),
/// and low enough that one socket cannot take a server: 1,000 room messages a second to a
/// room of 1,000 is already a million deliveries a second. A load generator or a bulk
/// uploader needs them raised ([`AsenaBuilder::rate_limit`](crate::AsenaBuilder::rate_limit),
/// or per service with [`Limits::rate_limit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Messages a socket may send per second, sustained (default 1,000). At least 1.
    pub messages_per_second: u32,
    /// Payload bytes a socket may send per second, sustained (default 4 MiB). At least 1.
    pub bytes_per_second: u64,
    /// How much of each rate a socket may send at once after a quiet spell (default 1 s:
    /// 1,000 messages, 4 MiB). The byte bucket always holds at least one message of
    /// [`Limits::max_message_size`].
    pub burst: Duration,
    /// What happens to a message over the limit.
    pub policy: RateLimitPolicy,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            messages_per_second: 1_000,
            bytes_per_second: 4 << 20,
            burst: Duration::from_secs(1),
            policy: RateLimitPolicy::Close,
        }
    }
}

impl RateLimit {
    /// `messages` and `bytes` a second, with the default burst (1 s) and policy (close).
    pub fn per_second(messages: u32, bytes: u64) -> RateLimit {
        RateLimit {
            messages_per_second: messages,
            bytes_per_second: bytes,
            ..RateLimit::default()
        }
    }

    /// The same limit with `policy` for messages over it.
    pub fn with_policy(self, policy: RateLimitPolicy) -> RateLimit {
        RateLimit { policy, ..self }
    }

    /// The same limit with `burst` worth of each rate allowed at once.
    pub fn with_burst(self, burst: Duration) -> RateLimit {
        RateLimit { burst, ..self }
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
