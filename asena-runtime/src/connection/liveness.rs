//! When a connection was last heard from, and what its namespace's liveness sweep does about
//! it: ping a quiet socket, close one that stays quiet (the namespace's
//! [`Limits`](crate::config::Limits): `ping_interval`, `ping_timeout`, `idle_timeout`).
//!
//! A connection holds two timestamps, not a timer: a tokio `Sleep` per reader was 112 bytes
//! of every idle connection, and re-arming it on every read cost the hot path a timer-wheel
//! update. Instead each namespace runs one sweep task (see `namespace/liveness.rs`) that
//! checks its sockets every [`tick`], a quarter of the shortest of those durations and at
//! most a second: a ping goes out, and a quiet socket is closed, up to one tick later than
//! its duration says.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Limits;

/// The sweep's shortest and longest period.
const MIN_TICK: Duration = Duration::from_millis(10);
const MAX_TICK: Duration = Duration::from_secs(1);

/// Milliseconds since the first call in this process (0 is never returned, so it can mean
/// "not set").
pub(crate) fn now_ms() -> u64 {
    at_ms(Instant::now())
}

/// `at` in the clock of [`now_ms`].
pub(crate) fn at_ms(at: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| Instant::now() - Duration::from_millis(1));
    at.saturating_duration_since(epoch).as_millis() as u64
}

/// How often a namespace with these limits checks its sockets; `None` when nothing is ever
/// due (no ping interval, no idle timeout).
pub(crate) fn tick(limits: &Limits) -> Option<Duration> {
    let ping = limits
        .ping_interval
        .map(|every| every.min(limits.ping_timeout));
    let shortest = match (ping, limits.idle_timeout) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    Some((shortest / 4).clamp(MIN_TICK, MAX_TICK))
}

/// What the sweep does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    Wait,
    Ping,
    Close(&'static str),
}

/// When the peer was last heard from, and when our unanswered ping went out (milliseconds of
/// [`now_ms`]; 0: no ping outstanding).
#[derive(Debug)]
pub(crate) struct Liveness {
    heard: AtomicU64,
    pinged: AtomicU64,
}

impl Liveness {
    pub(crate) fn new() -> Liveness {
        Liveness {
            heard: AtomicU64::new(now_ms()),
            pinged: AtomicU64::new(0),
        }
    }

    /// Anything from the peer (a pong included) counts as a sign of life. Called by the
    /// reader on every read.
    #[inline]
    pub(crate) fn heard(&self, at: Instant) {
        self.heard.store(at_ms(at), Ordering::Relaxed);
        if self.pinged.load(Ordering::Relaxed) != 0 {
            self.pinged.store(0, Ordering::Relaxed);
        }
    }

    /// What is due at `now` (milliseconds of [`now_ms`]); a `Ping` is recorded as sent.
    pub(crate) fn check(&self, limits: &Limits, now: u64) -> Check {
        let heard = self.heard.load(Ordering::Relaxed);
        let quiet = now.saturating_sub(heard);
        if limits
            .idle_timeout
            .is_some_and(|d| quiet >= d.as_millis() as u64)
        {
            return Check::Close("Idle timeout");
        }
        let pinged = self.pinged.load(Ordering::Relaxed);
        match limits.ping_interval {
            _ if pinged != 0 => {
                if now.saturating_sub(pinged) >= limits.ping_timeout.as_millis() as u64 {
                    Check::Close("Ping timeout")
                } else {
                    Check::Wait
                }
            }
            Some(every) if quiet >= every.as_millis() as u64 => {
                self.pinged.store(now.max(1), Ordering::Relaxed);
                Check::Ping
            }
            _ => Check::Wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(ping: Option<u64>, timeout: u64, idle: Option<u64>) -> Limits {
        Limits {
            ping_interval: ping.map(Duration::from_millis),
            ping_timeout: Duration::from_millis(timeout),
            idle_timeout: idle.map(Duration::from_millis),
            ..Limits::default()
        }
    }

    fn at(heard: u64) -> Liveness {
        Liveness {
            heard: AtomicU64::new(heard),
            pinged: AtomicU64::new(0),
        }
    }

    #[test]
    fn a_quiet_socket_is_pinged_once_then_closed_when_the_ping_goes_unanswered() {
        let l = limits(Some(100), 50, None);
        let alive = at(1_000);
        assert_eq!(alive.check(&l, 1_099), Check::Wait);
        assert_eq!(alive.check(&l, 1_100), Check::Ping);
        // One ping outstanding: no second one, and the close comes ping_timeout later.
        assert_eq!(alive.check(&l, 1_140), Check::Wait);
        assert_eq!(alive.check(&l, 1_150), Check::Close("Ping timeout"));
    }

    #[test]
    fn hearing_from_the_peer_answers_the_ping_and_restarts_the_quiet_time() {
        let l = limits(Some(100), 50, Some(1_000));
        let alive = at(1_000);
        assert_eq!(alive.check(&l, 1_100), Check::Ping);
        alive.heard.store(1_120, Ordering::Relaxed);
        alive.pinged.store(0, Ordering::Relaxed);
        assert_eq!(alive.check(&l, 1_200), Check::Wait);
        assert_eq!(alive.check(&l, 1_220), Check::Ping);
    }

    #[test]
    fn the_idle_timeout_closes_whatever_the_pings_say() {
        let l = limits(None, 50, Some(300));
        let alive = at(1_000);
        assert_eq!(alive.check(&l, 1_299), Check::Wait);
        assert_eq!(alive.check(&l, 1_300), Check::Close("Idle timeout"));
    }

    #[test]
    fn heard_clears_an_outstanding_ping() {
        let alive = Liveness::new();
        alive.pinged.store(5, Ordering::Relaxed);
        alive.heard(Instant::now());
        assert_eq!(alive.pinged.load(Ordering::Relaxed), 0);
        assert!(alive.heard.load(Ordering::Relaxed) >= 1);
    }

    #[test]
    fn the_tick_is_a_quarter_of_the_shortest_duration_within_bounds() {
        assert_eq!(tick(&limits(None, 50, None)), None);
        assert_eq!(
            tick(&limits(Some(100), 300, Some(400))),
            Some(Duration::from_millis(25))
        );
        // The ping timeout counts only when pings are sent.
        assert_eq!(
            tick(&limits(None, 8, Some(400))),
            Some(Duration::from_millis(100))
        );
        assert_eq!(tick(&limits(Some(20), 20, None)), Some(MIN_TICK));
        assert_eq!(tick(&Limits::default()), Some(MAX_TICK));
    }
}
