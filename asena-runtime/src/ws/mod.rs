//! WebSocket services: the [`WebSocketService`] trait, the upgrade endpoint that admits a
//! connection (`upgrade.rs`, with its Origin policy in `origin.rs`), and the reader and writer loops that run it (`run.rs`).

pub(crate) mod origin;
pub(crate) mod protocol;
mod rate;
pub(crate) mod run;
pub(crate) mod upgrade;

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::request::Parts;

use crate::asyncapi::ChannelSpec;
use crate::channel::{Channel, DecodeError, Receives, Sends};
use crate::conn::io::Io;
use crate::error::Result;
use crate::middleware::{Refusal, TypeMismatch, WsValue};
use crate::namespace::{Namespace, Socket, SocketRef, WebSocketData};

pub use protocol::{ChannelProtocol, DataOf, Endpoint, Fleet, Protocol};

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
///     async fn on_message(&self, ws: &Socket<()>, msg: Message) -> Result<()> {
///         ws.send(&msg)?;
///         Ok(())
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a websocket service (no `impl WebSocketService for {Self}`)",
    label = "not a websocket service",
    note = "a `#[websocket(path = \"..\")]` struct needs `impl WebSocketService for {Self} {{ type Data = (); async fn on_message(&self, ws: &Socket<()>, msg: Message) -> Result<()> {{ Ok(()) }} }}`; one declared `managed` implements `ManagedService` instead"
)]
pub trait WebSocketService: Channel {
    /// The typed values middleware stores with `ctx.set_websocket_value(..)`; sockets read
    /// them as `ws.data().values`. Without middleware they are `Data::default()`.
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
    ///     async fn on_open(&self, ws: &Socket<()>) -> Result<()> {
    ///         ws.send_json(&json!({"protocol": ws.protocol()}))?;
    ///         Ok(())
    ///     }
    ///     async fn on_message(&self, ws: &Socket<()>, msg: Message) -> Result<()> {
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

    /// A socket connected (after every middleware passed).
    fn on_open(
        &self,
        ws: &Socket<Self::Data, Self::Out>,
    ) -> impl Future<Output = Result<()>> + Send {
        let _ = ws;
        async { Ok(()) }
    }

    /// A complete message arrived: the raw [`Message`](crate::Message), or for a service
    /// declared with `receives = T` the decoded and validated `T`.
    fn on_message(
        &self,
        ws: &Socket<Self::Data, Self::Out>,
        message: Self::In,
    ) -> impl Future<Output = Result<()>> + Send;

    /// A message did not decode into the service's `receives` type, or broke one of its
    /// constraints; `on_message` is not called for it. The socket stays open (unless this
    /// handler fails). Counted in
    /// [`NamespaceStats::invalid_messages`](crate::NamespaceStats::invalid_messages).
    ///
    /// By default the client gets [`DecodeError::to_json`]:
    /// `{"type":"error","code":"unknown_variant","message":"unknown variant `dance`, expected
    /// one of `message`, `ping`","path":"type"}`. Override it to answer in the service's own
    /// shape (`ws.raw()` sends anything).
    fn on_invalid(
        &self,
        ws: &Socket<Self::Data, Self::Out>,
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
        ws: &Socket<Self::Data, Self::Out>,
        code: u16,
        reason: &str,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ws, code, reason);
        async {}
    }

    /// The socket's send queue drained after being more than half full.
    fn on_drain(&self, ws: &Socket<Self::Data, Self::Out>) -> impl Future<Output = ()> + Send {
        let _ = ws;
        async {}
    }
}

/// A websocket service with its types erased, as the router holds it. Hidden and
/// effectively sealed: its methods name crate-private types.
#[doc(hidden)]
#[allow(private_interfaces)]
pub trait ErasedService: Send + Sync + 'static {
    /// Builds the connection's `WebSocketData<Data>`.
    fn make_data(
        &self,
        value: Option<WsValue>,
        id: &Arc<str>,
        path: &Arc<str>,
    ) -> std::result::Result<Box<dyn Any + Send + Sync>, TypeMismatch>;
    /// [`WebSocketService::PROTOCOLS`].
    fn protocols(&self) -> &'static [&'static str];
    /// [`WebSocketService::REQUIRE_PROTOCOL`].
    fn require_protocol(&self) -> bool;
    /// Deserializes the path parameters into [`Channel::Params`] (`None` when it is `()`);
    /// refuses with 400 naming the parameter when they do not deserialize.
    fn parse_params<'a>(
        &'a self,
        parts: &'a mut Parts,
    ) -> Pin<Box<dyn Future<Output = ParsedParams> + Send + 'a>>;
    /// The service's channel for the AsyncAPI document, its schemas made with `generator`.
    fn describe(&self, generator: &mut schemars::SchemaGenerator) -> ChannelSpec;
    /// [`Protocol::start`].
    fn start<'a>(
        &'a self,
        ns: &'a Namespace,
        fleet: &'a Fleet,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;
    /// [`Protocol::stop`].
    fn stop<'a>(&'a self, ns: &'a Namespace) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
    /// Runs a connection to the end.
    fn run(
        self: Arc<Self>,
        socket: SocketRef,
        io: Io,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
}

/// What [`ErasedService::parse_params`] gives: the typed parameters, or the refusal.
pub(crate) type ParsedParams = std::result::Result<Option<Box<dyn Any + Send + Sync>>, Refusal>;

impl std::fmt::Debug for dyn ErasedService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ErasedService")
    }
}

struct ServiceAdapter<S>(Arc<S>);

impl<S: Endpoint> ErasedService for ServiceAdapter<S> {
    fn make_data(
        &self,
        value: Option<WsValue>,
        id: &Arc<str>,
        path: &Arc<str>,
    ) -> std::result::Result<Box<dyn Any + Send + Sync>, TypeMismatch> {
        let values = match value {
            None => DataOf::<S>::default(),
            Some(v) => match v.value.downcast::<DataOf<S>>() {
                Ok(values) => *values,
                Err(_) => {
                    return Err(TypeMismatch {
                        expected: std::any::type_name::<DataOf<S>>(),
                        found: v.type_name,
                    });
                }
            },
        };
        Ok(Box::new(WebSocketData {
            values,
            id: id.clone(),
            path: path.clone(),
        }))
    }

    fn protocols(&self) -> &'static [&'static str] {
        S::Protocol::SUBPROTOCOLS
    }

    fn require_protocol(&self) -> bool {
        S::Protocol::REQUIRE_SUBPROTOCOL
    }

    fn parse_params<'a>(
        &'a self,
        parts: &'a mut Parts,
    ) -> Pin<Box<dyn Future<Output = ParsedParams> + Send + 'a>> {
        Box::pin(upgrade::parse_params::<S::Params>(parts))
    }

    fn describe(&self, generator: &mut schemars::SchemaGenerator) -> ChannelSpec {
        let typed_params = std::any::TypeId::of::<S::Params>() != std::any::TypeId::of::<()>();
        ChannelSpec {
            name: S::NAME.to_owned(),
            path: S::PATH.to_owned(),
            params: typed_params.then(|| generator.subschema_for::<S::Params>()),
            receives: S::In::schema(generator),
            sends: S::Out::schema(generator),
            protocols: S::Protocol::SUBPROTOCOLS
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
        }
    }

    fn start<'a>(
        &'a self,
        ns: &'a Namespace,
        fleet: &'a Fleet,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
        Box::pin(S::Protocol::start(&self.0, ns, fleet))
    }

    fn stop<'a>(&'a self, ns: &'a Namespace) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(S::Protocol::stop(&self.0, ns))
    }

    fn run(
        self: Arc<Self>,
        socket: SocketRef,
        io: Io,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        run::run(self.0.clone(), socket, io)
    }
}

impl<S: Endpoint> ServiceAdapter<S> {
    /// Evaluated for every service an app registers, so a bad `PROTOCOLS` or
    /// `REQUIRE_PROTOCOL` fails the build (`cargo build`; `cargo check` does not evaluate it).
    const VALID_PROTOCOLS: () =
        check_protocols(S::Protocol::SUBPROTOCOLS, S::Protocol::REQUIRE_SUBPROTOCOL);
}

/// Wraps a built websocket service for the router.
pub(crate) fn erase<S: Endpoint>(service: Arc<S>) -> Arc<dyn ErasedService> {
    let () = ServiceAdapter::<S>::VALID_PROTOCOLS;
    Arc::new(ServiceAdapter(service))
}

/// Panics (at compile time, where it is used in a `const`) when a protocol name is not an
/// HTTP token or a protocol is required but none is declared.
const fn check_protocols(protocols: &[&str], required: bool) {
    assert!(
        !required || !protocols.is_empty(),
        "`REQUIRE_PROTOCOL = true` needs at least one entry in `WebSocketService::PROTOCOLS`"
    );
    let mut i = 0;
    while i < protocols.len() {
        assert!(
            is_token(protocols[i].as_bytes()),
            "every entry of `WebSocketService::PROTOCOLS` must be a non-empty HTTP token \
             (letters, digits and !#$%&'*+-.^_`|~; no spaces, commas or other separators)"
        );
        i += 1;
    }
}

/// Whether `name` is an HTTP token (RFC 9110 §5.6.2), the form RFC 6455 §4.1 requires of a
/// subprotocol name.
const fn is_token(name: &[u8]) -> bool {
    if name.is_empty() {
        return false;
    }
    let mut i = 0;
    while i < name.len() {
        let ok = matches!(
            name[i],
            b'a'..=b'z'
                | b'A'..=b'Z'
                | b'0'..=b'9'
                | b'!'
                | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        );
        if !ok {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names_are_tokens() {
        for good in [
            "chat",
            "chat.v2",
            "graphql-transport-ws",
            "v1.json.api",
            "a!#$%&'*+-.^_`|~9",
        ] {
            assert!(is_token(good.as_bytes()), "{good}");
        }
        for bad in [
            "", "chat v2", "a,b", "x;y", "\"q\"", "a/b", "tab\t", "é", "{}",
        ] {
            assert!(!is_token(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn checks_accept_valid_declarations() {
        check_protocols(&[], false);
        check_protocols(&["chat.v2", "chat.v1"], true);
    }

    #[test]
    #[should_panic(expected = "needs at least one entry")]
    fn a_required_protocol_needs_one_declared() {
        check_protocols(&[], true);
    }

    #[test]
    #[should_panic(expected = "non-empty HTTP token")]
    fn a_protocol_name_with_a_space_is_rejected() {
        check_protocols(&["chat v1"], false);
    }
}
