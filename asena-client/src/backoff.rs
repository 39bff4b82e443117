//! How long the client waits between reconnect attempts.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// The reconnect policy: exponential backoff with jitter, capped, with an optional limit on
/// attempts. The delays come from the `backon` crate.
///
/// Attempt `n` (counting from 0 after each lost connection) has the ceiling
/// `min(max, base * 2^n)`; the client waits a random time between half the ceiling and the
/// ceiling ("equal jitter"), so a fleet of clients that lost the same server does not come
/// back in lockstep, and no wait is longer than `max`. The count starts again after every
/// successful connection.
///
/// ```
/// use std::time::Duration;
/// use asena_client::Backoff;
///
/// // Ceilings 0.1 s, 0.2 s, 0.4 s, ... 10 s, 10 s, ... and give up after 20 attempts.
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

    /// Gives up after `attempts` failed reconnect attempts in a row (at least 1; the client
    /// then ends its event stream with [`Event::GaveUp`](crate::Event::GaveUp)).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts.max(1));
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

    /// The waits before attempts 0, 1, 2, ...: each random between half its
    /// [`ceiling`](Self::ceiling) and the ceiling; as many as
    /// [`attempts_limit`](Self::attempts_limit) allows.
    pub(crate) fn delays(&self) -> impl Iterator<Item = Duration> + Send + use<> {
        // backon waits `d` plus a random fraction of `d`, `d` doubling from `base / 2` to
        // `max / 2`: between half the ceiling and the ceiling.
        let builder = ExponentialBuilder::new()
            .with_min_delay(self.base / 2)
            .with_max_delay(self.max / 2)
            .with_factor(2.0)
            .with_jitter();
        let builder = match self.max_attempts {
            Some(limit) => builder.with_max_times(limit as usize),
            None => builder.without_max_times(),
        };
        builder.build()
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
    fn jitter_stays_between_half_the_ceiling_and_the_ceiling() {
        let b = Backoff::exponential(Duration::from_millis(10), Duration::from_millis(50));
        // f32 arithmetic inside backon: allow a microsecond either way.
        let slack = Duration::from_micros(1);
        for (attempt, delay) in b.delays().take(20).enumerate() {
            let ceiling = b.ceiling(attempt as u32);
            assert!(
                delay <= ceiling + slack,
                "{attempt}: {delay:?} > {ceiling:?}"
            );
            assert!(
                delay + slack >= ceiling / 2,
                "{attempt}: {delay:?} < half {ceiling:?}"
            );
        }
    }

    #[test]
    fn the_limit_ends_the_delays() {
        let b = Backoff::default().max_attempts(3);
        assert_eq!(b.delays().count(), 3);
        assert_eq!(Backoff::default().max_attempts(0).attempts_limit(), Some(1));
        assert!(Backoff::default().delays().nth(1000).is_some());
    }

    #[test]
    fn a_cap_below_the_base_is_the_base() {
        let b = Backoff::exponential(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(b.ceiling(5), Duration::from_secs(2));
    }
}
