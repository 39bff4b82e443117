//! A typed client for Asena WebSocket services, plain ([`Client`]) and managed
//! ([`managed::ManagedConnection`]).
//!
//! A `#[websocket]` service declares its wire contract once — path, path parameters, what it
//! receives and what it sends — as a [`Channel`] (the trait lives in `asena-protocol`, which
//! the server re-exports as `asena_runtime::Channel`). This crate connects to such a service
//! from Rust with that same contract, and depends on `asena-protocol` alone, not on the
//! server: [`Client<C>`](Client) sends only `C::In`,
//! decodes `C::Out`, fills `{params}` in `C::PATH` from `C::Params`, and keeps the
//! connection alive (reconnect with backoff, heartbeat).
//!
//! # Quick start
//!
//! ```no_run
//! use std::time::Duration;
//! use asena_client::{Backoff, Client, Event};
//! use asena_runtime::prelude::*;
//!
//! // The contract, shared by server and client (usually a crate both depend on).
//! #[derive(Serialize, Deserialize, JsonSchema)]
//! struct ChatParams { room: String }
//!
//! #[derive(Serialize, Deserialize, JsonSchema, Validate)]
//! #[serde(tag = "type", rename_all = "snake_case")]
//! #[garde(allow_unvalidated)]
//! enum ChatIn { Say { text: String }, Ping }
//!
//! #[derive(Debug, Serialize, Deserialize, JsonSchema)]
//! #[serde(tag = "type", rename_all = "snake_case")]
//! enum ChatOut { Said { from: String, text: String }, Pong }
//!
//! // The server's service; the client is typed by it.
//! #[websocket(path = "/chat/{room}", params = ChatParams, receives = ChatIn, sends = ChatOut)]
//! struct Chat;
//! # impl WebSocketService for Chat {
//! #     type Data = ();
//! #     async fn on_message(&self, _: &Socket<Self>, _: ChatIn) -> Result<()> { Ok(()) }
//! # }
//!
//! # async fn run() -> Result<(), asena_client::ClientError> {
//! let mut client = Client::<Chat>::builder("ws://127.0.0.1:3000")
//!     .params(&ChatParams { room: "r1".into() })     // ws://127.0.0.1:3000/chat/r1
//!     .query("username", "alice")                     // ...?username=alice
//!     .header("authorization", "Bearer t0k3n")
//!     .reconnect(Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10)))
//!     .heartbeat(Duration::from_secs(15))
//!     .connect()
//!     .await?;
//!
//! client.send(&ChatIn::Say { text: "hi".into() }).await?;
//! while let Some(event) = client.next().await {
//!     match event {
//!         Event::Message(ChatOut::Said { from, text }) => println!("{from}: {text}"),
//!         Event::Message(ChatOut::Pong) => {}
//!         Event::Undecodable { text, error } => eprintln!("not a ChatOut: {text} ({error})"),
//!         Event::Disconnected { code, reason } => eprintln!("lost ({code:?}): {reason}"),
//!         Event::Reconnected => eprintln!("back"),
//!         Event::GaveUp { error, .. } => eprintln!("gave up: {error}"),
//!         _ => {}
//!     }
//! }
//! client.close().await?;
//! # Ok(()) }
//! ```
//!
//! # Behaviour
//!
//! - **Connecting.** `ws://` or `wss://` (TLS with rustls; Mozilla's roots, plus any
//!   [`add_root_certificate`](ClientBuilder::add_root_certificate) adds for a private CA).
//!   [`ClientBuilder::connect`] tries once and returns the error: a bad URL,
//!   a [missing path parameter](ClientError::MissingParam), a [refused upgrade](ClientError::Refused)
//!   with the server's status and body (a middleware's `401 {"error":"Unauthorized"}`), a
//!   [connect failure](ClientError::Connect), a [TLS failure](ClientError::Tls) (an untrusted
//!   certificate) or a [timeout](ClientError::Timeout).
//! - **Reconnecting.** After that first connection, a lost connection — the server closed
//!   it (with any code, 1001 on shutdown included), an I/O error, or a dead heartbeat — yields
//!   [`Event::Disconnected`], then the client reconnects with [`Backoff`] (exponential,
//!   jittered, capped; the count resets after each success) and yields [`Event::Reconnected`].
//!   With [`Backoff::max_attempts`] it may give up ([`Event::GaveUp`]); with
//!   [`without_reconnect`](ClientBuilder::without_reconnect) it never tries. Either way the
//!   stream then ends and sends fail with [`ClientError::Closed`].
//! - **Sending.** [`Client::send`] queues the JSON of a `C::In` for the background task, so
//!   it works during a reconnect: up to [`queue`](ClientBuilder::queue) messages (64) wait
//!   and go out, in order, on the new connection; `send` waits when the queue is full,
//!   [`try_send`](Client::try_send) fails with [`ClientError::QueueFull`]. [`Client::sender`] gives
//!   a cloneable handle for other tasks. Delivery is at most once.
//! - **Receiving.** Text and binary messages are decoded from JSON into `C::Out`; one that
//!   does not decode is an [`Event::Presence`] when it is a presence frame of a room
//!   ([`presence::Presences`] keeps the room's list from them), else an
//!   [`Event::Undecodable`] with the text and serde's error, and the stream goes on. If events are not read, at most 256 wait; then the client stops
//!   reading the socket (TCP backpressure reaches the server).
//! - **Heartbeat.** The client pings every [`heartbeat`](ClientBuilder::heartbeat) interval
//!   (15 s); when no frame at all (message, ping, pong) arrived for two intervals the
//!   connection counts as dead and is replaced. Asena servers also ping clients; the client
//!   answers those by itself.
//! - **Closing.** [`Client::close`] sends what is queued, then closes with 1000. Dropping
//!   the client does the same without waiting.
//!
//! - **Checked publish and subscribe.** [`publish`] and [`subscribe`] check each message
//!   against the channel's constraints (by default; [`MessageOptions`] skips it);
//!   [`publish_on`] and [`subscribe_on`] do the same over a tokio-tungstenite socket the
//!   application connected itself. Code generated from an AsyncAPI document calls them.
//!
//! # Managed services
//!
//! A `#[websocket(path = .., managed)]` service speaks the managed protocol (Ignis's model:
//! `{"event","data"}` envelopes, in-band authentication, heartbeats, rooms the client asks
//! to join). [`managed::ManagedConnection`] speaks it: optional encryption (the same
//! sealed channel as the server's, from `asena_protocol::crypto`), `authenticate` and
//! `connected`, `heartbeat` events, `join`/`leave` answered or timed out, application
//! events typed both ways, and reconnects that agree new keys, authenticate again and
//! rejoin the rooms. It runs on the same background task and [`Backoff`] as [`Client`].
//!
//! ```no_run
//! use std::time::Duration;
//! use asena_client::managed::{ManagedConnection, ManagedEvent};
//! use serde::{Deserialize, Serialize};
//!
//! // The service's `receives` and `sends` types (or copies of them).
//! #[derive(Serialize)]
//! #[serde(tag = "event", content = "data", rename_all = "snake_case")]
//! enum RealtimeIn { Say { room: String, text: String } }
//!
//! #[derive(Debug, Deserialize)]
//! #[serde(tag = "event", content = "data", rename_all = "snake_case")]
//! enum RealtimeOut { Said { room: String, from: String, text: String } }
//!
//! # async fn run() -> Result<(), asena_client::ClientError> {
//! let mut conn = ManagedConnection::<RealtimeOut>::builder("ws://127.0.0.1:3000/ws")
//!     .credentials(&serde_json::json!({"token": "alice-token"}))   // `authenticate`'s data
//!     .encrypt(true)                                                // `encrypt` first
//!     .heartbeat(Duration::from_secs(10))                           // under the server's timeout
//!     .connect()
//!     .await?;                                                      // after `connected`
//! let answer = conn.join(["public-1", "secret"]).await?;            // {rooms, denied}
//! println!("joined {:?}, denied {:?}", answer.rooms, answer.denied);
//! conn.send(&RealtimeIn::Say { room: "public-1".into(), text: "hi".into() }).await?;
//! while let Some(event) = conn.next().await {
//!     match event {
//!         ManagedEvent::Message(RealtimeOut::Said { from, text, .. }) => println!("{from}: {text}"),
//!         ManagedEvent::Error { message, .. } => eprintln!("server: {message}"),
//!         ManagedEvent::Disconnected { code, reason } => eprintln!("lost ({code:?}): {reason}"),
//!         ManagedEvent::Reconnected { connected, rejoining } => {
//!             eprintln!("back as {}, rejoining {rejoining:?}", connected.id)
//!         }
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! The client needs a tokio runtime. Logs go to the `tracing` target `asena::client`.

pub mod ack;
mod backoff;
mod builder;
mod checked;
mod client;
mod driver;
mod error;
mod event;
pub mod managed;
mod url;

/// Who is in a room: the `presence_state` and `presence_diff` frames a service with presence
/// sends ([`Event::Presence`], [`managed::ManagedEvent::Presence`]) and [`Presences`](presence::Presences),
/// a room's list kept from them (re-exported from `asena_protocol`).
pub mod presence {
    pub use asena_protocol::presence::{
        PresenceDiff, PresenceFrame, PresenceList, PresenceMeta, PresenceMetas, PresenceState,
        Presences,
    };
}

pub use backoff::Backoff;
pub use builder::ClientBuilder;
pub use checked::{MessageOptions, publish, publish_on, subscribe, subscribe_on};
pub use client::{Client, Sender};
pub use error::{BoxError, ClientError};
pub use event::Event;

/// The contract a client is typed by (re-exported from `asena_protocol`).
pub use asena_protocol::Channel;
/// Why a received message was refused by [`subscribe`] or [`subscribe_on`], or a message to
/// publish by [`publish`] or [`publish_on`] (re-exported from `asena_protocol`).
pub use asena_protocol::DecodeError;
/// The traits of the sockets [`publish_on`] and [`subscribe_on`] take (re-exported from
/// `futures-util`).
pub use futures_util::{Sink, Stream};
/// The WebSocket library of [`publish_on`] and [`subscribe_on`]'s sockets.
pub use tokio_tungstenite;
