//! The liveness sweep: one task per namespace pings its quiet sockets and closes those that
//! stay quiet (see `connection/liveness.rs` for why this is not a timer per connection).
//!
//! The task starts with the namespace's first socket and ends at the first tick that finds
//! none (the next socket starts it again), so an app without connections runs no timers.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use super::{Inner, read};
use crate::codec::{Frame, close_code};
use crate::connection::Conn;
use crate::connection::liveness::{self, Check};

/// Starts the sweep of `inner` if it is not running and the limits ask for one. Called with
/// the socket map's write lock held, so a sweep ending for lack of sockets (which looks
/// under the read lock) and a socket arriving cannot miss each other.
pub(super) fn ensure(inner: &Arc<Inner>) {
    let Some(tick) = liveness::tick(&inner.shared.limits) else {
        return;
    };
    if inner.sweeping.load(Ordering::Relaxed) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    inner.sweeping.store(true, Ordering::Relaxed);
    runtime.spawn(sweep(Arc::downgrade(inner), tick));
}

async fn sweep(inner: Weak<Inner>, tick: Duration) {
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let Some(due) = due(&inner) else {
            return;
        };
        for (conn, check) in due {
            match check {
                Check::Ping => {
                    let _ = conn.push_wire(Frame::ping(b"").wire(), usize::MAX);
                }
                Check::Close(reason) => {
                    tracing::debug!(target: "asena::ws", socket_id = %conn.id, reason, "closing a quiet socket");
                    conn.close(close_code::GOING_AWAY, reason);
                }
                Check::Wait => {}
            }
        }
    }
}

/// The sockets something is due for now; `None` (and the sweep marked as stopped) when
/// the namespace has none.
fn due(inner: &Inner) -> Option<Vec<(Arc<Conn>, Check)>> {
    let now = liveness::now_ms();
    let limits = &inner.shared.limits;
    let sockets = read(&inner.sockets);
    if sockets.is_empty() {
        inner.sweeping.store(false, Ordering::Relaxed);
        return None;
    }
    Some(
        sockets
            .values()
            .filter_map(|conn| match conn.alive.check(limits, now) {
                Check::Wait => None,
                // A closing socket's reader has its own timers.
                _ if conn.close_requested().is_some() => None,
                check => Some((conn.clone(), check)),
            })
            .collect(),
    )
}
