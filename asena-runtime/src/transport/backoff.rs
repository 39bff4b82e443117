//! The one reconnect backoff of the broker transports.

// With only some broker features enabled, parts of it go unused.
#![cfg_attr(not(all(feature = "redis", feature = "nats")), allow(dead_code))]

use std::pin::pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt as _};
use tokio::sync::watch;
use tokio::time::Instant;

/// A transport's task was told to stop.
pub(crate) struct Shutdown;

/// The delays between reconnection attempts: 100 ms doubling up to 1.2 s, each with up to
/// as much again of random jitter (so a fleet does not reconnect in lockstep), so never more
/// than [`Backoff::MAX`]; forever. The arithmetic is `backon`'s.
#[derive(Debug)]
pub(crate) struct Backoff(backon::ExponentialBackoff);

impl Backoff {
    pub(crate) const MIN: Duration = Duration::from_millis(100);
    /// The longest delay, jitter included.
    pub(crate) const MAX: Duration = Duration::from_millis(2400);

    pub(crate) fn new() -> Backoff {
        use backon::BackoffBuilder as _;
        Backoff(
            backon::ExponentialBuilder::default()
                .with_min_delay(Self::MIN)
                .with_max_delay(Self::MAX / 2)
                .with_factor(2.0)
                .with_jitter()
                .without_max_times()
                .build(),
        )
    }

    /// Starts again from the shortest delay (after a success).
    pub(crate) fn reset(&mut self) {
        *self = Backoff::new();
    }

    /// The delay before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        self.0.next().unwrap_or(Self::MAX).min(Self::MAX)
    }

    /// Waits out the next delay, handing `on` what `meanwhile` yields along the way (the
    /// queue, or the joins and leaves, that keep coming while there is no connection); a
    /// `meanwhile` that ends is no longer asked. `Err` as soon as `shutdown` changes or `on`
    /// fails.
    pub(crate) async fn wait<T>(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
        meanwhile: impl Stream<Item = T>,
        mut on: impl FnMut(T) -> Result<(), Shutdown>,
    ) -> Result<(), Shutdown> {
        let wake = Instant::now() + self.next_delay();
        let mut meanwhile = pin!(meanwhile);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return Err(Shutdown),
                _ = tokio::time::sleep_until(wake) => return Ok(()),
                Some(item) = meanwhile.next() => on(item)?,
            }
        }
    }

    /// The delay before attempt number `attempt` (0-based), for clients that count attempts
    /// themselves (NATS's reconnect callback).
    pub(crate) fn delay(attempt: usize) -> Duration {
        // Past the fifth attempt the delay no longer grows.
        let mut backoff = Backoff::new();
        for _ in 0..attempt.min(5) {
            backoff.next_delay();
        }
        backoff.next_delay()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let mut b = Backoff::new();
        let first = b.next_delay();
        assert!(
            first >= Backoff::MIN && first <= Backoff::MIN * 2,
            "{first:?}"
        );
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d <= Backoff::MAX, "{d:?}");
        }
        assert!(b.next_delay() >= Backoff::MAX / 2);
        b.reset();
        assert!(b.next_delay() <= Backoff::MIN * 2);
        assert!(Backoff::delay(0) <= Backoff::MIN * 2);
        assert!(Backoff::delay(1000) >= Backoff::MAX / 2);
    }
}
