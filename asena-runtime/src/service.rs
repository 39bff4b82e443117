//! The [`WebSocketService`] trait: the handlers of a service that speaks its channel's
//! messages ([`ChannelProtocol`](crate::protocol::ChannelProtocol)).

use std::future::Future;

use crate::ack::Answers;
use crate::channel::{Channel, DecodeError};
use crate::error::Result;
use crate::namespace::Socket;
#[cfg(doc)]
use crate::namespace::SocketRef;

/// The handlers of a websocket service.
///
/// `on_open` finishes before the first `on_message` of the same connection is dispatched, and
/// the messages of one connection are handled one at a time, in order. A handler that returns
/// `Err` or panics makes the client receive `{"type":"error","message":"Server error occurred"}`;
/// after `on_open`/`on_message` the socket is then closed with 1011. Everything else keeps
/// running.
///
/// ```
/// use asena_runtime::prelude::*;
///
/// #[websocket(path = "/echo")]
/// struct Echo;
///
/// impl WebSocketService for Echo {
///     type Data = ();
///     async fn on_message(&self, ws: &Socket<Self>, msg: Message) -> Result<()> {
///         ws.send(&msg)?;
///         Ok(())
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a websocket service (no `impl WebSocketService for {Self}`)",
    label = "not a websocket service",
    note = "a `#[websocket(path = \"..\")]` struct needs `impl WebSocketService for {Self} {{ type Data = (); async fn on_message(&self, ws: &Socket<Self>, msg: Message) -> Result<()> {{ Ok(()) }} }}`; one declared `managed` implements `ManagedService` instead"
)]
pub trait WebSocketService: Channel + Sized {
    /// The typed values middleware stores with `ctx.set_websocket_value(..)`; handlers read
    /// them as `ws.data().values`. Without middleware they are `Data::default()`; a
    /// middleware that stores another type is a 500 at the upgrade, naming both types.
    type Data: Default + Send + Sync + 'static;

    /// The subprotocols this service speaks (`Sec-WebSocket-Protocol`, RFC 6455 §1.9), for
    /// clients that announce which application protocol they will use. Empty (the default):
    /// the service speaks none and never answers one.
    ///
    /// The upgrade picks the first protocol in the *client's* offer (its order of
    /// preference, across repeated headers and comma-separated lists) that appears here, and
    /// names it on the 101 response; the order of this list does not matter, as RFC 6455
    /// §4.2.2 has the server select one of the client's values. Names are compared exactly
    /// (case-sensitive). The choice is made before any middleware runs; middleware reads it
    /// with [`Context::protocol`](crate::Context::protocol), handlers with
    /// [`SocketRef::protocol`].
    ///
    /// Each entry must be an HTTP token (letters, digits and ``!#$%&'*+-.^_`|~``): one that is
    /// not could never be offered, so building an app with it fails to compile.
    ///
    /// ```
    /// use asena_runtime::prelude::*;
    /// use asena_runtime::Asena;
    /// use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    ///
    /// #[websocket(path = "/chat")]
    /// struct Chat;
    ///
    /// impl WebSocketService for Chat {
    ///     type Data = ();
    ///     const PROTOCOLS: &'static [&'static str] = &["chat.v2", "chat.v1"];
    ///     const REQUIRE_PROTOCOL: bool = true;
    ///
    ///     async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
    ///         ws.send_json(&json!({"protocol": ws.protocol()}))?;
    ///         Ok(())
    ///     }
    ///     async fn on_message(&self, ws: &Socket<Self>, msg: Message) -> Result<()> {
    ///         match ws.protocol() {
    ///             Some("chat.v2") => ws.send_json(&json!({"echo": msg.as_text()}))?,
    ///             _ => ws.send(&msg)?,
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    /// let app = Asena::builder()
    ///     .without_auto_registration()
    ///     .websocket::<Chat>()
    ///     .build()
    ///     .await?;
    /// let server = app.listen("127.0.0.1:0").await?;
    /// let url = format!("ws://{}/chat", server.local_addr());
    /// tokio::spawn(server.run());
    ///
    /// // A client that prefers chat.v1 and also speaks chat.v2 gets chat.v1.
    /// let mut request = url.as_str().into_client_request()?;
    /// request
    ///     .headers_mut()
    ///     .insert("sec-websocket-protocol", "chat.v1, chat.v2".parse()?);
    /// let (_ws, response) = tokio_tungstenite::connect_async(request).await?;
    /// assert_eq!(response.headers()["sec-websocket-protocol"], "chat.v1");
    ///
    /// // Chat requires a protocol: a client that offers none of them is refused with 400.
    /// assert!(tokio_tungstenite::connect_async(url.as_str()).await.is_err());
    /// # Ok(())
    /// # }
    /// ```
    const PROTOCOLS: &'static [&'static str] = &[];

    /// Whether clients that offer none of [`PROTOCOLS`](Self::PROTOCOLS) (or no
    /// `Sec-WebSocket-Protocol` at all) are refused. With `true` they get
    /// `400 {"error": ..}` naming the supported protocols, before any middleware runs, and no
    /// socket is created; `PROTOCOLS` must then be non-empty, or the app fails to compile.
    /// With `false` (the default) they connect without a protocol ([`SocketRef::protocol`]
    /// is `None`).
    const REQUIRE_PROTOCOL: bool = false;

    /// The messages the service answers, by name, each with the name of its answer:
    /// `&[("ping", "pong"), ("room_info", "room_info")]`. The AsyncAPI document describes
    /// each as a request with a `reply`, so that clients generated from it can wait for the
    /// answer. The names are the messages' names in the document (a tagged enum's tag values).
    const REPLIES: &'static [(&'static str, &'static str)] = &[];

    /// Whether the service answers its clients' requests (`{"$req":id,"data":..}`, see
    /// [`ack`](crate::ack)): [`Answers::NONE`] by default, so such a message is an ordinary
    /// one; `Answers::ON_REQUEST` with an [`Answer`](crate::ack::Answer) impl.
    const ANSWERS: Answers<Self> = Answers::NONE;

    /// What the live inspector ([`AsenaBuilder::inspector`](crate::AsenaBuilder::inspector))
    /// shows of a socket's [`Data`](Self::Data) beside its type name: nothing by default, as
    /// what middleware stored may hold secrets (tokens, sessions). A service opts in by
    /// returning the values to show, e.g. `serde_json::to_value(data).ok()` for a `Serialize`
    /// type, or only some fields of it. Shown when at most 2 KiB as JSON.
    fn inspect(data: &Self::Data) -> Option<serde_json::Value> {
        let _ = data;
        None
    }

    /// A socket connected (after every middleware passed).
    fn on_open(&self, ws: &Socket<Self>) -> impl Future<Output = Result<()>> + Send {
        let _ = ws;
        async { Ok(()) }
    }

    /// A complete message arrived: the raw [`Message`](crate::Message), or for a service
    /// declared with `receives = T` the decoded and validated `T`.
    fn on_message(
        &self,
        ws: &Socket<Self>,
        message: Self::In,
    ) -> impl Future<Output = Result<()>> + Send;

    /// A message did not decode into the service's `receives` type, or broke one of its
    /// constraints; `on_message` is not called for it. The socket stays open (unless this
    /// handler fails). Counted in
    /// [`NamespaceStats::invalid_messages`](crate::namespace::NamespaceStats::invalid_messages).
    ///
    /// By default the client gets [`DecodeError::to_json`]:
    /// `{"type":"error","code":"unknown_variant","message":"unknown variant `dance`, expected
    /// one of `message`, `ping`","path":"type"}`. Override it to answer in the service's own
    /// shape (`ws.raw()` sends anything).
    fn on_invalid(
        &self,
        ws: &Socket<Self>,
        error: DecodeError,
    ) -> impl Future<Output = Result<()>> + Send {
        let sent = ws.raw().send_json(&error.to_json());
        async move {
            sent?;
            Ok(())
        }
    }

    /// The socket closed (cleanly or not: 1006 when the peer vanished). The socket has
    /// already left every room.
    fn on_close(
        &self,
        ws: &Socket<Self>,
        code: u16,
        reason: &str,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ws, code, reason);
        async {}
    }

    /// The socket's send queue drained after being more than half full.
    fn on_drain(&self, ws: &Socket<Self>) -> impl Future<Output = ()> + Send {
        let _ = ws;
        async {}
    }
}
