//! [`Client`], the connection to one channel of an Asena server, and [`Sender`], a handle
//! that sends on it from anywhere.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use asena_protocol::Channel;
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use std::sync::Arc;

use crate::ack::{ClientRequest, Pending};
use crate::driver::Events;
use crate::{ClientBuilder, ClientError, Event};

/// A typed WebSocket client for the channel `C` (a `#[websocket]` service): it sends only
/// `C::In`, yields `C::Out` as [`Event::Message`], and reconnects by itself.
///
/// A background task owns the socket; the client is a handle to it. Dropping the client
/// closes the connection (normally, code 1000). The client is a [`Stream`] of events, and
/// [`next`](Self::next) reads one without importing `StreamExt`.
///
/// ```no_run
/// use std::time::Duration;
/// use asena_client::{Backoff, Client, Event};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize, schemars::JsonSchema)] struct ChatParams { room: String }
/// # #[derive(Serialize, Deserialize, schemars::JsonSchema, garde::Validate)] #[garde(allow_unvalidated)] enum ChatIn { Ping }
/// # #[derive(Serialize, Deserialize, schemars::JsonSchema, Debug)] enum ChatOut { Pong }
/// # struct Chat;
/// # impl asena_protocol::Channel for Chat {
/// #     const PATH: &'static str = "/chat/{room}"; const NAME: &'static str = "Chat";
/// #     type Params = ChatParams; type In = ChatIn; type Out = ChatOut;
/// # }
///
/// # async fn run() -> Result<(), asena_client::ClientError> {
/// let mut client = Client::<Chat>::builder("ws://127.0.0.1:3000")
///     .params(&ChatParams { room: "r1".into() })            // fills {room}
///     .query("username", "alice")
///     .header("authorization", "Bearer t0k3n")
///     .reconnect(Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10)))
///     .heartbeat(Duration::from_secs(15))
///     .connect()
///     .await?;
///
/// client.send(&ChatIn::Ping).await?;                         // only a ChatIn compiles
/// while let Some(event) = client.next().await {
///     match event {
///         Event::Message(ChatOut::Pong) => break,
///         Event::Undecodable { text, error } => eprintln!("bad message {text}: {error}"),
///         Event::Disconnected { code, reason } => eprintln!("lost ({code:?}): {reason}"),
///         Event::Reconnected => client.send(&ChatIn::Ping).await?,
///         _ => {}
///     }
/// }
/// client.close().await?;
/// # Ok(()) }
/// ```
pub struct Client<C: Channel> {
    pub(crate) sender: Sender<C>,
    pub(crate) events: Events<Event<C::Out>>,
    pub(crate) url: String,
}

impl<C: Channel> Client<C> {
    /// Starts configuring a client for the server at `base` (`ws://host:port`, optionally with
    /// a path prefix such as `ws://host/api`); the channel's path is appended.
    pub fn builder(base: impl AsRef<str>) -> ClientBuilder<C> {
        ClientBuilder::new(base.as_ref())
    }

    /// The URL the client connects to (path parameters and query filled in).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends a message as JSON text. It is queued and written by the background task, in
    /// order; during a reconnect it waits in the queue and goes out on the new connection.
    /// Waits while the queue is full; fails with [`ClientError::Closed`] once the client is closed
    /// or gave up. Delivery is at most once: a message being written when the connection
    /// breaks is lost.
    ///
    /// The message is serialised before `send` returns its future, so the future does not
    /// borrow it.
    pub fn send(&self, message: &C::In) -> impl Future<Output = Result<(), ClientError>> + Send + '_
    where
        C::In: Serialize,
    {
        self.sender.send(message)
    }

    /// Like [`send`](Self::send), but fails with [`ClientError::QueueFull`] instead of waiting.
    pub fn try_send(&self, message: &C::In) -> Result<(), ClientError>
    where
        C::In: Serialize,
    {
        self.sender.try_send(message)
    }

    /// Sends `payload` as a request (`{"$req":id,"data":..}`) and, when awaited, waits for
    /// the server's reply (`.timeout(d)`; 10 s otherwise), decoded as `R`: the server's
    /// [`Answer`](https://docs.rs/asena-runtime) `Request` and `Reply` types. See
    /// [`ack`](crate::ack) for the errors.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # async fn run<C: asena_protocol::Channel>(client: asena_client::Client<C>) -> Result<(), asena_client::ClientError> {
    /// let sum: i64 = client
    ///     .request(&serde_json::json!({"a": 2, "b": 3}))
    ///     .timeout(Duration::from_secs(2))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn request<R, Q: Serialize + ?Sized>(&self, payload: &Q) -> ClientRequest<R> {
        self.sender.request(payload)
    }

    /// A cloneable handle that sends on this connection from other tasks.
    pub fn sender(&self) -> Sender<C> {
        self.sender.clone()
    }

    /// The next event; `None` once the client is closed, the connection was lost with
    /// reconnect off, or reconnecting gave up.
    pub async fn next(&mut self) -> Option<Event<C::Out>> {
        self.events.next().await
    }

    /// Sends what is queued, closes the connection with 1000 and waits (about two seconds at
    /// most) for the server's answer. Events still unread are dropped; the stream then ends.
    /// Closing a closed client does nothing.
    pub async fn close(&mut self) -> Result<(), ClientError> {
        self.events.close().await;
        Ok(())
    }
}

impl<C: Channel> Stream for Client<C> {
    type Item = Event<C::Out>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().events.poll_next(cx)
    }
}

impl<C: Channel> std::fmt::Debug for Client<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("channel", &C::NAME)
            .field("url", &self.url)
            .field("closed", &self.events.is_closed())
            .finish_non_exhaustive()
    }
}

/// Sends on a [`Client`]'s connection from anywhere; cheap to clone. It fails with
/// [`ClientError::Closed`] once the client is closed or dropped.
///
/// ```no_run
/// # async fn run<C: asena_protocol::Channel>(client: asena_client::Client<C>, hello: C::In)
/// # where C::In: serde::Serialize {
/// let sender = client.sender();
/// tokio::spawn(async move {
///     if let Err(e) = sender.send(&hello).await {
///         eprintln!("not sent: {e}");
///     }
/// });
/// # }
/// ```
pub struct Sender<C: Channel> {
    tx: mpsc::Sender<WsMessage>,
    capacity: usize,
    pending: Arc<Pending>,
    channel: PhantomData<fn() -> C>,
}

impl<C: Channel> Sender<C> {
    pub(crate) fn new(tx: mpsc::Sender<WsMessage>, capacity: usize, pending: Arc<Pending>) -> Self {
        Sender {
            tx,
            capacity,
            pending,
            channel: PhantomData,
        }
    }

    /// See [`Client::request`].
    pub fn request<R, Q: Serialize + ?Sized>(&self, payload: &Q) -> ClientRequest<R> {
        let frame = serde_json::to_string(payload)
            .map_err(ClientError::Encode)
            .map(|json| move |id| WsMessage::text(asena_protocol::ack::request_json(id, &json)));
        ClientRequest::new(self.tx.clone(), self.pending.clone(), frame)
    }

    /// See [`Client::send`].
    pub fn send(&self, message: &C::In) -> impl Future<Output = Result<(), ClientError>> + Send + '_
    where
        C::In: Serialize,
    {
        let frame = encode(message);
        async move { self.tx.send(frame?).await.map_err(|_| ClientError::Closed) }
    }

    /// See [`Client::try_send`].
    pub fn try_send(&self, message: &C::In) -> Result<(), ClientError>
    where
        C::In: Serialize,
    {
        let frame = encode(message)?;
        self.tx.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ClientError::QueueFull {
                capacity: self.capacity,
            },
            mpsc::error::TrySendError::Closed(_) => ClientError::Closed,
        })
    }

    /// Whether the client is closed (sends would fail).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

fn encode<T: Serialize>(message: &T) -> Result<WsMessage, ClientError> {
    serde_json::to_string(message)
        .map(WsMessage::text)
        .map_err(ClientError::Encode)
}

impl<C: Channel> Clone for Sender<C> {
    fn clone(&self) -> Self {
        Sender::new(self.tx.clone(), self.capacity, self.pending.clone())
    }
}

impl<C: Channel> std::fmt::Debug for Sender<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("channel", &C::NAME)
            .field("closed", &self.tx.is_closed())
            .finish_non_exhaustive()
    }
}
