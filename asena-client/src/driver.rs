//! The background task behind a [`Client`](crate::Client) and a
//! [`ManagedConnection`](crate::managed::ManagedConnection): it owns the WebSocket, writes
//! the queued messages, decodes what arrives into events, keeps the connection alive, and
//! reconnects. What differs between the plain protocol and the managed one (the handshake
//! after each connection, how a message is framed and read, what a heartbeat sends) is a
//! [`Dialect`]; the loop, the liveness deadline and the reconnect policy are one.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use asena_protocol::ack::{self as wire, Decoded};

use crate::ack::{self, Handler, Pending};
use crate::builder::EVENT_BUFFER;
use crate::presence::PresenceFrame;
use crate::{Backoff, ClientError, Event};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a close handshake (ours or the server's) may take before the socket is dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Everything needed to (re)connect, fixed at [`connect`](crate::ClientBuilder::connect).
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) url: String,
    pub(crate) path: &'static str,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) reconnect: Option<Backoff>,
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) connect_timeout: Duration,
    /// The TLS configuration of a `wss://` URL; `None` for `ws://`.
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
}

/// Opens the WebSocket, turning an HTTP answer other than 101 into [`ClientError::Refused`].
pub(crate) async fn connect(config: &Config) -> Result<Ws, ClientError> {
    connect_with(config, &[]).await
}

/// [`connect`] with `extra` query pairs added to the URL.
async fn connect_with(config: &Config, extra: &[(String, String)]) -> Result<Ws, ClientError> {
    let mut url = config.url.clone();
    for (key, value) in extra {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.extend(url::form_urlencoded::byte_serialize(key.as_bytes()));
        url.push('=');
        url.extend(url::form_urlencoded::byte_serialize(value.as_bytes()));
    }
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| ClientError::BadUrl {
            url: config.url.clone(),
            reason: e.to_string(),
        })?;
    for (name, value) in &config.headers {
        request.headers_mut().append(name.clone(), value.clone());
    }
    let connector = match &config.tls {
        Some(tls) => Connector::Rustls(Arc::clone(tls)),
        None => Connector::Plain,
    };
    let attempt =
        tokio_tungstenite::connect_async_tls_with_config(request, None, false, Some(connector));
    match tokio::time::timeout(config.connect_timeout, attempt).await {
        Err(_) => Err(ClientError::Timeout {
            url: config.url.clone(),
            after: config.connect_timeout,
        }),
        Ok(Ok((ws, _response))) => Ok(ws),
        Ok(Err(tungstenite::Error::Http(response))) => Err(ClientError::Refused {
            url: config.url.clone(),
            status: response.status(),
            body: response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default(),
        }),
        Ok(Err(e @ tungstenite::Error::Tls(_))) => Err(ClientError::Tls {
            url: config.url.clone(),
            source: Box::new(e),
        }),
        Ok(Err(tungstenite::Error::Io(e))) if is_tls_error(&e) => Err(ClientError::Tls {
            url: config.url.clone(),
            source: Box::new(e),
        }),
        Ok(Err(e)) => Err(ClientError::Connect {
            url: config.url.clone(),
            source: Box::new(e),
        }),
    }
}

/// What a message from the server comes to.
pub(crate) enum Step<E> {
    /// An event for the application.
    Event(E),
    /// Nothing to report (a protocol message handled inside the dialect).
    Nothing,
    /// The message breaks the protocol: close with `code` and `reason`.
    Break { code: u16, reason: String },
}

/// What one protocol adds to the driver: the handshake after each connection, how queued
/// messages are framed and incoming ones read, what a heartbeat sends, and its events.
pub(crate) trait Dialect: Send + 'static {
    /// What the event stream yields.
    type Event: Send + 'static;
    /// What the send queue holds.
    type Outgoing: Send + 'static;

    /// Runs right after a connection opened (`reconnected`: not the first one), before the
    /// queue is served; returns the events to report. An error fails the connection (and,
    /// on a reconnect, counts as a failed attempt).
    fn open(
        &mut self,
        ws: &mut Ws,
        reconnected: bool,
    ) -> impl Future<Output = Result<Vec<Self::Event>, ClientError>> + Send;

    /// Whether a failed [`open`](Self::open) ends reconnecting (retrying cannot help).
    fn is_final(&self, error: &ClientError) -> bool;

    /// The frame of a queued message (`None`: nothing to write); `Err` breaks the connection.
    fn outgoing(&mut self, message: Self::Outgoing) -> Result<Option<WsMessage>, String>;

    /// A text or binary message from the server.
    fn incoming(&mut self, message: &[u8]) -> Step<Self::Event>;

    /// The frames of one heartbeat.
    fn heartbeat(&mut self) -> Vec<WsMessage>;

    /// The connection was lost: the event that says so (the dialect forgets the connection).
    fn disconnected(&mut self, code: Option<u16>, reason: String) -> Self::Event;

    /// Reconnecting gave up after `attempts`.
    fn gave_up(&mut self, attempts: u32, error: ClientError) -> Self::Event;

    /// Query pairs a reconnect adds to the URL (the plain protocol's positions in rooms
    /// with history).
    fn resume(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Where the dialect queues what it sends on its own (the answers to the server's
    /// requests): the task's queue, held weakly so that the client's handles alone keep it.
    fn outlet(&mut self, outlet: mpsc::WeakSender<Self::Outgoing>) {
        let _ = outlet;
    }
}

/// The plain protocol of a [`Client`](crate::Client): JSON messages as they are, pings;
/// requests and replies ([`ack`](crate::ack)).
pub(crate) struct Plain<T> {
    pub(crate) pending: Arc<Pending>,
    pub(crate) handler: Option<Handler<T>>,
    pub(crate) outlet: Option<mpsc::WeakSender<WsMessage>>,
    pub(crate) positions: Positions,
}

impl<T: DeserializeOwned + Send + 'static> Dialect for Plain<T> {
    type Event = Event<T>;
    type Outgoing = WsMessage;

    async fn open(
        &mut self,
        _ws: &mut Ws,
        reconnected: bool,
    ) -> Result<Vec<Event<T>>, ClientError> {
        Ok(if reconnected {
            vec![Event::Reconnected]
        } else {
            Vec::new()
        })
    }

    fn is_final(&self, _error: &ClientError) -> bool {
        false
    }

    fn outgoing(&mut self, message: WsMessage) -> Result<Option<WsMessage>, String> {
        Ok(Some(message))
    }

    fn incoming(&mut self, message: &[u8]) -> Step<Event<T>> {
        match self.positions.read(message) {
            Some(History::Message(data)) => return Step::Event(decode_bytes(data.as_bytes())),
            Some(History::Position(None)) => return Step::Nothing,
            Some(History::Position(Some(room))) => return Step::Event(Event::Resync { room }),
            None => {}
        }
        if wire::is_reply(message) || wire::is_request(message) {
            match wire::decode(message) {
                Ok(Decoded::Reply { id, data }) => {
                    self.pending.settle(id, Ok(data.get().into()));
                    return Step::Nothing;
                }
                Ok(Decoded::Failed { id, failure }) => {
                    self.pending.settle(id, Err(failure));
                    return Step::Nothing;
                }
                Ok(Decoded::Request { id, data }) => {
                    let outlet = self.outlet.as_ref();
                    ack::answer(
                        self.handler.as_ref(),
                        data.get().as_bytes(),
                        outlet,
                        move |answered| {
                            Some(WsMessage::text(match answered {
                                Ok(reply) => wire::reply(id, &reply).ok()?,
                                Err(failure) => wire::failed(id, &failure),
                            }))
                        },
                    );
                    return Step::Nothing;
                }
                // Shaped like one but not one: an ordinary message.
                Err(_) => {}
            }
        }
        Step::Event(decode_bytes(message))
    }

    fn outlet(&mut self, outlet: mpsc::WeakSender<WsMessage>) {
        self.outlet = Some(outlet);
    }

    fn heartbeat(&mut self) -> Vec<WsMessage> {
        vec![WsMessage::Ping(Default::default())]
    }

    fn disconnected(&mut self, code: Option<u16>, reason: String) -> Event<T> {
        self.pending.lost();
        Event::Disconnected { code, reason }
    }

    fn gave_up(&mut self, attempts: u32, error: ClientError) -> Event<T> {
        Event::GaveUp { attempts, error }
    }

    fn resume(&self) -> Vec<(String, String)> {
        self.positions.query()
    }
}

/// The most rooms whose positions a client keeps (the server reads at most 64 query pairs).
const MAX_POSITIONS: usize = 48;

/// Where the client is in each room with history (the server's `history` module): the epoch
/// and offset of the last message, from the `$history` and numbered frames; presented as
/// `recover=<epoch>:<offset>:<room>` on every reconnect.
#[derive(Debug, Default)]
pub(crate) struct Positions(std::collections::BTreeMap<String, (String, u64)>);

/// What a frame of a room with history was.
enum History {
    /// A numbered message: its `data` (or `text`, as a JSON string).
    Message(String),
    /// A position; `Some(room)` when the server could not replay what the client missed.
    Position(Option<String>),
}

impl Positions {
    /// Reads a `$history` or numbered frame; `None` for any other message.
    fn read(&mut self, message: &[u8]) -> Option<History> {
        #[derive(serde::Deserialize)]
        struct Position {
            room: String,
            epoch: String,
            offset: u64,
            recovered: Option<bool>,
        }
        #[derive(serde::Deserialize)]
        struct Frame {
            #[serde(rename = "$history")]
            history: Option<Position>,
            #[serde(rename = "$room")]
            room: Option<String>,
            #[serde(rename = "$offset")]
            offset: Option<u64>,
            data: Option<Box<serde_json::value::RawValue>>,
            text: Option<String>,
        }
        if !(message.starts_with(b"{\"$history\"") || message.starts_with(b"{\"$room\"")) {
            return None;
        }
        let frame: Frame = serde_json::from_slice(message).ok()?;
        if let Some(p) = frame.history {
            let resync = (p.recovered == Some(false)).then(|| p.room.clone());
            self.keep(p.room, p.epoch, p.offset);
            return Some(History::Position(resync));
        }
        let (room, offset) = (frame.room?, frame.offset?);
        if let Some((_, last)) = self.0.get_mut(&room) {
            *last = offset;
        }
        let data = match (frame.data, frame.text) {
            (Some(data), _) => data.get().to_owned(),
            (None, Some(text)) => serde_json::to_string(&text).ok()?,
            (None, None) => return None,
        };
        Some(History::Message(data))
    }

    fn keep(&mut self, room: String, epoch: String, offset: u64) {
        if self.0.len() < MAX_POSITIONS || self.0.contains_key(&room) {
            self.0.insert(room, (epoch, offset));
        }
    }

    /// The `recover` pairs of every room.
    fn query(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|(room, (epoch, offset))| {
                ("recover".to_owned(), format!("{epoch}:{offset}:{room}"))
            })
            .collect()
    }
}

/// How one connection ended.
enum Ended {
    /// Lost: reconnect if the policy says so.
    Lost { code: Option<u16>, reason: String },
    /// Closed by the user (or the client was dropped): the task ends.
    Closed,
}

/// The task's state. Field order matters: when the task ends, `outgoing` is dropped before
/// `events`, so once the event stream has ended every send fails with [`ClientError::Closed`].
pub(crate) struct Driver<D: Dialect> {
    pub(crate) config: Config,
    pub(crate) dialect: D,
    pub(crate) outgoing: mpsc::Receiver<D::Outgoing>,
    pub(crate) events: mpsc::Sender<D::Event>,
    /// Resolves when the client asks to close (`Ok`) or is dropped (`Err`); both close.
    pub(crate) close: oneshot::Receiver<()>,
}

/// The client's end of a spawned [`Driver`]: the events it reports, and the request to close.
pub(crate) struct Events<E> {
    stream: mpsc::Receiver<E>,
    close: Option<oneshot::Sender<()>>,
}

impl<E> Events<E> {
    pub(crate) async fn next(&mut self) -> Option<E> {
        self.stream.recv().await
    }

    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<E>> {
        self.stream.poll_recv(cx)
    }

    /// Asks the task to close and waits until it has ended; a second call does nothing.
    pub(crate) async fn close(&mut self) {
        let Some(close) = self.close.take() else {
            return;
        };
        let _ = close.send(());
        // The stream ends when the task does. Events are drained meanwhile: the task may be
        // waiting to hand one over.
        while self.stream.recv().await.is_some() {}
    }

    /// Whether [`close`](Self::close) was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.close.is_none()
    }
}

impl<D: Dialect> Driver<D> {
    /// Spawns the task that drives `ws`, already open, with `dialect`; the returned sender
    /// holds up to `queue` messages for it.
    pub(crate) fn spawn(
        config: Config,
        dialect: D,
        ws: Ws,
        queue: usize,
    ) -> (mpsc::Sender<D::Outgoing>, Events<D::Event>)
    where
        D: Sync,
    {
        let (tx, outgoing) = mpsc::channel(queue);
        let mut dialect = dialect;
        dialect.outlet(tx.downgrade());
        let (events_tx, stream) = mpsc::channel(EVENT_BUFFER);
        let (close_tx, close) = oneshot::channel();
        let driver = Driver {
            config,
            dialect,
            outgoing,
            events: events_tx,
            close,
        };
        tokio::spawn(driver.run(ws));
        let events = Events {
            stream,
            close: Some(close_tx),
        };
        (tx, events)
    }

    /// Drives `ws`, and the connections that replace it, until the client closes or gives up.
    pub(crate) async fn run(mut self, mut ws: Ws) {
        loop {
            let (code, reason) = match self.drive(&mut ws).await {
                Ended::Closed => return,
                Ended::Lost { code, reason } => (code, reason),
            };
            drop(ws);
            tracing::info!(
                target: "asena::client",
                url = %self.config.url,
                ?code,
                %reason,
                "connection lost"
            );
            let lost = self.dialect.disconnected(code, reason);
            if !self.emit(lost).await {
                return;
            }
            let Some((next, opened)) = self.reconnect().await else {
                return;
            };
            ws = next;
            tracing::info!(target: "asena::client", url = %self.config.url, "reconnected");
            for event in opened {
                if !self.emit(event).await {
                    self.close_ws(&mut ws).await;
                    return;
                }
            }
        }
    }

    /// One connection: messages in and out, heartbeats, the liveness deadline.
    async fn drive(&mut self, ws: &mut Ws) -> Ended {
        // Without a heartbeat the timers exist but their branches are disabled.
        let heartbeat = self.config.heartbeat;
        let every = heartbeat.unwrap_or(Duration::from_secs(3600));
        let mut ping = tokio::time::interval_at(Instant::now() + every, every);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let silence = every.saturating_mul(2);
        let dead = tokio::time::sleep(silence);
        tokio::pin!(dead);
        loop {
            // Unbiased: a flood in one direction must not starve the other.
            tokio::select! {
                _ = &mut self.close => return self.close_ws(ws).await,
                frame = ws.next() => {
                    let message = match frame {
                        Some(Ok(message)) => message,
                        Some(Err(e)) => return Ended::Lost { code: None, reason: e.to_string() },
                        None => {
                            return Ended::Lost {
                                code: None,
                                reason: "the connection ended without a close frame".to_owned(),
                            };
                        }
                    };
                    let step = match message {
                        WsMessage::Text(text) => self.dialect.incoming(text.as_bytes()),
                        WsMessage::Binary(bytes) => self.dialect.incoming(&bytes),
                        WsMessage::Close(frame) => return closed_by_server(ws, frame).await,
                        WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => Step::Nothing,
                    };
                    match step {
                        Step::Event(event) => {
                            if !self.emit(event).await {
                                return self.close_ws(ws).await;
                            }
                        }
                        Step::Nothing => {}
                        Step::Break { code, reason } => return break_off(ws, code, reason).await,
                    }
                    dead.as_mut().reset(Instant::now() + silence);
                }
                message = self.outgoing.recv() => {
                    let Some(message) = message else {
                        // Every sender is gone, so the client is too.
                        return self.close_ws(ws).await;
                    };
                    let frame = match self.dialect.outgoing(message) {
                        Ok(Some(frame)) => frame,
                        Ok(None) => continue,
                        Err(reason) => return Ended::Lost { code: None, reason },
                    };
                    if let Err(reason) = write(ws, frame, heartbeat.map(|d| d * 2)).await {
                        return Ended::Lost { code: None, reason };
                    }
                }
                _ = ping.tick(), if heartbeat.is_some() => {
                    for frame in self.dialect.heartbeat() {
                        if let Err(reason) = write(ws, frame, heartbeat.map(|d| d * 2)).await {
                            return Ended::Lost { code: None, reason };
                        }
                    }
                }
                () = &mut dead, if heartbeat.is_some() => {
                    return Ended::Lost {
                        code: None,
                        reason: format!(
                            "no frame from the server for {silence:?} (2 heartbeat intervals); the connection is dead"
                        ),
                    };
                }
            }
        }
    }

    /// Sends what is queued, then closes with 1000 and waits (bounded) for the server's reply.
    async fn close_ws(&mut self, ws: &mut Ws) -> Ended {
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Ok(message) = self.outgoing.try_recv() {
                if let Ok(Some(frame)) = self.dialect.outgoing(message) {
                    ws.feed(frame).await?;
                }
            }
            ws.close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await?;
            while let Some(Ok(_)) = ws.next().await {}
            Ok::<(), tungstenite::Error>(())
        })
        .await;
        Ended::Closed
    }

    /// Waits, connects and opens (the dialect's handshake), and again, as the backoff says;
    /// `None` when closed, out of attempts, or the handshake failed for good.
    async fn reconnect(&mut self) -> Option<(Ws, Vec<D::Event>)> {
        let mut delays = self.config.reconnect?.delays();
        let mut attempt = 0u32;
        loop {
            let delay = delays.next()?;
            attempt = attempt.saturating_add(1);
            let config = &self.config;
            let dialect = &mut self.dialect;
            let result = tokio::select! {
                biased;
                _ = &mut self.close => return None,
                result = async {
                    tokio::time::sleep(delay).await;
                    let mut ws = connect_with(config, &dialect.resume()).await?;
                    match dialect.open(&mut ws, true).await {
                        Ok(events) => Ok((ws, events)),
                        Err(error) => {
                            let _ = tokio::time::timeout(CLOSE_WAIT, ws.close(None)).await;
                            Err(error)
                        }
                    }
                } => result,
            };
            let error = match result {
                Ok(opened) => return Some(opened),
                Err(error) => error,
            };
            tracing::debug!(
                target: "asena::client",
                url = %self.config.url,
                attempt,
                error = %error,
                "reconnect failed"
            );
            let last = self.config.reconnect?.attempts_limit() == Some(attempt);
            if last || self.dialect.is_final(&error) {
                tracing::warn!(
                    target: "asena::client",
                    url = %self.config.url,
                    attempts = attempt,
                    error = %error,
                    "giving up reconnecting"
                );
                let gave_up = self.dialect.gave_up(attempt, error);
                self.emit(gave_up).await;
                return None;
            }
        }
    }

    /// Hands an event to the client; `false` when the client is gone.
    async fn emit(&self, event: D::Event) -> bool {
        self.events.send(event).await.is_ok()
    }
}

/// The server closed the connection: answers (bounded) and reports its code and reason.
async fn closed_by_server(ws: &mut Ws, frame: Option<CloseFrame>) -> Ended {
    // tungstenite queued the reply; reading on sends it.
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    match frame {
        Some(frame) => Ended::Lost {
            code: Some(frame.code.into()),
            reason: frame.reason.to_string(),
        },
        None => Ended::Lost {
            code: None,
            reason: "closed by the server".to_owned(),
        },
    }
}

/// Closes the connection with `code` because the server broke the protocol.
async fn break_off(ws: &mut Ws, code: u16, reason: String) -> Ended {
    tracing::info!(target: "asena::client", code, %reason, "the server broke the protocol; closing");
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        ws.close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.clone().into(),
        }))
        .await?;
        while let Some(Ok(_)) = ws.next().await {}
        Ok::<(), tungstenite::Error>(())
    })
    .await;
    Ended::Lost {
        code: Some(code),
        reason,
    }
}

/// Writes one message, bounded by `limit` when the heartbeat is on.
async fn write(ws: &mut Ws, message: WsMessage, limit: Option<Duration>) -> Result<(), String> {
    let send = ws.send(message);
    let result = match limit {
        Some(limit) => tokio::time::timeout(limit, send)
            .await
            .map_err(|_| format!("a write stalled for {limit:?}; the connection is dead"))?,
        None => send.await,
    };
    result.map_err(|e| e.to_string())
}

/// A message from the server as JSON of `T`; else a presence frame; else the text and
/// serde's reason.
pub(crate) fn decode_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Event<T> {
    match serde_json::from_slice(bytes) {
        Ok(message) => Event::Message(message),
        Err(error) => match PresenceFrame::parse(bytes) {
            Some(frame) => Event::Presence(frame),
            None => Event::Undecodable {
                text: String::from_utf8_lossy(bytes).into_owned(),
                error,
            },
        },
    }
}

/// Whether an I/O error from the handshake is rustls's (tokio-rustls reports a refused
/// certificate as an I/O error of kind `InvalidData` wrapping the `rustls::Error`).
fn is_tls_error(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}
