//! # Asena for Rust
//!
//! A declarative WebSocket framework on tokio and axum. Annotate plain structs and get a
//! real-time server: services with rooms and pub/sub, middleware that runs before the upgrade,
//! dependency injection wired at link time, a typed broker handle ([`Ulak`]) to send from
//! anywhere, and fan-out across instances through a [`Transport`](crate::transport::Transport).
//!
//! ## Quick start
//!
//! ```no_run
//! use asena_runtime::prelude::*;
//! use asena_runtime::Asena;
//!
//! #[websocket(path = "/echo")]
//! struct Echo;
//!
//! impl WebSocketService for Echo {
//!     type Data = ();
//!     async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
//!         ws.subscribe("everyone")?;
//!         Ok(())
//!     }
//!     async fn on_message(&self, ws: &Socket<Self>, msg: Message) -> Result<()> {
//!         // to everyone in the room but the sender, on every instance
//!         ws.publish("everyone", &msg)?;
//!         Ok(())
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), asena_runtime::Error> {
//!     Asena::builder().build().await?.serve("127.0.0.1:3000").await
//! }
//! ```
//!
//! ## The macros
//! - `#[service]` — a component (singleton). `#[service(name = "Users")]` renames it.
//! - `#[middleware]` — a component implementing [`Middleware`], run before the upgrade.
//! - `#[websocket(path = "/chat", name = "ChatSocket", middlewares = [Auth])]` — a component
//!   implementing [`WebSocketService`], served at `path` (which may hold `{param}`s). With
//!   `params = P`, `receives = In` and `sends = Out` it is a typed channel (below).
//!
//! Fields marked `#[inject]` are filled from the container: `Arc<T>` for a component `T`,
//! `Option<Arc<T>>` when `T` may be absent, [`Ulak<N>`] for websocket service `N`, or
//! [`UlakBroker`] (the field types that implement [`Injectable`](crate::di::Injectable)). Every other field is built with `Default::default()`; an `Arc<T>` field of
//! a registered component `T` without `#[inject]` gets a deprecation warning, since it would
//! hold a private instance instead of the shared one. Generic structs are not supported.
//!
//! ## Dependency injection
//! [`Asena::builder`] collects every registered component, checks the whole graph and
//! reports *every* problem in one error — duplicate names or paths, missing providers
//! (`UserService needs TokenService, which is not registered`), cycles
//! (`Circular dependency detected: A -> B -> A`) — then builds each component once,
//! dependencies first. Components may implement [`Lifecycle`] for `on_start`/`on_stop`.
//!
//! **The linking caveat.** Registration uses `inventory`: a component is found when the crate
//! declaring it is linked into the binary. A library crate that the binary never references
//! is not linked, so its components silently do not exist; an app with no components at all
//! fails to build with an error that says so. Reference such a crate with
//! `use my_components as _;`, or register its types explicitly with
//! [`AsenaBuilder::service`], [`AsenaBuilder::websocket`] and [`AsenaBuilder::middleware`]
//! (together with [`AsenaBuilder::without_auto_registration`] to build several isolated apps
//! in one process, as tests do).
//!
//! ## Sockets and rooms
//! Handlers receive a [`Socket<Self>`](Socket): `send`, `send_json`, `subscribe`,
//! `unsubscribe`, `publish` (room minus the sender), `rooms`, `close`, the request's headers,
//! query and path parameters, and the subprotocol chosen from the ones the service lists in
//! [`WebSocketService::PROTOCOLS`] (`ws.protocol()`). What the service declares comes with
//! its types: `ws.data().values` is its `Data` (what middleware stored), `ws.params()` its
//! `params`, and sends take its `sends` type. The [`Namespace`] (`ws.namespace()`,
//! [`Ulak<N>`], [`Asena::namespace`]) lists sockets and rooms and sends with `to(room, ..)`
//! and `broadcast(..)` (sender included); [`Ulak<N>`] lists them as `Socket<N>`, with their
//! data. Every socket is also in a room named by its id. Memberships are removed when a
//! socket closes.
//!
//! What can be sent follows one rule ([`IntoFrame`]): strings go out as text exactly as
//! given, bytes as binary, and `Serialize` values as JSON through [`Json`] or `send_json`.
//!
//! ## Typed channels
//! `#[websocket(path = "/rooms/{id}", params = Room, receives = In, sends = Out)]` declares a
//! service's protocol once ([`Channel`]): path parameters deserialize into `Room` before the
//! upgrade (400 naming the parameter otherwise; `ctx.params::<Room>()` in middleware, which
//! runs for any service, and `ws.params()`, a `&Room`, in handlers), `on_message` gets a
//! decoded, validated `In` (garde constraints;
//! failures go to [`WebSocketService::on_invalid`] with a [`DecodeError`] and the socket
//! stays open), and the service's [`Socket`], [`Namespace`] and [`Ulak`] accept only `Out`
//! ([`Encode`]; `.raw()` for anything else). The same declarations give
//! [`Asena::asyncapi`] its AsyncAPI 3.0 document and the `asena-client` crate its types.
//!
//! ## The managed protocol
//! A service declared `#[websocket(path = "..", managed)]` implements [`ManagedService`](crate::managed::ManagedService) and
//! speaks Ignis's managed protocol instead of raw messages: `{"event","data","id"}` envelopes, authentication after
//! open (4001 timeout, 4003 refused), heartbeats (4002), rooms the client asks to join (the
//! service validates; denied by default), users with several sessions, and [`Managed`](crate::managed::Managed)
//! sends by client, user, room or broadcast with `exclude` lists, on every instance through
//! Ignis's layout of channels on the app's transport. See the [`managed`] module.
//!
//! ## Requests and replies
//! Either side may ask and wait for the answer within a timeout ([`ack`]): the server with
//! `ws.request(msg).timeout(d).await` on a socket or [`Namespace::request_room`] on a room
//! (one deadline, each socket's result), a client with `{"$req":id,"data":..}` to a service
//! that answers requests ([`ack::Answer`], `const ANSWERS: Answers<Self> =
//! Answers::ON_REQUEST;`). Pending requests are bounded per socket
//! ([`Limits::max_pending_requests`](crate::config::Limits::max_pending_requests)); replies
//! nobody awaits are counted and dropped, never delivered to a handler.
//!
//! ## Presence
//! With [`AsenaBuilder::presence`], handlers track their socket in a room with metadata under
//! a key (`ws.presence().track_as("lobby", user, &meta)?`), and `ns.presence().list(room)`
//! tells who is present on every instance; the room's members get `presence_diff` frames.
//! Instances exchange their own entries through the transport, with a heartbeat, so the
//! entries of an instance that dies go after three intervals. See the [`presence`] module.
//!
//! ## Errors and limits
//! A handler that fails (returns `Err` or panics) sends
//! `{"type":"error","message":"Server error occurred"}` and closes that socket with 1011;
//! nothing else is affected, and messages the socket had already sent are not dispatched.
//! Close codes: 1007 invalid UTF-8 (as soon as a text message cannot be completed to valid
//! UTF-8, even mid-frame), 1009 message too big ([`AsenaBuilder::max_message_size`], 1 MiB by
//! default, counted after inflation), 1008 policy (slow consumer, connection limit), 1001
//! shutdown, idle timeout and unanswered pings, 1002 protocol errors. Close codes that may not
//! be sent ([`close_code::is_sendable`]) never go on the wire.
//!
//! ## The wire
//! Quiet sockets are pinged ([`AsenaBuilder::ping`], every 30 s by default) and closed when
//! they stop answering; unwritten pongs are bounded (2 KiB per socket). permessage-deflate
//! ([`Compression`](crate::config::Compression), on by default when the client offers it) compresses a room message once
//! for every compressing member.
//!
//! ## Many instances
//! A [`Transport`](crate::transport::Transport) carries room messages to the other instances of a fleet; each instance
//! delivers them to its own sockets, exactly once, and `publish` still skips the sender.
//! Pick one on the builder (`.transport(RedisTransport::new("redis://127.0.0.1:6379"))`,
//! `NatsTransport::new("nats://127.0.0.1:4222")`) or from the environment with
//! [`transport::from_env`] (`ASENA_TRANSPORT`). The [`wire`] format (topics, envelope,
//! channel) is Asena's, so mixed fleets interoperate, broadcasts included; the Redis channel
//! is configurable ([`RedisTransport::channel`](crate::transport::RedisTransport::channel)). [`Asena::transport_stats`] counts what was
//! published, received and dropped. An [`Emitter`](crate::transport::Emitter) publishes into a fleet from a process
//! without a server.
//!
//! Rooms can be routed by interest, so that an instance receives only the messages of rooms
//! it has members in: NATS does it by default ([`NatsTransport`](crate::transport::NatsTransport)), Redis with
//! [`RedisTransport::route_by_interest`](crate::transport::RedisTransport::route_by_interest), and a Redis Cluster with [`RedisTransport::cluster`](crate::transport::RedisTransport::cluster)
//! (`redis-cluster://host:port,host:port`) on sharded pub/sub, which keeps a room's messages on
//! the node that owns it.
//!
//! ## Logs
//! Everything logs through `tracing` under seven targets, for `RUST_LOG` (e.g.
//! `RUST_LOG=asena::ws=debug,asena::transport=info`):
//!
//! | target | what |
//! |---|---|
//! | `asena::ws` | upgrades, connections (open, close with code and reason, handler failures, protocol errors), pings |
//! | `asena::middleware` | the middleware chain of each upgrade, refusals, origin checks |
//! | `asena::managed` | the managed protocol: authentication, timeouts, joins, the fleet bus |
//! | `asena::transport` | brokers: connects, reconnects, drops |
//! | `asena::presence` | instances whose presence entries were removed (silent, or said goodbye), remote entries dropped |
//! | `asena::di` | the component graph at startup |
//! | `asena::inspector` | the inspector's guard and actions, instances joining and leaving the fleet view |
//!
//! Each connection's task runs in a `connection` span (`socket_id`, `path`, `remote`), so
//! every line it logs (its handlers' included) carries them; the middleware chain runs in an
//! `upgrade` span (`path`, `remote`).
//!
//! ## Metrics
//! [`AsenaBuilder::metrics_route`] (opt-in) serves Prometheus metrics as OpenMetrics text,
//! e.g. `.metrics_route("/metrics")`; [`Asena::metrics_text`] returns the same text for an
//! app that serves it from its own HTTP server. Each connection's reader counts its messages
//! and its handlers' sends in plain cells and adds them to relaxed atomics once per read (a
//! room send adds its recipient count once, not once per recipient), and the text is made
//! from those counters at scrape time. The fan-out latency histogram is sampled (one clock
//! read per sampled send; see its row below). Labels come from bounded sets only: `namespace` is the
//! service's path template (`/user/events/{user_id}`), never a concrete path, socket id or
//! room name.
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `asena_connections` | gauge | `namespace` | open connections |
//! | `asena_connections_opened_total` | counter | `namespace` | connections admitted and running |
//! | `asena_connections_closed_total` | counter | `namespace`, `code` | connections ended, by the close code `on_close` saw (1006: the peer vanished) |
//! | `asena_refused_upgrades_total` | counter | `namespace`, `status` | upgrade requests answered with an HTTP status instead of 101 (middleware refusals, bad path parameters, origin, shutdown) |
//! | `asena_rejected_connections_total` | counter | `namespace` | connections closed with 1008 by the connection limit |
//! | `asena_rooms` | gauge | `namespace` | named rooms with a local member |
//! | `asena_messages_received_total` | counter | `namespace` | messages read from sockets |
//! | `asena_received_bytes_total` | counter | `namespace` | their payload bytes (after inflating) |
//! | `asena_messages_sent_total` | counter | `namespace` | sends on this instance: room, broadcast and direct (a room send counts once) |
//! | `asena_deliveries_total` | counter | `namespace` | frames queued to local sockets (local sends and messages from other instances) |
//! | `asena_slow_consumer_total` | counter | `namespace` | sockets that hit the slow-consumer policy (once each) |
//! | `asena_dropped_messages_total` | counter | `namespace` | frames not queued because a socket's send queue was full |
//! | `asena_handler_errors_total` | counter | `namespace` | handlers that failed or panicked |
//! | `asena_protocol_errors_total` | counter | `namespace` | connections closed for protocol violations |
//! | `asena_invalid_messages_total` | counter | `namespace` | messages that did not decode into the service's `receives` type |
//! | `asena_rate_limited_total` | counter | `namespace` | messages over their socket's inbound rate limit ([`RateLimit`](crate::config::RateLimit)): dropped, or the one that closed the socket with 1008 |
//! | `asena_fanout_queue_seconds` | histogram | `namespace` | time from a message's arrival (its bytes read) to the local fan-out of a room or broadcast message its handler sent being *queued* on every local member (not written); **sampled**: measured for each connection's first such send, then for one in 16 at random, so it is a random sample of the latencies but its count is about a sixteenth of the room sends, not their number |
//! | `asena_transport_{published,received,dropped,oversize,errors,reconnects}_total` | counter | — | the transport's counters (`Asena::transport_stats`), when there is one |
//! | `asena_transport_subscriptions` | gauge | — | rooms the instance is subscribed to on the broker, when the transport routes by interest (NATS) |
//!
//! The same counters are readable in code from [`Namespace::stats`] ([`NamespaceStats`](crate::namespace::NamespaceStats)).
//!
//! ## Inspector
//! [`AsenaBuilder::inspector`] (opt-in) serves a live page for operators at a path of your
//! choice, behind a guard [`Middleware`] you provide: the fleet's instances with their
//! counts and rates (each instance announces itself through the transport every
//! [`AsenaBuilder::announce_every`], default 1 s), this instance's sockets and rooms (paged,
//! searchable), and actions to disconnect a socket or take it out of a room. Under the path
//! (say `/_asena`):
//!
//! | request | answer |
//! |---|---|
//! | `GET /_asena` | the page; without credentials (the guard answers 401) a login form |
//! | `POST /_asena/login` `token=..` (form) | runs the guard on the token; when it passes, `303` to the page with an `HttpOnly`, `SameSite=Strict` cookie the inspector hands to the guard as the bearer token of later requests |
//! | `POST /_asena/logout` | clears the cookie |
//! | `GET /_asena/ws` | a WebSocket: `{"type":"fleet","at","self","instances"}` on open and at every interval |
//! | `GET /_asena/api/fleet` | `{"self", "instances": [{id, name, addr, self, startedAt, lastSeenMs, sockets, rooms, rates, namespaces, transport}]}` (rates: `received`, `sent`, `deliveries` per second; `transport`: the broker counters with `publishedRate` and `receivedRate`) |
//! | `GET /_asena/api/namespaces` | `[{path, name, sockets, rooms}]` of this instance |
//! | `GET /_asena/api/sockets?ns=&q=&offset=&limit=` | `{namespace, total, matched, offset, limit, sockets: [{id, path, addr, rooms, connectedAt, queuedBytes}]}`, oldest first, `q` matching part of the id, address or a room; at most 500 a page (default 50) |
//! | `GET /_asena/api/rooms?ns=&q=&offset=&limit=` | `{namespace, total, matched, offset, limit, rooms: [{name, size}]}`, by name |
//! | `POST /_asena/api/disconnect` `{"socket", "code"?, "reason"?}` | closes the socket (default 1000, "Disconnected by an operator"); 404 when it is not here, 400 for a code that may not be sent |
//! | `POST /_asena/api/leave` `{"socket", "room"}` | takes it out of the room; 404 when it is not in it |
//!
//! The token travels as `Authorization: Bearer` or in the login cookie, never in the URL: a
//! request with `token` in its query is refused with 400. [`InspectorToken`] is a ready-made
//! guard (constant-time comparison, [`secret_eq`]).
//!
//! Every request passes the guard first, the WebSocket's upgrade included. The inspector's
//! own sockets are not one of the app's namespaces: they appear in no count, metric or
//! AsyncAPI document.
//!
//! ## Feature flags
//! - `redis` (default): [`RedisTransport`](crate::transport::RedisTransport), Redis support in [`Emitter`](crate::transport::Emitter) (its managed
//!   methods included), and the managed protocol across instances (`transport::ignis`).
//! - `nats` (default): [`NatsTransport`](crate::transport::NatsTransport) and NATS support in [`Emitter`](crate::transport::Emitter).
//!
//! ## HTTP next to the sockets
//! [`AsenaBuilder::router`] merges your own axum routes; their handlers take components with
//! the [`FromApp`] extractor. [`AsenaBuilder::layer`] wraps the websocket routes in any tower
//! layer (tracing, timeouts, CORS) that then sees every upgrade request.
//!
//! ## Performance
//! See the [`namespace`] module for the fan-out hot path: one encoding per message, shared
//! bytes for every recipient, one batched write per socket per flusher pass, no buffer held
//! by idle sockets. The repository's `ARCHITECTURE.md` describes the layers and the life of
//! a connection and of a room message.
#![warn(missing_docs)]

// Modules from the bottom layer up: each one uses only modules listed above it (checked by
// listing each file's `use crate::` lines; see ARCHITECTURE.md).
mod error;
pub mod config;
mod stats;
mod shutdown;
pub mod trace;
mod request;
mod rooms;
mod codec;
mod channel;
pub mod asyncapi;
mod connection;
pub mod transport;
pub mod namespace;
pub mod ack;
mod secret;
mod middleware;
mod service;
pub mod protocol;
pub mod presence;
#[cfg(feature = "redis")]
pub mod history;
mod ws;
pub mod managed;
pub mod di;
mod ulak;
mod observe;
mod app;

pub use app::{AppValue, Asena, AsenaBuilder, Error, FromApp, Middlewares, Server};
pub use asena_macros::{middleware, service, websocket};
pub use asena_protocol::delivery::{Delivered, Delivery};
/// The wire format between instances (topics, the JSON envelope, channel names), from
/// `asena-protocol`: below every layer here.
pub use asena_protocol::wire;
pub use channel::{Channel, DecodeError, DecodeErrorKind, Encode, Raw, Receives, Sends};
pub use codec::{Frame, IntoFrame, Json, Message, close_code};
pub use di::Lifecycle;
pub use error::{BoxError, Result};
pub use middleware::{Context, IntoStatusCode, Middleware, Next, Refusal, Scope, TokenGuard};
pub use namespace::{Namespace, SendError, Socket, SocketRef};
pub use observe::inspector::InspectorToken;
pub use secret::secret_eq;
pub use service::WebSocketService;
pub use ulak::{BulkOp, BulkResult, Ulak, UlakBroker};

/// The README's Rust examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// What a file of services, middleware and components needs, in one import: the macros,
/// the handler and middleware traits with what their signatures name, `Ulak` and `Arc` for
/// injected fields, and the derives of typed messages.
///
/// What builds and serves the app ([`Asena`], [`FromApp`] for HTTP handlers, [`Scope`],
/// [`UlakBroker`]) is imported from the crate root, and a managed service's trait and types
/// from [`managed`].
pub mod prelude {
    pub use crate::{
        BoxError, Context, Json, Lifecycle, Message, Middleware, Next, Refusal, Result, Socket,
        SocketRef, Ulak, WebSocketService, middleware, service, websocket,
    };
    pub use garde::Validate;
    pub use schemars::JsonSchema;
    pub use serde::{Deserialize, Serialize};
    pub use serde_json::json;
    pub use std::sync::Arc;
}

pub use garde;
pub use schemars;

/// Support for the macros' generated code. Not public API: may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::channel::{Channel, Raw};
    pub use crate::codec::Message;
    pub use crate::di::{
        Component, ComponentKind, ComponentRecord, Dependency, DiError, FieldProbe, HookProbe,
        Hooks, Injectable, MiddlewareRef, ProbeDefault, ProbeLifecycle, ProbePlainField,
        ProbeUninjectedComponent, Registration, Resolver, WebSocketRecord, assert_middleware,
        construct_erased, middleware_entry, websocket_entry,
    };
    pub use crate::managed::ManagedProtocol;
    pub use crate::protocol::{ChannelProtocol, Endpoint};
    pub use asena_protocol::delivery::{Delivery, probe as delivery_probe};
    pub use inventory;
}

/// Entry points for the fuzz targets of the repository's `fuzz/` crate. Compiled only under
/// `cfg(fuzzing)` (which `cargo fuzz` sets); not API, never built otherwise.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod __fuzz {
    use bytes::BytesMut;
    use http::{HeaderMap, HeaderName, HeaderValue, Method, header};

    use crate::codec::{Decoder, Incoming, close_code, deflate};
    use crate::wire::{self, Envelope};

    /// A client message of a managed service: the protocol's envelope decoder, then the key
    /// agreement or the channel's decryption its event leads to.
    pub fn managed_envelope(data: &[u8]) {
        crate::managed::fuzz_envelope(data);
    }

    /// The data of an `encrypted` client message, opened by a channel's server end (always
    /// refused); then a message sealed with the input as plaintext opens once, and only once.
    pub fn encrypted_frame(data: &[u8]) {
        crate::managed::crypto::fuzz_encrypted_frame(data);
    }

    /// Client bytes into the frame decoder, without permessage-deflate.
    pub fn frame_decoder(data: &[u8]) {
        decode_frames(data, false);
    }

    /// Client bytes into the frame decoder, with permessage-deflate negotiated.
    pub fn frame_decoder_deflate(data: &[u8]) {
        decode_frames(data, true);
    }

    /// The first byte picks the read size (1 to 64 bytes), the message size limit and the
    /// client's context takeover; the rest is the stream. Fed in reads of that size and
    /// whole, the decoder must yield the same results, and fail only with 1002, 1007 or 1009.
    fn decode_frames(data: &[u8], deflate: bool) {
        let Some((&first, stream)) = data.split_first() else {
            return;
        };
        let read = usize::from(first & 0x3f) + 1;
        let max = if first & 0x40 == 0 { 1 << 20 } else { 256 };
        let deflate = deflate.then_some(deflate::Deflate {
            server_window_bits: deflate::MAX_WINDOW_BITS,
            client_no_context_takeover: first & 0x80 != 0,
        });
        let mut decoder = Decoder::new(max, deflate.as_ref());
        let in_reads = feed(&mut decoder, stream, read);
        let mut decoder = Decoder::new(max, deflate.as_ref());
        let whole = feed(&mut decoder, stream, stream.len().max(1));
        assert_eq!(in_reads, whole, "reads of {read} bytes");
    }

    /// Everything the decoder yields for `stream` in reads of `read` bytes, up to its first
    /// error (as the close code and reason it maps to).
    fn feed(
        decoder: &mut Decoder,
        stream: &[u8],
        read: usize,
    ) -> Vec<Result<Incoming, (u16, &'static str)>> {
        let mut buf = BytesMut::new();
        let mut results = Vec::new();
        for piece in stream.chunks(read) {
            buf.extend_from_slice(piece);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(incoming)) => results.push(Ok(incoming)),
                    Ok(None) => break,
                    Err(e) => {
                        let code = e.close_code();
                        let expected = [
                            close_code::PROTOCOL,
                            close_code::INVALID_PAYLOAD,
                            close_code::TOO_BIG,
                        ];
                        assert!(expected.contains(&code), "{e:?} closes with {code}");
                        results.push(Err((code, e.reason())));
                        return results;
                    }
                }
            }
        }
        results
    }

    /// An upgrade request: the first line is `METHOD target`, then `name: value` lines. Runs
    /// the handshake checks, the Origin allow-list, query parsing and deflate negotiation.
    pub fn upgrade_request(data: &[u8]) {
        let mut lines = data.split(|&b| b == b'\n');
        let first = lines.next().unwrap_or_default();
        let mut words = first.split(|&b| b == b' ');
        let method = words.next().unwrap_or_default();
        let target = words.next().unwrap_or_default();
        let Ok(method) = Method::from_bytes(method) else {
            return;
        };
        let mut headers = HeaderMap::new();
        for line in lines {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(&line[..colon]),
                HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
            ) else {
                continue;
            };
            headers.append(name, value);
        }

        if let Ok(key) = crate::ws::upgrade::handshake_key(&method, &headers) {
            assert_eq!(method, Method::GET);
            assert_eq!(key.len(), 24);
            assert_eq!(crate::ws::upgrade::accept_key(key.as_bytes()).len(), 28);
        }

        // The Origin policies: `*` lets through any request with no Origin or one readable
        // Origin, an allow-list only its entries; same-origin never panics.
        use crate::ws::origin::OriginPolicy;
        let origin = headers.get(header::ORIGIN);
        let origins = headers.get_all(header::ORIGIN).iter().count();
        let star = OriginPolicy::AllowList(std::sync::Arc::from(vec!["*".to_owned()]));
        if origins == 0 || (origins == 1 && origin.is_some_and(|o| o.to_str().is_ok())) {
            assert!(star.allows(&headers));
        }
        let allowed = vec![
            "https://app.example".to_owned(),
            "http://localhost:3000".to_owned(),
        ];
        let list = OriginPolicy::AllowList(std::sync::Arc::from(allowed.clone()));
        if list.allows(&headers)
            && let Some(origin) = origin.and_then(|o| o.to_str().ok())
        {
            assert!(allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)));
        }
        let _ = OriginPolicy::SameOrigin.allows(&headers);

        let query = target
            .iter()
            .position(|&b| b == b'?')
            .map(|i| String::from_utf8_lossy(&target[i + 1..]));
        let pairs = crate::request::parse_query(query.as_deref());
        let again = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&pairs)
            .finish();
        assert_eq!(crate::request::parse_query(Some(&again)), pairs);

        if let Some((agreed, response)) = deflate::negotiate(&headers) {
            assert!((9..=deflate::MAX_WINDOW_BITS).contains(&agreed.server_window_bits));
            // The response is an offer we would accept, with the same parameters.
            let mut echo = HeaderMap::new();
            echo.insert(header::SEC_WEBSOCKET_EXTENSIONS, response);
            assert_eq!(deflate::negotiate(&echo).map(|(d, _)| d), Some(agreed));
        }
    }

    /// A message from the Redis or NATS transport: decoded, re-encoded and decoded again to
    /// the same envelope, and routed the way the namespaces route it.
    pub fn envelope(data: &[u8]) {
        let Ok(envelope) = Envelope::decode(data) else {
            return;
        };
        let raw = Envelope::encode(
            &envelope.topic,
            &envelope.payload,
            envelope.binary,
            &envelope.origin,
            envelope.trace,
        );
        assert_eq!(Envelope::decode(&raw).as_ref(), Ok(&envelope));
        for namespace in ["chat", "ws/notifications", ""] {
            let _ = wire::target(&envelope.topic, namespace);
        }
    }
}
