//! [`TokenGuard`]: one shared secret, checked in constant time, guarding HTTP routes (as a
//! tower layer) and WebSocket upgrades (as a [`Middleware`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::{FromFn, FromFnLayer, Next};
use axum::response::Response;
use http::HeaderMap;

use crate::middleware::{self, Context, Middleware, Refusal};
use crate::request;
use crate::secret::secret_eq;

/// Admits requests that carry one token: as `Authorization: Bearer <token>`, or, when
/// [`cookie`](Self::cookie) names one, in that cookie. The comparison is constant-time
/// ([`secret_eq`]); an empty token admits nobody. A refused request gets
/// 401 `{"error":"Unauthorized"}` with `WWW-Authenticate: Bearer`.
///
/// It guards, the same way everywhere:
/// - HTTP routes, as a tower layer: `route_layer(guard.clone())` on your own router, the
///   metrics route, any route of axum;
/// - WebSocket upgrades and the inspector, as a [`Middleware`]
///   ([`AsenaBuilder::inspector`](crate::AsenaBuilder::inspector),
///   [`with_middleware`](crate::AsenaBuilder::with_middleware) through a `#[middleware]`
///   struct holding one);
/// - a middleware of your own, through [`admits`](Self::admits) on
///   [`Context::headers`](crate::Context::headers).
///
/// ```
/// use asena_runtime::{Asena, TokenGuard};
/// use axum::{Router, routing::get};
///
/// let guard = TokenGuard::new("s3cret").cookie("session");
/// assert!(guard.admits(&{
///     let mut h = http::HeaderMap::new();
///     h.insert("authorization", "Bearer s3cret".parse().unwrap());
///     h
/// }));
///
/// let admin = Router::new()
///     .route("/admin/stats", get(|| async { "ok" }))
///     .route_layer(guard.clone());
/// let builder = Asena::builder()
///     .router(admin)
///     .inspector("/_asena", guard);
/// ```
#[derive(Clone)]
pub struct TokenGuard {
    token: Arc<str>,
    cookie: Option<Arc<str>>,
}

impl TokenGuard {
    /// A guard that admits `token`. An empty token admits nobody.
    pub fn new(token: impl Into<String>) -> TokenGuard {
        TokenGuard {
            token: token.into().into(),
            cookie: None,
        }
    }

    /// Also accepts the token in cookie `name` (for browsers, which send a cookie on their
    /// own but no `Authorization` header). The bearer header wins when both are present.
    pub fn cookie(mut self, name: &str) -> TokenGuard {
        self.cookie = Some(name.into());
        self
    }

    /// Whether `token` is the guard's token, compared in constant time.
    pub fn admits_token(&self, token: &str) -> bool {
        !self.token.is_empty() && secret_eq(token, &*self.token)
    }

    /// Whether the request's headers carry the token (bearer header, or the cookie).
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let given = request::bearer_token(headers).or_else(|| {
            self.cookie
                .as_deref()
                .and_then(|name| request::cookie(headers, name))
        });
        given.is_some_and(|t| self.admits_token(t))
    }

    fn refusal() -> Refusal {
        Refusal::json(401, serde_json::json!({"error": "Unauthorized"}))
            .with_header("www-authenticate", "Bearer")
    }
}

impl std::fmt::Debug for TokenGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGuard")
            .field("token", &"..")
            .field("cookie", &self.cookie)
            .finish()
    }
}

impl Middleware for TokenGuard {
    async fn handle(&self, ctx: &mut Context, next: middleware::Next<'_>) -> Result<(), Refusal> {
        if !self.admits(ctx.headers()) {
            tracing::warn!(
                target: "asena::middleware",
                path = %ctx.path(),
                remote = ?ctx.remote_addr(),
                "request without a valid token"
            );
            return Err(TokenGuard::refusal());
        }
        next.run(ctx).await
    }
}

/// The boxed future of [`check`], so the layer's service type can be named.
type Check = fn(State<TokenGuard>, Request, Next) -> Pin<Box<dyn Future<Output = Response> + Send>>;

/// The route layer's check: the request goes on when admitted, else the refusal answers.
fn check(
    State(guard): State<TokenGuard>,
    request: Request,
    next: Next,
) -> Pin<Box<dyn Future<Output = Response> + Send>> {
    Box::pin(async move {
        if guard.admits(request.headers()) {
            next.run(request).await
        } else {
            tracing::warn!(
                target: "asena::middleware",
                path = %request.uri().path(),
                "request without a valid token"
            );
            TokenGuard::refusal().into_response()
        }
    })
}

impl<S> tower_layer::Layer<S> for TokenGuard {
    type Service = FromFn<Check, TokenGuard, S, (State<TokenGuard>, Request)>;

    fn layer(&self, inner: S) -> Self::Service {
        let layer: FromFnLayer<Check, TokenGuard, (State<TokenGuard>, Request)> =
            axum::middleware::from_fn_with_state(self.clone(), check as Check);
        layer.layer(inner)
    }
}
