//! What every broker transport is built on: [`BrokerCore`] holds where it connects, the pod
//! id its envelopes carry, its counters, its non-blocking outgoing queue,
//! and, once connected, runs its two tasks (the publisher of `publisher.rs` and the subscriber
//! of `subscriber.rs`) until it stops them. A broker brings only what differs: how it
//! connects, publishes a batch and receives.

// With only some broker features enabled, parts of the shared code go unused.
#![cfg_attr(
    not(all(feature = "redis", feature = "nats")),
    allow(
        dead_code,
        unreachable_code,
        unused_imports,
        unused_macros,
        unused_variables
    )
)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::counters::Counters;
use super::publisher::{FLUSH_TIMEOUT, Link, Publish, PublisherTask};
use super::subscriber::{Interest, SubscriberTask, Subscription};
use super::{Inbound, Outbound, Route, TransportError};
use crate::error::BoxError;
use crate::wire::Envelope;

/// How long connecting to a broker may take before it counts as unreachable.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Capacity of a transport's outgoing queue; beyond it messages are dropped (and counted)
/// rather than blocking the fan-out path.
const QUEUE_CAPACITY: usize = 64 * 1024;

/// A fresh random pod id.
pub(crate) fn new_pod_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// What goes on the broker for an outgoing message: a topic's message wrapped in the wire
/// envelope, a named channel's as it is.
pub(crate) fn encode_outbound(msg: &Outbound, pod_id: &str) -> Vec<u8> {
    match &msg.route {
        Route::Topic { topic, .. } => {
            Envelope::encode(topic, &msg.payload, msg.binary, pod_id, msg.trace)
        }
        Route::Channel(_) => msg.payload.to_vec(),
    }
}

/// Declares what a broker transport `$transport` (its `core` a [`BrokerCore`]) shares with
/// the others: its `Debug` (the core's), and the methods `pod_id`, `url`, `stats` and the
/// setter and getter of its fleet channel, named and described by the caller (`channel` and
/// `channel_name` for Redis, `subject` and `subject_name` for NATS).
macro_rules! broker_methods {
    ($transport:ident, $(#[$set_doc:meta])* $set:ident, $(#[$get_doc:meta])* $get:ident) => {
        impl std::fmt::Debug for $transport {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.core.fmt_transport(stringify!($transport), f)
            }
        }

        impl $transport {
            /// This instance's random pod id (the `o` of its envelopes).
            pub fn pod_id(&self) -> &str {
                &self.core.pod_id
            }

            /// The broker URL.
            pub fn url(&self) -> &str {
                &self.core.url
            }

            $(#[$set_doc])*
            pub fn $set(mut self, $set: impl Into<String>) -> Self {
                self.core.channel = $set.into();
                self
            }

            $(#[$get_doc])*
            pub fn $get(&self) -> &str {
                &self.core.channel
            }

            /// Counters: published, received, dropped, errors, reconnects.
            pub fn stats(&self) -> TransportStats {
                self.core.counters.snapshot()
            }
        }
    };
}
pub(crate) use broker_methods;

/// Declares the `Transport` methods every broker transport has alike: its `name`, `init`
/// (its own `start`), `stats` (its counters) and `recent_traces`.
macro_rules! broker_transport_methods {
    ($name:literal) => {
        fn name(&self) -> &'static str {
            $name
        }

        fn init(&self, inbound: Inbound) -> BoxFuture<'_, Result<(), TransportError>> {
            Box::pin(self.start(inbound))
        }

        fn stats(&self) -> Option<TransportStats> {
            Some(self.core.counters.snapshot())
        }

        fn recent_traces(&self) -> Vec<$crate::trace::TracedMessage> {
            self.core.counters.traces.recent()
        }
    };
}
pub(crate) use broker_transport_methods;

/// What every broker transport holds: where it connects, who it is (the pod id its envelopes
/// carry), its counters, its outgoing queue and tasks (set once started, with its connection
/// `C` if the transport keeps one) and whether it was destroyed.
#[derive(Debug)]
pub(crate) struct BrokerCore<C = ()> {
    pub(crate) url: String,
    /// The Redis channel or NATS subject the fleet shares.
    pub(crate) channel: String,
    pub(crate) pod_id: String,
    pub(crate) counters: Arc<Counters>,
    queue: OnceLock<mpsc::Sender<Outbound>>,
    /// Where joins and leaves tell the subscriber task (set once started, when it routes
    /// rooms by interest).
    interest: OnceLock<mpsc::UnboundedSender<Interest>>,
    running: Mutex<Option<Running<C>>>,
    destroyed: AtomicBool,
}

/// What a broker transport starts with, once connected: see [`BrokerCore::run`].
pub(crate) struct Tasks<P, S> {
    pub(crate) publish: P,
    pub(crate) subscription: S,
    pub(crate) inbound: Inbound,
    /// Whether rooms are routed by interest (joins and leaves reach the subscriber task).
    pub(crate) by_interest: bool,
    /// When the connection last came back, if the client reconnects itself and says so.
    pub(crate) link: Arc<Link>,
    /// How long after a reconnection the publisher drops (zero: never).
    pub(crate) grace: Duration,
}

impl<C: Send + 'static> BrokerCore<C> {
    pub(crate) fn new(url: String, channel: &str) -> BrokerCore<C> {
        BrokerCore {
            url,
            channel: channel.to_owned(),
            pod_id: new_pod_id(),
            counters: Arc::new(Counters::default()),
            queue: OnceLock::new(),
            interest: OnceLock::new(),
            running: Mutex::new(None),
            destroyed: AtomicBool::new(false),
        }
    }

    /// The `Debug` of the transport `name` built on this core: its URL, pod id and counters.
    pub(crate) fn fmt_transport(
        &self,
        name: &str,
        f: &mut std::fmt::Formatter<'_>,
    ) -> std::fmt::Result {
        f.debug_struct(name)
            .field("url", &self.url)
            .field("pod_id", &self.pod_id)
            .field("stats", &self.counters.snapshot())
            .finish()
    }

    /// Starts the publisher and subscriber tasks over a connected broker, then opens the
    /// outgoing queue: only after the tasks are recorded, so `stop` always finds them.
    pub(crate) fn run<P: Publish, S: Subscription>(&self, tasks: Tasks<P, S>, connection: C) {
        let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (interest, changes) = mpsc::unbounded_channel();
        if tasks.by_interest {
            let _ = self.interest.set(interest);
        }
        let publisher = tokio::spawn(
            PublisherTask {
                publish: tasks.publish,
                counters: self.counters.clone(),
                rx,
                shutdown: shutdown_rx.clone(),
                link: tasks.link,
                grace: tasks.grace,
            }
            .run(),
        );
        let subscriber = tokio::spawn(
            SubscriberTask {
                subscription: tasks.subscription,
                pod_id: self.pod_id.clone(),
                counters: self.counters.clone(),
                inbound: tasks.inbound,
                changes,
                shutdown: shutdown_rx,
            }
            .run(),
        );
        *self.running.lock().unwrap_or_else(PoisonError::into_inner) = Some(Running {
            shutdown,
            tasks: vec![publisher, subscriber],
            connection,
        });
        let _ = self.queue.set(queue);
        tracing::info!(target: "asena::transport", transport = P::NAME, url = %self.url, pod_id = %self.pod_id, "connected");
    }

    /// Stops the tasks (once; later calls, and calls before a start, find nothing), letting
    /// the publisher flush what is queued; returns the connection.
    pub(crate) async fn stop(&self) -> Option<C> {
        self.destroyed.store(true, Ordering::Release);
        let running = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        Some(running.stop(FLUSH_TIMEOUT + Duration::from_secs(1)).await)
    }

    /// Queues an outgoing message for the publisher task without blocking; before the
    /// start, or with a full or closed queue, the message is dropped and counted.
    pub(crate) fn enqueue(&self, transport: &'static str, message: Outbound) {
        use tokio::sync::mpsc::error::TrySendError;
        let Some(queue) = self.queue.get() else {
            Counters::add(&self.counters.dropped, 1);
            return;
        };
        let traced = message
            .trace
            .map(|trace| (trace, message.address().to_owned()));
        match queue.try_send(message) {
            Ok(()) => {
                if let Some((trace, address)) = traced {
                    self.counters.traces.record(trace, &address, None);
                }
            }
            Err(TrySendError::Full(_)) => {
                let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                if dropped.is_multiple_of(1000) {
                    tracing::warn!(target: "asena::transport", transport, "outgoing queue full, dropping messages");
                }
            }
            Err(TrySendError::Closed(_)) => Counters::add(&self.counters.dropped, 1),
        }
    }

    /// A transport instance starts once: not twice, and not after `destroy`.
    pub(crate) fn check_startable(&self, transport: &'static str) -> Result<(), TransportError> {
        if self.destroyed.load(Ordering::Acquire) {
            return Err(TransportError::Closed);
        }
        if self.queue.get().is_some() {
            return Err(TransportError::Other(
                format!("{transport} transport is already started; use one transport per app")
                    .into(),
            ));
        }
        Ok(())
    }

    /// Tells the subscriber task of a join or leave (built only when it routes by
    /// interest and is started).
    pub(crate) fn want(&self, change: impl FnOnce() -> Interest) {
        if let Some(changes) = self.interest.get() {
            let _ = changes.send(change());
        }
    }

    pub(crate) fn connect_error(&self, source: impl Into<BoxError>) -> TransportError {
        TransportError::Connect {
            url: self.url.clone(),
            source: source.into(),
        }
    }
}

/// A started transport's tasks, the signal that stops them, and its connection `C` (or
/// `()` when the tasks own theirs).
#[derive(Debug)]
struct Running<C> {
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    connection: C,
}

impl<C> Running<C> {
    /// Tells the tasks to stop and waits for each at most `grace` (aborting stragglers);
    /// returns the connection.
    async fn stop(self, grace: Duration) -> C {
        let _ = self.shutdown.send(true);
        for mut task in self.tasks {
            if tokio::time::timeout(grace, &mut task).await.is_err() {
                task.abort();
            }
        }
        self.connection
    }
}
