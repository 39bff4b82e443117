//! The inbound rate limit of one socket ([`RateLimit`]): two token buckets, messages and
//! bytes, kept as two timestamps in the connection's reader.
//!
//! Each bucket is a generic cell rate algorithm (GCRA): its state is the "theoretical
//! arrival time" (TAT), when the socket would have used its whole allowance at the
//! sustained rate. A message costs `1 / rate` of time (for bytes, its length over the byte
//! rate); it is admitted when, after adding its cost, the TAT is at most the burst ahead of
//! the present. That is exactly a token bucket holding `burst` worth of the rate, refilled
//! continuously, with no timer and no refill step: the clock at each read is enough, and an
//! idle socket's state is two integers that do nothing.

use std::sync::OnceLock;

use tokio::time::Instant;

use crate::config::RateLimit;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// The epoch of the buckets' clock: set when the first bucket is made, so every time a
/// bucket is asked about (a read after its reader started) comes after it.
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The clock the buckets count in: nanoseconds since [`EPOCH`] (one epoch for the process,
/// so a timestamp is a `u64` that lasts 584 years).
fn nanos(at: Instant) -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(at.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

/// One socket's buckets.
#[derive(Debug)]
pub(crate) struct Bucket {
    /// The TAT of the message bucket, in [`nanos`]; 0 (long ago) is a full bucket.
    messages: u64,
    /// The TAT of the byte bucket.
    bytes: u64,
}

/// `amount` units at `per_second` a second, in nanoseconds (saturating; a rate of 0 counts
/// as 1). In `u64` arithmetic when it fits (any message under 16 GiB), `u128` otherwise.
fn cost(amount: u64, per_second: u64) -> u64 {
    let per_second = per_second.max(1);
    match amount.checked_mul(NANOS_PER_SEC) {
        Some(scaled) => scaled / per_second,
        None => {
            u64::try_from(u128::from(amount) * u128::from(NANOS_PER_SEC) / u128::from(per_second))
                .unwrap_or(u64::MAX)
        }
    }
}

impl Bucket {
    /// Full buckets.
    pub(crate) fn new() -> Bucket {
        EPOCH.get_or_init(Instant::now);
        Bucket {
            messages: 0,
            bytes: 0,
        }
    }

    /// Whether a message of `len` payload bytes read at `at` is within `limit` (the byte
    /// bucket holding at least `max_message` bytes); when it is, it is taken from both
    /// buckets, when it is not, from neither.
    pub(crate) fn admit(
        &mut self,
        limit: &RateLimit,
        max_message: usize,
        at: Instant,
        len: usize,
    ) -> bool {
        let now = nanos(at);
        let burst = u64::try_from(limit.burst.as_nanos()).unwrap_or(u64::MAX);
        let per_message = cost(1, u64::from(limit.messages_per_second));
        // The message bucket holds `burst` worth of messages, and always one.
        let message_room = burst.max(per_message);
        let byte_room = burst.max(cost(max_message as u64, limit.bytes_per_second));
        let messages = self.messages.max(now).saturating_add(per_message);
        let bytes = self
            .bytes
            .max(now)
            .saturating_add(cost(len as u64, limit.bytes_per_second));
        if messages - now > message_room || bytes - now > byte_room {
            return false;
        }
        self.messages = messages;
        self.bytes = bytes;
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limit(messages: u32, bytes: u64) -> RateLimit {
        RateLimit::per_second(messages, bytes)
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let limit = limit(100, 1 << 20);
        let mut b = Bucket::new();
        let t0 = Instant::now();
        // A full bucket: a second's worth at once, then nothing.
        for i in 0..100 {
            assert!(b.admit(&limit, 1024, t0, 10), "message {i}");
        }
        assert!(!b.admit(&limit, 1024, t0, 10));
        // 10 ms later, one more (100 a second).
        let t1 = t0 + Duration::from_millis(10);
        assert!(b.admit(&limit, 1024, t1, 10));
        assert!(!b.admit(&limit, 1024, t1, 10));
        // A refused message took nothing: after a quiet second the bucket is full again.
        let t2 = t1 + Duration::from_secs(1);
        for _ in 0..100 {
            assert!(b.admit(&limit, 1024, t2, 10));
        }
        assert!(!b.admit(&limit, 1024, t2, 10));
    }

    #[test]
    fn bytes_are_limited_on_their_own() {
        let limit = limit(1_000, 1_000);
        let mut b = Bucket::new();
        let t0 = Instant::now();
        assert!(b.admit(&limit, 100, t0, 600));
        assert!(!b.admit(&limit, 100, t0, 600));
        assert!(b.admit(&limit, 100, t0, 400));
        assert!(!b.admit(&limit, 100, t0, 1));
        // Half a second refills half the bytes.
        let t1 = t0 + Duration::from_millis(500);
        assert!(b.admit(&limit, 100, t1, 500));
        assert!(!b.admit(&limit, 100, t1, 1));
    }

    #[test]
    fn costs_saturate_instead_of_overflowing() {
        assert_eq!(cost(1, 1_000), 1_000_000);
        assert_eq!(cost(u64::MAX, 1), u64::MAX);
        assert_eq!(cost(1 << 40, 1 << 30), 1_024 * NANOS_PER_SEC);
        assert_eq!(cost(5, 0), 5 * NANOS_PER_SEC);
    }

    #[test]
    fn one_largest_message_always_fits_a_full_bucket() {
        // A byte rate below the largest message: one still passes, then the rate applies.
        let limit = limit(1_000, 1_000).with_burst(Duration::from_millis(100));
        let mut b = Bucket::new();
        let t0 = Instant::now();
        assert!(b.admit(&limit, 5_000, t0, 5_000));
        assert!(!b.admit(&limit, 5_000, t0 + Duration::from_secs(4), 5_000));
        assert!(b.admit(&limit, 5_000, t0 + Duration::from_secs(5), 5_000));
    }
}
