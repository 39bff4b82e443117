//! The app: one WebSocket service, the middleware in front of it, and a service that sends
//! to its sockets from an HTTP route.
//!
//! - `ws://HOST/ws?name=ada` joins the lobby and receives `{"type":"welcome","name":"ada"}`;
//!   without a `name` the upgrade is refused with `401 {"error":"name required"}`.
//! - A text message `hi` reaches everyone in the lobby, sender included, as
//!   `{"type":"message","from":"ada","text":"hi"}`.
//! - `POST /announce` with a text body reaches everyone in the lobby as
//!   `{"type":"announcement","text":…}`.
//!
//! The components register themselves (`#[websocket]`, `#[middleware]`, `#[service]`);
//! [`app`] only adds the HTTP routes.

use asena_runtime::prelude::*;
use asena_runtime::{Asena, AsenaBuilder, FromApp, SendError};
use axum::http::StatusCode;
use axum::routing::post;

/// The room every socket joins.
pub const LOBBY: &str = "lobby";

/// Who is on a socket, as [`RequireName`] found it (`ws.data().values`).
#[derive(Debug, Clone, Default)]
pub struct User {
    pub name: String,
}

/// Runs before the upgrade: no `?name=`, no socket.
#[middleware]
#[derive(Debug)]
pub struct RequireName;

impl Middleware for RequireName {
    async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
        let name = ctx
            .query("name")
            .filter(|name| !name.is_empty())
            .ok_or_else(|| Refusal::json(401, json!({"error": "name required"})))?;
        ctx.set_websocket_value(User {
            name: name.to_owned(),
        });
        next.run(ctx).await
    }
}

/// `/ws?name=…`: everyone in one room.
#[websocket(path = "/ws", middlewares = [RequireName])]
#[derive(Debug)]
pub struct Lobby;

impl WebSocketService for Lobby {
    type Data = User;

    async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
        ws.subscribe(LOBBY)?;
        ws.send_json(&json!({"type": "welcome", "name": ws.data().values.name}))?;
        Ok(())
    }

    async fn on_message(&self, ws: &Socket<Self>, msg: Message) -> Result<()> {
        let text = msg.as_text().unwrap_or_default();
        let from = &ws.data().values.name;
        // `to` reaches the whole room, sender included, on every instance.
        ws.namespace().to(
            LOBBY,
            Json(json!({"type": "message", "from": from, "text": text})),
        )?;
        Ok(())
    }
}

/// Sends to the lobby from anywhere. It holds an [`Ulak`] handle, not the [`Lobby`] itself.
#[service]
#[derive(Debug)]
pub struct Announcer {
    #[inject]
    lobby: Ulak<Lobby>,
}

impl Announcer {
    /// Sends `text` to everyone in the lobby; returns how many local sockets got it.
    pub fn announce(&self, text: &str) -> Result<usize, SendError> {
        self.lobby
            .to(LOBBY, Json(json!({"type": "announcement", "text": text})))
    }
}

/// `POST /announce` with a text body.
async fn announce(
    FromApp(announcer): FromApp<Announcer>,
    text: String,
) -> Result<String, (StatusCode, String)> {
    let sent = announcer
        .announce(&text)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(format!("sent to {sent} sockets\n"))
}

/// The app, ready for `.build()`: the registered components plus the HTTP routes.
pub fn app() -> AsenaBuilder {
    Asena::builder().router(axum::Router::new().route("/announce", post(announce)))
}
