//! [`NatsTransport`]: fan-out across instances over NATS core pub/sub.
//!
//! The same semantics as [`RedisTransport`](super::RedisTransport): one subject
//! (`asena.ws.transport` unless [`NatsTransport::subject`] names another), the same [`wire`]
//! envelope, a random pod id per instance to drop our own
//! messages. The NATS client reconnects (and re-subscribes) on its own with backoff; while
//! the server is away local delivery goes on and disconnections are logged and counted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::broker::{
    Backoff, BrokerCore, CONNECT_TIMEOUT, Counters, QUEUE_CAPACITY, TransportStats,
    encode_outbound, enqueue, handle_incoming, stop_tasks,
};
use super::{BoxFuture, Inbound, Outbound, Transport, TransportError};
use crate::error::BoxError;
use crate::wire;

/// How long `destroy` waits for queued messages to be flushed.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Fan-out across instances over NATS.
///
/// ```no_run
/// use asena_runtime::{Asena, NatsTransport};
/// # async fn run() -> Result<(), asena_runtime::Error> {
/// let app = Asena::builder()
///     .transport(NatsTransport::new("nats://127.0.0.1:4222"))
///     .build()
///     .await?; // fails when NATS cannot be reached
/// # Ok(()) }
/// ```
pub struct NatsTransport {
    core: BrokerCore,
    running: Mutex<Option<Running>>,
}

struct Running {
    client: async_nats::Client,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for NatsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTransport")
            .field("url", &self.core.url)
            .field("pod_id", &self.core.pod_id)
            .field("stats", &self.stats())
            .finish()
    }
}

impl NatsTransport {
    /// A transport to the NATS server at `url` (`nats://host:port`). Nothing connects until
    /// the app starts; an unreachable server then fails the startup.
    pub fn new(url: impl Into<String>) -> NatsTransport {
        NatsTransport {
            core: BrokerCore::new(url.into(), wire::NATS_SUBJECT),
            running: Mutex::new(None),
        }
    }

    /// This instance's random pod id (the `o` of its envelopes).
    pub fn pod_id(&self) -> &str {
        &self.core.pod_id
    }

    /// The broker URL.
    pub fn url(&self) -> &str {
        &self.core.url
    }

    /// Uses `subject` instead of the default [`wire::NATS_SUBJECT`]: instances (and emitters)
    /// share rooms only on the same NATS subject.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.core.channel = subject.into();
        self
    }

    /// The NATS subject this transport publishes to and listens on.
    pub fn subject_name(&self) -> &str {
        &self.core.channel
    }

    /// Counters: published, received, dropped, errors, reconnects.
    pub fn stats(&self) -> TransportStats {
        self.core.counters.snapshot()
    }

    async fn start(&self, inbound: Inbound) -> Result<(), TransportError> {
        self.core.check_startable("nats")?;
        let connect_error = |source: BoxError| self.core.connect_error(source);
        let counters = self.core.counters.clone();
        let connected_once = Arc::new(AtomicBool::new(false));
        let options = async_nats::ConnectOptions::new()
            .name(format!("asena-{}", self.core.pod_id))
            .no_echo()
            .connection_timeout(CONNECT_TIMEOUT)
            .max_reconnects(None)
            .reconnect_delay_callback(Backoff::delay)
            .event_callback(move |event| {
                let counters = counters.clone();
                let connected_once = connected_once.clone();
                async move { on_event(event, &counters, &connected_once) }
            });
        let client = tokio::time::timeout(CONNECT_TIMEOUT, options.connect(self.core.url.as_str()))
            .await
            .map_err(|e| connect_error(Box::new(e)))?
            .map_err(|e| connect_error(Box::new(e)))?;
        let subscribed = async {
            let sub = client.subscribe(self.core.channel.clone()).await?;
            confirm_subscription(&client, &self.core.channel, &self.core.pod_id).await?;
            Ok::<_, BoxError>(sub)
        };
        let subscriber = match tokio::time::timeout(CONNECT_TIMEOUT, subscribed).await {
            Ok(Ok(sub)) => sub,
            Ok(Err(e)) => {
                let _ = client.drain().await;
                return Err(connect_error(e));
            }
            Err(e) => {
                let _ = client.drain().await;
                return Err(connect_error(Box::new(e)));
            }
        };

        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let pub_task = tokio::spawn(publisher(
            client.clone(),
            self.core.channel.clone(),
            self.core.pod_id.clone(),
            self.core.counters.clone(),
            rx,
            shutdown_rx.clone(),
        ));
        let pod_id = self.core.pod_id.clone();
        let counters = self.core.counters.clone();
        let mut shutdown_sub = shutdown_rx;
        let mut subscriber = subscriber;
        let sub_task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown_sub.changed() => return,
                    msg = subscriber.next() => match msg {
                        Some(msg) => handle_incoming(&msg.payload, &pod_id, &inbound, &counters, "nats"),
                        None => return,
                    }
                }
            }
        });
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        *running = Some(Running {
            client,
            shutdown,
            tasks: vec![pub_task, sub_task],
        });
        let _ = self.core.queue.set(tx);
        tracing::info!(target: "asena::transport", transport = "nats", url = %self.core.url, pod_id = %self.core.pod_id, "connected");
        Ok(())
    }
}

/// Waits until the server has processed our SUB, so messages other instances publish once
/// `init` returned are not missed. `flush` only writes the socket; a request to a subject
/// nobody serves is a real round trip on this connection, answered with "no responders"
/// after everything sent before it.
async fn confirm_subscription(
    client: &async_nats::Client,
    subject: &str,
    pod_id: &str,
) -> Result<(), BoxError> {
    use async_nats::RequestErrorKind;
    let probe = client.request(format!("{subject}.ready.{pod_id}"), Bytes::new());
    match tokio::time::timeout(CONNECT_TIMEOUT, probe).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.kind() == RequestErrorKind::NoResponders => Ok(()),
        Ok(Err(e)) => Err(Box::new(e)),
        Err(e) => Err(Box::new(e)),
    }
}

fn on_event(event: async_nats::Event, counters: &Counters, connected_once: &AtomicBool) {
    match event {
        async_nats::Event::Connected => {
            if connected_once.swap(true, Ordering::AcqRel) {
                Counters::add(&counters.reconnects, 1);
                tracing::info!(target: "asena::transport", transport = "nats", "reconnected");
            }
        }
        async_nats::Event::Disconnected => {
            Counters::add(&counters.errors, 1);
            tracing::warn!(target: "asena::transport", transport = "nats", "disconnected; reconnecting");
        }
        async_nats::Event::ClientError(error) => {
            Counters::add(&counters.errors, 1);
            tracing::warn!(target: "asena::transport", transport = "nats", %error, "client error");
        }
        async_nats::Event::ServerError(error) => {
            Counters::add(&counters.errors, 1);
            tracing::warn!(target: "asena::transport", transport = "nats", %error, "server error");
        }
        async_nats::Event::SlowConsumer(_) => {
            Counters::add(&counters.errors, 1);
            tracing::warn!(target: "asena::transport", transport = "nats", "slow consumer: messages from other instances were dropped");
        }
        other => {
            tracing::debug!(target: "asena::transport", transport = "nats", event = %other, "event");
        }
    }
}

async fn publisher(
    client: async_nats::Client,
    subject: String,
    pod_id: String,
    counters: Arc<Counters>,
    mut rx: mpsc::Receiver<Outbound>,
    mut shutdown: watch::Receiver<bool>,
) {
    let subject = async_nats::Subject::from(subject);
    let send = |msg: Outbound| {
        let client = &client;
        let subject = &subject;
        let counters = &counters;
        let body = Bytes::from(encode_outbound(&msg, &pod_id));
        async move {
            match client.publish(subject.clone(), body).await {
                Ok(()) => Counters::add(&counters.published, 1),
                Err(error) => {
                    Counters::add(&counters.errors, 1);
                    Counters::add(&counters.dropped, 1);
                    tracing::warn!(target: "asena::transport", transport = "nats", %error, "publish failed");
                }
            }
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            msg = rx.recv() => match msg {
                Some(msg) => send(msg).await,
                None => return,
            }
        }
    }
    // Flush what is already queued (e.g. messages from on_close handlers).
    rx.close();
    let flush = async {
        while let Some(msg) = rx.recv().await {
            send(msg).await;
        }
        client.flush().await
    };
    if !matches!(tokio::time::timeout(FLUSH_TIMEOUT, flush).await, Ok(Ok(()))) {
        tracing::warn!(target: "asena::transport", transport = "nats", "could not flush queued messages on shutdown");
    }
}

impl Transport for NatsTransport {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn init(&self, inbound: Inbound) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(self.start(inbound))
    }

    fn stats(&self) -> Option<TransportStats> {
        Some(self.core.counters.snapshot())
    }

    fn publish(&self, message: Outbound) {
        enqueue(self.core.queue.get(), &self.core.counters, "nats", message);
    }

    fn destroy(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.core.destroyed.store(true, Ordering::Release);
            let running = self
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            let Some(running) = running else { return };
            stop_tasks(
                &running.shutdown,
                running.tasks,
                FLUSH_TIMEOUT + Duration::from_secs(1),
            )
            .await;
            // Drain closes the connection once pending messages are out.
            let _ = running.client.drain().await;
            drop(running.client);
            tracing::info!(target: "asena::transport", transport = "nats", pod_id = %self.core.pod_id, "disconnected");
        })
    }
}
