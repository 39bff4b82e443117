//! [`Context`]: the upgrade request as middleware sees it.

use std::any::Any;
use std::net::SocketAddr;

use http::request::Parts;
use http::{Extensions, HeaderMap, Method, Uri};

use super::WsValue;
use crate::request::lookup;

/// The upgrade request, before any socket exists.
///
/// Middleware reads the request (path, query, headers, cookies, peer address), passes data
/// to later middleware through [`extensions`](Self::extensions_mut), adds response headers,
/// and stores the connection's typed values with
/// [`set_websocket_value`](Self::set_websocket_value).
pub struct Context {
    parts: Parts,
    remote_addr: Option<SocketAddr>,
    params: Vec<(String, String)>,
    typed_params: Option<Box<dyn Any + Send + Sync>>,
    query: Vec<(String, String)>,
    protocol: Option<&'static str>,
    extensions: Extensions,
    value: Option<WsValue>,
    response_headers: HeaderMap,
    pub(crate) reached_end: bool,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("method", &self.parts.method)
            .field("uri", &self.parts.uri)
            .field("remote_addr", &self.remote_addr)
            .field("protocol", &self.protocol)
            .field("value", &self.value.as_ref().map(|v| v.type_name))
            .finish()
    }
}

impl Context {
    /// The request as any route sees it: no path parameters, no subprotocol.
    pub(crate) fn new(
        parts: Parts,
        remote_addr: Option<SocketAddr>,
        query: Vec<(String, String)>,
    ) -> Context {
        Context {
            parts,
            remote_addr,
            params: Vec::new(),
            typed_params: None,
            query,
            protocol: None,
            extensions: Extensions::new(),
            value: None,
            response_headers: HeaderMap::new(),
            reached_end: false,
        }
    }

    /// The request as its websocket service sees it: the route's path parameters (raw and
    /// typed) and the subprotocol chosen.
    pub(crate) fn for_service(
        mut self,
        params: Vec<(String, String)>,
        typed_params: Option<Box<dyn Any + Send + Sync>>,
        protocol: Option<&'static str>,
    ) -> Context {
        self.params = params;
        self.typed_params = typed_params;
        self.protocol = protocol;
        self
    }

    #[allow(clippy::type_complexity)]
    pub(crate) fn into_parts(
        self,
    ) -> (
        Parts,
        Vec<(String, String)>,
        Option<Box<dyn Any + Send + Sync>>,
        Vec<(String, String)>,
        Option<WsValue>,
        HeaderMap,
    ) {
        (
            self.parts,
            self.params,
            self.typed_params,
            self.query,
            self.value,
            self.response_headers,
        )
    }

    /// What an HTTP route's handler gets of a chain that continued: the request, the
    /// middlewares' extensions and the response headers they added.
    pub(crate) fn into_request_parts(self) -> (Parts, Extensions, HeaderMap) {
        (self.parts, self.extensions, self.response_headers)
    }

    /// The request method (always `GET` for a WebSocket upgrade).
    pub fn method(&self) -> &Method {
        &self.parts.method
    }

    /// The request URI.
    pub fn uri(&self) -> &Uri {
        &self.parts.uri
    }

    /// The request path, with its leading `/`.
    pub fn path(&self) -> &str {
        self.parts.uri.path()
    }

    /// A path parameter, e.g. `user_id` for `/user/events/{user_id}`.
    pub fn param(&self, name: &str) -> Option<&str> {
        lookup(&self.params, name)
    }

    /// The path parameters deserialized into the service's `params` type, when `P` is that
    /// type (`#[websocket(path = "/user/{id}", params = UserPath)]`). They are parsed before
    /// any middleware runs; a request whose parameters do not deserialize never gets here (it
    /// is refused with 400).
    pub fn params<P: 'static>(&self) -> Option<&P> {
        self.typed_params.as_deref()?.downcast_ref::<P>()
    }

    /// A query parameter, percent-decoded (the first one when repeated).
    pub fn query(&self, key: &str) -> Option<&str> {
        lookup(&self.query, key)
    }

    /// Request headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.parts.headers
    }

    /// A header, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The subprotocol chosen for this connection, one of the service's
    /// [`PROTOCOLS`](crate::WebSocketService::PROTOCOLS); it is chosen before any middleware
    /// runs and goes out on the 101 as `Sec-WebSocket-Protocol`. The client's whole offer is
    /// in the request headers (`headers().get_all("sec-websocket-protocol")`: the header may
    /// repeat, each value a comma-separated list).
    pub fn protocol(&self) -> Option<&str> {
        self.protocol
    }

    /// The token of an `Authorization: Bearer <token>` header.
    pub fn bearer_token(&self) -> Option<&str> {
        crate::request::bearer_token(&self.parts.headers)
    }

    /// A cookie of the request.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        crate::request::cookie(&self.parts.headers, name)
    }

    /// The peer's address, when known.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }

    /// Typed values shared between the middlewares of this request.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// Mutable access to the per-request typed values.
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.extensions
    }

    /// Headers added to the `101 Switching Protocols` response when the upgrade goes ahead
    /// (a [`Refusal`](crate::Refusal) carries its own headers instead). Appending from
    /// several middlewares keeps their order, which makes the chain order observable.
    /// `Sec-WebSocket-Protocol` is the framework's: set here, it is replaced by the
    /// [chosen protocol](Self::protocol), or removed when there is none.
    pub fn response_headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.response_headers
    }

    /// Stores the connection's values; the last call wins. The type must be the service's
    /// `Data` type, otherwise the upgrade is answered 500 and the mismatch logged.
    pub fn set_websocket_value<T: Any + Send + Sync>(&mut self, value: T) {
        self.value = Some(WsValue {
            value: Box::new(value),
            type_name: std::any::type_name::<T>(),
        });
    }

    /// The values stored so far, if they are a `T`.
    pub fn websocket_value<T: Any>(&self) -> Option<&T> {
        self.value.as_ref()?.value.downcast_ref::<T>()
    }
}
