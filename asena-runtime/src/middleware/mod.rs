//! Middleware that runs before the WebSocket upgrade.
//!
//! The chain for a request is: the global middlewares registered with
//! [`AsenaBuilder::with_middleware`](crate::AsenaBuilder::with_middleware) whose [`Scope`]
//! matches the request path (in registration order), then the service's own
//! `middlewares = [..]` in declared order, then the upgrade. The Origin allow-list
//! ([`AsenaBuilder::allowed_origins`](crate::AsenaBuilder::allowed_origins)) is checked
//! before any middleware runs.
//!
//! Each middleware decides one of:
//! - **continue** with `next.run(ctx).await` (code after it sees the outcome of the rest of
//!   the chain, so a middleware can time or log the request);
//! - **reject** with `Err(Rejection)`: answered as-is (any status, headers and body); no
//!   socket is created and `on_open` never runs;
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
//!
//! /// Adds a request id that later middlewares can read, and returns it on the 101.
//! #[middleware]
//! struct RequestId;
//!
//! #[derive(Clone)]
//! struct Id(String);
//!
//! impl Middleware for RequestId {
//!     async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Rejection> {
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

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use futures_util::FutureExt;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};

pub use context::Context;

use crate::di::{AnyArc, Component};

/// A middleware: runs before the upgrade, may reject the request.
///
/// ```
/// use asena_runtime::prelude::*;
///
/// #[middleware]
/// struct RequireName;
///
/// impl Middleware for RequireName {
///     async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Rejection> {
///         let name = ctx
///             .query("name")
///             .ok_or_else(|| Rejection::json(400, json!({"error": "name is required"})))?
///             .to_owned();
///         ctx.set_websocket_value(name);
///         next.run(ctx).await
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is used as a middleware but does not implement `Middleware`",
    label = "missing `impl Middleware for {Self}`",
    note = "annotate it with `#[middleware]` and add `impl Middleware for {Self} {{ async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Rejection> {{ next.run(ctx).await }} }}`"
)]
pub trait Middleware: Send + Sync + 'static {
    /// Inspects the request; call `next.run(ctx).await` to continue.
    fn handle(
        &self,
        ctx: &mut Context,
        next: Next<'_>,
    ) -> impl Future<Output = Result<(), Rejection>> + Send;
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A middleware with its type erased, as chains hold it.
#[doc(hidden)]
pub trait ErasedMiddleware: Send + Sync + 'static {
    fn handle<'a>(
        &'a self,
        ctx: &'a mut Context,
        next: Next<'a>,
    ) -> BoxFut<'a, Result<(), Rejection>>;
    fn name(&self) -> &'static str;
}

impl std::fmt::Debug for dyn ErasedMiddleware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

struct Adapter<M>(Arc<M>);

impl<M: Middleware + Component> ErasedMiddleware for Adapter<M> {
    fn handle<'a>(
        &'a self,
        ctx: &'a mut Context,
        next: Next<'a>,
    ) -> BoxFut<'a, Result<(), Rejection>> {
        Box::pin(self.0.handle(ctx, next))
    }
    fn name(&self) -> &'static str {
        M::record().name
    }
}

/// Turns a built middleware into a chain link; referenced by generated records.
#[doc(hidden)]
pub fn middleware_entry<M: Middleware + Component>(instance: AnyArc) -> Arc<dyn ErasedMiddleware> {
    let m = instance.downcast::<M>().unwrap_or_else(|_| {
        panic!(
            "invariant: record of {} built another type",
            std::any::type_name::<M>()
        )
    });
    Arc::new(Adapter(m))
}

/// Compile-time check that a type listed in `middlewares = [..]` is a middleware component.
#[doc(hidden)]
pub fn assert_middleware<M: Middleware + Component>() {}

/// The rest of the chain.
#[derive(Debug)]
pub struct Next<'a> {
    rest: &'a [Arc<dyn ErasedMiddleware>],
}

impl Next<'_> {
    /// Runs the remaining middlewares; when all continue, the request is upgraded.
    pub async fn run(self, ctx: &mut Context) -> Result<(), Rejection> {
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
                Rejection::json(403, serde_json::json!({"error": "Forbidden"})).into_response(),
            )
        }
        Ok(Err(rejection)) => {
            tracing::debug!(target: "asena::middleware", path, status = %rejection.status, "rejected");
            ChainOutcome::Respond(rejection.into_response())
        }
        Err(_) => {
            tracing::error!(target: "asena::middleware", path, "a middleware panicked; answering 500");
            ChainOutcome::Respond(
                Rejection::json(500, serde_json::json!({"error": "Internal Server Error"}))
                    .into_response(),
            )
        }
    }
}

/// An HTTP answer that refuses the upgrade.
#[derive(Debug, Clone)]
pub struct Rejection {
    status: StatusCode,
    headers: HeaderMap,
    body: bytes::Bytes,
}

impl Rejection {
    /// A rejection with `status` and an empty body. Codes that cannot end a request
    /// (invalid ones and `1xx`, which would claim a protocol switch that never happens)
    /// become 500.
    pub fn new(status: u16) -> Rejection {
        let status = StatusCode::from_u16(status)
            .ok()
            .filter(|s| !s.is_informational())
            .unwrap_or_else(|| {
                tracing::error!(
                    target: "asena::middleware",
                    status,
                    "a rejection needs a final status (200-999); answering 500"
                );
                StatusCode::INTERNAL_SERVER_ERROR
            });
        Rejection {
            status,
            headers: HeaderMap::new(),
            body: bytes::Bytes::new(),
        }
    }

    /// A rejection with a JSON body.
    pub fn json(status: u16, body: serde_json::Value) -> Rejection {
        let mut r = Rejection::new(status);
        r.body = serde_json::to_vec(&body).unwrap_or_default().into();
        r.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    }

    /// A rejection with a plain-text body.
    pub fn text(status: u16, body: impl Into<String>) -> Rejection {
        let mut r = Rejection::new(status);
        r.body = body.into().into_bytes().into();
        r.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    }

    /// Sets a response header, replacing an earlier value of the same name (so it can
    /// override the `content-type` of [`json`](Self::json) or [`text`](Self::text)).
    /// Invalid names or values are ignored and logged.
    pub fn with_header(mut self, name: &str, value: &str) -> Rejection {
        match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            (Ok(n), Ok(v)) => {
                self.headers.insert(n, v);
            }
            _ => {
                tracing::warn!(target: "asena::middleware", name, "ignoring an invalid rejection header")
            }
        }
        self
    }

    /// Adds a response header, keeping earlier values of the same name (e.g. several
    /// `set-cookie`). Invalid names or values are ignored and logged.
    pub fn append_header(mut self, name: &str, value: &str) -> Rejection {
        match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            (Ok(n), Ok(v)) => {
                self.headers.append(n, v);
            }
            _ => {
                tracing::warn!(target: "asena::middleware", name, "ignoring an invalid rejection header")
            }
        }
        self
    }

    /// The response headers set so far.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Turns the rejection into a response.
    pub fn into_response(self) -> Response<Body> {
        let mut resp = Response::new(Body::from(self.body));
        *resp.status_mut() = self.status;
        *resp.headers_mut() = self.headers;
        resp
    }
}

impl axum::response::IntoResponse for Rejection {
    fn into_response(self) -> axum::response::Response {
        Rejection::into_response(self)
    }
}

/// Which paths a global middleware applies to.
///
/// Patterns match the request path *with* its leading `/`; `*` matches any run of
/// characters (including `/`). A middleware runs when some include pattern matches (or there
/// are none) and no exclude pattern matches.
///
/// ```
/// use asena_runtime::Scope;
/// let scope = Scope::all().include("/admin/*").exclude("/admin/health");
/// assert!(scope.matches("/admin/users"));
/// assert!(!scope.matches("/admin/health"));
/// assert!(!scope.matches("/chat"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Scope {
    include: Vec<String>,
    exclude: Vec<String>,
}

impl Scope {
    /// Every path.
    pub fn all() -> Scope {
        Scope::default()
    }

    /// Adds an include pattern (e.g. `"/admin/*"`).
    pub fn include(mut self, pattern: impl Into<String>) -> Scope {
        self.include.push(checked(pattern.into()));
        self
    }

    /// Adds an exclude pattern (e.g. `"/admin/health"`).
    pub fn exclude(mut self, pattern: impl Into<String>) -> Scope {
        self.exclude.push(checked(pattern.into()));
        self
    }

    /// Whether the middleware applies to `path`.
    pub fn matches(&self, path: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| glob(p, path)))
            && !self.exclude.iter().any(|p| glob(p, path))
    }
}

/// Warns about a pattern that can never match: paths always start with `/`.
fn checked(pattern: String) -> String {
    if !pattern.starts_with(['/', '*']) {
        tracing::warn!(
            target: "asena::middleware",
            pattern,
            "middleware scope pattern does not start with `/` or `*` and matches no request path; \
             write it with the leading slash, e.g. `/{pattern}`"
        );
    }
    pattern
}

/// `*` matches any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_patterns() {
        assert!(glob("/admin/*", "/admin/x/y"));
        assert!(glob("/admin/*", "/admin/"));
        assert!(!glob("/admin/*", "/admin"));
        assert!(glob("*", "/anything"));
        assert!(glob("/a/*/c", "/a/b/c"));
        assert!(!glob("/a/*/c", "/a/b/d"));
        assert!(glob("/exact", "/exact"));
        assert!(!glob("/exact", "/exactly"));
    }

    #[test]
    fn informational_status_is_not_a_rejection() {
        assert_eq!(
            Rejection::new(101).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            Rejection::new(42).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(Rejection::new(204).status(), StatusCode::NO_CONTENT);
    }

    #[test]
    fn headers_replace_or_append() {
        let r = Rejection::json(429, serde_json::json!({}))
            .with_header("content-type", "application/problem+json")
            .append_header("set-cookie", "a=1")
            .append_header("set-cookie", "b=2")
            .with_header("bad name", "x");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert_eq!(r.headers().get_all(header::SET_COOKIE).iter().count(), 2);
        assert_eq!(r.headers().len(), 3);
        assert_eq!(r.body(), b"{}");
    }

    #[test]
    fn scope_without_leading_slash_matches_nothing() {
        assert!(!Scope::all().include("admin/*").matches("/admin/x"));
        assert!(Scope::all().include("*/x").matches("/admin/x"));
    }

    #[test]
    fn rejection_json_sets_type_and_body() {
        let r = Rejection::json(401, serde_json::json!({"error": "Unauthorized"}));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let resp = r.into_response();
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
    }
}
