//! [`Emitter`]: publishing into a fleet from a process that runs no server.

// Without any broker feature an emitter cannot exist, and most of this file goes unused.
#![cfg_attr(
    not(any(feature = "redis", feature = "nats")),
    allow(dead_code, unreachable_code, unused_imports, unused_variables)
)]

use asena_protocol::managed::{EMITTER_SERVER_ID, ManagedEnvelope};

use super::TransportError;
use super::broker::{CONNECT_TIMEOUT, new_pod_id};
use crate::channel::EventMessage;
use crate::channel::Raw;
use crate::codec::{Frame, IntoFrame};
use crate::error::BoxError;
use crate::wire::{self, Envelope};

/// A connection to the Redis at `url`, within [`CONNECT_TIMEOUT`].
#[cfg(feature = "redis")]
async fn redis_connect(url: &str) -> Result<::redis::aio::MultiplexedConnection, TransportError> {
    let client =
        ::redis::Client::open(url).map_err(|_| TransportError::InvalidUrl(url.to_owned()))?;
    let config = ::redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(CONNECT_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| TransportError::Connect {
            url: url.to_owned(),
            source: Box::new(e),
        })
}

/// The topic prefix of the namespace at `path`, refused when the path cannot name one
/// ([`wire::is_namespace_path`]).
fn checked_namespace(path: &str) -> Result<&str, TransportError> {
    if wire::is_namespace_path(path) {
        Ok(wire::namespace_topic(path))
    } else {
        Err(TransportError::Other(
            format!("{:?} is not a namespace path: it holds a `.`", short(path)).into(),
        ))
    }
}

/// At most 64 characters of a name, for an error message.
fn short(name: &str) -> String {
    name.chars().take(64).collect()
}

/// A managed message's event and `data`.
fn to_event(
    message: impl EventMessage<Raw>,
) -> Result<(String, serde_json::Value), TransportError> {
    message
        .into_event()
        .map_err(|e| TransportError::Other(Box::new(e)))
}

/// Where [`Emitter::send`] sends.
enum Destination<'a> {
    /// The fleet's channel (Redis) or subject (NATS).
    Fleet,
    /// A named channel of the managed layout.
    Channel(&'a str),
}

enum Backend {
    #[cfg(feature = "redis")]
    Redis(::redis::aio::MultiplexedConnection),
    #[cfg(feature = "nats")]
    Nats(async_nats::Client),
    /// No broker feature is enabled: an emitter cannot exist.
    #[cfg(not(any(feature = "redis", feature = "nats")))]
    None(std::convert::Infallible),
}

/// Publishes into a fleet from a process that runs no server (a worker, a cron job, a CLI).
///
/// The emitter speaks the transports' wire format over Redis (`redis://…`) or NATS
/// (`nats://…`), with its own random pod id, so every instance delivers its messages to its
/// local sockets.
///
/// Asena services are reached with [`to_room`](Emitter::to_room),
/// [`broadcast`](Emitter::broadcast) and [`to_socket`](Emitter::to_socket) (or a raw
/// [`publish`](Emitter::publish)); managed services (Ignis's layout, see
/// [`envelope`](crate::managed::envelope)) with the same verbs on
/// [`emitter.managed(prefix)`](Emitter::managed): `to_room`, `broadcast`, `to_client` and
/// `to_user`, over Redis or NATS, published with the `serverId`
/// [`EMITTER_SERVER_ID`](crate::managed::envelope::EMITTER_SERVER_ID).
///
/// ```no_run
/// # async fn run() -> Result<(), asena_runtime::transport::TransportError> {
/// use asena_runtime::transport::Emitter;
/// let emitter = Emitter::connect("redis://127.0.0.1:6379").await?;
/// emitter
///     .to_room("/chat", "general", r#"{"type":"announcement","message":"hi"}"#)
///     .await?;
/// emitter.close().await;
/// # Ok(())
/// # }
/// ```
pub struct Emitter {
    backend: Backend,
    pod_id: String,
    channel: String,
    /// Its name in logs (Ignis's `identifier`).
    identifier: Option<String>,
}

/// An emitter's name in its logs when it was given none (Ignis's).
const DEFAULT_IDENTIFIER: &str = "WebSocketEmitter";

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.backend {
            #[cfg(feature = "redis")]
            Backend::Redis(_) => "redis",
            #[cfg(feature = "nats")]
            Backend::Nats(_) => "nats",
            #[cfg(not(any(feature = "redis", feature = "nats")))]
            Backend::None(n) => match *n {},
        };
        f.debug_struct("Emitter")
            .field("backend", &kind)
            .field("pod_id", &self.pod_id)
            .field("channel", &self.channel)
            .field("identifier", &self.identifier)
            .finish()
    }
}

impl Emitter {
    /// Connects to the broker at `url` (`redis://…`, `redis-cluster://host:port,host:port`
    /// or `nats://…`).
    pub async fn connect(url: &str) -> Result<Emitter, TransportError> {
        let (backend, channel): (Backend, &str) =
            if url.starts_with("redis://") || url.starts_with("rediss://") {
                #[cfg(feature = "redis")]
                {
                    let conn = redis_connect(url).await?;
                    (Backend::Redis(conn), wire::REDIS_CHANNEL)
                }
                #[cfg(not(feature = "redis"))]
                return Err(TransportError::InvalidUrl(url.to_owned()));
            } else if let Some(nodes) = url.strip_prefix("redis-cluster://") {
                // A fleet on a Redis Cluster hears the fleet channel's classic pub/sub, which
                // any node passes on to the others: the first node that answers will do.
                #[cfg(feature = "redis")]
                {
                    let mut last = TransportError::InvalidUrl(url.to_owned());
                    let mut connected = None;
                    for node in nodes.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                        match redis_connect(&format!("redis://{node}")).await {
                            Ok(conn) => {
                                connected = Some(conn);
                                break;
                            }
                            Err(error) => last = error,
                        }
                    }
                    (Backend::Redis(connected.ok_or(last)?), wire::REDIS_CHANNEL)
                }
                #[cfg(not(feature = "redis"))]
                {
                    let _ = nodes;
                    return Err(TransportError::InvalidUrl(url.to_owned()));
                }
            } else if url.starts_with("nats://") {
                #[cfg(feature = "nats")]
                {
                    let connect_err = |source: BoxError| TransportError::Connect {
                        url: url.to_owned(),
                        source,
                    };
                    let client = tokio::time::timeout(
                        CONNECT_TIMEOUT,
                        async_nats::ConnectOptions::new()
                            .connection_timeout(CONNECT_TIMEOUT)
                            .name("asena-emitter")
                            .connect(url),
                    )
                    .await
                    .map_err(|e| connect_err(Box::new(e)))?
                    .map_err(|e| connect_err(Box::new(e)))?;
                    (Backend::Nats(client), wire::NATS_SUBJECT)
                }
                #[cfg(not(feature = "nats"))]
                return Err(TransportError::InvalidUrl(url.to_owned()));
            } else {
                return Err(TransportError::InvalidUrl(url.to_owned()));
            };
        Ok(Emitter {
            backend,
            pod_id: new_pod_id(),
            channel: channel.to_owned(),
            identifier: None,
        })
    }

    /// Publishes on `channel` (the Redis channel or NATS subject) instead of the default
    /// ([`wire::REDIS_CHANNEL`], [`wire::NATS_SUBJECT`]); it must be the one the fleet's
    /// transports use.
    pub fn channel(mut self, channel: impl Into<String>) -> Emitter {
        self.channel = channel.into();
        self
    }

    /// Names this emitter in its logs (Ignis's `identifier`, `WebSocketEmitter` when none
    /// is given). Only a log scope: the envelopes it publishes to managed services carry the
    /// `serverId` [`EMITTER_SERVER_ID`](crate::managed::envelope::EMITTER_SERVER_ID), as
    /// Ignis's do, and its pod id stays random.
    pub fn identifier(mut self, identifier: impl Into<String>) -> Emitter {
        self.identifier = Some(identifier.into());
        self
    }

    /// This emitter's pod id (the `o` of its envelopes).
    pub fn pod_id(&self) -> &str {
        &self.pod_id
    }

    /// Sends to every member of `room` of the namespace at `namespace` (e.g. `/chat`), on
    /// every instance. The room is checked as `Namespace::to` checks it: a reserved name
    /// (the broadcast room `__` among them) is refused; [`broadcast`](Self::broadcast) is the
    /// broadcast.
    pub async fn to_room(
        &self,
        namespace: &str,
        room: &str,
        message: impl IntoFrame,
    ) -> Result<(), TransportError> {
        let namespace = checked_namespace(namespace)?;
        crate::rooms::validate_target(room)
            .map_err(|e| TransportError::Other(format!("room {:?}: {e}", short(room)).into()))?;
        self.publish(&wire::room_topic(namespace, room), message)
            .await
    }

    /// Sends to one socket by id (a UUID), on whichever instance holds it.
    pub async fn to_socket(
        &self,
        namespace: &str,
        id: &str,
        message: impl IntoFrame,
    ) -> Result<(), TransportError> {
        let namespace = checked_namespace(namespace)?;
        if uuid::Uuid::try_parse(id).is_err() {
            return Err(TransportError::Other(
                format!("{:?} is not a socket id", short(id)).into(),
            ));
        }
        self.publish(&wire::room_topic(namespace, id), message)
            .await
    }

    /// Sends to every socket of the namespace at `namespace`, on every instance.
    pub async fn broadcast(
        &self,
        namespace: &str,
        message: impl IntoFrame,
    ) -> Result<(), TransportError> {
        let namespace = checked_namespace(namespace)?;
        self.publish(&wire::broadcast_topic(namespace), message)
            .await
    }

    /// Publishes `message` under a raw topic (see [`wire`] for the scheme). Returns once the
    /// broker has the message.
    pub async fn publish(
        &self,
        topic: &str,
        message: impl IntoFrame,
    ) -> Result<(), TransportError> {
        let frame: Frame = message
            .into_frame()
            .map_err(|e| TransportError::Other(Box::new(e)))?;
        let trace = crate::trace::hop(topic);
        let body = Envelope::encode(
            topic,
            frame.payload(),
            !frame.is_text(),
            &self.pod_id,
            trace,
        );
        self.send(Destination::Fleet, body).await
    }

    /// Sends `body` on the fleet's channel (or subject), or on a named channel; returns once
    /// the broker has it.
    async fn send(&self, to: Destination<'_>, body: Vec<u8>) -> Result<(), TransportError> {
        let failed = |e: BoxError| TransportError::Other(e);
        match &self.backend {
            #[cfg(feature = "redis")]
            Backend::Redis(conn) => {
                let channel = match to {
                    Destination::Fleet => self.channel.as_str(),
                    Destination::Channel(named) => named,
                };
                let mut conn = conn.clone();
                ::redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(body)
                    .query_async::<i64>(&mut conn)
                    .await
                    .map_err(|e| failed(Box::new(e)))?;
            }
            #[cfg(feature = "nats")]
            Backend::Nats(client) => {
                let subject = match to {
                    Destination::Fleet => self.channel.clone(),
                    Destination::Channel(named) => wire::nats_channel_subject(&self.channel, named)
                        .ok_or_else(|| {
                            TransportError::Other(
                                format!(
                                    "{:?} has no prefix or is too long for a NATS subject",
                                    short(named)
                                )
                                .into(),
                            )
                        })?,
                };
                client
                    .publish(subject, bytes::Bytes::from(body))
                    .await
                    .map_err(|e| failed(Box::new(e)))?;
                client.flush().await.map_err(|e| failed(Box::new(e)))?;
            }
            #[cfg(not(any(feature = "redis", feature = "nats")))]
            Backend::None(n) => match *n {},
        }
        Ok(())
    }

    /// The managed services under the channel prefix `prefix` (Ignis's layout, `ws` for a
    /// service with the default [`ManagedOptions::channel_prefix`](crate::managed::ManagedOptions::channel_prefix),
    /// [`DEFAULT_PREFIX`](crate::managed::envelope::DEFAULT_PREFIX)): the same verbs as
    /// the Asena services' sends of this emitter and as [`Managed`](crate::managed::Managed),
    /// `to_room`, `broadcast`, `to_client`, `to_user`.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), asena_runtime::transport::TransportError> {
    /// use asena_runtime::transport::Emitter;
    /// let emitter = Emitter::connect("redis://127.0.0.1:6379").await?;
    /// let managed = emitter.managed("ws");
    /// managed.to_user("u-42", ("notification", serde_json::json!({"message": "ready"}))).await?;
    /// managed.to_room("lobby", ("update", 42.5), &["client-to-skip"]).await?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "WebSocketEmitter")]
    pub fn managed<'a>(&'a self, prefix: &'a str) -> ManagedEmitter<'a> {
        ManagedEmitter {
            emitter: self,
            prefix,
        }
    }

    /// Publishes a managed envelope on its channel under `prefix`; returns once the broker
    /// has it.
    async fn publish_managed(
        &self,
        prefix: &str,
        operation: &'static str,
        envelope: ManagedEnvelope,
    ) -> Result<(), TransportError> {
        let channel = envelope.channel_under(prefix);
        let envelope = ManagedEnvelope {
            traceparent: crate::trace::hop(&channel),
            ..envelope
        };
        self.send(
            Destination::Channel(&channel),
            envelope.encode().into_bytes(),
        )
        .await?;
        tracing::debug!(
            target: "asena::transport",
            identifier = self.identifier.as_deref().unwrap_or(DEFAULT_IDENTIFIER),
            operation,
            channel = %short(&channel),
            "emitted a managed message"
        );
        Ok(())
    }

    /// Flushes and disconnects.
    pub async fn close(self) {
        match self.backend {
            #[cfg(feature = "redis")]
            Backend::Redis(conn) => drop(conn),
            #[cfg(feature = "nats")]
            Backend::Nats(client) => {
                let _ = client.flush().await;
                let _ = client.drain().await;
            }
            #[cfg(not(any(feature = "redis", feature = "nats")))]
            Backend::None(n) => match n {},
        }
    }
}

/// An [`Emitter`]'s sends to the managed services under one channel prefix (Ignis's
/// `WebSocketEmitter`), from [`Emitter::managed`]. Messages are `(event, data)` pairs, as
/// for an untyped [`Managed`](crate::managed::Managed). Each send returns once the broker
/// has the message; every instance delivers it to its matching authenticated clients.
#[derive(Debug, Clone, Copy)]
pub struct ManagedEmitter<'a> {
    emitter: &'a Emitter,
    prefix: &'a str,
}

impl ManagedEmitter<'_> {
    /// To one client, on whichever instance holds it (`{prefix}:client:{id}`).
    #[doc(alias = "toClient")]
    pub async fn to_client(
        &self,
        client_id: &str,
        message: impl EventMessage<Raw>,
    ) -> Result<(), TransportError> {
        self.publish("to_client", message, |event, data| {
            ManagedEnvelope::client(EMITTER_SERVER_ID, client_id, event, data)
        })
        .await
    }

    /// To every session of a user, on every instance (`{prefix}:user:{id}`), as Ignis's
    /// `WebSocketEmitter.toUser`. (Ignis's server-side `sendToUser` is local to its
    /// instance; [`Managed::to_local_user`](crate::managed::Managed::to_local_user) is that
    /// one.)
    #[doc(alias = "toUser")]
    #[doc(alias = "sendToUser")]
    pub async fn to_user(
        &self,
        user_id: &str,
        message: impl EventMessage<Raw>,
    ) -> Result<(), TransportError> {
        self.publish("to_user", message, |event, data| {
            ManagedEnvelope::user(EMITTER_SERVER_ID, user_id, event, data)
        })
        .await
    }

    /// To the members of `room`, on every instance, except the client ids in `exclude`
    /// (`{prefix}:room:{room}`).
    #[doc(alias = "toRoom")]
    pub async fn to_room(
        &self,
        room: &str,
        message: impl EventMessage<Raw>,
        exclude: &[&str],
    ) -> Result<(), TransportError> {
        self.publish("to_room", message, |event, data| {
            ManagedEnvelope::room(EMITTER_SERVER_ID, room, event, data, exclude)
        })
        .await
    }

    /// To every authenticated client, on every instance, except the client ids in `exclude`
    /// (`{prefix}:broadcast`).
    pub async fn broadcast(
        &self,
        message: impl EventMessage<Raw>,
        exclude: &[&str],
    ) -> Result<(), TransportError> {
        self.publish("broadcast", message, |event, data| {
            let mut envelope = ManagedEnvelope::broadcast(EMITTER_SERVER_ID, event, data);
            envelope.exclude =
                (!exclude.is_empty()).then(|| exclude.iter().map(|&id| id.to_owned()).collect());
            envelope
        })
        .await
    }

    /// The channel prefix it sends under.
    pub fn prefix(&self) -> &str {
        self.prefix
    }

    /// Publishes `message` in the envelope `wrap` makes of its event and data; `operation`
    /// names the send in the log.
    async fn publish(
        &self,
        operation: &'static str,
        message: impl EventMessage<Raw>,
        wrap: impl FnOnce(String, serde_json::Value) -> ManagedEnvelope,
    ) -> Result<(), TransportError> {
        let (event, data) = to_event(message)?;
        self.emitter
            .publish_managed(self.prefix, operation, wrap(event, data))
            .await
    }
}
