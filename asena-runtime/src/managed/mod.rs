//! The managed protocol (Ignis's model), opt-in per service: clients authenticate after the
//! socket opens, keep the connection alive with heartbeats, ask to join rooms (which the
//! service validates), and are reachable by client, user, room or broadcast on every
//! instance.
//!
//! A service declared `#[websocket(path = "..", managed)]` speaks it, and implements
//! [`ManagedService`] instead of `WebSocketService`. The wire, both ways, is the envelope
//! `{"event": string, "data"?: any, "id"?: string}`. A client's `id` names its request: the
//! server's answer to that message (`connected`, `join`, `leave`, or the `error` it caused)
//! carries the same `id`, so a client can tell which request it answers (Ignis leaves `id`
//! to the application; sends from the service never carry one):
//!
//! | event | direction | data |
//! |---|---|---|
//! | `encrypt` | client → server | `{"publicKey"}`: asks for encryption; the client's first message ([`crypto`] has the protocol) |
//! | `encrypted` | server → client | `{"serverPublicKey", "salt"}`: the answer to `encrypt`, the last plain message |
//! | `encrypted` | both | `{"iv", "payload"}`: any other message, sealed, once a key is agreed |
//! | `authenticate` | client → server | the credentials, handed to [`ManagedService::authenticate`] |
//! | `connected` | server → client | `{"id", "userId", "time"}` after authenticating (plus what the service's [`handshake`](ManagedService::handshake) agreed) |
//! | `heartbeat` | client → server | — (only keeps the client alive) |
//! | `join` / `leave` | both | `{"rooms": [..]}`; the answer lists the rooms joined or left |
//! | `error` | server → client | `{"message"}` |
//! | `disconnect` | client → server | — (closes with 1000) |
//! | `disconnect` | server → client | `{"reason"}`: [`Managed::disconnect`], then the server closes with 1000 and the reason |
//! | `ack` | both | the reply to a request, with its `id`: `data`, or `error` `{"code","message"}` ([`crate::ack`]; from a client, only when the server asked it something) |
//! | anything else | both | application events: `receives` / `sends` of the service; with an `id`, a request when the service answers requests ([`crate::ack`]) |
//!
//! Close codes ([`close`]): 4001 no `authenticate` within the authentication timeout (or the
//! authenticator and handshake took three times as long), 4002 no message within the
//! heartbeat timeout (checked at the deadline, or on [`ManagedOptions::heartbeat_interval`]),
//! 4003 authentication refused or failed, 4004 encryption required (the first message was
//! not `encrypt` while [`ManagedOptions::require_encryption`] is set, its `publicKey` is
//! malformed, or the service's [`handshake`](ManagedService::handshake) declined), 4005 a
//! message from an encrypting client that is not the next sealed one (plain, replayed,
//! reordered, reflected, truncated or tampered), 1001 shutdown.
//!
//! A client that wants encryption sends `encrypt` with its P-256 public key before anything
//! else; the server answers `encrypted` with its own and a salt, both derive a key per
//! direction, and from then on every message both ways is `encrypted`, credentials
//! included. [`ManagedClient::is_encrypted`] tells which kind a client is. The other members
//! of a room keep sharing one plain frame.
//!
//! Nothing reaches a client before it authenticates but the protocol's own events (the key
//! agreement, `connected`, `error`): room, broadcast, user and socket sends, `Ulak`, other
//! instances and emitters skip it. Every message to a client, from any of these paths,
//! passes through its gate: withheld before authentication, sealed for an encrypted client,
//! rewritten for a client with an [`OutboundTransform`].
//!
//! Ignis's looser key exchange (`publicKey` inside `authenticate`, `connected` with the
//! server's key in plain text, one key, no counter) is available as an explicit opt-in,
//! [`ManagedOptions::ignis_key_exchange`], for Ignis's own clients.
//!
//! A client's view ([`ManagedClient`]) tells when it connected and was last heard from, and
//! whether its send queue is past its high-water mark ([`ManagedClient::is_backpressured`]);
//! [`ManagedService::on_drain`] runs when such a queue drained (Ignis's `drain`). The
//! service's [`ManagedOptions`] carry Ignis's other settings: `heartbeatInterval`,
//! `identifier`, the service-wide `outboundTransformer`, and [`ManagedOptions::ignis`]
//! Ignis's default rooms (`ws-default`, `ws-notification`). Ignis's `encryptedBatchLimit`
//! bounds how many asynchronous encryptions of one fan-out run at once; sealing here is
//! synchronous and in order inside the send, so there is nothing to bound.
//! [`Managed::to_user`] reaches a user's sessions on every instance, where Ignis's
//! `sendToUser` stays on its own: [`Managed::to_local_user`] is that one.
//!
//! Messages without `event` are dropped (and logged); application events before
//! authentication get `error` "Not authenticated". Across instances the service uses
//! Ignis's layout of channels on the app's transport
//! ([`AsenaBuilder::transport`](crate::AsenaBuilder::transport): Redis, a Redis Cluster or
//! NATS), under its [`ManagedOptions::channel_prefix`].

mod ack;
mod asyncapi;
mod client;
pub mod crypto;
mod gate;
mod send;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

pub use crate::channel::EventMessage;
pub use client::{ClientState, ManagedClient};
pub use gate::OutboundTransform;
pub use send::Managed;
pub(crate) use send::ManagedState;

/// The managed protocol between servers: the envelope, its channels in Ignis's layout, and
/// the emitters' server id (from `asena-protocol`).
pub use asena_protocol::managed as envelope;

use crate::channel::{DecodeError, Receives};
use crate::codec::Message;
use crate::error::Result;
use crate::namespace::{Namespace, Socket, SocketRef};
use crate::protocol::{Endpoint, Fleet, Protocol};

/// The close codes of the managed protocol (from `asena-protocol`'s
/// [`close_code`](crate::close_code)).
pub mod close {
    pub use asena_protocol::close_code::{
        AUTH_FAILED, AUTH_TIMEOUT, DECRYPTION_FAILED, ENCRYPTION_REQUIRED, HEARTBEAT_TIMEOUT,
    };
}

/// Timeouts, default rooms and delivery settings of a managed service (Ignis's server
/// options; [`ManagedOptions::ignis`] gives Ignis's defaults where ours differ).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ManagedOptions {
    /// How long a client may take to send `authenticate` (default 5 s); the authenticator
    /// then gets three times as long.
    pub auth_timeout: Duration,
    /// How long an authenticated client may stay silent (default 90 s); `None` never.
    pub heartbeat_timeout: Option<Duration>,
    /// Rooms every client joins when it authenticates.
    pub default_rooms: Vec<String>,
    /// Whether clients must agree a key (default false): a client whose first message is
    /// not `encrypt` is closed with 4004.
    pub require_encryption: bool,
    /// How many rooms one `join` or `leave` may name (default 100); a longer list is refused
    /// as a whole with an `error` event (`code` `too_many_rooms_in_request`).
    pub max_rooms_per_request: usize,
    /// How many rooms a client may be in (default 1,000, its own room not counted); a
    /// `join` that would pass it is refused as a whole (`too_many_rooms_for_client`).
    pub max_rooms_per_client: usize,
    /// The first part of the service's fleet channels (default `ws`, Ignis's layout:
    /// `ws:room:{room}`, `ws:client:{id}`, `ws:user:{id}`, `ws:broadcast`). Two managed
    /// services on one transport need two prefixes (the app refuses to start otherwise):
    /// Redis pub/sub knows no databases, so apps on one Redis hear each other's channels
    /// whatever database their URLs name, unless their prefixes differ.
    pub channel_prefix: String,
    /// Ignis's key exchange instead of the channel's (default false): `publicKey` inside
    /// `authenticate`, `serverPublicKey` and `salt` in the plain `connected`, one key for
    /// both directions, random nonces, no associated data, plain messages still accepted
    /// from an encrypted client. Credentials then travel before any key exists, and replays
    /// or reflections are not detected: only for interoperating with Ignis's clients.
    /// `require_encryption` then means a `publicKey` in `authenticate`.
    pub ignis_key_exchange: bool,
    /// How often an authenticated client's heartbeat timeout is checked (Ignis's
    /// `heartbeatInterval`). `None` (the default) checks at the deadline itself, so a
    /// silent client is closed exactly `heartbeat_timeout` after it was last heard from;
    /// `Some(every)` checks on that tick instead, as Ignis does (every 30 s there), so a
    /// silent client goes up to `every` later. The authentication deadlines stay exact.
    /// Zero is refused when the app starts.
    pub heartbeat_interval: Option<Duration>,
    /// The service's name in its logs (Ignis's `identifier`): the scope of the lines about
    /// it and its clients' timeouts. Not the server id of the fleet's envelopes, which stays
    /// a fresh UUID per instance ([`Managed::server_id`]): two instances sharing one would
    /// take each other's messages for their own and drop them.
    pub identifier: Option<String>,
    /// The service-wide outbound transformer (Ignis's `outboundTransformer`): every client
    /// that authenticates without one of its own (encryption, or one given with
    /// [`ManagedClient::set_outbound`] in [`ManagedService::authenticate`] or
    /// [`ManagedService::handshake`]) gets this one, from its `connected` event on. Like
    /// Ignis's, it puts every client on the per-client path: a room's members no longer
    /// share one encoded frame.
    pub outbound_transform: Option<Arc<dyn OutboundTransform>>,
}

/// Ignis's default rooms (`ws-default`, `ws-notification`), which every client of an
/// Ignis server joins when it authenticates; see [`ManagedOptions::ignis`].
pub const IGNIS_DEFAULT_ROOMS: [&str; 2] = ["ws-default", "ws-notification"];

impl Default for ManagedOptions {
    fn default() -> Self {
        ManagedOptions {
            auth_timeout: Duration::from_secs(5),
            heartbeat_timeout: Some(Duration::from_secs(90)),
            default_rooms: Vec::new(),
            require_encryption: false,
            max_rooms_per_request: 100,
            max_rooms_per_client: 1_000,
            channel_prefix: "ws".to_owned(),
            ignis_key_exchange: false,
            heartbeat_interval: None,
            identifier: None,
            outbound_transform: None,
        }
    }
}

impl ManagedOptions {
    /// Ignis's defaults where ours differ: clients join [`IGNIS_DEFAULT_ROOMS`] when they
    /// authenticate, and heartbeat timeouts are checked every 30 s
    /// ([`heartbeat_interval`](Self::heartbeat_interval)). The rest is [`Default`]: no
    /// default rooms and exact heartbeat deadlines are ours. Ignis's key exchange is not
    /// implied (see [`ignis_key_exchange`](Self::ignis_key_exchange)).
    #[doc(alias = "defaultRooms")]
    pub fn ignis() -> Self {
        ManagedOptions::default()
            .default_rooms(IGNIS_DEFAULT_ROOMS)
            .heartbeat_interval(Some(Duration::from_secs(30)))
    }

    /// The authentication timeout.
    pub fn auth_timeout(mut self, timeout: Duration) -> Self {
        self.auth_timeout = timeout;
        self
    }

    /// The heartbeat timeout (`None`: never).
    pub fn heartbeat_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.heartbeat_timeout = timeout;
        self
    }

    /// Rooms every client joins when it authenticates.
    pub fn default_rooms<I: IntoIterator<Item = S>, S: Into<String>>(mut self, rooms: I) -> Self {
        self.default_rooms = rooms.into_iter().map(Into::into).collect();
        self
    }

    /// Closes clients that do not agree a key first (4004).
    pub fn require_encryption(mut self, required: bool) -> Self {
        self.require_encryption = required;
        self
    }

    /// How many rooms one `join` or `leave` may name.
    pub fn max_rooms_per_request(mut self, limit: usize) -> Self {
        self.max_rooms_per_request = limit;
        self
    }

    /// How many rooms a client may be in.
    pub fn max_rooms_per_client(mut self, limit: usize) -> Self {
        self.max_rooms_per_client = limit;
        self
    }

    /// The first part of the service's fleet channels (`ws` by default).
    pub fn channel_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.channel_prefix = prefix.into();
        self
    }

    /// Opts in to Ignis's looser key exchange (see the field's docs).
    pub fn ignis_key_exchange(mut self, ignis: bool) -> Self {
        self.ignis_key_exchange = ignis;
        self
    }

    /// How often heartbeat timeouts are checked (`None`: at the deadline; see the field).
    #[doc(alias = "heartbeatInterval")]
    pub fn heartbeat_interval(mut self, every: Option<Duration>) -> Self {
        self.heartbeat_interval = every;
        self
    }

    /// The service's name in its logs.
    pub fn identifier(mut self, identifier: impl Into<String>) -> Self {
        self.identifier = Some(identifier.into());
        self
    }

    /// The service-wide outbound transformer (see the field).
    #[doc(alias = "outboundTransformer")]
    pub fn outbound_transform(mut self, transform: Arc<dyn OutboundTransform>) -> Self {
        self.outbound_transform = Some(transform);
        self
    }
}

/// Who a client authenticated as: its user id and whatever the service keeps with it.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The user; several clients may share one.
    pub user_id: String,
    /// Kept on the client ([`ManagedClient::metadata`]).
    pub metadata: Value,
}

impl Authenticated {
    /// A user without metadata.
    pub fn user(user_id: impl Into<String>) -> Self {
        Authenticated {
            user_id: user_id.into(),
            metadata: Value::Null,
        }
    }
}

/// What [`ManagedService::handshake`] agreed with a client that authenticated (Ignis's
/// `handshakeFn` result).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum HandshakeOutcome {
    /// The built-in encryption, as the options configure it: the channel's key agreement
    /// (`encrypt` before `authenticate`), or Ignis's (`publicKey` in `authenticate`) under
    /// [`ManagedOptions::ignis_key_exchange`].
    BuiltIn,
    /// The service agreed a key its own way and gave the client its transform
    /// ([`ManagedClient::set_outbound`]); these fields are added to the `connected` event
    /// (Ignis's `serverPublicKey` and `salt`, or whatever the client needs). The client
    /// counts as encrypted for [`ManagedOptions::require_encryption`].
    Agreed(serde_json::Map<String, Value>),
    /// No encryption for this client (Ignis's `null`/`false`): closed with 4004 when
    /// [`ManagedOptions::require_encryption`] is set and it has not agreed a key already,
    /// admitted in plain text otherwise.
    Declined,
}

/// A websocket service speaking the managed protocol (see the [module docs](self)).
///
/// `#[websocket(path = "..", managed)]` implements its supertrait, an [`Endpoint`] whose
/// protocol is [`ManagedProtocol`]. Handlers get `ws: &Socket<Self>`: `ws.data().values` is
/// the client's [`ManagedClient`], and [`ws.managed()`](Socket::managed) sends to clients,
/// users and rooms on every instance.
///
/// ```
/// use asena_runtime::prelude::*;
/// use asena_runtime::managed::{Authenticated, ManagedService};
///
/// #[websocket(path = "/ws", managed)]
/// struct Realtime;
///
/// impl ManagedService for Realtime {
///     async fn authenticate(&self, _ws: &Socket<Self>, credentials: serde_json::Value)
///         -> Result<Option<Authenticated>> {
///         let token = credentials["token"].as_str().unwrap_or_default();
///         // Constant time: how long the comparison takes says nothing about the token.
///         Ok(asena_runtime::secret_eq(token, "alice-token")
///             .then(|| Authenticated::user("alice"))) // `None` closes with 4003
///     }
///     async fn validate_rooms(&self, _ws: &Socket<Self>, rooms: Vec<String>) -> Vec<String> {
///         rooms.into_iter().filter(|r| r == "lobby").collect()
///     }
///     async fn on_event(&self, ws: &Socket<Self>, event: Message) -> Result<()> {
///         // An untyped service gets the whole envelope; `receives = T` decodes it into T.
///         ws.managed().to_room("lobby", ("echo", event.as_text()), &[ws.id()])?;
///         Ok(())
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is declared `managed` but does not speak the managed protocol (no `impl ManagedService for {Self}`)",
    label = "declared `#[websocket(.., managed)]`",
    note = "a managed service implements `ManagedService` (authenticate, on_event, ...); without `managed` in `#[websocket(..)]` it implements `WebSocketService` instead"
)]
pub trait ManagedService: Endpoint<Protocol = ManagedProtocol> {
    /// Whether the service answers its clients' requests (application events with an
    /// `id`, answered with the event `ack`; see [`crate::ack`]): [`Answers::NONE`](crate::ack::Answers::NONE)
    /// by default, so they go to [`on_event`](Self::on_event);
    /// `Answers::ON_REQUEST` with an [`Answer`](crate::ack::Answer) impl.
    const ANSWERS: crate::ack::Answers<Self> = crate::ack::Answers::NONE;

    /// Timeouts and default rooms (read once per connection).
    fn options(&self) -> ManagedOptions {
        ManagedOptions::default()
    }

    /// Checks the credentials of `authenticate`: `Some` admits the client as that user,
    /// `None` or `Err` closes it with 4003.
    fn authenticate(
        &self,
        ws: &Socket<Self>,
        credentials: Value,
    ) -> impl Future<Output = Result<Option<Authenticated>>> + Send;

    /// The subset of `rooms` the client may join. The names are already checked: at most
    /// [`max_rooms_per_request`](ManagedOptions::max_rooms_per_request) of them, no
    /// duplicates, each a name a client may use ([`validate_room`](crate::namespace::validate_room): not
    /// empty, at most 256 bytes, not reserved, not a socket id) and not under the channel
    /// prefix (`ws:`). By default none: joining is denied until a service decides who may
    /// join what.
    fn validate_rooms(
        &self,
        ws: &Socket<Self>,
        rooms: Vec<String>,
    ) -> impl Future<Output = Vec<String>> + Send {
        tracing::warn!(
            target: "asena::managed",
            socket_id = %ws.id(),
            rooms = rooms.len(),
            "join refused: the service does not implement validate_rooms"
        );
        async { Vec::new() }
    }

    /// The key agreement of a client the authenticator admitted (Ignis's `handshakeFn`),
    /// given the same credentials; runs before `connected` goes out, within the same
    /// deadline as the authenticator (three authentication timeouts, 4001 past it). The
    /// default keeps the built-in encryption ([`HandshakeOutcome::BuiltIn`]).
    ///
    /// Where Ignis calls it only when `requireEncryption` is set, it runs here for every
    /// client, so a service can agree a key with the clients that ask. A service that
    /// requires its own encryption sets [`require_encryption`](ManagedOptions::require_encryption)
    /// with [`ignis_key_exchange`](ManagedOptions::ignis_key_exchange), so the key is
    /// agreed in `authenticate` (without it, the channel's key exchange demands `encrypt`
    /// first); `Declined` then closes with 4004, as Ignis does when `handshakeFn` returns
    /// nothing.
    #[doc(alias = "handshakeFn")]
    fn handshake(
        &self,
        ws: &Socket<Self>,
        credentials: &Value,
    ) -> impl Future<Output = Result<HandshakeOutcome>> + Send {
        let _ = (ws, credentials);
        async { Ok(HandshakeOutcome::BuiltIn) }
    }

    /// A client authenticated (after `connected` went out).
    fn on_connected(&self, ws: &Socket<Self>) -> impl Future<Output = Result<()>> + Send {
        let _ = ws;
        async { Ok(()) }
    }

    /// An application event of an authenticated client: the raw message for an untyped
    /// service, the decoded `receives` type for a typed one.
    fn on_event(
        &self,
        ws: &Socket<Self>,
        event: Self::In,
    ) -> impl Future<Output = Result<()>> + Send;

    /// A backpressured client's send queue drained (Ignis's `drain` handler): it had gone
    /// past its high-water mark ([`ManagedClient::is_backpressured`]) and is empty again,
    /// so the service may resume what it held back. Runs on the client's writer, once per
    /// episode; nothing by default.
    #[doc(alias = "drain")]
    fn on_drain(&self, ws: &Socket<Self>) -> impl Future<Output = ()> + Send {
        let _ = ws;
        async {}
    }

    /// A client left (closed, timed out, refused, or the server shut down with 1001).
    /// Runs for every client that had connected, authenticated or not.
    fn on_disconnected(
        &self,
        ws: &Socket<Self>,
        code: u16,
        reason: &str,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ws, code, reason);
        async {}
    }
}

/// What the protocol reads of every incoming message.
#[derive(Deserialize)]
struct Envelope {
    event: Option<String>,
    #[serde(default)]
    data: Value,
    /// The client's request id: a string is echoed on the server's answer to this message
    /// (anything else is ignored, as Ignis types it a string).
    #[serde(default)]
    id: Value,
    /// A failed reply's `{"code","message"}` (the event `ack` only).
    #[serde(default)]
    error: Value,
}

impl Envelope {
    fn id(&self) -> Option<&str> {
        self.id.as_str()
    }
}

fn state<O>(ns: &Namespace<O>) -> Option<Arc<ManagedState>> {
    ns.extension(ManagedState::default)
}

/// Sends `{"event":"error","data":{"message":..}}`, in answer to the request `id` when there
/// is one.
fn error<O>(ws: &SocketRef<O>, id: Option<&str>, message: &str) -> Result<()> {
    answer(ws, id, "error", json!({"message": message}))
}

/// Sends a protocol event to this client alone, authenticated or not, through its gate (so
/// an encrypted client gets it encrypted): `{"event", "data"}`, with the client's request
/// `id` when it answers one, so the client can tell which request it answers.
fn answer<O>(ws: &SocketRef<O>, id: Option<&str>, event: &str, data: Value) -> Result<()> {
    let message = match id {
        Some(id) => json!({"event": event, "data": data, "id": id}),
        None => json!({"event": event, "data": data}),
    };
    let frame = crate::codec::Frame::json(&message)?;
    if ws.conn.push_protocol(&frame).is_err() {
        tracing::debug!(target: "asena::managed", socket_id = %ws.id(), event, "protocol event not queued (closing or full)");
    }
    Ok(())
}

/// Closes an encrypting client whose message broke the channel (4005).
fn broken<O>(ws: &SocketRef<O>, why: &dyn std::fmt::Display) -> Result<()> {
    ws.namespace().stats().record_invalid_message();
    tracing::info!(target: "asena::managed", socket_id = %ws.id(), error = %why, "encrypted channel broken; closing with 4005");
    ws.close_with(close::DECRYPTION_FAILED, "Decryption failed");
    Ok(())
}

/// The managed protocol, as the protocol layer runs it: `#[websocket(path = "..", managed)]`
/// declares a service that speaks it (see the [module docs](self)).
#[derive(Debug, Clone, Copy)]
pub enum ManagedProtocol {}

impl<S: ManagedService> Protocol<S> for ManagedProtocol {
    type Data = ManagedClient;

    /// The client's user and where it is in authentication; not the metadata `authenticate`
    /// returned, which may hold what the service keeps to itself.
    fn inspect(client: &ManagedClient) -> Value {
        json!({
            "type": "ManagedClient",
            "user": client.user_id(),
            "state": format!("{:?}", client.state()),
        })
    }

    /// The managed protocol's own `error` event (Ignis's shape), not Asena's.
    const FAILURE: &'static str = r#"{"event":"error","data":{"message":"Server error occurred"}}"#;

    fn describe(spec: &mut crate::asyncapi::ChannelSpec) {
        asyncapi::describe(spec);
    }

    async fn start(service: &S, ns: &Namespace, fleet: &Fleet) -> Result<()> {
        let state = state(ns).ok_or("the namespace already holds another protocol's state")?;
        let options = service.options();
        if options.heartbeat_interval == Some(Duration::ZERO) {
            return Err(format!("{}: heartbeat_interval must not be zero", S::NAME).into());
        }
        // Every connection of the namespace sends through its client's gate.
        let _ = ns.shared().seal_for.set(client::seal_for);
        tracing::info!(
            target: "asena::managed",
            identifier = %options.identifier.as_deref().unwrap_or(S::NAME),
            path = %ns.path(),
            server_id = %state.server_id,
            heartbeat_interval = ?options.heartbeat_interval,
            "managed service started"
        );
        bus::connect(S::NAME, ns, &state, fleet, &options.channel_prefix)
    }

    async fn open(service: &S, ws: &Socket<S>) -> Result<()> {
        let options = service.options();
        let client = &ws.data().values;
        client.attach(&ws.conn);
        client.set_key_exchange(client::KeyExchange {
            required: options.require_encryption,
            ignis: options.ignis_key_exchange,
        });
        let watched = ws.clone();
        // The watchdog's lines are scoped by the service's identifier, when it has one.
        let scope = match &options.identifier {
            Some(identifier) => {
                tracing::info_span!(target: "asena::managed", "managed", identifier = %identifier)
            }
            None => tracing::Span::current(),
        };
        let watchdog = tokio::spawn(tracing::Instrument::instrument(
            async move {
                let client = &watched.data().values;
                // Ignis's `heartbeatInterval`: the heartbeat deadline is checked on a tick.
                let mut ticks = options.heartbeat_interval.map(|every| {
                    let mut ticks =
                        tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    ticks
                });
                // Whether the heartbeat deadline is being read on a tick (it is read only then).
                let mut on_tick = false;
                while let Some((deadline, code, reason)) =
                    client.deadline(options.auth_timeout, options.heartbeat_timeout)
                {
                    let Some(deadline) = deadline else { return };
                    let ticking = code == close::HEARTBEAT_TIMEOUT && ticks.is_some();
                    if tokio::time::Instant::now() >= deadline && (on_tick || !ticking) {
                        tracing::info!(target: "asena::managed", socket_id = %watched.id(), code, reason, "closing");
                        watched.close_with(code, reason);
                        return;
                    }
                    on_tick = false;
                    match &mut ticks {
                        Some(ticks) if ticking => {
                            ticks.tick().await;
                            on_tick = true;
                        }
                        _ => tokio::select! {
                            () = tokio::time::sleep_until(deadline) => {}
                            () = client.authenticated_now() => {}
                        },
                    }
                }
            },
            scope,
        ));
        ws.data().values.set_watchdog(watchdog.abort_handle());
        Ok(())
    }

    fn receive(
        service: &S,
        ws: &Socket<S>,
        message: Message,
    ) -> impl Future<Output = Result<()>> + Send {
        dispatch(service, ws, message)
    }

    fn drain(service: &S, ws: &Socket<S>) -> impl Future<Output = ()> + Send {
        service.on_drain(ws)
    }

    async fn close(service: &S, ws: &Socket<S>, code: u16, reason: &str) {
        crate::ack::closed(&ws.conn);
        let client = &ws.data().values;
        if let Some(user) = client.disconnected()
            && let Some(state) = state(ws.namespace())
        {
            state.remove_session(&user, ws.id());
        }
        service.on_disconnected(ws, code, reason).await;
    }
}

/// Reads the envelope of a client message (the managed protocol's decoder: one pass of
/// `serde_json`, linear in the message).
/// The envelope of a client message; `None` when it is not JSON, or holds more arrays and
/// objects than a typed message may ([`DecodeError::MAX_CONTAINERS`]), which would make its
/// `data` value cost far more memory than its bytes.
fn decode(bytes: &[u8]) -> Option<Envelope> {
    if !crate::channel::within_containers(bytes, DecodeError::MAX_CONTAINERS) {
        return None;
    }
    serde_json::from_slice::<Envelope>(bytes).ok()
}

/// Fuzz entry: `data` as a client message. The envelope decoder never panics; `encrypt`'s
/// key agreement and `encrypted`'s decryption (by a channel's server end over fixed keys,
/// which nothing the fuzzer makes can open) fail cleanly.
#[cfg(fuzzing)]
pub(crate) fn fuzz_envelope(data: &[u8]) {
    let Some(envelope) = decode(data) else {
        return;
    };
    match envelope.event.as_deref() {
        Some("encrypt") => {
            let key = envelope.data.get("publicKey").unwrap_or(&Value::Null);
            let _ = crypto::agree(key, crypto::Flow::Channel);
        }
        Some("encrypted") => {
            let (server, _client) = crypto::channel_pair([1; 32], [2; 32]);
            assert!(server.open(&envelope.data).is_err());
        }
        _ => {}
    }
}

/// A decrypted message as text, and the envelope it holds.
fn opened(plain: Vec<u8>) -> Option<(Message, Envelope)> {
    let text = String::from_utf8(plain).ok()?;
    let envelope = decode(text.as_bytes())?;
    Some((Message::Text(text), envelope))
}

async fn dispatch<S: ManagedService>(
    service: &S,
    ws: &Socket<S>,
    mut message: Message,
) -> Result<()> {
    let client = &ws.data().values;
    client.touch();
    let envelope = decode(message.as_bytes());
    let mut envelope = if client.has_channel() {
        // An encrypting client sends nothing but the next sealed message.
        let Some(session) = client.encryption() else {
            return Ok(());
        };
        let data = match envelope {
            Some(Envelope {
                event: Some(event),
                data,
                ..
            }) if event == "encrypted" => data,
            _ => return broken(ws, &"a plain message"),
        };
        let plain = match session.open(&data) {
            Ok(plain) => plain,
            Err(e) => return broken(ws, &e),
        };
        let Some((text, inner)) = opened(plain) else {
            return error(ws, None, "Invalid message format");
        };
        message = text;
        inner
    } else {
        let Some(envelope) = envelope else {
            return error(ws, None, "Invalid message format");
        };
        let key_exchange = client.key_exchange();
        match (envelope.event.as_deref(), client.encryption()) {
            (Some("encrypt"), None) if !key_exchange.ignis => {
                return encrypt(ws, &envelope.data);
            }
            _ if key_exchange.required && !key_exchange.ignis => {
                ws.close_with(close::ENCRYPTION_REQUIRED, "Encryption required");
                return Ok(());
            }
            // Ignis's key exchange: a sealed message, handled as the envelope inside.
            (Some("encrypted"), Some(session)) => {
                let plain = match session.open(&envelope.data) {
                    Ok(plain) => plain,
                    Err(e) => {
                        tracing::debug!(target: "asena::managed", socket_id = %ws.id(), error = %e, "decryption failed");
                        ws.namespace().stats().record_invalid_message();
                        return error(ws, None, "Decryption failed");
                    }
                };
                let Some((text, inner)) = opened(plain) else {
                    return error(ws, None, "Invalid message format");
                };
                message = text;
                inner
            }
            _ => envelope,
        }
    };
    let Some(event) = envelope.event.take() else {
        tracing::debug!(target: "asena::managed", socket_id = %ws.id(), "message without `event` dropped");
        return Ok(());
    };
    let id = envelope.id().map(str::to_owned);
    let id = id.as_deref();
    match event.as_str() {
        "heartbeat" => Ok(()),
        "authenticate" => authenticate(service, ws, envelope.data, id).await,
        "disconnect" => {
            ws.close_with(crate::close_code::NORMAL, "Client disconnected");
            Ok(())
        }
        "encrypt" if client.is_encrypted() => error(ws, id, "Already encrypted"),
        "encrypt" => error(ws, id, "Encryption is agreed before authenticate"),
        _ if !client.is_authenticated() => error(ws, id, "Not authenticated"),
        ack::MANAGED_REPLY_EVENT if ack::take_reply(ws, &envelope) => Ok(()),
        "join" => {
            let data = &envelope.data;
            join(
                service,
                ws,
                RoomRequest {
                    event: "join",
                    data,
                    id,
                },
            )
            .await
        }
        "leave" => {
            let data = &envelope.data;
            leave(
                service,
                ws,
                RoomRequest {
                    event: "leave",
                    data,
                    id,
                },
            )
        }
        "connected" | "error" | "encrypted" => error(ws, id, &format!("Reserved event: {event}")),
        _ => {
            let message = match id {
                Some(id) => match ack::answer_event(service, ws, message, id).await {
                    Ok(answered) => return answered,
                    Err(message) => message,
                },
                None => message,
            };
            match S::In::decode(message) {
                Ok(event) => service.on_event(ws, event).await,
                Err(e) => invalid(ws, &e, id),
            }
        }
    }
}

/// `encrypt`, the client's first message: agrees the channel's keys and answers
/// `encrypted` (plain, the last plain message); 4004 for a malformed `publicKey`.
fn encrypt<S: ManagedService>(ws: &Socket<S>, data: &Value) -> Result<()> {
    let client = &ws.data().values;
    if client.state() != ClientState::Unauthorized {
        return error(ws, None, "Encryption is agreed before authenticate");
    }
    if client.outbound().is_some() {
        tracing::warn!(target: "asena::managed", socket_id = %ws.id(), "the service gave the client an outbound transformer; it cannot also be encrypted");
        ws.close_with(close::ENCRYPTION_REQUIRED, "Encryption unavailable");
        return Ok(());
    }
    let public_key = data.get("publicKey").unwrap_or(&Value::Null);
    match crypto::agree(public_key, crypto::Flow::Channel) {
        Ok((session, handshake)) => {
            answer(ws, None, "encrypted", handshake.to_json())?;
            // Only this client's own dispatch sends it anything before it authenticates, so
            // nothing goes out between the answer and the session.
            if !client.set_encryption(Arc::new(session)) {
                ws.close_with(close::ENCRYPTION_REQUIRED, "Encryption unavailable");
            }
        }
        Err(e) => {
            tracing::info!(target: "asena::managed", socket_id = %ws.id(), error = %e, "no key agreed; closing with 4004");
            ws.close_with(close::ENCRYPTION_REQUIRED, "Encryption required");
        }
    }
    Ok(())
}

fn invalid<O>(ws: &SocketRef<O>, e: &DecodeError, id: Option<&str>) -> Result<()> {
    ws.namespace().stats().record_invalid_message();
    tracing::debug!(target: "asena::managed", socket_id = %ws.id(), error = %e, "event did not decode");
    answer(
        ws,
        id,
        "error",
        json!({"message": e.to_string(), "code": e.kind().code(), "path": e.path()}),
    )
}

async fn authenticate<S: ManagedService>(
    service: &S,
    ws: &Socket<S>,
    credentials: Value,
    id: Option<&str>,
) -> Result<()> {
    let client = &ws.data().values;
    if !client.begin_authentication() {
        return error(ws, id, "Already authenticated");
    }
    let options = service.options();
    let key_exchange = client.key_exchange();
    let public_key = key_exchange
        .ignis
        .then(|| {
            credentials
                .get("publicKey")
                .filter(|k| !k.is_null())
                .cloned()
        })
        .flatten();
    // The authenticator, then the handshake of a client it admitted, within one deadline.
    let outcome = tokio::time::timeout(options.auth_timeout * 3, async {
        let handshake_credentials = credentials.clone();
        match service.authenticate(ws, credentials).await {
            Ok(Some(admitted)) => {
                let handshake = service.handshake(ws, &handshake_credentials).await;
                Ok(Some((admitted, handshake)))
            }
            other => other.map(|_| None),
        }
    })
    .await;
    let admitted = match outcome {
        Err(_) => {
            ws.close_with(close::AUTH_TIMEOUT, "Authentication timeout");
            return Ok(());
        }
        Ok(Err(e)) => {
            tracing::warn!(target: "asena::managed", socket_id = %ws.id(), error = %e, "authenticator failed");
            None
        }
        Ok(Ok(admitted)) => admitted,
    };
    let Some((Authenticated { user_id, metadata }, handshake)) = admitted else {
        ws.close_with(close::AUTH_FAILED, "Authentication failed");
        return Ok(());
    };
    let handshake = handshake.unwrap_or_else(|e| {
        tracing::warn!(target: "asena::managed", socket_id = %ws.id(), error = %e, "handshake failed");
        HandshakeOutcome::Declined
    });
    let mut connected = json!({"id": ws.id(), "userId": user_id, "time": now_rfc3339()});
    let built_in = match handshake {
        HandshakeOutcome::BuiltIn => true,
        HandshakeOutcome::Agreed(fields) => {
            if let Value::Object(connected) = &mut connected {
                // The protocol's own fields are not the handshake's to change.
                for (key, value) in fields {
                    if !matches!(key.as_str(), "id" | "userId" | "time") {
                        connected.insert(key, value);
                    }
                }
            }
            false
        }
        HandshakeOutcome::Declined => {
            if key_exchange.required && !client.is_encrypted() {
                tracing::info!(target: "asena::managed", socket_id = %ws.id(), "handshake declined while encryption is required; closing with 4004");
                ws.close_with(close::ENCRYPTION_REQUIRED, "Encryption required");
                return Ok(());
            }
            false
        }
    };
    // Ignis's key exchange: `connected` carries the server's half in plain text, and the
    // session applies from the next message on.
    let mut ignis_session = None;
    if key_exchange.ignis && built_in {
        match ignis_key_exchange(public_key.as_ref(), key_exchange.required) {
            Ok(None) => {}
            Ok(Some((session, handshake))) => {
                connected["serverPublicKey"] = handshake.server_public_key.into();
                connected["salt"] = handshake.salt.into();
                ignis_session = Some(session);
            }
            Err(e) => {
                tracing::warn!(target: "asena::managed", socket_id = %ws.id(), error = %e, "no key agreed");
                ws.close_with(close::ENCRYPTION_REQUIRED, "Encryption required");
                return Ok(());
            }
        }
    }
    // The service-wide transformer, for a client without an outbound of its own (a failed
    // set means it has one).
    if ignis_session.is_none()
        && let Some(transform) = &options.outbound_transform
    {
        client.set_outbound(transform.clone());
    }
    // `connected` goes out before the client is deliverable, so nothing overtakes it (sealed
    // for a client that agreed a key with `encrypt`).
    answer(ws, id, "connected", connected)?;
    if let Some(session) = ignis_session
        && !client.set_encryption(Arc::new(session))
    {
        ws.close_with(close::ENCRYPTION_REQUIRED, "Encryption unavailable");
        return Ok(());
    }
    if !client.authenticated(user_id.clone(), metadata) {
        return Ok(());
    }
    if let Some(state) = state(ws.namespace()) {
        state.add_session(&user_id, Arc::from(ws.id()));
    }
    for room in &options.default_rooms {
        if let Err(e) = ws.subscribe(room) {
            tracing::warn!(target: "asena::managed", room = %room.chars().take(64).collect::<String>(), error = %e, "default room refused");
        }
    }
    service.on_connected(ws).await
}

/// Ignis's key agreement in `authenticate`: with a `publicKey` a session and the server's
/// half for `connected`; without one none (`Err` when encryption is `required`).
fn ignis_key_exchange(
    public_key: Option<&Value>,
    required: bool,
) -> std::result::Result<Option<(crypto::Session, crypto::Handshake)>, crypto::CryptoError> {
    match public_key {
        None if required => Err(crypto::CryptoError::KeyMissing),
        None => Ok(None),
        Some(key) => crypto::agree(key, crypto::Flow::Ignis).map(Some),
    }
}

/// Why a `join` or `leave` was refused as a whole.
#[derive(Debug, PartialEq, Eq)]
enum RoomsRefused {
    /// `data.rooms` names more rooms than one request may.
    TooManyInRequest { limit: usize, got: usize },
    /// Joining would put the client in more rooms than it may be in.
    TooManyForClient {
        limit: usize,
        joined: usize,
        new: usize,
    },
}

impl RoomsRefused {
    fn code(&self) -> &'static str {
        match self {
            RoomsRefused::TooManyInRequest { .. } => "too_many_rooms_in_request",
            RoomsRefused::TooManyForClient { .. } => "too_many_rooms_for_client",
        }
    }

    fn message(&self) -> String {
        match self {
            RoomsRefused::TooManyInRequest { limit, got } => {
                format!(
                    "a join or leave names at most {limit} rooms (max_rooms_per_request); this one named {got}"
                )
            }
            RoomsRefused::TooManyForClient { limit, joined, new } => format!(
                "a client is in at most {limit} rooms (max_rooms_per_client); it is in {joined} and asked for {new} more"
            ),
        }
    }
}

/// The first few names of a list, for a bounded log line.
fn first_names(names: &[String]) -> Vec<String> {
    names
        .iter()
        .take(3)
        .map(|n| n.chars().take(64).collect())
        .collect()
}

/// The room names of a `join`/`leave`: `data.rooms` as strings, each checked by
/// [`validate_room`](crate::namespace::validate_room) and not under the service's channel prefix (`ws:`
/// by default), duplicates removed (first one kept), in one pass; names that break a rule
/// are left out. Refused as a whole when it names more than `limit` entries.
fn requested_rooms(
    data: &Value,
    prefix: &str,
    limit: usize,
) -> std::result::Result<Vec<String>, RoomsRefused> {
    let listed = data["rooms"].as_array().map_or(&[][..], Vec::as_slice);
    if listed.len() > limit {
        return Err(RoomsRefused::TooManyInRequest {
            limit,
            got: listed.len(),
        });
    }
    let mut seen = std::collections::HashSet::with_capacity(listed.len());
    Ok(listed
        .iter()
        .filter_map(Value::as_str)
        .filter(|r| crate::rooms::validate_room(r).is_ok() && !reserved_by_protocol(r, prefix))
        .filter(|r| seen.insert(*r))
        .map(str::to_owned)
        .collect())
}

/// Names under the protocol's channel prefix (`ws:` by default, Ignis's rule) are its own.
fn reserved_by_protocol(room: &str, prefix: &str) -> bool {
    room.strip_prefix(prefix)
        .is_some_and(|rest| rest.starts_with(':'))
        || room.starts_with("ws:")
}

/// Answers a refused `join`/`leave` with an `error` event naming the limit.
fn refuse<O>(
    ws: &SocketRef<O>,
    event: &str,
    refused: &RoomsRefused,
    id: Option<&str>,
) -> Result<()> {
    tracing::debug!(target: "asena::managed", socket_id = %ws.id(), event, reason = refused.code(), "room request refused");
    answer(
        ws,
        id,
        "error",
        json!({"message": refused.message(), "code": refused.code(), "event": event}),
    )
}

/// A `join` or `leave`: the rooms it names, checked, or the refusal it was answered with.
struct RoomRequest<'a> {
    event: &'static str,
    data: &'a Value,
    id: Option<&'a str>,
}

impl RoomRequest<'_> {
    /// The rooms named, or `Err` with the result of answering the refusal.
    fn rooms<S: ManagedService>(
        &self,
        ws: &Socket<S>,
        options: &ManagedOptions,
    ) -> std::result::Result<Vec<String>, Result<()>> {
        requested_rooms(
            self.data,
            &options.channel_prefix,
            options.max_rooms_per_request,
        )
        .map_err(|refused| refuse(ws, self.event, &refused, self.id))
    }
}

async fn join<S: ManagedService>(
    service: &S,
    ws: &Socket<S>,
    request: RoomRequest<'_>,
) -> Result<()> {
    let options = service.options();
    let id = request.id;
    let requested = match request.rooms(ws, &options) {
        Ok(rooms) => rooms,
        Err(answered) => return answered,
    };
    let new = requested.iter().filter(|r| !ws.in_room(r)).count();
    let joined_before = ws.joined_count();
    if joined_before + new > options.max_rooms_per_client {
        let refused = RoomsRefused::TooManyForClient {
            limit: options.max_rooms_per_client,
            joined: joined_before,
            new,
        };
        return refuse(ws, "join", &refused, id);
    }
    let allowed: std::collections::HashSet<String> = if requested.is_empty() {
        Default::default()
    } else {
        service
            .validate_rooms(ws, requested.clone())
            .await
            .into_iter()
            .collect()
    };
    // The validator picks from what was asked; it cannot add rooms.
    let (joined, denied): (Vec<String>, Vec<String>) =
        requested.into_iter().partition(|r| allowed.contains(r));
    for room in &joined {
        // Each name was checked by `requested_rooms`.
        ws.join(room);
    }
    if !denied.is_empty() {
        tracing::debug!(target: "asena::managed", socket_id = %ws.id(), denied = denied.len(), first = ?first_names(&denied), "join denied");
    }
    answer(ws, id, "join", json!({"rooms": joined, "denied": denied}))
}

fn leave<S: ManagedService>(service: &S, ws: &Socket<S>, request: RoomRequest<'_>) -> Result<()> {
    let left: Vec<String> = match request.rooms(ws, &service.options()) {
        Ok(rooms) => rooms.into_iter().filter(|r| ws.unsubscribe(r)).collect(),
        Err(answered) => return answered,
    };
    answer(ws, request.id, "leave", json!({"rooms": left}))
}

/// Now as RFC 3339 UTC with milliseconds (`2026-11-30T12:00:00.000Z`).
fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// The managed protocol across instances: Ignis's layout of channels (`ws:client:{id}`,
/// `ws:user:{id}`, `ws:room:{room}`, `ws:broadcast`, under the service's channel prefix) on
/// the app's transport. Services under different prefixes never hear each other, and the
/// app refuses to start two under one.
mod bus {
    use std::sync::Weak;

    use super::send::{Delivery, FleetBus, Target};
    use super::*;
    use asena_protocol::managed::{ManagedEnvelope, TargetKind};

    use crate::transport::{Heard, Listener};

    /// Deliveries from other instances (and emitters) into this namespace.
    struct Sink {
        ns: Namespace,
        state: Weak<ManagedState>,
        prefix: String,
    }

    impl Listener for Sink {
        fn deliver(&self, channel: &str, payload: &[u8]) -> Heard {
            let Some(state) = self.state.upgrade() else {
                return Heard::Own;
            };
            if !crate::channel::within_containers(payload, DecodeError::MAX_CONTAINERS) {
                return Heard::Refused("too many arrays and objects".to_owned());
            }
            let envelope = match ManagedEnvelope::decode(payload) {
                Ok(envelope) => envelope,
                Err(error) => return Heard::Refused(format!("not a managed envelope: {error}")),
            };
            if envelope.server_id == state.server_id {
                return Heard::Own;
            }
            // The channel says whom a message is for; the envelope must agree (a `client`
            // message published on a room's channel is not delivered to that client).
            if envelope.channel_under(&self.prefix) != channel {
                return Heard::Refused("the envelope's target is not its channel's".to_owned());
            }
            let target = match (envelope.kind, envelope.target.as_deref()) {
                (TargetKind::Client, Some(id)) => Target::Client(id),
                (TargetKind::User, Some(user)) => Target::User(user),
                (TargetKind::Room, Some(room)) => Target::Room(room),
                (TargetKind::Broadcast, _) => Target::Broadcast,
                (kind, None) => {
                    return Heard::Refused(format!("a `{kind:?}` message without a target"));
                }
            };
            let exclude: Vec<&str> = envelope
                .exclude
                .iter()
                .flatten()
                .map(String::as_str)
                .collect();
            let delivery = Delivery {
                target,
                event: &envelope.event,
                data: &envelope.data,
                exclude: &exclude,
            };
            let delivering =
                crate::trace::delivering(envelope.traceparent, channel, &state.server_id);
            match state.deliver_local(&self.ns, delivery) {
                Ok(recipients) => {
                    delivering.done(recipients, channel, None);
                    Heard::Delivered
                }
                Err(error) => Heard::Refused(error.to_string()),
            }
        }
    }

    /// Puts the namespace of `service` on the fleet's transport under `prefix` (nothing to
    /// do for a single instance).
    pub(super) fn connect(
        service: &'static str,
        ns: &Namespace,
        state: &Arc<ManagedState>,
        fleet: &Fleet,
        prefix: &str,
    ) -> Result<()> {
        let transport = fleet.transport();
        if transport.is_local() {
            return Ok(());
        }
        let sink = Arc::new(Sink {
            ns: ns.clone(),
            state: Arc::downgrade(state),
            prefix: prefix.to_owned(),
        });
        fleet.listen(prefix, service, sink)?;
        let bus = FleetBus {
            transport: transport.clone(),
            prefix: prefix.to_owned(),
        };
        if state.bus.set(bus).is_err() {
            return Err("the managed service is already on the fleet's transport".into());
        }
        tracing::info!(target: "asena::managed", path = %ns.path(), server_id = %state.server_id, prefix, transport = transport.name(), "managed service on the fleet's transport");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_are_sanitised() {
        let long = "x".repeat(257);
        let id = uuid::Uuid::now_v7().to_string();
        let data = json!({"rooms": ["lobby", "", "ws:client:x", long, 5, "lobby", "public-1", "__", id, "/p", "app:room:x"]});
        assert_eq!(
            requested_rooms(&data, "app", 100),
            Ok(vec!["lobby".to_owned(), "public-1".to_owned()])
        );
        assert_eq!(requested_rooms(&json!({}), "ws", 100), Ok(Vec::new()));
    }

    #[test]
    fn an_envelope_of_too_many_containers_is_not_decoded() {
        let many = format!(
            r#"{{"event":"say","data":[{}]}}"#,
            vec!["[]"; DecodeError::MAX_CONTAINERS].join(",")
        );
        assert!(decode(many.as_bytes()).is_none());
        let fewer = format!(
            r#"{{"event":"say","data":[{}]}}"#,
            vec!["[]"; DecodeError::MAX_CONTAINERS - 2].join(",")
        );
        assert!(decode(fewer.as_bytes()).is_some());
    }

    #[test]
    fn a_long_list_is_refused_whole_and_dedupe_is_linear() {
        let many: Vec<String> = (0..101).map(|i| format!("r{i}")).collect();
        assert_eq!(
            requested_rooms(&json!({"rooms": many}), "ws", 100),
            Err(RoomsRefused::TooManyInRequest {
                limit: 100,
                got: 101
            })
        );
        let repeated = vec!["same"; 100_000];
        let rooms = requested_rooms(&json!({"rooms": repeated}), "ws", usize::MAX).expect("within");
        assert_eq!(rooms, vec!["same".to_owned()]);
    }

    #[test]
    fn time_is_rfc3339() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }
}
