//! The protocol layer: what a connection of a service does with the messages its client
//! sends, and what happens around them.
//!
//! Every `#[websocket]` struct is an [`Endpoint`]: a [`Channel`] (path, parameters, what it
//! receives and sends) plus the [`Protocol`] its connections speak, chosen where it is
//! declared:
//!
//! | declared as | protocol | the service implements |
//! |---|---|---|
//! | `#[websocket(path = "..")]` | [`ChannelProtocol`]: each message decoded into the channel's `In` (raw [`Message`], JSON, or a typed, validated message) | [`WebSocketService`] |
//! | `#[websocket(path = "..", managed)]` | [`ManagedProtocol`](crate::managed::ManagedProtocol): authentication after open, heartbeats, users, validated joins, encryption | [`ManagedService`](crate::managed::ManagedService) |
//!
//! The reader loop (`ws/run.rs`) calls the protocol's functions and nothing else: a protocol
//! is a type implementing [`Protocol<S>`] for the services it serves, and the two above are
//! its two implementations.

use std::future::Future;
use std::sync::Arc;

use crate::ack;
use crate::asyncapi::{self, ChannelSpec};
use crate::channel::{Channel, Receives};
use crate::codec::Message;
use crate::error::Result;
use crate::namespace::{Namespace, Socket, WebSocketData};
use crate::transport::{Hears, Listener, Listeners, Transport, Weakly, is_channel_prefix};

use crate::service::WebSocketService;

/// A `#[websocket]` struct: its channel and the protocol its connections speak. The macro
/// implements it; see the [module docs](self).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a websocket endpoint",
    label = "not a `#[websocket]` struct",
    note = "declare it with `#[websocket(path = \"..\")]` and `impl WebSocketService for {Self}`, or `#[websocket(path = \"..\", managed)]` and `impl ManagedService for {Self}`",
    note = "`Ulak<N>` sends to the sockets of a websocket service `N`; to call a `#[service]`, inject `Arc<{Self}>` instead"
)]
pub trait Endpoint: Channel + Sized + Send + Sync + 'static {
    /// The protocol of the endpoint's connections.
    type Protocol: Protocol<Self>;
}

/// The connection state a service `S` gets in its handlers: `ws.data().values`.
pub type DataOf<S> = <<S as Endpoint>::Protocol as Protocol<S>>::Data;

// The connection state is the protocol's (`Protocol::Data`), so its accessor is defined
// here, where a service's protocol is known.
impl<S: Endpoint> Socket<S> {
    /// The connection's state, id and path: for a [`WebSocketService`] the `Data` that
    /// middleware stored (`Data::default()` when none did), for a managed service its
    /// [`ManagedClient`](crate::managed::ManagedClient).
    pub fn data(&self) -> &WebSocketData<DataOf<S>> {
        self.as_socket_ref()
            .conn
            .data
            .downcast_ref::<WebSocketData<DataOf<S>>>()
            .expect("invariant: a Socket<S> is only made over a connection S's upgrade admitted")
    }
}

/// How the connections of a service `S` handle what their clients send (see the [module
/// docs](self)). The reader loop calls `open` once, `receive` for each message in order
/// (never two at once), `drain` when a full send queue emptied, and `close` once at the end;
/// `start` and `stop` run once per app, around every connection.
///
/// A function that fails (or panics) has the same effect whichever protocol it belongs to:
/// the client receives the protocol's [`FAILURE`](Self::FAILURE) message (through the same
/// path as the service's own sends, so an encrypted managed client gets it sealed) and, after
/// `open` or `receive`, the socket closes with 1011.
pub trait Protocol<S: Channel>: Sized + Send + Sync + 'static {
    /// The state each connection keeps, reached as `ws.data().values`. For
    /// [`ChannelProtocol`] it is what middleware stored (the service's
    /// [`WebSocketService::Data`]).
    type Data: Default + Send + Sync + 'static;

    /// The subprotocols (`Sec-WebSocket-Protocol`) the service speaks; see
    /// [`WebSocketService::PROTOCOLS`].
    const SUBPROTOCOLS: &'static [&'static str] = &[];

    /// Whether a client must offer one of [`SUBPROTOCOLS`](Self::SUBPROTOCOLS); see
    /// [`WebSocketService::REQUIRE_PROTOCOL`].
    const REQUIRE_SUBPROTOCOL: bool = false;

    /// What a client receives when one of this protocol's functions fails:
    /// `{"type":"error","message":"Server error occurred"}` (Asena's shape) unless the
    /// protocol says otherwise. Fixed text: a failure's details stay in the server's log.
    const FAILURE: &'static str = r#"{"type":"error","message":"Server error occurred"}"#;

    /// What the live inspector shows of a connection's state: a JSON object with its
    /// `type` name. [`ChannelProtocol`] adds the `values` the service opts in to show
    /// ([`WebSocketService::inspect`]); the managed protocol its client's `user` and `state`.
    fn inspect(data: &Self::Data) -> serde_json::Value {
        let _ = data;
        serde_json::json!({ "type": std::any::type_name::<Self::Data>() })
    }

    /// The app was built: the service's namespace exists, no connection is accepted yet.
    /// Failing fails the build (every service started before is stopped again).
    fn start(
        service: &S,
        ns: &Namespace,
        fleet: &Fleet,
    ) -> impl Future<Output = Result<()>> + Send {
        let _ = (service, ns, fleet);
        async { Ok(()) }
    }

    /// The app shuts down: every connection has closed.
    fn stop(service: &S, ns: &Namespace) -> impl Future<Output = ()> + Send {
        let _ = (service, ns);
        async {}
    }

    /// A connection opened (after every middleware passed); finishes before `receive` is
    /// first called.
    fn open(service: &S, ws: &Socket<S>) -> impl Future<Output = Result<()>> + Send;

    /// What the protocol adds to the AsyncAPI document of a service that speaks it: its own
    /// messages, replies and close codes (`spec` already holds the service's channel).
    fn describe(spec: &mut ChannelSpec) {
        let _ = spec;
    }

    /// A complete message arrived.
    fn receive(
        service: &S,
        ws: &Socket<S>,
        message: Message,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The connection's send queue drained after being more than half full.
    fn drain(service: &S, ws: &Socket<S>) -> impl Future<Output = ()> + Send;

    /// The connection closed with `code` (1006 when the peer vanished); it has left every
    /// room.
    fn close(
        service: &S,
        ws: &Socket<S>,
        code: u16,
        reason: &str,
    ) -> impl Future<Output = ()> + Send;
}

/// The protocol of plain `#[websocket]` services: every message is decoded into the
/// channel's `In` ([`Message`] for raw services, which costs nothing) and handed to
/// [`WebSocketService::on_message`], or the decode error to
/// [`on_invalid`](WebSocketService::on_invalid).
#[derive(Debug, Clone, Copy)]
pub enum ChannelProtocol {}

impl<S: WebSocketService> Protocol<S> for ChannelProtocol {
    type Data = S::Data;
    const SUBPROTOCOLS: &'static [&'static str] = S::PROTOCOLS;
    const REQUIRE_SUBPROTOCOL: bool = S::REQUIRE_PROTOCOL;

    fn inspect(data: &S::Data) -> serde_json::Value {
        let mut shown = serde_json::json!({ "type": std::any::type_name::<S::Data>() });
        if let Some(values) = S::inspect(data) {
            shown["values"] = values;
        }
        shown
    }

    fn open(service: &S, ws: &Socket<S>) -> impl Future<Output = Result<()>> + Send {
        service.on_open(ws)
    }

    /// A typed service sends the framework's `error` frame beside its own messages (a raw
    /// one's untyped message covers it), and answers the requests it lists in
    /// [`WebSocketService::REPLIES`].
    fn describe(spec: &mut ChannelSpec) {
        if spec.sends.is_some() {
            spec.protocol.sends.push(asyncapi::error_message());
        }
        spec.replies = S::REPLIES
            .iter()
            .map(|(request, answer)| ((*request).to_owned(), (*answer).to_owned()))
            .collect();
        S::ANSWERS.describe(spec);
    }

    /// A reply to a request of the server (only on a socket it asked something) goes to
    /// that request; a request of the client (only for a service that answers them) to
    /// [`Answer::on_request`](crate::ack::Answer::on_request); see [`crate::ack`].
    async fn receive(service: &S, ws: &Socket<S>, message: Message) -> Result<()> {
        if ack::take_reply(&ws.conn, message.as_bytes()) {
            return Ok(());
        }
        if let Some(answer) = S::ANSWERS.answer
            && asena_protocol::ack::is_request(message.as_bytes())
            && let Some(answered) = ack::answer_request(service, ws, answer, &message).await
        {
            return answered;
        }
        match S::In::decode(message) {
            Ok(message) => service.on_message(ws, message).await,
            Err(error) => {
                ws.conn.shared.stats.record_invalid_message();
                tracing::debug!(
                    target: "asena::ws",
                    socket_id = %ws.id(),
                    path = %ws.path(),
                    code = error.kind().code(),
                    %error,
                    "message did not decode"
                );
                service.on_invalid(ws, error).await
            }
        }
    }

    fn drain(service: &S, ws: &Socket<S>) -> impl Future<Output = ()> + Send {
        service.on_drain(ws)
    }

    fn close(
        service: &S,
        ws: &Socket<S>,
        code: u16,
        reason: &str,
    ) -> impl Future<Output = ()> + Send {
        ack::closed(&ws.conn);
        service.on_close(ws, code, reason)
    }
}

/// What the app hands [`Protocol::start`]: the transport between its instances, where a
/// protocol may listen to channels of its own layout.
#[derive(Clone)]
pub struct Fleet {
    transport: Arc<dyn Transport>,
    listeners: Listeners,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("transport", &self.transport.name())
            .finish_non_exhaustive()
    }
}

impl Fleet {
    pub(crate) fn new(transport: Arc<dyn Transport>) -> Fleet {
        Fleet {
            transport,
            listeners: Listeners::default(),
        }
    }

    /// The listeners added so far, for the transport's [`Inbound`](crate::transport::Inbound).
    pub(crate) fn listeners(&self) -> Listeners {
        self.listeners.clone()
    }

    /// The transport between the app's instances ([`LocalTransport`](crate::transport::LocalTransport)
    /// for a single instance). It starts after every protocol did.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// Hands `listener` every message on the channels `<prefix>:…`
    /// ([`Route::Channel`](crate::transport::Route::Channel)) from every instance, for the
    /// service named `service`. Fails when the prefix is not a
    /// [channel prefix](crate::transport::is_channel_prefix), or another service already
    /// listens under it (each would hear the other's messages; the error names both).
    pub fn listen(
        &self,
        prefix: &str,
        service: &'static str,
        listener: Arc<dyn Listener>,
    ) -> Result<()> {
        if !is_channel_prefix(prefix) {
            return Err(format!(
                "{service}: the channel prefix {prefix:?} must be 1 to 64 ASCII letters, digits, `-` or `_`"
            )
            .into());
        }
        self.listeners.add(prefix, service, listener).map_err(|other| {
            format!(
                "the services {other} and {service} both use the channel prefix `{prefix}` on one transport, so each would hear the other's messages: give one of them its own prefix (`ManagedOptions::channel_prefix`)"
            )
            .into()
        })
    }

    /// [`listen`](Self::listen) for a layer of the runtime that the listener must not keep
    /// alive (presence, history), named `service`: the transport it may publish on, or
    /// `None` on a single instance, where there is nothing to listen to.
    pub(crate) fn listen_weakly<T: Hears>(
        &self,
        prefix: &str,
        service: &'static str,
        layer: &Arc<T>,
    ) -> Result<Option<Arc<dyn Transport>>> {
        if self.transport.is_local() {
            return Ok(None);
        }
        self.listen(
            prefix,
            service,
            Arc::new(Weakly(Arc::downgrade(layer), service)),
        )?;
        Ok(Some(self.transport.clone()))
    }
}
