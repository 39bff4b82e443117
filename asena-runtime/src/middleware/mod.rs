//! Middleware that runs before the WebSocket upgrade, and before the handlers of HTTP routes
//! it guards ([`AsenaBuilder::guarded_router`](crate::AsenaBuilder::guarded_router)).
//!
//! The chain for a request is: the global middlewares registered with
//! [`AsenaBuilder::with_middleware`](crate::AsenaBuilder::with_middleware) whose [`Scope`]
//! matches the request path (in registration order), then the service's own
//! `middlewares = [..]` in declared order, then the upgrade. The Origin allow-list
//! ([`AsenaBuilder::allowed_origins`](crate::AsenaBuilder::allowed_origins)) is checked and
//! the subprotocol chosen ([`WebSocketService::PROTOCOLS`](crate::WebSocketService::PROTOCOLS),
//! [`Context::protocol`]) before any middleware runs.
//!
//! Each middleware decides one of:
//! - **continue** with `next.run(ctx).await` (code after it sees the outcome of the rest of
//!   the chain, so a middleware can time or log the request);
//! - **refuse** with `Err(Refusal)`: answered as-is (any status, headers and body, or any
//!   axum response); no socket is created and `on_open` never runs;
//! - **neither** (returns `Ok(())` without calling `next`): answered
//!   `403 {"error":"Forbidden"}` — requests are refused by default, never upgraded anyway;
//! - **panic**: answered `500 {"error":"Internal Server Error"}`; the panic message is only
//!   logged, never sent.
//!
//! [`Context::set_websocket_value`] stores the connection's typed values (the last call
//! wins); the service reads them as `ws.data().values`. If their type is not the service's
//! `Data`, the upgrade is answered 500 and the log names both types.
//!
//! ```
//! use asena_runtime::prelude::*;
//! use asena_runtime::{Asena, Scope};
//!
//! /// Adds a request id that later middlewares can read, and returns it on the 101.
//! #[middleware]
//! struct RequestId;
//!
//! #[derive(Clone)]
//! struct Id(String);
//!
//! impl Middleware for RequestId {
//!     async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
//!         let id = ctx.header("x-request-id").unwrap_or("generated").to_owned();
//!         ctx.extensions_mut().insert(Id(id.clone()));
//!         if let Ok(value) = id.parse() {
//!             ctx.response_headers_mut().insert("x-request-id", value);
//!         }
//!         next.run(ctx).await
//!     }
//! }
//!
//! # fn builder() -> asena_runtime::AsenaBuilder {
//! Asena::builder().with_middleware::<RequestId>(Scope::all().exclude("/health"))
//! # }
//! ```

mod context;
mod guard;
mod refusal;
mod routes;
mod scope;
mod value;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use crate::asyncapi::QueryParam;
use axum::body::Body;
use futures_util::FutureExt;
use http::Response;

pub use context::Context;
pub use guard::TokenGuard;
pub use refusal::{IntoStatusCode, Refusal};
pub(crate) use routes::{Chain, guard as guard_http, remote_addr};
pub use scope::Scope;
pub(crate) use value::{TypeMismatch, WsValue};

/// A middleware: runs before the upgrade, may reject the request.
///
/// ```
/// use asena_runtime::prelude::*;
///
/// #[middleware]
/// struct RequireName;
///
/// impl Middleware for RequireName {
///     async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
///         let name = ctx
///             .query("name")
///             .ok_or_else(|| Refusal::json(400, json!({"error": "name is required"})))?
///             .to_owned();
///         ctx.set_websocket_value(name);
///         next.run(ctx).await
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is used as a middleware but does not implement `Middleware`",
    label = "missing `impl Middleware for {Self}`",
    note = "annotate it with `#[middleware]` and add `impl Middleware for {Self} {{ async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {{ next.run(ctx).await }} }}`"
)]
pub trait Middleware: Send + Sync + 'static {
    /// The query parameters of the upgrade request this middleware reads, for the AsyncAPI
    /// document of every service it guards (`bindings.ws.query`).
    const QUERY: &'static [QueryParam] = &[];

    /// Inspects the request; call `next.run(ctx).await` to continue.
    fn handle(
        &self,
        ctx: &mut Context,
        next: Next<'_>,
    ) -> impl Future<Output = Result<(), Refusal>> + Send;
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A middleware with its type erased, as chains hold it.
#[doc(hidden)]
pub trait ErasedMiddleware: Send + Sync + 'static {
    fn handle<'a>(
        &'a self,
        ctx: &'a mut Context,
        next: Next<'a>,
    ) -> BoxFut<'a, Result<(), Refusal>>;
    fn name(&self) -> &'static str;
    fn query(&self) -> &'static [QueryParam];
}

impl std::fmt::Debug for dyn ErasedMiddleware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

struct Adapter<M> {
    middleware: Arc<M>,
    name: &'static str,
}

impl<M: Middleware> ErasedMiddleware for Adapter<M> {
    fn handle<'a>(
        &'a self,
        ctx: &'a mut Context,
        next: Next<'a>,
    ) -> BoxFut<'a, Result<(), Refusal>> {
        Box::pin(self.middleware.handle(ctx, next))
    }
    fn name(&self) -> &'static str {
        self.name
    }
    fn query(&self) -> &'static [QueryParam] {
        M::QUERY
    }
}

/// Turns a built middleware into a chain link named `name` (for logs).
pub(crate) fn erase<M: Middleware>(
    middleware: Arc<M>,
    name: &'static str,
) -> Arc<dyn ErasedMiddleware> {
    Arc::new(Adapter { middleware, name })
}

/// The rest of the chain.
#[derive(Debug)]
pub struct Next<'a> {
    rest: &'a [Arc<dyn ErasedMiddleware>],
}

impl Next<'_> {
    /// Runs the remaining middlewares; when all continue, the request is upgraded.
    pub async fn run(self, ctx: &mut Context) -> Result<(), Refusal> {
        match self.rest.split_first() {
            Some((first, rest)) => first.handle(ctx, Next { rest }).await,
            None => {
                ctx.reached_end = true;
                Ok(())
            }
        }
    }
}

/// What the chain decided.
pub(crate) enum ChainOutcome {
    Continue,
    Respond(Response<Body>),
}

pub(crate) async fn run_chain(
    chain: &[Arc<dyn ErasedMiddleware>],
    ctx: &mut Context,
    path: &str,
) -> ChainOutcome {
    let fut = Next { rest: chain }.run(ctx);
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(Ok(())) if ctx.reached_end => ChainOutcome::Continue,
        Ok(Ok(())) => {
            tracing::warn!(
                target: "asena::middleware",
                path,
                "a middleware neither continued nor rejected; answering 403"
            );
            ChainOutcome::Respond(
                Refusal::json(403, serde_json::json!({"error": "Forbidden"})).into_response(),
            )
        }
        Ok(Err(refusal)) => {
            tracing::debug!(target: "asena::middleware", path, status = %refusal.status(), "refused");
            ChainOutcome::Respond(refusal.into_response())
        }
        Err(_) => {
            tracing::error!(target: "asena::middleware", path, "a middleware panicked; answering 500");
            ChainOutcome::Respond(
                Refusal::json(500, serde_json::json!({"error": "Internal Server Error"}))
                    .into_response(),
            )
        }
    }
}
