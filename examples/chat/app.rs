//! The chat app: a room-based chat over one WebSocket service.
//!
//! Contract (kept by `tests/chat.rs`; JSON fields are camelCase):
//! - `GET /` serves the browser page. Its elements have stable ids for browser tests:
//!   `#username`, `#room`, `#join`, `#message`, `#send` (Enter in `#message` sends too),
//!   `#messages` (one child per chat line, holding the sender's name and the text) and `#users`
//!   (one child per member of the room); `#status` says whether the page is connected and
//!   carries the socket's id as `data-socket-id` once welcomed.
//! - `/chat?username=U&room=R` opens a socket in room R (defaults `Anonymous`, `general`).
//!   A room no client may use (`validate_room`: reserved such as `__`, a socket id, control
//!   characters) is refused with 400 `{"error":"invalid room","code":..,"message":..}`.
//! - On open the joiner gets `{"type":"welcome","id":<socket id>,"message":"Welcome to R, U!",
//!   "users":[names in R]}`; the others in R get `{"type":"user_joined","username":U,
//!   "timestamp":<ISO-8601>}`.
//! - `{"type":"message","message":M}` → the others in R get
//!   `{"type":"message","username":U,"message":M,"timestamp":…}`.
//! - `{"type":"typing"}` → the others in R get `{"type":"typing","username":U}`.
//! - `{"type":"room_info"}` → the sender gets `{"type":"room_info","room":R,"totalUsers":N}`.
//! - `{"type":"private","to":<socket id>,"message":M}` → that socket, and only it, gets
//!   `{"type":"private_message","from":U,"message":M}`; without a transport an unknown id
//!   answers `{"type":"error","message":"No such user"}`.
//! - `{"type":"ping"}` → `{"type":"pong"}`.
//! - Invalid JSON → `{"type":"error","message":"Invalid message format"}`; an unknown or
//!   missing `type` → `{"type":"error","message":"Unknown message type: X"}` or
//!   `"Message type is required"`; the socket stays open.
//! - On close the others in R get `{"type":"user_left","username":U}`.
//! - `GET /asyncapi.json` serves the protocol as an AsyncAPI 3.0 document; `GET /metrics` the
//!   Prometheus metrics.
//! - [`builder_with_inspector`] (the app as `main` runs it) adds the live inspector at
//!   `/_asena`, guarded by [`InspectorToken`]: the token as `Authorization: Bearer <token>` or
//!   the login cookie a browser gets from the inspector's login form, 401
//!   `{"error":"Unauthorized"}` without it. The inspector shows each socket's username and
//!   room ([`ChatSocket`]'s `inspect`).
//! - It also turns on [presence](asena_runtime::presence): each socket is tracked in its room
//!   under its username (`{"since": <ISO-8601>}`), on every instance; after its welcome it
//!   gets `{"type":"presence_state","room":R,"state":{name:{"metas":[..]}}}` and then
//!   `presence_diff`s as others come and go. The page's `#users` lists who is online from
//!   them (`data-sessions`: how many tabs a name has open).
//!
//! The protocol is the two enums below, [`ChatIn`] and [`ChatOut`]: the service receives
//! decoded `ChatIn` values and can send only `ChatOut`.

use asena_runtime::asyncapi::QueryParam;
use asena_runtime::namespace::validate_room;
use asena_runtime::prelude::*;
use asena_runtime::{Asena, DecodeError, DecodeErrorKind};
use axum::response::Html;
use axum::routing::get;

/// Who a socket is: read from the query by [`ChatQuery`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChatUser {
    pub username: String,
    pub room: String,
}

/// Reads `username` and `room` from the query into the socket's values.
#[middleware]
pub struct ChatQuery;

impl Middleware for ChatQuery {
    const QUERY: &'static [QueryParam] = &[
        QueryParam {
            name: "username",
            description: "The name the others see (at most 64 characters; `Anonymous` without it).",
            required: false,
        },
        QueryParam {
            name: "room",
            description: "The room to chat in (`general` without it); a reserved name or a socket id is refused with 400.",
            required: false,
        },
    ];

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
        // The room comes from the client: a reserved name or another socket's id is refused
        // here, before the upgrade, with the framework's reason.
        if let Err(e) = validate_room(&user.room) {
            return Err(Refusal::json(
                400,
                json!({"error": "invalid room", "code": e.code(), "message": e.to_string()}),
            ));
        }
        ctx.set_websocket_value(user);
        next.run(ctx).await
    }
}

/// What a client sends: `{"type": "message", "message": "hi"}` and so on.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Validate)]
#[serde(tag = "type", rename_all = "snake_case")]
#[garde(allow_unvalidated)]
pub enum ChatIn {
    /// A chat line for the others in the room (a missing `message` is an empty line).
    Message {
        #[serde(default)]
        message: String,
    },
    /// The sender is typing.
    Typing,
    /// How many are in the room?
    RoomInfo,
    /// A message for one socket, by id, on whichever instance it is.
    Private { to: String, message: String },
    /// Answered with `pong`.
    Ping,
}

/// What the chat sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatOut {
    /// To the joiner: its id, a greeting and who is in the room.
    Welcome {
        id: String,
        message: String,
        users: Vec<String>,
    },
    /// To the others in the room, when someone joins.
    UserJoined { username: String, timestamp: String },
    /// A chat line, to the others in the room.
    Message {
        username: String,
        message: String,
        timestamp: String,
    },
    /// Someone in the room is typing.
    Typing { username: String },
    /// The answer to `room_info`.
    RoomInfo {
        room: String,
        #[serde(rename = "totalUsers")]
        total_users: usize,
    },
    /// A private message.
    PrivateMessage { from: String, message: String },
    /// The answer to `ping`.
    Pong,
    /// To the others in the room, when someone leaves.
    UserLeft { username: String },
    /// A message the chat could not take.
    Error { message: String },
}

/// How each message reaches a room: what was said, and who came and went, is kept in the
/// room's history when the app keeps one (`ASENA_HISTORY`), so a page that comes back gets
/// it; a typing notice is worthless a moment later and never kept. The rest is sent to one
/// socket, never to a room.
impl asena_runtime::Delivered for ChatOut {
    fn delivery(&self) -> asena_runtime::Delivery {
        match self {
            ChatOut::Message { .. } | ChatOut::UserJoined { .. } | ChatOut::UserLeft { .. } => {
                asena_runtime::Delivery::Recoverable
            }
            _ => asena_runtime::Delivery::AtMostOnce,
        }
    }
}

#[websocket(path = "/chat", name = "ChatSocket", middlewares = [ChatQuery], receives = ChatIn, sends = ChatOut)]
pub struct ChatSocket {
    /// The service's own sockets, typed: who is in a room, by name.
    #[inject]
    sockets: Ulak<ChatSocket>,
}

fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

impl WebSocketService for ChatSocket {
    type Data = ChatUser;
    const REPLIES: &'static [(&'static str, &'static str)] =
        &[("ping", "pong"), ("room_info", "room_info")];

    async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
        let ChatUser { username, room } = &ws.data().values;
        ws.subscribe(room)?;
        let users = self
            .sockets
            .sockets_in(room)
            .iter()
            .map(|s| s.data().values.username.clone())
            .collect();
        ws.send(ChatOut::Welcome {
            id: ws.id().to_owned(),
            message: format!("Welcome to {room}, {username}!"),
            users,
        })?;
        ws.publish(
            room,
            ChatOut::UserJoined {
                username: username.clone(),
                timestamp: now(),
            },
        )?;
        if ws.namespace().presence().is_enabled() {
            ws.presence()
                .track_as(room, username, &json!({ "since": now() }))?;
        }
        Ok(())
    }

    /// The inspector shows who a socket is: its name and room (nothing secret).
    fn inspect(user: &ChatUser) -> Option<serde_json::Value> {
        serde_json::to_value(user).ok()
    }

    async fn on_message(&self, ws: &Socket<Self>, msg: ChatIn) -> Result<()> {
        let ChatUser { username, room } = &ws.data().values;
        let username = username.clone();
        match msg {
            ChatIn::Message { message } => {
                let timestamp = now();
                ws.publish(
                    room,
                    ChatOut::Message {
                        username,
                        message,
                        timestamp,
                    },
                )?;
            }
            ChatIn::Typing => {
                ws.publish(room, ChatOut::Typing { username })?;
            }
            ChatIn::RoomInfo => {
                let total_users = ws.namespace().sockets_in(room).len();
                ws.send(ChatOut::RoomInfo {
                    room: room.clone(),
                    total_users,
                })?;
            }
            ChatIn::Private { to, message } => {
                // To that socket alone, on whichever instance it is connected to; an id that
                // names no socket reaches nobody.
                let sent = ws.namespace().to_socket(
                    &to,
                    ChatOut::PrivateMessage {
                        from: username,
                        message,
                    },
                );
                if sent.is_err() {
                    ws.send(ChatOut::Error {
                        message: "No such user".to_owned(),
                    })?;
                }
            }
            ChatIn::Ping => ws.send(ChatOut::Pong)?,
        }
        Ok(())
    }

    /// Keeps the chat's own error texts for messages that do not decode.
    async fn on_invalid(&self, ws: &Socket<Self>, error: DecodeError) -> Result<()> {
        let message = match error.kind() {
            DecodeErrorKind::Syntax => "Invalid message format".to_owned(),
            DecodeErrorKind::MissingField { field } if field == "type" => {
                "Message type is required".to_owned()
            }
            DecodeErrorKind::UnknownVariant { value } => format!("Unknown message type: {value}"),
            DecodeErrorKind::MissingField { .. } => {
                "Private messages need `to` and `message`".to_owned()
            }
            _ => format!("Invalid message: {error}"),
        };
        ws.send(ChatOut::Error { message })?;
        Ok(())
    }

    async fn on_close(&self, ws: &Socket<Self>, _code: u16, _reason: &str) {
        let ChatUser { username, room } = &ws.data().values;
        let username = username.clone();
        let _ = ws.publish(room, ChatOut::UserLeft { username });
    }
}

/// The browser page, embedded in the binary.
pub const PAGE: &str = include_str!("index.html");

#[path = "../script.rs"]
mod script;

/// The HTTP routes next to the socket: the page at `/` and the presence list it keeps at
/// `/presence.js`.
pub fn routes() -> axum::Router {
    axum::Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/presence.js",
            get(|| async { script::javascript(script::PRESENCE_JS) }),
        )
}

/// Where the example serves the inspector.
pub const INSPECTOR_PATH: &str = "/_asena";

/// The inspector's guard: the runtime's [`InspectorToken`], which admits the token as
/// `Authorization: Bearer <token>` (scripts, curl) or as the login cookie the inspector's
/// login form sets in a browser, compared in constant time. Anything else gets 401.
pub use asena_runtime::InspectorToken;

/// The app as the example runs it: [`builder_with_presence`] plus the inspector at
/// [`INSPECTOR_PATH`], guarded by `token`.
pub fn builder_with_inspector(token: &str) -> asena_runtime::AsenaBuilder {
    builder_with_presence().inspector(INSPECTOR_PATH, InspectorToken::new(token))
}

/// [`builder`] plus presence: the protocol the example serves (`--asyncapi` prints it).
pub fn builder_with_presence() -> asena_runtime::AsenaBuilder {
    builder().presence(asena_runtime::presence::PresenceOptions::default())
}

/// The app builder without the inspector (tests add `.without_auto_registration()` etc.).
pub fn builder() -> asena_runtime::AsenaBuilder {
    Asena::builder()
        .websocket::<ChatSocket>()
        .middleware::<ChatQuery>()
        .router(routes())
        .asyncapi_info(asena_runtime::asyncapi::Info {
            title: "Asena chat".to_owned(),
            description: Some("Room-based chat: join with `?username=U&room=R`.".to_owned()),
            ..asena_runtime::asyncapi::Info::default()
        })
        .serve_asyncapi("/asyncapi.json")
        .metrics_route("/metrics")
}
