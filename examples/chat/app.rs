//! The chat app: a room-based chat over one WebSocket service.
//!
//! Contract (kept by `tests/chat.rs`; JSON fields are camelCase):
//! - `GET /` serves the browser page. Its elements have stable ids for browser tests:
//!   `#username`, `#room`, `#join`, `#message`, `#send` (Enter in `#message` sends too),
//!   `#messages` (one child per chat line, holding the sender's name and the text) and `#users`
//!   (one child per member of the room).
//! - `/chat?username=U&room=R` opens a socket in room R (defaults `Anonymous`, `general`).
//! - On open the joiner gets `{"type":"welcome","id":<socket id>,"message":"Welcome to R, U!",
//!   "users":[names in R]}`; the others in R get `{"type":"user_joined","username":U,
//!   "timestamp":<ISO-8601>}`.
//! - `{"type":"message","message":M}` → the others in R get
//!   `{"type":"message","username":U,"message":M,"timestamp":…}`.
//! - `{"type":"typing"}` → the others in R get `{"type":"typing","username":U}`.
//! - `{"type":"room_info"}` → the sender gets `{"type":"room_info","room":R,"totalUsers":N}`.
//! - `{"type":"private","to":<socket id>,"message":M}` → that socket gets
//!   `{"type":"private_message","from":U,"message":M}`.
//! - `{"type":"ping"}` → `{"type":"pong"}`.
//! - Invalid JSON → `{"type":"error","message":"Invalid message format"}`; an unknown or
//!   missing `type` → `{"type":"error","message":"Unknown message type: X"}` or
//!   `"Message type is required"`; the socket stays open.
//! - On close the others in R get `{"type":"user_left","username":U}`.

use asena_runtime::prelude::*;
use axum::response::Html;
use axum::routing::get;

/// Who a socket is: read from the query by [`ChatQuery`].
#[derive(Debug, Clone, Default)]
pub struct ChatUser {
    pub username: String,
    pub room: String,
}

/// Reads `username` and `room` from the query into the socket's values.
#[middleware]
pub struct ChatQuery;

impl Middleware for ChatQuery {
    async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
        let pick = |key: &str, default: &str| {
            ctx.query(key)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| v.chars().take(64).collect::<String>())
                .unwrap_or_else(|| default.to_owned())
        };
        let user = ChatUser {
            username: pick("username", "Anonymous"),
            room: pick("room", "general"),
        };
        ctx.set_websocket_value(user);
        next.run(ctx).await
    }
}

#[websocket(path = "/chat", name = "ChatSocket", middlewares = [ChatQuery])]
pub struct ChatSocket;

fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

fn error(ws: &Socket<ChatUser>, message: &str) -> Result<()> {
    ws.send_json(&json!({"type": "error", "message": message}))?;
    Ok(())
}

impl WebSocketService for ChatSocket {
    type Data = ChatUser;

    async fn on_open(&self, ws: &Socket<ChatUser>) -> Result<()> {
        let ChatUser { username, room } = &ws.data().values;
        ws.subscribe(room);
        let users: Vec<String> = ws
            .namespace()
            .sockets_in(room)
            .iter()
            .filter_map(|s| s.data::<ChatUser>().map(|d| d.values.username.clone()))
            .collect();
        ws.send_json(&json!({
            "type": "welcome",
            "id": ws.id(),
            "message": format!("Welcome to {room}, {username}!"),
            "users": users,
        }))?;
        ws.publish_json(
            room,
            &json!({"type": "user_joined", "username": username, "timestamp": now()}),
        )?;
        Ok(())
    }

    async fn on_message(&self, ws: &Socket<ChatUser>, msg: Message) -> Result<()> {
        let ChatUser { username, room } = &ws.data().values;
        let Ok(value) = msg.json::<serde_json::Value>() else {
            return error(ws, "Invalid message format");
        };
        let Some(kind) = value.get("type") else {
            return error(ws, "Message type is required");
        };
        let kind = kind
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| kind.to_string());
        match kind.as_str() {
            "message" => {
                let text = value["message"].as_str().unwrap_or_default();
                ws.publish_json(
                    room,
                    &json!({"type": "message", "username": username, "message": text, "timestamp": now()}),
                )?;
            }
            "typing" => {
                ws.publish_json(room, &json!({"type": "typing", "username": username}))?;
            }
            "room_info" => {
                let total = ws.namespace().sockets_in(room).len();
                ws.send_json(&json!({"type": "room_info", "room": room, "totalUsers": total}))?;
            }
            "private" => {
                let (Some(to), Some(text)) = (value["to"].as_str(), value["message"].as_str())
                else {
                    return error(ws, "Private messages need `to` and `message`");
                };
                // A socket id is also the name of that socket's personal room, so this reaches
                // it on whichever instance it is connected to.
                ws.namespace().to(
                    to,
                    Json(json!({"type": "private_message", "from": username, "message": text})),
                )?;
            }
            "ping" => ws.send_json(&json!({"type": "pong"}))?,
            other => return error(ws, &format!("Unknown message type: {other}")),
        }
        Ok(())
    }

    async fn on_close(&self, ws: &Socket<ChatUser>, _code: u16, _reason: &str) {
        let ChatUser { username, room } = &ws.data().values;
        let _ = ws.publish_json(room, &json!({"type": "user_left", "username": username}));
    }
}

/// The browser page, embedded in the binary.
pub const PAGE: &str = include_str!("index.html");

/// The HTTP routes next to the socket: the page at `/`.
pub fn routes() -> axum::Router {
    axum::Router::new().route("/", get(|| async { Html(PAGE) }))
}

/// The app builder as the example runs it (tests add `.without_auto_registration()` etc.).
pub fn builder() -> asena_runtime::AsenaBuilder {
    Asena::builder()
        .websocket::<ChatSocket>()
        .middleware::<ChatQuery>()
        .router(routes())
}
