//! Starting and stopping: [`Asena::shutdown`], and [`start`], whose every failure goes
//! through the same [`release`] that shutdown uses, so a partial start leaves nothing running.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{AppInner, Asena, Error};
use crate::codec::close_code;
use crate::namespace::Namespaces;
use crate::observe::inspector::FleetDelivery;
use crate::protocol::Fleet;
use crate::transport::{Deliver, Inbound, LocalTransport};

impl Asena {
    /// Stops the app: refuses new connections, closes every socket with 1001 (running each
    /// `on_close`), runs the `on_stop` hooks in reverse order and destroys the transport.
    /// Returns when all of that is done; later calls return at once.
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
        self.inner.shutdown.send_replace(true);
        let mut finished = self.inner.finished.lock().await;
        if *finished {
            return;
        }
        for ns in self.inner.namespaces.iter().chain(&self.inner.feed) {
            ns.close_all(close_code::GOING_AWAY, "Server shutting down");
        }
        // Wait for every connection task to run its on_close.
        if !self.inner.live.wait_idle(Duration::from_secs(15)).await {
            tracing::warn!(target: "asena::ws", "some connections did not finish closing in 15 s");
        }
        release(&self.inner, Hooks::Started).await;
        *finished = true;
        tracing::info!(target: "asena::ws", "shut down");
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }
}

/// Whether the components' `on_start` hooks all ran, so `on_stop` runs for every one of them.
/// When one fails, the container has already run `on_stop` for those before it, in reverse.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hooks {
    Started,
    RolledBack,
}

/// Starts a built app: each websocket service's protocol (`start`; what a protocol listens
/// to on the transport is known before the transport subscribes), then the transport, then
/// the components' `on_start` hooks. A failure at any step releases everything (see
/// [`release`]) before the error is returned.
pub(super) async fn start(inner: &AppInner) -> Result<(), Error> {
    let fleet = Fleet::new(
        inner
            .transport
            .clone()
            .unwrap_or_else(|| Arc::new(LocalTransport)),
    );
    for (service, ns, name) in &inner.attached {
        if let Err(source) = service.start(ns, &fleet).await {
            release(inner, Hooks::RolledBack).await;
            return Err(Error::Start {
                component: name,
                source,
            });
        }
    }
    if let Some(hub) = &inner.presence
        && let Err(source) = hub.listen(&fleet)
    {
        release(inner, Hooks::RolledBack).await;
        return Err(Error::Start {
            component: "presence",
            source,
        });
    }
    #[cfg(feature = "redis")]
    if let Some(archive) = &inner.history
        && let Err(source) = archive.listen(&fleet).and_then(|()| archive.start())
    {
        release(inner, Hooks::RolledBack).await;
        return Err(Error::Start {
            component: "history",
            source,
        });
    }
    if let Some(t) = &inner.transport {
        let namespaces = Namespaces(inner.namespaces.clone());
        let local: Arc<dyn Deliver> = match &inner.fleet {
            Some(state) => Arc::new(FleetDelivery {
                namespaces,
                state: state.clone(),
            }),
            None => Arc::new(namespaces),
        };
        if let Err(e) = t.init(Inbound::new(local, fleet.listeners())).await {
            release(inner, Hooks::RolledBack).await;
            return Err(e.into());
        }
        tracing::info!(target: "asena::transport", transport = t.name(), "transport started");
    }
    if let Err((component, source)) = inner.container.start(inner.stop_timeout).await {
        release(inner, Hooks::RolledBack).await;
        return Err(Error::Start { component, source });
    }
    if let Some(hub) = &inner.presence {
        hub.start();
    }
    Ok(())
}

/// Undoes a start, in the order that keeps each step's dependencies up: every websocket
/// service's protocol stopped (stopping one that never started is a no-op), the `on_stop` hooks in
/// reverse order when they all ran, the fleet told goodbye while the transport still carries
/// it, and the transport destroyed (idempotent: it also releases whatever a failed `init`
/// opened).
async fn release(inner: &AppInner, hooks: Hooks) {
    for (service, ns, _) in &inner.attached {
        service.stop(ns).await;
    }
    if hooks == Hooks::Started {
        inner.container.stop(inner.stop_timeout).await;
    }
    if let Some(announcer) = inner.announcer.get() {
        announcer.stop().await;
    }
    if let Some(hub) = &inner.presence {
        hub.stop();
    }
    #[cfg(feature = "redis")]
    if let Some(archive) = &inner.history {
        archive.stop();
    }
    if let Some(t) = &inner.transport {
        t.destroy().await;
    }
}
