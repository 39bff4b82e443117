//! The realtime app: one managed-protocol service (Ignis's model) with users, rooms chosen by
//! the client, who is online across instances (the runtime's presence) and notifications
//! pushed from outside.
//!
//! Contract (kept by `tests/realtime.rs`):
//! - `GET /` serves the browser page, `GET /client.js` the JavaScript client it uses,
//!   `GET /config.json` `{"authTimeoutMs", "heartbeatTimeoutMs"}` (the page heartbeats every
//!   third of the timeout), `GET /asyncapi.json` the AsyncAPI 3.0 document. The page's elements
//!   have stable ids for browser tests: `#token`, `#signin`, `#status` (the signed-in user or
//!   the close code), `#room`, `#join`, `#leave`, `#rooms` (joined rooms; denied ones are shown
//!   as an error line in `#messages`), `#message`, `#send` (Enter in `#message` sends too),
//!   `#messages` (one child per line), `#online` (one child per online user, `data-user`),
//!   `#notifications` (one child per notification).
//! - `/ws` speaks the managed protocol (`asena_runtime::managed`): the client sends
//!   `{"event":"authenticate","data":{"token":T}}` within `AUTH_TIMEOUT_MS` (default 5000;
//!   else close 4001). `alice-token` is user `alice`, `bob-token` user `bob`; any other token
//!   closes with 4003. Admitted, it gets `{"event":"connected","data":{"id","userId","time"}}`
//!   and is in room `lobby`. It must send something (`{"event":"heartbeat"}` will do) at least
//!   every `HEARTBEAT_TIMEOUT_MS` (default 30000; else close 4002).
//! - `{"event":"join","data":{"rooms":[..]}}` joins `lobby` and rooms named `public-*`; the
//!   answer is `{"event":"join","data":{"rooms":[joined],"denied":[refused]}}`. `leave` is
//!   answered with the rooms left.
//! - `{"event":"say","data":{"room":R,"text":T}}` (T 1 to 500 characters, R a room the sender
//!   joined) → the other members of R, on every instance, get
//!   `{"event":"said","data":{"room":R,"from":user,"text":T}}`. Saying into a room the sender
//!   is not in answers `{"event":"error","data":{"message":"Not in room R"}}`.
//! - Who is online: every signed-in session is present in `lobby` under its user, with
//!   `{"since": <ms since the epoch>}`, on every instance ([presence](asena_runtime::presence)).
//!   It gets `{"event":"presence_state","data":{"room":"lobby","state":{user:{"metas":[..]}}}}`
//!   once signed in, and the lobby's members get
//!   `{"event":"presence_diff","data":{"room":"lobby","joins":{..},"leaves":{..}}}` as
//!   sessions come and go (each meta with its `phx_ref`). A user is online while one of its
//!   sessions is; leaving the lobby takes a session off the list.
//! - Notifications come from outside the app: `cargo run --example emit -- --user alice
//!   --event notification --data '{"message":"hi"}'` reaches every session of alice, on every
//!   instance, as `{"event":"notification","data":{"message":"hi"}}`.
//!
//! Who is online is the runtime's presence: each instance publishes its own sessions' entries
//! through the transport, so with `ASENA_TRANSPORT=redis://…` every instance lists the
//! fleet's users; an instance that dies without closing its sockets has its entries dropped
//! by the others after three of its heartbeats.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use asena_runtime::managed::{Authenticated, ManagedOptions, ManagedService};
use asena_runtime::prelude::*;
use asena_runtime::presence::PresenceOptions;
use asena_runtime::{Asena, AsenaBuilder, FromApp};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use serde_json::Value;

/// What a client sends besides the managed protocol's own events.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Validate)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
#[garde(allow_unvalidated)]
pub enum RealtimeIn {
    /// A chat line for the other members of a room the sender joined.
    Say {
        room: String,
        #[garde(length(chars, min = 1, max = 500))]
        text: String,
    },
}

/// What the app sends besides the managed protocol's own events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum RealtimeOut {
    /// A chat line, to the other members of the room.
    Said {
        room: String,
        from: String,
        text: String,
    },
    /// Pushed to a user from outside the app (`emit --user U --event notification`).
    Notification { message: String },
}

/// How the app runs: its timeouts.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a client may take to authenticate.
    pub auth_timeout: Duration,
    /// How long an authenticated client may stay silent.
    pub heartbeat_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            auth_timeout: Duration::from_millis(5000),
            heartbeat_timeout: Duration::from_millis(30_000),
        }
    }
}

impl Options {
    /// `AUTH_TIMEOUT_MS` and `HEARTBEAT_TIMEOUT_MS`.
    pub fn from_env() -> anyhow::Result<Self> {
        let millis = |name: &str, default: Duration| -> anyhow::Result<Duration> {
            match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => {
                    Ok(Duration::from_millis(v.trim().parse().with_context(
                        || format!("{name}={v} is not a number of milliseconds"),
                    )?))
                }
                _ => Ok(default),
            }
        };
        let defaults = Options::default();
        Ok(Options {
            auth_timeout: millis("AUTH_TIMEOUT_MS", defaults.auth_timeout)?,
            heartbeat_timeout: millis("HEARTBEAT_TIMEOUT_MS", defaults.heartbeat_timeout)?,
        })
    }
}

/// The app's [`Options`], set once by [`build`].
#[service]
#[derive(Debug, Default)]
pub struct Settings {
    options: OnceLock<Options>,
}

impl Settings {
    /// The options `build` set (the defaults before).
    pub fn options(&self) -> Options {
        self.options.get().cloned().unwrap_or_default()
    }
}

/// The room every session is in from the start.
const LOBBY: &str = "lobby";

/// Whether a client may join `room`: the lobby, and the rooms named `public-*`.
fn joinable(room: &str) -> bool {
    room == LOBBY || room.starts_with("public-")
}

/// The managed service at `/ws`.
#[websocket(path = "/ws", receives = RealtimeIn, sends = RealtimeOut, managed)]
#[derive(Debug)]
pub struct Realtime {
    #[inject]
    settings: Arc<Settings>,
}

impl ManagedService for Realtime {
    fn options(&self) -> ManagedOptions {
        let options = self.settings.options();
        ManagedOptions::default()
            .auth_timeout(options.auth_timeout)
            .heartbeat_timeout(Some(options.heartbeat_timeout))
            .default_rooms([LOBBY])
    }

    async fn authenticate(
        &self,
        _ws: &Socket<Self>,
        credentials: Value,
    ) -> Result<Option<Authenticated>> {
        // A real app asks its token store; two fixed tokens keep the example self-contained.
        // Compared in constant time, so the time taken says nothing about how close a guess is.
        let token = credentials["token"].as_str().unwrap_or_default();
        Ok([("alice-token", "alice"), ("bob-token", "bob")]
            .into_iter()
            .find(|(known, _)| asena_runtime::secret_eq(token, known))
            .map(|(_, user)| Authenticated::user(user)))
    }

    async fn validate_rooms(&self, _ws: &Socket<Self>, rooms: Vec<String>) -> Vec<String> {
        rooms.into_iter().filter(|r| joinable(r)).collect()
    }

    async fn on_connected(&self, ws: &Socket<Self>) -> Result<()> {
        let user = ws.data().values.user_id().unwrap_or_default();
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        ws.presence()
            .track_as(LOBBY, &user, &json!({ "since": since }))?;
        Ok(())
    }

    async fn on_event(&self, ws: &Socket<Self>, event: RealtimeIn) -> Result<()> {
        let managed = ws.managed();
        let from = ws.data().values.user_id().unwrap_or_default();
        match event {
            RealtimeIn::Say { room, text } => {
                if !ws.rooms().contains(&room) {
                    ws.raw().send_json(
                        &json!({"event": "error", "data": {"message": format!("Not in room {room}")}}),
                    )?;
                    return Ok(());
                }
                let said = RealtimeOut::Said {
                    room: room.clone(),
                    from,
                    text,
                };
                managed.to_room(&room, &said, &[ws.id()])?;
            }
        }
        Ok(())
    }
}

#[path = "../script.rs"]
mod script;

/// The browser page, embedded in the binary.
pub const PAGE: &str = include_str!("index.html");

/// The JavaScript client of the managed protocol, embedded in the binary.
pub const CLIENT_JS: &str = include_str!("client.js");

async fn config(FromApp(settings): FromApp<Settings>) -> impl IntoResponse {
    let options = settings.options();
    axum::Json(json!({
        "authTimeoutMs": options.auth_timeout.as_millis() as u64,
        "heartbeatTimeoutMs": options.heartbeat_timeout.as_millis() as u64,
    }))
}

/// The HTTP routes next to the socket: the page, the client and the page's configuration.
pub fn routes() -> axum::Router {
    axum::Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/client.js",
            get(|| async { script::javascript(CLIENT_JS) }),
        )
        .route(
            "/presence.js",
            get(|| async { script::javascript(script::PRESENCE_JS) }),
        )
        .route("/config.json", get(config))
}

/// The app's components and routes (tests add `.without_auto_registration()`, `main` the
/// transport); [`build`] makes the app with its [`Options`].
pub fn builder() -> AsenaBuilder {
    Asena::builder()
        .websocket::<Realtime>()
        .service::<Settings>()
        .presence(PresenceOptions::default())
        .router(routes())
        .asyncapi_info(asena_runtime::asyncapi::Info {
            title: "Asena realtime".to_owned(),
            description: Some(
                "The managed protocol: authenticate after open, heartbeats, rooms joined on \
                 request, presence and notifications."
                    .to_owned(),
            ),
            ..asena_runtime::asyncapi::Info::default()
        })
        .serve_asyncapi("/asyncapi.json")
}

/// Builds the app and applies `options` (its timeouts).
pub async fn build(builder: AsenaBuilder, options: Options) -> anyhow::Result<Asena> {
    let app = builder.build().await?;
    let settings = app
        .get::<Settings>()
        .context("Settings is not registered")?;
    settings
        .options
        .set(options)
        .map_err(|_| anyhow::anyhow!("the app is already configured"))?;
    Ok(app)
}
