//! How long the client waits between reconnect attempts.

use std::time::Duration;

/// The reconnect policy: exponential backoff with full jitter, capped, with an optional limit
/// on attempts.
///
/// Before attempt `n` (counting from 0 after each lost connection) the client waits a random
/// time between zero and `min(max, base * 2^n)` ("full jitter"), so a fleet of clients that
/// lost the same server does not come back in lockstep. The count starts again after every
/// successful connection.
///
/// ```
/// use std::time::Duration;
/// use asena_client::Backoff;
///
/// // At most 0.1 s, 0.2 s, 0.4 s, ... 10 s, 10 s, ... and give up after 20 attempts.
/// let backoff = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10))
///     .max_attempts(20);
/// assert_eq!(backoff.ceiling(3), Duration::from_millis(800));
/// assert_eq!(backoff.ceiling(30), Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    max_attempts: Option<u32>,
}

impl Backoff {
    /// Exponential backoff from `base`, doubling per attempt, never above `max`; unlimited
    /// attempts.
    pub fn exponential(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max: max.max(base),
            max_attempts: None,
        }
    }

    /// Gives up after `attempts` failed reconnect attempts in a row (the client then ends its
    /// event stream with [`Event::GaveUp`](crate::Event::GaveUp)).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// The limit set by [`max_attempts`](Self::max_attempts), if any.
    pub fn attempts_limit(&self) -> Option<u32> {
        self.max_attempts
    }

    /// The longest wait before attempt `attempt` (from 0): `min(max, base * 2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The wait before attempt `attempt`: uniformly random in `0..=ceiling(attempt)`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }
}

impl Default for Backoff {
    /// 100 ms doubling up to 10 s, unlimited attempts.
    fn default() -> Self {
        Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let b = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(1), Duration::from_millis(200));
        assert_eq!(b.ceiling(3), Duration::from_millis(800));
        assert_eq!(b.ceiling(4), Duration::from_secs(1));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_under_the_ceiling() {
        let b = Backoff::exponential(Duration::from_millis(10), Duration::from_millis(50));
        for attempt in 0..20 {
            assert!(b.delay(attempt) <= b.ceiling(attempt));
        }
    }

    #[test]
    fn a_cap_below_the_base_is_the_base() {
        let b = Backoff::exponential(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(b.ceiling(5), Duration::from_secs(2));
    }
}
