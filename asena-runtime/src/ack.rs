//! Acknowledgements: requests that await a reply, both ways, on one socket or a whole room
//! (Socket.IO's `emitWithAck` and its callbacks).
//!
//! **Server → client.** [`SocketRef::request`] sends a request and waits for the client's
//! reply, within a timeout:
//!
//! ```no_run
//! # use asena_runtime::prelude::*;
//! # use std::time::Duration;
//! # async fn f(ws: &SocketRef) -> std::result::Result<(), asena_runtime::ack::AckError> {
//! let ready: bool = ws
//!     .request(json!({"question": "ready?"}))
//!     .timeout(Duration::from_secs(2))
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! The reply decodes into whatever type the caller asks for (`serde_json::Value` for
//! anything); it fails with an [`AckError`]: [`Timeout`](AckError::Timeout) (the entry is
//! freed; a reply after it is ignored and counted), [`Closed`](AckError::Closed) (the
//! socket closed before it replied), [`Undecodable`](AckError::Undecodable),
//! [`Failed`](AckError::Failed) (the client answered with an error),
//! [`TooManyPending`](AckError::TooManyPending) (the socket has
//! [`Limits::max_pending_requests`](crate::config::Limits::max_pending_requests) requests
//! pending already) or [`Send`](AckError::Send). A typed service's socket sends its `sends`
//! type as the request; the untyped handle sends any [`serde_json::Value`] or
//! [`Json`]. Without [`timeout`](SocketRequest::timeout) a request waits
//! [`DEFAULT_TIMEOUT`].
//!
//! [`Namespace::request_room`] asks every local member of a room at once and collects each
//! socket's result, under one deadline.
//!
//! **Client → server.** A service that answers requests implements [`Answer`] (its
//! `Request` and `Reply` types, and `on_request`) and says so in its service trait with
//! `const ANSWERS: Answers<Self> = Answers::ON_REQUEST;`. A handler that fails or panics
//! answers the request with a failure (`handler_failed`) and then, as any failing handler,
//! makes the socket close with 1011; a request that does not decode is answered with the
//! decode error's code and the socket stays open.
//!
//! # On the wire
//!
//! The channel protocol's shapes are `asena_protocol::ack`'s: `{"$req":id,"data":..}`,
//! `{"$ack":id,"data":..}` and `{"$ack":id,"error":{"code","message"}}`. The managed
//! protocol's are its envelope's: a request is an event with a string `id`, the reply the
//! event `ack` with the same `id` (see [`managed`](crate::managed)).
//!
//! # What it costs, what it bounds
//!
//! A socket that was never asked anything pays one empty pointer-sized slot and one load per
//! message; a service without [`Answer`] pays nothing (its `ANSWERS` is a constant).
//! Once asked, a socket's messages that start with `{"$ack":` are replies, never messages:
//! a reply that matches no pending request (late, repeated, an id never asked, an id past
//! `u64`, malformed) is ignored, counted in
//! [`NamespaceStats::stray_replies`](crate::namespace::NamespaceStats::stray_replies) and
//! logged at DEBUG with the socket and the id only. Pending requests per socket are
//! bounded; a timeout, a dropped future and the socket's close each free their entries.
//! Requests from a client go through the same rate limit and one-at-a-time dispatch as its
//! messages.
//!
//! Messages of one socket are handled one at a time, so a handler that awaits a request to
//! *its own* socket waits until it returns before the reply can be read, and times out:
//! spawn such a request (`tokio::spawn`) instead of awaiting it in the handler.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use asena_protocol::ack::Failure;
use asena_protocol::ack::{self as wire, Decoded};

use crate::asyncapi::{ChannelSpec, ProtocolMessage};
use crate::channel::{Channel, DecodeError, Raw, Receives};
use crate::codec::{Frame, Json, Message};
use crate::connection::Conn;
use crate::connection::ack::{Matched, Refused};
use crate::error::{BoxError, Result};
use crate::namespace::{Namespace, SendError, Socket, SocketRef};
use asena_protocol::channel::decode_json;

/// How long a request waits for its reply unless [`SocketRequest::timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request got no usable reply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// No reply within the timeout. The request is forgotten: a reply after it is ignored.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The socket closed (or was closing) before it replied.
    #[error("the socket closed before it replied")]
    Closed,
    /// The socket has as many requests pending as
    /// [`Limits::max_pending_requests`](crate::config::Limits::max_pending_requests) allows;
    /// this one was not sent.
    #[error("{limit} requests are already pending on this socket (max_pending_requests)")]
    TooManyPending {
        /// The limit.
        limit: usize,
    },
    /// The reply came but does not decode into the type asked for.
    #[error("the reply does not decode: {0}")]
    Undecodable(#[source] DecodeError),
    /// The client answered with a failure instead of a reply.
    #[error("the client failed to answer: {} ({})", .0.message, .0.code)]
    Failed(Failure),
    /// The request could not be sent (its payload does not serialize, or the socket may
    /// not receive it now: a managed client that has not authenticated).
    #[error(transparent)]
    Send(#[from] SendError),
}

/// What a request from a handle sending `O` may carry: the service's `sends` type (by
/// value or by reference) for a typed service; a [`serde_json::Value`] or any
/// [`Json`]`(value)` for an untyped one.
#[diagnostic::on_unimplemented(
    message = "this socket or namespace asks with `{O}`, not `{Self}`",
    label = "not a `{O}`",
    note = "a typed service's requests are its `sends` type; an untyped one's a `serde_json::Value` or `Json(value)`"
)]
pub trait Payload<O> {
    /// The payload as JSON text.
    fn to_json(self) -> std::result::Result<String, serde_json::Error>;
}

impl<T: Serialize> Payload<Raw> for Json<T> {
    fn to_json(self) -> std::result::Result<String, serde_json::Error> {
        serde_json::to_string(&self.0)
    }
}

impl Payload<Raw> for Value {
    fn to_json(self) -> std::result::Result<String, serde_json::Error> {
        serde_json::to_string(&self)
    }
}

impl Payload<Raw> for &Value {
    fn to_json(self) -> std::result::Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

impl<O: Serialize + schemars::JsonSchema + Send + Sync + 'static> Payload<O> for &O {
    fn to_json(self) -> std::result::Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

impl<O: Serialize + schemars::JsonSchema + Send + Sync + 'static> Payload<O> for O {
    fn to_json(self) -> std::result::Result<String, serde_json::Error> {
        serde_json::to_string(&self)
    }
}

/// How a request goes on the wire, given its id.
#[derive(Debug)]
pub(crate) enum Body {
    /// The channel protocol's `{"$req":id,"data":<json>}`; the JSON shared by every socket
    /// of a room request.
    Channel(Arc<str>),
    /// The managed protocol's `{"event":..,"data":..,"id":"<id>"}`.
    Managed(Arc<(String, Value)>),
}

impl Body {
    fn frame(&self, id: u64) -> std::result::Result<Frame, serde_json::Error> {
        match self {
            Body::Channel(json) => Ok(Frame::text(&wire::request_json(id, json))),
            Body::Managed(event) => Frame::json(&serde_json::json!({
                "event": event.0,
                "data": event.1,
                "id": id.to_string(),
            })),
        }
    }
}

/// A request to one socket, sent when awaited: `.timeout(d)` sets how long it waits
/// ([`DEFAULT_TIMEOUT`] otherwise), `.await` gives the reply as `R`. See the [module
/// docs](self).
#[derive(Debug)]
#[must_use = "a request is sent when awaited"]
pub struct SocketRequest<R = Value> {
    target: Asked,
    timeout: Duration,
    reply: PhantomData<fn() -> R>,
}

/// Whom a request asks and what, or why it cannot be sent.
type Asked = std::result::Result<(SocketRef, Body), SendError>;

impl<R> SocketRequest<R> {
    pub(crate) fn new(target: Asked) -> Self {
        SocketRequest {
            target,
            timeout: DEFAULT_TIMEOUT,
            reply: PhantomData,
        }
    }

    /// How long to wait for the reply.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl<R: DeserializeOwned + Send + 'static> IntoFuture for SocketRequest<R> {
    type Output = std::result::Result<R, AckError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(ask(self.target, self.timeout))
    }
}

/// Forgets a request's entry however its caller stops waiting.
struct Forget<'a>(&'a Conn, u64);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.acks().forget(self.1);
    }
}

async fn ask<R: DeserializeOwned>(
    target: Asked,
    timeout: Duration,
) -> std::result::Result<R, AckError> {
    let (socket, body) = target?;
    let conn = &socket.conn;
    if !socket.is_open() {
        return Err(AckError::Closed);
    }
    let limit = conn.shared.limits.max_pending_requests;
    let (id, reply) = conn
        .acks()
        .register(limit)
        .map_err(|refused| match refused {
            Refused::Closed => AckError::Closed,
            Refused::Full => AckError::TooManyPending { limit },
        })?;
    let _forget = Forget(conn, id);
    let frame = body
        .frame(id)
        .map_err(|e| SendError::invalid_message(Some(socket.ns.path()), e))?;
    socket.push(&frame)?;
    socket.ns.stats().record_send(1, false);
    match tokio::time::timeout(timeout, reply).await {
        Err(_) => {
            socket.ns.stats().record_request_timeout();
            Err(AckError::Timeout(timeout))
        }
        Ok(Err(_)) => Err(AckError::Closed),
        Ok(Ok(Err(failure))) => Err(AckError::Failed(failure)),
        Ok(Ok(Ok(json))) => decode_json(json.as_bytes()).map_err(AckError::Undecodable),
    }
}

impl<O> SocketRef<O> {
    /// Sends `payload` as a request and, when awaited, waits for the client's reply (see
    /// the [module docs](self)): `ws.request(&msg).timeout(d).await`, typed by the reply
    /// expected (`let reply: Pong = ..`, or `ws.request::<Pong>(..)`). This is the channel
    /// protocol's `{"$req":..}`; a managed client is asked in its own envelope with
    /// [`Managed::request`](crate::managed::Managed::request).
    pub fn request<R>(&self, payload: impl Payload<O>) -> SocketRequest<R> {
        let body = payload
            .to_json()
            .map(|json| (self.raw(), Body::Channel(Arc::from(json))))
            .map_err(|e| SendError::invalid_message(Some(self.ns.path()), e));
        SocketRequest::new(body)
    }

    /// How many requests to this socket await a reply.
    pub fn pending_requests(&self) -> usize {
        self.conn.acks.get().map_or(0, |acks| acks.pending())
    }
}

/// One socket's result in a [`RoomRequest`].
#[derive(Debug)]
pub struct SocketReply<R> {
    /// The socket asked.
    pub socket_id: String,
    /// Its reply, or why there is none.
    pub reply: std::result::Result<R, AckError>,
}

/// A request to every local member of a room, sent when awaited, with one deadline for
/// all: `.await` gives every socket's [`SocketReply`], in the room's order, once each
/// socket replied, failed or the deadline passed. See [`Namespace::request_room`].
#[derive(Debug)]
#[must_use = "a request is sent when awaited"]
pub struct RoomRequest<R = Value> {
    sockets: Vec<SocketRef>,
    body: std::result::Result<Body, SendError>,
    timeout: Duration,
    reply: PhantomData<fn() -> R>,
}

impl<R> RoomRequest<R> {
    /// The deadline, counted from the await, for every socket's reply.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl<R: DeserializeOwned + Send + 'static> IntoFuture for RoomRequest<R> {
    type Output = Vec<SocketReply<R>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let asks = self.sockets.into_iter().map(|socket| {
                let body = match &self.body {
                    Ok(Body::Channel(json)) => Ok(Body::Channel(json.clone())),
                    Ok(Body::Managed(event)) => Ok(Body::Managed(event.clone())),
                    Err(e) => Err(SendError::new(
                        e.code,
                        e.namespace.as_deref(),
                        e.message.clone(),
                    )),
                };
                let socket_id = socket.id().to_owned();
                // Every request gets the whole timeout from now: one deadline.
                ask::<R>(body.map(|body| (socket, body)), self.timeout)
                    .map(|reply| SocketReply { socket_id, reply })
            });
            futures_util::future::join_all(asks).await
        })
    }
}

impl<O> Namespace<O> {
    /// Sends `payload` as a request to every member of `room` on this instance and, when
    /// awaited, collects each one's reply under one deadline
    /// (`ns.request_room("lobby", &msg).timeout(d).await`): a `Vec` of [`SocketReply`], one
    /// per socket that was in the room when it was awaited, each with its reply or its
    /// [`AckError`].
    ///
    /// Sockets on other instances are not asked: a reply travels back on the socket it
    /// answers, and only the instance holding that socket can read it. To ask a whole
    /// fleet, have each instance ask its own members (a message on the transport that
    /// triggers the request there).
    pub fn request_room<R>(&self, room: &str, payload: impl Payload<O>) -> RoomRequest<R> {
        let body = payload
            .to_json()
            .map(|json| Body::Channel(Arc::from(json)))
            .map_err(|e| SendError::invalid_message(Some(self.path()), e));
        RoomRequest {
            sockets: self.sockets_in(room).iter().map(SocketRef::raw).collect(),
            body,
            timeout: DEFAULT_TIMEOUT,
            reply: PhantomData,
        }
    }

    /// The managed protocol's [`RoomRequest`]: `event` and `data` to each socket in `room`.
    pub(crate) fn request_room_event<R>(
        &self,
        room: &str,
        event: std::result::Result<(String, Value), SendError>,
    ) -> RoomRequest<R> {
        RoomRequest {
            sockets: self.sockets_in(room).iter().map(SocketRef::raw).collect(),
            body: event.map(|event| Body::Managed(Arc::new(event))),
            timeout: DEFAULT_TIMEOUT,
            reply: PhantomData,
        }
    }
}

/// Hands a reply from the client to the request it answers, when `bytes` is one and the
/// socket was ever asked something; `false` when it is an ordinary message. A reply that
/// matches nothing is counted and dropped.
#[inline]
pub(crate) fn take_reply(conn: &Conn, bytes: &[u8]) -> bool {
    if conn.acks.get().is_none() || !wire::is_reply(bytes) {
        return false;
    }
    match wire::decode(bytes) {
        Ok(Decoded::Reply { id, data }) => settle(conn, id, Ok(data.get().into())),
        Ok(Decoded::Failed { id, failure }) => settle(conn, id, Err(failure)),
        _ => stray(conn, None, "malformed"),
    }
    true
}

/// Hands the reply `answered` to the request `id` of `conn`; counts it if none awaits it.
pub(crate) fn settle(conn: &Conn, id: u64, answered: crate::connection::ack::Answered) {
    match conn.acks().answer(id, answered) {
        Matched::Delivered => {}
        Matched::Late => stray(conn, Some(id), "late or repeated"),
        Matched::Unknown => stray(conn, Some(id), "never asked"),
    }
}

/// A reply nobody awaits: counted, and one bounded line at DEBUG.
pub(crate) fn stray(conn: &Conn, id: Option<u64>, why: &'static str) {
    conn.shared.stats.record_stray_reply();
    tracing::debug!(target: "asena::ws", socket_id = %conn.id, id, why, "reply ignored");
}

/// The socket closed: its pending requests fail with [`AckError::Closed`] now.
pub(crate) fn closed(conn: &Conn) {
    if let Some(acks) = conn.acks.get() {
        acks.close();
    }
}

/// A service that answers its clients' requests: what it is asked (`Request`), what it
/// answers (`Reply`), and how. Declare it in the service trait with
/// `const ANSWERS: Answers<Self> = Answers::ON_REQUEST;`.
///
/// ```
/// use asena_runtime::prelude::*;
/// use asena_runtime::ack::{Answer, Answers};
///
/// #[derive(Deserialize, JsonSchema, Validate)]
/// #[garde(allow_unvalidated)]
/// struct Sum { a: i64, b: i64 }
///
/// #[websocket(path = "/calc")]
/// struct Calc;
///
/// impl WebSocketService for Calc {
///     type Data = ();
///     const ANSWERS: Answers<Self> = Answers::ON_REQUEST;
///     async fn on_message(&self, _: &Socket<Self>, _: Message) -> Result<()> { Ok(()) }
/// }
///
/// impl Answer for Calc {
///     type Request = Sum;
///     type Reply = i64;
///     // {"$req":1,"data":{"a":2,"b":3}} is answered {"$ack":1,"data":5}
///     async fn on_request(&self, _ws: &Socket<Self>, sum: Sum) -> Result<i64> {
///         Ok(sum.a + sum.b)
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not answer requests (no `impl Answer for {Self}`)",
    note = "`Answers::ON_REQUEST` needs `impl Answer for {Self} {{ type Request = ..; type Reply = ..; async fn on_request(..) }}`"
)]
pub trait Answer: Channel + Sized {
    /// What clients ask: decoded and validated as a `receives` type is ([`Message`] for
    /// the raw payload's JSON text).
    type Request: Receives;
    /// What the service answers, as JSON.
    type Reply: Serialize + schemars::JsonSchema + Send;

    /// Answers one request. `Err` (or a panic) answers the request with the failure
    /// `handler_failed` and then closes the socket with 1011, as any failing handler does.
    fn on_request(
        &self,
        ws: &Socket<Self>,
        request: Self::Request,
    ) -> impl Future<Output = Result<Self::Reply>> + Send;
}

/// What became of one request: the reply's JSON, or the failure to answer with: for a
/// request that did not decode without an error, for a failing handler with its error
/// (which closes the socket).
pub(crate) type Answered = std::result::Result<String, (Failure, Option<BoxError>)>;

type AnswerFn<S> = for<'a> fn(
    &'a S,
    &'a Socket<S>,
    Message,
) -> Pin<Box<dyn Future<Output = Answered> + Send + 'a>>;

/// Whether a service answers its clients' requests: [`Answers::NONE`] (the default) or
/// [`Answers::ON_REQUEST`] (its [`Answer`] impl). A constant, so a service that answers
/// none pays nothing per message.
pub struct Answers<S: Channel> {
    pub(crate) answer: Option<AnswerFn<S>>,
    describe: Option<fn(&mut ChannelSpec)>,
}

impl<S: Channel> std::fmt::Debug for Answers<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answers")
            .field("on_request", &self.answer.is_some())
            .finish()
    }
}

impl<S: Channel> Answers<S> {
    /// The service answers no requests: a client's `{"$req":..}` is an ordinary message.
    pub const NONE: Answers<S> = Answers {
        answer: None,
        describe: None,
    };

    /// Adds the request and its reply to the service's AsyncAPI document.
    pub(crate) fn describe(&self, spec: &mut ChannelSpec) {
        if let Some(describe) = self.describe {
            describe(spec);
        }
    }
}

impl<S: Answer> Answers<S> {
    /// The service answers requests with [`Answer::on_request`].
    pub const ON_REQUEST: Answers<S> = Answers {
        answer: Some(answer::<S>),
        describe: Some(describe::<S>),
    };
}

fn answer<'a, S: Answer>(
    service: &'a S,
    ws: &'a Socket<S>,
    request: Message,
) -> Pin<Box<dyn Future<Output = Answered> + Send + 'a>> {
    Box::pin(async move {
        let request = match S::Request::decode(request) {
            Ok(request) => request,
            Err(e) => return Err((Failure::new(e.kind().code(), e.to_string()), None)),
        };
        let failed = |error: BoxError| {
            let failure = Failure::new("handler_failed", "Server error occurred");
            Err((failure, Some(error)))
        };
        match AssertUnwindSafe(service.on_request(ws, request))
            .catch_unwind()
            .await
        {
            Ok(Ok(reply)) => serde_json::to_string(&reply).or_else(|e| failed(e.into())),
            Ok(Err(e)) => failed(e),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic payload".into());
                failed(format!("request handler panicked: {message}").into())
            }
        }
    })
}

/// A client's request to a service of the channel protocol: answered with its id, `true`;
/// `false` when `message` is not a request (it is then an ordinary message).
pub(crate) async fn answer_request<S: Channel>(
    service: &S,
    ws: &Socket<S>,
    answer: AnswerFn<S>,
    message: &Message,
) -> Option<Result<()>> {
    let (id, data) = match wire::decode(message.as_bytes()) {
        Ok(Decoded::Request { id, data }) => (id, Message::Text(data.get().to_owned())),
        _ => return None,
    };
    let (frame, error) = match answer(service, ws, data).await {
        Ok(json) => (wire::reply_json(id, &json), None),
        Err((failure, None)) => {
            undecodable(ws, &failure);
            (wire::failed(id, &failure), None)
        }
        Err((failure, error)) => (wire::failed(id, &failure), error),
    };
    if ws.push(&Frame::text(&frame)).is_ok() {
        ws.ns.stats().record_send(1, false);
    }
    Some(error.map_or(Ok(()), Err))
}

/// A request that did not decode: counted as an invalid message, logged at DEBUG.
pub(crate) fn undecodable<O>(ws: &SocketRef<O>, failure: &Failure) {
    ws.ns.stats().record_invalid_message();
    tracing::debug!(target: "asena::ws", socket_id = %ws.id(), code = %failure.code, error = %failure.message, "request did not decode");
}

/// The AsyncAPI messages of [`Answer`]: `request` (clients send it) and `reply` (its
/// answer), the payload schemas inlined.
fn describe<S: Answer>(spec: &mut ChannelSpec) {
    let schema = |schema: Option<schemars::Schema>| {
        let mut value = schema.map_or(Value::Bool(true), schemars::Schema::to_value);
        if let Value::Object(map) = &mut value {
            map.remove("$schema");
        }
        value
    };
    let mut generator = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let request = schema(S::Request::schema(&mut generator));
    let reply = schema(Some(generator.root_schema_for::<S::Reply>()));
    let object = |key: &str, data: Value, extra: Value| {
        let mut properties =
            serde_json::json!({ key: {"type": "integer", "minimum": 0, "maximum": u64::MAX} });
        properties["data"] = data;
        if let Value::Object(extra) = extra {
            properties
                .as_object_mut()
                .into_iter()
                .for_each(|p| p.extend(extra.clone()));
        }
        serde_json::json!({"type": "object", "properties": properties, "required": [key]})
    };
    spec.protocol.receives.push(ProtocolMessage::new(
        &format!("{}.request", S::NAME),
        "request",
        "A request the service answers: `{\"$req\": id, \"data\": ..}`, answered with `reply` carrying the same id.",
        object("$req", request, Value::Null),
        serde_json::json!({"$req": 1, "data": null}),
    ));
    let failure = serde_json::json!({"error": {
        "type": "object",
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        "required": ["code", "message"],
    }});
    spec.protocol.sends.push(ProtocolMessage::new(
        &format!("{}.reply", S::NAME),
        "reply",
        "The answer to a `request`, with its id: `{\"$ack\": id, \"data\": ..}`, or `{\"$ack\": id, \"error\": {\"code\", \"message\"}}` when it could not be answered (`handler_failed`, or the code of a decode error).",
        object("$ack", reply, failure),
        serde_json::json!({"$ack": 1, "data": null}),
    ));
    spec.protocol
        .replies
        .push(("request".to_owned(), "reply".to_owned()));
}
