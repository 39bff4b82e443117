//! A client of the managed protocol (Ignis's model), which `#[websocket(path = .., managed)]`
//! services speak: [`ManagedConnection`].
//!
//! Every message, both ways, is the envelope `{"event": string, "data"?: any}`. The
//! connection does the protocol's part by itself, on the first connection and on every
//! reconnect:
//!
//! 1. **Encryption** (with [`encrypt(true)`](ManagedBuilder::encrypt)): the first message is
//!    `encrypt` with a fresh P-256 key, the server answers `encrypted` with its key and a
//!    salt, and from then on every message both ways is sealed with AES-256-GCM, a key and a
//!    counter per direction (`asena_protocol::crypto` holds the channel, shared with the
//!    server). A message from the server that is not the next sealed one closes the
//!    connection with 4005, as the server does.
//! 2. **Authentication**: `authenticate` with the [credentials](ManagedBuilder::credentials),
//!    then the server's `connected` (`{id, userId, time}`, [`Connected`]) within the
//!    [handshake timeout](ManagedBuilder::handshake_timeout). A refusal is a clear error:
//!    [`AuthenticationFailed`](ClientError::AuthenticationFailed) (4003, with the server's
//!    `error` message when it sent one), [`AuthenticationTimeout`](ClientError::AuthenticationTimeout)
//!    (4001), [`EncryptionRequired`](ClientError::EncryptionRequired) (4004),
//!    [`DecryptionFailed`](ClientError::DecryptionFailed) (4005).
//! 3. **Heartbeat**: a `heartbeat` event (and a WebSocket ping) every
//!    [`heartbeat`](ManagedBuilder::heartbeat) interval, 15 s by default: keep it well under
//!    the server's heartbeat timeout (a third of it is a good value). Two intervals without
//!    any frame from the server count as a dead connection.
//! 4. **Rooms**: [`join`](ManagedConnection::join) and [`leave`](ManagedConnection::leave)
//!    wait for the server's answer ([`RoomsAnswer`]) up to the
//!    [request timeout](ManagedBuilder::request_timeout). Asena answers both; Ignis answers
//!    neither, so against Ignis they end with [`ClientError::NoAnswer`] (the request was
//!    still sent).
//! 5. **Reconnect** (the plain client's [`Backoff`](crate::Backoff)): after a lost connection the client
//!    connects again, agrees new keys, authenticates with the same credentials, asks to
//!    join again the rooms it asked for (and was not denied or left), and yields
//!    [`ManagedEvent::Reconnected`]. A refusal of the credentials (4003) or of the
//!    encryption (4004) on a reconnect ends it ([`ManagedEvent::GaveUp`]).
//!
//! Application events are decoded into the connection's `T`, a type tagged like the
//! server's (`#[serde(tag = "event", content = "data")]`), or `serde_json::Value` for any;
//! they are sent from any `Serialize` type of that shape ([`send`](ManagedConnection::send))
//! or by name ([`send_event`](ManagedConnection::send_event)).

mod builder;
mod dialect;

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

pub use builder::ManagedBuilder;

use crate::ClientError;
use crate::driver::Events;
use crate::presence::PresenceFrame;

/// What the server's `connected` says: who the client is on this connection.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
#[doc(alias = "connected")]
pub struct Connected {
    /// The connection's id (the server's client id; a new one after each reconnect).
    pub id: String,
    /// The user the credentials authenticated.
    pub user_id: String,
    /// When the server admitted the client (RFC 3339), if it said.
    #[serde(default)]
    pub time: Option<String>,
}

/// The server's answer to a `join` or `leave`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct RoomsAnswer {
    /// The rooms joined (or left).
    #[serde(default)]
    pub rooms: Vec<String>,
    /// The rooms the service refused to let the client join (empty for a `leave`).
    #[serde(default)]
    pub denied: Vec<String>,
}

/// One event from a [`ManagedConnection`]: an application event, an answer or error of the
/// server, or a change of the connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum ManagedEvent<T> {
    /// An application event, decoded into `T` from its `{"event","data"}` JSON.
    Message(T),
    /// A presence event of a room (`presence_state` or `presence_diff`, its `data` the
    /// frame's fields) that does not decode into `T`;
    /// [`Presences::apply`](crate::presence::Presences::apply) keeps the room's list from them.
    Presence(PresenceFrame),
    /// An application event that does not decode into `T`. The stream goes on.
    Undecodable {
        /// The message as received (decrypted, on an encrypted connection).
        text: String,
        /// serde's reason.
        error: serde_json::Error,
    },
    /// The server's answer to a `join` (the client's own, or the one that rejoins rooms after
    /// a reconnect).
    Joined(RoomsAnswer),
    /// The server's answer to a `leave`.
    Left(RoomsAnswer),
    /// The server's `error` event.
    Error {
        /// What went wrong, e.g. `Not authenticated`.
        message: String,
        /// Asena's machine-readable code, when it gives one (`too_many_rooms_in_request`).
        code: Option<String>,
        /// The whole `data` of the event.
        data: Value,
    },
    /// The connection was lost (the server closed it, an I/O error, a dead heartbeat, or a
    /// message that broke the encrypted channel: 4005). With reconnect on, the client is
    /// reconnecting; otherwise the stream ends next.
    Disconnected {
        /// The close code (the server's, or 4005 when the client broke off), `None` when
        /// the connection ended without one.
        code: Option<u16>,
        /// The close reason, or what went wrong.
        reason: String,
    },
    /// The client connected, agreed keys (when encrypting) and authenticated again after a
    /// [`Disconnected`](ManagedEvent::Disconnected); queued messages go out now.
    Reconnected {
        /// The new connection's `connected` (a new client id).
        connected: Connected,
        /// The rooms asked for again; the server's answer follows as
        /// [`Joined`](ManagedEvent::Joined) (Asena's; Ignis does not answer).
        rejoining: Vec<String>,
    },
    /// Reconnecting gave up: `attempts` failed in a row (the limit of
    /// [`Backoff::max_attempts`](crate::Backoff::max_attempts)), or the server refused the
    /// credentials or the encryption. The stream ends next.
    GaveUp {
        /// How many attempts were made.
        attempts: u32,
        /// Why the last one failed.
        error: ClientError,
    },
}

/// What the connection's task is asked to send.
#[derive(Debug)]
pub(crate) enum Command {
    /// An event's plain JSON text.
    Event(String),
    /// `join` (`leave: false`) or `leave` for `rooms`, answered on `reply`.
    Rooms {
        leave: bool,
        rooms: Vec<String>,
        reply: oneshot::Sender<Result<RoomsAnswer, ClientError>>,
    },
}

/// What the handle reads of the connection's task.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// The current connection's `connected`; `None` while disconnected.
    pub(crate) connected: Option<Connected>,
    /// The rooms asked for and neither denied nor left: joined again after a reconnect.
    pub(crate) rooms: BTreeSet<String>,
}

pub(crate) fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// A connection to a managed service: authenticated (and encrypted, if asked), kept alive
/// with heartbeats, reconnected with backoff. Made by [`ManagedConnection::builder`].
///
/// A background task owns the socket; the connection is a handle to it and a [`Stream`] of
/// [`ManagedEvent`]s ([`next`](Self::next) reads one). Dropping it closes the socket.
///
/// ```no_run
/// use asena_client::managed::{ManagedConnection, ManagedEvent};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Deserialize)]
/// #[serde(tag = "event", content = "data", rename_all = "snake_case")]
/// enum Out { Said { room: String, from: String, text: String } }
///
/// #[derive(Serialize)]
/// #[serde(tag = "event", content = "data", rename_all = "snake_case")]
/// enum In { Say { room: String, text: String } }
///
/// # async fn run() -> Result<(), asena_client::ClientError> {
/// let mut conn = ManagedConnection::<Out>::builder("ws://127.0.0.1:3000/ws")
///     .token("alice-token")                      // {"type":"token","token":"alice-token"}
///     .encrypt(true)
///     .connect()
///     .await?;
/// println!("signed in as {}", conn.connected().map(|c| c.user_id).unwrap_or_default());
/// let answer = conn.join(["public-1"]).await?;   // {rooms, denied}
/// conn.send(&In::Say { room: "public-1".into(), text: "hi".into() }).await?;
/// while let Some(event) = conn.next().await {
///     match event {
///         ManagedEvent::Message(Out::Said { from, text, .. }) => println!("{from}: {text}"),
///         ManagedEvent::Error { message, .. } => eprintln!("server: {message}"),
///         ManagedEvent::Reconnected { connected, .. } => eprintln!("back as {}", connected.id),
///         _ => {}
///     }
/// }
/// # let _ = answer;
/// # Ok(()) }
/// ```
pub struct ManagedConnection<T = Value> {
    sender: ManagedSender,
    events: Events<ManagedEvent<T>>,
    url: String,
}

impl<T: serde::de::DeserializeOwned + Send + 'static> ManagedConnection<T> {
    /// Starts configuring a connection to the managed service at `url`, the whole WebSocket
    /// URL (`ws://host:port/ws`).
    pub fn builder(url: impl AsRef<str>) -> ManagedBuilder<T> {
        ManagedBuilder::new(url.as_ref())
    }
}

impl<T> ManagedConnection<T> {
    /// The URL the connection connects to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The current connection's `connected` (`None` while reconnecting, or once closed).
    pub fn connected(&self) -> Option<Connected> {
        self.sender.connected()
    }

    /// The rooms asked for and neither denied nor left: what a reconnect joins again.
    pub fn rooms(&self) -> Vec<String> {
        self.sender.rooms()
    }

    /// Sends an application event: `event` serializes as `{"event": name, "data": ..}` (a
    /// type tagged `#[serde(tag = "event", content = "data")]`). Queued like the plain
    /// client's messages (sealed when it goes out); fails with [`ClientError::NotAnEvent`]
    /// for another shape.
    pub async fn send<E: Serialize>(&self, event: &E) -> Result<(), ClientError> {
        self.sender.send(event).await
    }

    /// Sends an application event as a request (with an `id`) and, when awaited, waits for
    /// the server's `ack` (`.timeout(d)`; 10 s otherwise), its data decoded as `R`. A
    /// service that answers it replies `{"event":"ack","data":..,"id":..}`; a failure comes
    /// back as [`ClientError::Server`]. See [`ack`](crate::ack).
    pub fn request<R, E: Serialize>(&self, event: &E) -> crate::ack::ClientRequest<R> {
        self.sender.request(event)
    }

    /// Sends the application event `event` with `data`.
    pub async fn send_event<D: Serialize>(&self, event: &str, data: &D) -> Result<(), ClientError> {
        self.sender.send_event(event, data).await
    }

    /// Asks to join `rooms` and waits for the server's answer: the rooms joined and denied.
    /// [`ClientError::NoAnswer`] after the request timeout (Ignis never answers),
    /// [`ClientError::Server`] when the server refused the request as a whole,
    /// [`ClientError::Lost`] when the connection was lost first.
    pub async fn join<I, S>(&self, rooms: I) -> Result<RoomsAnswer, ClientError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.sender.join(rooms).await
    }

    /// Asks to leave `rooms` and waits for the server's answer (the rooms left); as
    /// [`join`](Self::join).
    pub async fn leave<I, S>(&self, rooms: I) -> Result<RoomsAnswer, ClientError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.sender.leave(rooms).await
    }

    /// A cloneable handle that sends, joins and leaves from other tasks.
    pub fn sender(&self) -> ManagedSender {
        self.sender.clone()
    }

    /// The next event; `None` once the connection is closed, was lost with reconnect off, or
    /// reconnecting gave up.
    pub async fn next(&mut self) -> Option<ManagedEvent<T>> {
        self.events.next().await
    }

    /// Sends what is queued, closes with 1000 and waits (about two seconds at most) for the
    /// server's answer. Unread events are dropped; the stream then ends.
    pub async fn close(&mut self) -> Result<(), ClientError> {
        self.events.close().await;
        Ok(())
    }
}

impl<T> Stream for ManagedConnection<T> {
    type Item = ManagedEvent<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().events.poll_next(cx)
    }
}

impl<T> std::fmt::Debug for ManagedConnection<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedConnection")
            .field("url", &self.url)
            .field("connected", &self.connected())
            .field("closed", &self.events.is_closed())
            .finish_non_exhaustive()
    }
}

/// Sends, joins and leaves on a [`ManagedConnection`] from anywhere; cheap to clone. Fails
/// with [`ClientError::Closed`] once the connection is closed or dropped.
#[derive(Clone)]
pub struct ManagedSender {
    tx: mpsc::Sender<Command>,
    shared: Arc<Mutex<Shared>>,
    request_timeout: Duration,
    requests: Arc<crate::ack::Pending>,
}

impl ManagedSender {
    /// See [`ManagedConnection::request`].
    pub fn request<R, E: Serialize>(&self, event: &E) -> crate::ack::ClientRequest<R> {
        let frame = event_value(event).map(|mut value| {
            move |id: u64| {
                value["id"] = Value::String(id.to_string());
                Command::Event(value.to_string())
            }
        });
        crate::ack::ClientRequest::new(self.tx.clone(), self.requests.clone(), frame)
    }

    /// See [`ManagedConnection::send`].
    pub async fn send<E: Serialize>(&self, event: &E) -> Result<(), ClientError> {
        let value = event_value(event)?;
        self.queue(Command::Event(value.to_string())).await
    }

    /// See [`ManagedConnection::send_event`].
    pub async fn send_event<D: Serialize>(&self, event: &str, data: &D) -> Result<(), ClientError> {
        let data = serde_json::to_value(data).map_err(ClientError::Encode)?;
        let text = serde_json::json!({"event": event, "data": data}).to_string();
        self.queue(Command::Event(text)).await
    }

    /// See [`ManagedConnection::join`].
    pub async fn join<I, S>(&self, rooms: I) -> Result<RoomsAnswer, ClientError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rooms_request(false, rooms.into_iter().map(Into::into).collect())
            .await
    }

    /// See [`ManagedConnection::leave`].
    pub async fn leave<I, S>(&self, rooms: I) -> Result<RoomsAnswer, ClientError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rooms_request(true, rooms.into_iter().map(Into::into).collect())
            .await
    }

    /// See [`ManagedConnection::connected`].
    pub fn connected(&self) -> Option<Connected> {
        lock(&self.shared).connected.clone()
    }

    /// See [`ManagedConnection::rooms`].
    pub fn rooms(&self) -> Vec<String> {
        lock(&self.shared).rooms.iter().cloned().collect()
    }

    /// Whether the connection is closed (sends would fail).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    async fn rooms_request(
        &self,
        leave: bool,
        rooms: Vec<String>,
    ) -> Result<RoomsAnswer, ClientError> {
        let waiting_for = if leave { "leave" } else { "join" };
        let (reply, answer) = oneshot::channel();
        self.queue(Command::Rooms {
            leave,
            rooms,
            reply,
        })
        .await?;
        match tokio::time::timeout(self.request_timeout, answer).await {
            Err(_) => Err(ClientError::NoAnswer {
                waiting_for,
                after: self.request_timeout,
            }),
            Ok(Err(_)) => Err(ClientError::Lost { waiting_for }),
            Ok(Ok(answer)) => answer,
        }
    }

    async fn queue(&self, command: Command) -> Result<(), ClientError> {
        self.tx.send(command).await.map_err(|_| ClientError::Closed)
    }
}

/// An application event as JSON: `{"event": string, ..}`, or [`ClientError::NotAnEvent`].
fn event_value<E: Serialize>(event: &E) -> Result<Value, ClientError> {
    let value = serde_json::to_value(event).map_err(ClientError::Encode)?;
    match value.get("event") {
        Some(Value::String(_)) => Ok(value),
        _ => Err(ClientError::NotAnEvent {
            reason: "it has no string `event` (tag the type with `#[serde(tag = \"event\", content = \"data\")]`)".to_owned(),
        }),
    }
}

impl std::fmt::Debug for ManagedSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedSender")
            .field("closed", &self.tx.is_closed())
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}
