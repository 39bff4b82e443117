//! The auth app: token authentication before the WebSocket upgrade, and a three-middleware
//! chain that shows the order middlewares run in.
//!
//! Contract (kept by `tests/auth.rs`): `/private` takes a token from `?token=` or
//! `Authorization: Bearer`; no token → 401 `{"error":"Unauthorized"}`; a wrong one → 401
//! `{"error":"Invalid token"}`; `valid-token` → the socket opens and receives
//! `{"type":"authenticated","userId":"123","username":"john_doe"}`.
//!
//! `/secure` runs `RequestLogger` → `WsAuth` → `RateLimit`: every request is logged (with its
//! outcome), unauthenticated requests are refused before they count against the rate limit,
//! and each authenticated peer IP may open [`RateLimit::MAX_PER_WINDOW`] sockets per
//! [`RateLimit::WINDOW`]; more are answered 429 with `Retry-After`. Each middleware appends
//! its name to the `x-middleware` header of the `101` response, so the order is visible.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use asena_runtime::Asena;
use asena_runtime::asyncapi::QueryParam;
use asena_runtime::prelude::*;
use axum::http::HeaderValue;

/// A user known to [`TokenService`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub name: String,
}

/// Verifies tokens. A real app would check a signature or ask a session store.
#[service]
pub struct TokenService;

impl TokenService {
    /// The user a token belongs to.
    pub fn verify(&self, token: &str) -> Option<User> {
        // Constant time: how long a refusal takes says nothing about the token.
        asena_runtime::secret_eq(token, "valid-token").then(|| User {
            id: "123".into(),
            name: "john_doe".into(),
        })
    }
}

/// What [`WsAuth`] stores for an authenticated connection (`ws.data().values`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserData {
    pub user_id: String,
    pub username: String,
}

/// Marks a response header so the order of the chain shows on the `101` response.
fn mark(ctx: &mut Context, name: &'static str) {
    ctx.response_headers_mut()
        .append("x-middleware", HeaderValue::from_static(name));
}

/// Authenticates the upgrade request with a token from `?token=` or `Authorization: Bearer`.
#[middleware]
pub struct WsAuth {
    #[inject]
    tokens: Arc<TokenService>,
}

impl Middleware for WsAuth {
    const QUERY: &'static [QueryParam] = &[QueryParam {
        name: "token",
        description: "The access token (or send `Authorization: Bearer <token>`); 401 without a valid one.",
        required: false,
    }];

    async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
        let token = ctx
            .query("token")
            .filter(|t| !t.is_empty())
            .or_else(|| ctx.bearer_token())
            .ok_or_else(|| Refusal::json(401, json!({"error": "Unauthorized"})))?;
        let user = self
            .tokens
            .verify(token)
            .ok_or_else(|| Refusal::json(401, json!({"error": "Invalid token"})))?;
        ctx.set_websocket_value(UserData {
            user_id: user.id,
            username: user.name,
        });
        mark(ctx, "auth");
        next.run(ctx).await
    }
}

/// Logs every upgrade request and how the rest of the chain answered it.
#[middleware]
pub struct RequestLogger;

impl Middleware for RequestLogger {
    async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
        let started = Instant::now();
        let path = ctx.path().to_owned();
        let peer = ctx.remote_addr();
        mark(ctx, "logging");
        // Middlewares wrap the rest of the chain: the code after `next.run` sees its outcome.
        let outcome = next.run(ctx).await;
        let status = match &outcome {
            Ok(()) => 101,
            Err(rejection) => rejection.status().as_u16(),
        };
        tracing::info!(%path, ?peer, status, elapsed = ?started.elapsed(), "websocket upgrade");
        outcome
    }
}

/// A fixed-window connection limit per peer IP.
#[middleware]
pub struct RateLimit {
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl RateLimit {
    /// Sockets one IP may open per window.
    pub const MAX_PER_WINDOW: u32 = 5;
    /// The window length.
    pub const WINDOW: Duration = Duration::from_secs(60);

    /// Counts a request from `ip`; `Err(seconds)` says how long until the window resets.
    fn hit(&self, ip: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > 10_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < Self::WINDOW);
        }
        let (start, count) = windows.entry(ip).or_insert((now, 0));
        if now.duration_since(*start) >= Self::WINDOW {
            *start = now;
            *count = 0;
        }
        if *count >= Self::MAX_PER_WINDOW {
            let left = Self::WINDOW.saturating_sub(now.duration_since(*start));
            return Err(left.as_secs().max(1));
        }
        *count += 1;
        Ok(())
    }
}

impl Middleware for RateLimit {
    async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
        if let Some(addr) = ctx.remote_addr()
            && let Err(retry_after) = self.hit(addr.ip())
        {
            return Err(Refusal::json(429, json!({"error": "Too Many Requests"}))
                .with_header("retry-after", &retry_after.to_string()));
        }
        mark(ctx, "rate-limit");
        next.run(ctx).await
    }
}

/// `/private`: only authenticated users get in.
#[websocket(path = "/private", name = "PrivateSocket", middlewares = [WsAuth])]
pub struct PrivateSocket;

impl WebSocketService for PrivateSocket {
    type Data = UserData;

    async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
        let user = &ws.data().values;
        ws.send_json(&json!({
            "type": "authenticated",
            "userId": user.user_id,
            "username": user.username,
        }))?;
        Ok(())
    }

    async fn on_message(&self, ws: &Socket<Self>, msg: Message) -> Result<()> {
        match msg.json::<serde_json::Value>() {
            Ok(v) if v["type"] == "ping" => ws.send_json(&json!({"type": "pong"}))?,
            Ok(v) if v["type"] == "whoami" => ws.send_json(&json!({
                "type": "whoami",
                "userId": ws.data().values.user_id,
                "username": ws.data().values.username,
            }))?,
            _ => ws.send_json(&json!({"type": "error", "message": "Unknown message"}))?,
        }
        Ok(())
    }
}

/// `/secure`: logging, then auth, then a per-IP rate limit.
#[websocket(
    path = "/secure",
    name = "SecureSocket",
    middlewares = [RequestLogger, WsAuth, RateLimit]
)]
pub struct SecureSocket;

impl WebSocketService for SecureSocket {
    type Data = UserData;

    async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
        ws.send_json(&json!({"type": "welcome", "username": ws.data().values.username}))?;
        Ok(())
    }

    async fn on_message(&self, ws: &Socket<Self>, msg: Message) -> Result<()> {
        // Echo, as the authenticated user.
        ws.send_json(&json!({
            "type": "echo",
            "username": ws.data().values.username,
            "message": msg.as_text().unwrap_or_default(),
        }))?;
        Ok(())
    }
}

/// The app builder as the example runs it (tests add `.without_auto_registration()`).
pub fn builder() -> asena_runtime::AsenaBuilder {
    Asena::builder()
        .service::<TokenService>()
        .middleware::<WsAuth>()
        .middleware::<RequestLogger>()
        .middleware::<RateLimit>()
        .websocket::<PrivateSocket>()
        .websocket::<SecureSocket>()
}
