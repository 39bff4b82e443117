//! Middlewares guarding HTTP routes, as Asena's `@Controller({ middlewares: [..] })` does:
//! the same [`Middleware`] chain that runs before an upgrade runs before the handlers of a
//! router given to [`AsenaBuilder::guarded_router`](crate::AsenaBuilder::guarded_router) (the
//! list of middlewares, [`Middlewares`](crate::Middlewares), is the app's: it names components).
//!
//! For an HTTP request the chain behaves as before an upgrade — continue, refuse with any
//! answer, 403 when a middleware neither continues nor refuses, 500 when one panics — and
//! what a continuing chain leaves is handed on: the values middlewares put in
//! [`Context::extensions_mut`] become request extensions (axum's `Extension<T>` reads them),
//! and [`Context::response_headers_mut`] is added to the handler's response.
//! [`Context::set_websocket_value`] has no effect: no socket is made.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use http::StatusCode;

use super::{ChainOutcome, Context, ErasedMiddleware, Refusal, run_chain};
use crate::request::{MAX_QUERY_PAIRS, parse_query_bounded};

/// The chain of one guarded router.
pub(crate) type Chain = Arc<[Arc<dyn ErasedMiddleware>]>;

/// Runs `chain` before the request's handler (an axum `from_fn_with_state` middleware).
pub(crate) async fn guard(
    State(chain): State<Chain>,
    request: Request<Body>,
    next: axum::middleware::Next,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let Some(query) = parse_query_bounded(parts.uri.query()) else {
        return Refusal::json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({ "error": format!("at most {MAX_QUERY_PAIRS} query parameters") }),
        )
        .into_response();
    };
    let path = parts.uri.path().to_owned();
    let remote = remote_addr(&parts);
    let mut ctx = Context::new(parts, remote, query);
    match run_chain(&chain, &mut ctx, &path).await {
        ChainOutcome::Continue => {
            let (mut parts, extensions, response_headers) = ctx.into_request_parts();
            parts.extensions.extend(extensions);
            let mut response = next.run(Request::from_parts(parts, body)).await;
            response.headers_mut().extend(response_headers);
            response
        }
        ChainOutcome::Respond(refused) => refused,
    }
}

/// The peer's address, when the app serves with connect info (as [`Asena::serve`] does).
///
/// [`Asena::serve`]: crate::Asena::serve
pub(crate) fn remote_addr(parts: &http::request::Parts) -> Option<SocketAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}
