//! The upgrade endpoint of a websocket service: handshake checks, the Origin policy
//! (`origin.rs`), the subprotocol, the middleware chain, then the switch to the WebSocket
//! protocol.
//!
//! The subprotocol is chosen before the middleware chain, from the request alone: a client
//! a service cannot talk to is refused without running middleware (which may cost a token
//! lookup or a rate-limit slot), and middleware can read the choice
//! ([`Context::protocol`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Path, RawPathParams};
use base64::Engine;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::origin::OriginPolicy;
use super::{ErasedService, ParsedParams};
use crate::codec::{Frame, close_code, deflate};
use crate::connection::Conn;
use crate::connection::io::Io;
use crate::middleware::{ChainOutcome, Context, ErasedMiddleware, Refusal, Scope, run_chain};
use crate::namespace::{Namespace, SocketRef};
use crate::request::{
    Headers, MAX_QUERY_PAIRS, MAX_REQUEST_HEAD, RequestInfo, parse_query_bounded,
};

/// Everything the route of one websocket service needs.
pub(crate) struct Route {
    pub(crate) ns: Namespace,
    pub(crate) service: Arc<dyn ErasedService>,
    pub(crate) chain: Vec<Arc<dyn ErasedMiddleware>>,
    pub(crate) origins: OriginPolicy,
    pub(crate) shutting_down: Arc<AtomicBool>,
}

/// A refused upgrade: `{"error": message}` with `status`, the same shape middleware
/// refusals use.
fn refusal(status: StatusCode, message: &str) -> Refusal {
    Refusal::json(status, serde_json::json!({ "error": message }))
}

/// Checks the handshake headers; returns the client's key. (The error is the response to send;
/// it is built once per rejected request, so its size does not matter.)
#[allow(clippy::result_large_err)]
pub(crate) fn handshake_key(method: &Method, headers: &HeaderMap) -> Result<HeaderValue, Refusal> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    if method != Method::GET || !has_token(header::UPGRADE, "websocket") {
        return Err(refusal(
            StatusCode::UPGRADE_REQUIRED,
            "This endpoint only accepts WebSocket connections",
        )
        .with_header("upgrade", "websocket")
        .with_header("connection", "Upgrade"));
    }
    if !has_token(header::CONNECTION, "upgrade") {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "Missing Connection: Upgrade header",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "Unsupported WebSocket version; expected 13",
        )
        .with_header("sec-websocket-version", "13"));
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|k| k.len() == 24)
        .cloned()
        .ok_or_else(|| {
            refusal(
                StatusCode::BAD_REQUEST,
                "Missing or invalid Sec-WebSocket-Key header",
            )
        })
}

/// `Sec-WebSocket-Accept` for a client key (RFC 6455 §4.2.2).
pub(crate) fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// The subprotocol for a request: the first name in the client's offer (every
/// `Sec-WebSocket-Protocol` value in order, each a comma-separated list) that `supported`
/// holds. The client lists its preferences and the server picks one of its values
/// (RFC 6455 §4.1, §4.2.2), so the client's order decides. Names compare exactly; empty list
/// elements and values that are not visible ASCII are skipped.
pub(crate) fn select_protocol(
    headers: &HeaderMap,
    supported: &'static [&'static str],
) -> Option<&'static str> {
    if supported.is_empty() {
        return None;
    }
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim_matches([' ', '\t']))
        .find_map(|name| supported.iter().copied().find(|p| *p == name))
}

/// The refusal of a client that offers none of the protocols a service requires, logged.
fn no_protocol(ep: &Route, headers: &HeaderMap) -> Refusal {
    let supported = ep.service.protocols().join(", ");
    let offered: Vec<&HeaderValue> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .collect();
    tracing::warn!(
        target: "asena::ws",
        path = %ep.ns.path(),
        ?offered,
        %supported,
        "no supported subprotocol offered; refusing the upgrade with 400"
    );
    refusal(
        StatusCode::BAD_REQUEST,
        &format!("No supported WebSocket subprotocol offered; expected one of: {supported}"),
    )
}

/// Deserializes the path parameters into `P` (`()` reads nothing). A request whose parameters
/// do not deserialize is refused with `400 {"error": .., "parameter": <name>}`.
pub(crate) async fn parse_params<P>(parts: &mut http::request::Parts) -> ParsedParams
where
    P: serde::de::DeserializeOwned + Send + Sync + 'static,
{
    // A service without `params` has `()`, kept as such (a box of nothing allocates
    // nothing): its sockets' `params()` is `&()` like any other type's.
    if std::any::TypeId::of::<P>() == std::any::TypeId::of::<()>() {
        return Ok(Some(Box::new(())));
    }
    match Path::<P>::from_request_parts(parts, &()).await {
        Ok(Path(params)) => Ok(Some(Box::new(params))),
        Err(rejection) => {
            let (parameter, message) = describe_path_rejection(&rejection);
            tracing::debug!(
                target: "asena::ws",
                path = %parts.uri.path(),
                parameter,
                %message,
                "path parameters did not deserialize; refusing the upgrade with 400"
            );
            Err(Refusal::json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({ "error": message, "parameter": parameter }),
            ))
        }
    }
}

/// The parameter a path rejection is about (if one is named) and what is wrong with it.
fn describe_path_rejection(rejection: &PathRejection) -> (Option<String>, String) {
    let PathRejection::FailedToDeserializePathParams(error) = rejection else {
        return (None, rejection.body_text());
    };
    match error.kind() {
        ErrorKind::ParseErrorAtKey {
            key,
            value,
            expected_type,
        } => (
            Some(key.clone()),
            format!("Invalid path parameter `{key}`: cannot parse `{value}` as `{expected_type}`"),
        ),
        ErrorKind::DeserializeError {
            key,
            value,
            message,
        } => (
            Some(key.clone()),
            format!("Invalid path parameter `{key}` = `{value}`: {message}"),
        ),
        ErrorKind::InvalidUtf8InPathParam { key } => (
            Some(key.clone()),
            format!("Invalid path parameter `{key}`: not valid UTF-8"),
        ),
        _ => (
            None,
            format!("Invalid path parameters: {}", error.body_text()),
        ),
    }
}

/// Handles one upgrade request; `globals` are the builder's global middlewares. An answer
/// other than 101 is counted as a refused upgrade, by status.
pub(crate) async fn handle_with_globals(
    ep: Arc<Route>,
    globals: &[(Arc<dyn ErasedMiddleware>, Scope)],
    req: Request<Body>,
) -> Response<Body> {
    let ns = ep.ns.clone();
    let resp = admit(ep, globals, req).await;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        ns.stats().record_refused(resp.status().as_u16());
    }
    resp
}

/// Checks an upgrade request and, when everything admits it, upgrades.
async fn admit(
    ep: Arc<Route>,
    globals: &[(Arc<dyn ErasedMiddleware>, Scope)],
    req: Request<Body>,
) -> Response<Body> {
    let (mut parts, _body) = req.into_parts();
    // The socket keeps its request's headers and query for its life: a head larger than
    // this is refused, whatever the HTTP server let through.
    let head = parts.uri.authority().map_or(0, |a| a.as_str().len())
        + parts.uri.path_and_query().map_or(0, |p| p.as_str().len())
        + parts
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum::<usize>();
    if head > MAX_REQUEST_HEAD {
        return refusal(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Request header fields too large",
        )
        .into_response();
    }
    let key = match handshake_key(&parts.method, &parts.headers) {
        Ok(key) => key,
        Err(refused) => return refused.into_response(),
    };
    if ep.shutting_down.load(Ordering::Acquire) {
        return refusal(StatusCode::SERVICE_UNAVAILABLE, "Server is shutting down").into_response();
    }
    if !ep.origins.allows(&parts.headers) {
        // The Origin is client-supplied: logged cut short, never whole.
        let origin = parts
            .headers
            .get(header::ORIGIN)
            .map(|o| String::from_utf8_lossy(&o.as_bytes()[..o.len().min(100)]).into_owned());
        tracing::warn!(
            target: "asena::middleware",
            path = %ep.ns.path(),
            origin = ?origin,
            "origin not allowed; refusing the upgrade with 403"
        );
        return refusal(StatusCode::FORBIDDEN, "Origin not allowed").into_response();
    }
    let protocol = select_protocol(&parts.headers, ep.service.protocols());
    if protocol.is_none() && ep.service.require_protocol() {
        return no_protocol(&ep, &parts.headers).into_response();
    }
    let params: Vec<(String, String)> = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .map(|p| {
            p.iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let typed_params = match ep.service.parse_params(&mut parts).await {
        Ok(typed) => typed,
        Err(refused) => return refused.into_response(),
    };
    let remote_addr: Option<SocketAddr> = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
        tracing::error!(
            target: "asena::ws",
            path = %ep.ns.path(),
            "the HTTP server does not support upgrades; serve the app with Asena::serve or enable upgrades"
        );
        return refusal(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response();
    };

    let Some(query) = parse_query_bounded(parts.uri.query()) else {
        return Refusal::json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({
                "error": format!("at most {MAX_QUERY_PAIRS} query parameters"),
            }),
        )
        .into_response();
    };
    let mut ctx =
        Context::new(parts, remote_addr, query).for_service(params, typed_params, protocol);
    // The middleware chain's log lines carry the request path and peer.
    let span = tracing::debug_span!(
        target: "asena::middleware",
        "upgrade",
        path = %ctx.path(),
        remote = ?remote_addr,
    );
    let outcome = tracing::Instrument::instrument(
        async {
            if globals.is_empty() {
                run_chain(&ep.chain, &mut ctx, ep.ns.path()).await
            } else {
                let chain: Vec<Arc<dyn ErasedMiddleware>> = globals
                    .iter()
                    .filter(|(_, scope)| scope.matches(ctx.path()))
                    .map(|(m, _)| m.clone())
                    .chain(ep.chain.iter().cloned())
                    .collect();
                run_chain(&chain, &mut ctx, ep.ns.path()).await
            }
        },
        span,
    )
    .await;
    match outcome {
        ChainOutcome::Continue => {}
        ChainOutcome::Respond(resp) => return resp,
    }
    let (parts, params, typed_params, query, value, extra_headers) = ctx.into_parts();

    // One copy of each, shared by the connection and its `WebSocketData`.
    let id: Arc<str> = Arc::from(uuid::Uuid::now_v7().to_string());
    let path: Arc<str> = Arc::from(parts.uri.path());
    let data = match ep.service.make_data(value, &id, &path) {
        Ok(data) => data,
        Err(mismatch) => {
            tracing::error!(
                target: "asena::middleware",
                path = %ep.ns.path(),
                expected = mismatch.expected,
                found = mismatch.found,
                "middleware stored a websocket value of type `{}`, but the service's Data is `{}`",
                mismatch.found,
                mismatch.expected,
            );
            return refusal(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
                .into_response();
        }
    };
    let request = RequestInfo {
        remote_addr,
        path,
        headers: Headers::new(&parts.headers),
        query: query.into_boxed_slice(),
        params: params.into_boxed_slice(),
        typed_params,
        protocol,
    };
    let deflate = if ep.ns.compression().enabled {
        deflate::negotiate(&parts.headers)
    } else {
        None
    };
    let conn = Arc::new(Conn::new(
        id,
        ep.ns.shared().clone(),
        request,
        data,
        deflate.as_ref().map(|(agreed, _)| *agreed),
    ));

    let service = ep.service.clone();
    let ns = ep.ns.clone();
    let shutting_down = ep.shutting_down.clone();
    // Every log line of the connection carries its id, path and peer.
    let span = super::run::connection_span(&conn);
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!(target: "asena::ws", error = %e, "upgrade failed");
                    return;
                }
            };
            let io = match upgraded.downcast::<TokioIo<TcpStream>>() {
                Ok(parts) => Io::Tcp {
                    stream: parts.io.into_inner(),
                    leftover: parts.read_buf,
                },
                Err(upgraded) => Io::Other(TokioIo::new(upgraded)),
            };
            if shutting_down.load(Ordering::Acquire) {
                // Upgraded after shutdown closed every socket: close this one the same way.
                Box::pin(refuse(io, close_code::GOING_AWAY, "Server shutting down")).await;
                return;
            }
            if !ns.insert(conn.clone()) {
                ns.stats().record_rejected();
                tracing::warn!(target: "asena::ws", path = %ns.path(), "connection limit reached; closing with 1008");
                Box::pin(refuse(io, close_code::POLICY, "Connection limit reached")).await;
                return;
            }
            if shutting_down.load(Ordering::Acquire) {
                // Shutdown began between the check above and the insert; close_all may have
                // missed this socket, so close it here.
                conn.close(close_code::GOING_AWAY, "Server shutting down");
            }
            ns.stats().record_opened();
            service.run(SocketRef { conn, ns }, io).await;
        },
        span,
    ));

    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.extend(extra_headers);
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept_key(key.as_bytes())) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some((_, extension)) = deflate {
        headers.insert(header::SEC_WEBSOCKET_EXTENSIONS, extension);
    }
    // The chosen protocol replaces anything middleware put there: the socket reports the one
    // the client was told.
    match protocol {
        // An entry of PROTOCOLS (checked to be a token when the app was built), equal to a
        // value the client sent: a valid header value, which from_static takes without
        // copying.
        Some(name) => {
            headers.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(name),
            );
        }
        None => {
            headers.remove(header::SEC_WEBSOCKET_PROTOCOL);
        }
    }
    resp
}

/// Sends a close frame on a connection we will not serve, then drops it.
async fn refuse(io: Io, code: u16, reason: &str) {
    let frame = Frame::close(code, reason);
    match io {
        Io::Tcp { mut stream, .. } => {
            let _ = stream.write_all(frame.wire()).await;
            let _ = stream.shutdown().await;
        }
        Io::Other(mut io) => {
            let _ = io.write_all(frame.wire()).await;
            let _ = io.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    fn offer(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_str(v).expect("a visible ASCII value"),
            );
        }
        headers
    }

    #[test]
    fn the_clients_first_supported_protocol_is_selected() {
        const SUPPORTED: &[&str] = &["chat.v2", "chat.v1"];
        let cases: &[(&[&str], Option<&str>)] = &[
            (&[], None),
            (&["chat.v1"], Some("chat.v1")),
            (&["chat.v1, chat.v2"], Some("chat.v1")),
            (&["chat.v2,chat.v1"], Some("chat.v2")),
            (&["x, chat.v1"], Some("chat.v1")),
            // Repeated headers are one list, in order.
            (&["x", "chat.v1", "chat.v2"], Some("chat.v1")),
            (&["x,", " ,\tchat.v2\t", "chat.v1"], Some("chat.v2")),
            // Exact names: no case folding, no prefixes.
            (&["CHAT.V1", "chat", "chat.v1x"], None),
            (&["x, y"], None),
            (&[""], None),
        ];
        for (values, expected) in cases {
            assert_eq!(
                select_protocol(&offer(values), SUPPORTED),
                *expected,
                "{values:?}"
            );
        }
        assert_eq!(select_protocol(&offer(&["chat.v1"]), &[]), None);
        // A value that is not visible ASCII is skipped, the others still count.
        let mut headers = offer(&[]);
        headers.append(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_bytes(b"chat.v2\xff").expect("a header value with an obs-text byte"),
        );
        headers.append(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("chat.v1"),
        );
        assert_eq!(select_protocol(&headers, SUPPORTED), Some("chat.v1"));
    }
}
