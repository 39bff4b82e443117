//! Middleware that runs before the WebSocket upgrade.
//!
//! The chain for a service is: global middlewares registered on the builder whose
//! [`Scope`] matches the path, then the service's own `middlewares = [..]` in declared order,
//! then the upgrade. Each middleware either continues with `next.run(ctx).await`, or rejects
//! with a [`Rejection`] (answered as-is; no socket is created). A middleware that does
//! neither is answered `403 Forbidden`, and a panic `500` with a generic body.

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
    fn handle<'a>(&'a self, ctx: &'a mut Context, next: Next<'a>) -> BoxFut<'a, Result<(), Rejection>>;
    fn name(&self) -> &'static str;
}

impl std::fmt::Debug for dyn ErasedMiddleware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

struct Adapter<M>(Arc<M>);

impl<M: Middleware + Component> ErasedMiddleware for Adapter<M> {
    fn handle<'a>(&'a self, ctx: &'a mut Context, next: Next<'a>) -> BoxFut<'a, Result<(), Rejection>> {
        Box::pin(self.0.handle(ctx, next))
    }
    fn name(&self) -> &'static str {
        M::record().name
    }
}

/// Turns a built middleware into a chain link; referenced by generated records.
#[doc(hidden)]
pub fn middleware_entry<M: Middleware + Component>(instance: AnyArc) -> Arc<dyn ErasedMiddleware> {
    let m = instance
        .downcast::<M>()
        .unwrap_or_else(|_| panic!("invariant: record of {} built another type", std::any::type_name::<M>()));
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
            ChainOutcome::Respond(Rejection::json(403, serde_json::json!({"error": "Forbidden"})).into_response())
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
    /// A rejection with `status` and an empty body. Invalid codes become 500.
    pub fn new(status: u16) -> Rejection {
        Rejection {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            headers: HeaderMap::new(),
            body: bytes::Bytes::new(),
        }
    }

    /// A rejection with a JSON body.
    pub fn json(status: u16, body: serde_json::Value) -> Rejection {
        let mut r = Rejection::new(status);
        r.body = serde_json::to_vec(&body).unwrap_or_default().into();
        r.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
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

    /// Adds a response header (invalid names or values are ignored).
    pub fn with_header(mut self, name: &str, value: &str) -> Rejection {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            self.headers.insert(n, v);
        }
        self
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

    /// Adds an include pattern.
    pub fn include(mut self, pattern: impl Into<String>) -> Scope {
        self.include.push(pattern.into());
        self
    }

    /// Adds an exclude pattern.
    pub fn exclude(mut self, pattern: impl Into<String>) -> Scope {
        self.exclude.push(pattern.into());
        self
    }

    /// Whether the middleware applies to `path`.
    pub fn matches(&self, path: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| glob(p, path)))
            && !self.exclude.iter().any(|p| glob(p, path))
    }
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
    fn rejection_json_sets_type_and_body() {
        let r = Rejection::json(401, serde_json::json!({"error": "Unauthorized"}));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let resp = r.into_response();
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
    }
}
