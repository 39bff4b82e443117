//! The realtime app: one managed-protocol service (Ignis's model) with users, rooms chosen by
//! the client, presence across instances and notifications pushed from outside.
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
//! - Presence: `{"event":"presence","data":{"online":[users, sorted],"version":N}}` goes to
//!   everyone when a user comes online (first session) or goes offline (last session), and to
//!   a new session whose user was already online. `version` grows with every change; a client
//!   keeps the snapshot with the highest version (broadcasts from different instances may
//!   arrive out of order).
//! - Notifications come from outside the app: `cargo run --example emit -- --user alice
//!   --event notification --data '{"message":"hi"}'` reaches every session of alice, on every
//!   instance, as `{"event":"notification","data":{"message":"hi"}}`.
//!
//! Presence, the design: the framework knows the users of its own instance
//! (`Managed::local_users`); the fleet's are kept here. With Redis (`ASENA_TRANSPORT=redis://…`)
//! the hash `realtime:online` maps user → open sessions across the fleet; one Lua script
//! increments or decrements it (removing users at zero) and bumps `realtime:online:version`,
//! atomically, so concurrent changes on several instances cannot lose an update or reorder
//! versions. The snapshot is broadcast through the managed Redis bus, which reaches every
//! instance. Without Redis the online list is this instance's users. The price of the simple
//! design: an instance that dies without closing its sockets (a crash, `kill -9`) leaves its
//! sessions counted until the key is cleared; a graceful shutdown closes every socket (1001)
//! and uncounts it.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use asena_runtime::managed::Managed;
use asena_runtime::managed::{Authenticated, ManagedOptions, ManagedService};
use asena_runtime::prelude::*;
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
    /// Who is online, fleet-wide; the highest `version` is the newest.
    Presence { online: Vec<String>, version: u64 },
    /// Pushed to a user from outside the app (`emit --user U --event notification`).
    Notification { message: String },
}

/// How the app runs: its timeouts and where presence is kept.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a client may take to authenticate.
    pub auth_timeout: Duration,
    /// How long an authenticated client may stay silent.
    pub heartbeat_timeout: Duration,
    /// The Redis server that keeps fleet-wide presence; `None`: this instance's users.
    pub presence_redis: Option<String>,
    /// The presence hash (its version counter is `<key>:version`).
    pub presence_key: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            auth_timeout: Duration::from_millis(5000),
            heartbeat_timeout: Duration::from_millis(30_000),
            presence_redis: None,
            presence_key: "realtime:online".to_owned(),
        }
    }
}

impl Options {
    /// `AUTH_TIMEOUT_MS`, `HEARTBEAT_TIMEOUT_MS`, and presence in Redis when
    /// `ASENA_TRANSPORT` is a `redis://` URL.
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
            presence_redis: std::env::var("ASENA_TRANSPORT")
                .ok()
                .filter(|url| url.starts_with("redis://")),
            ..defaults
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

/// Where the online count lives.
#[derive(Debug)]
enum Store {
    Local,
    Redis {
        conn: redis::aio::ConnectionManager,
        key: String,
    },
}

/// Adds `ARGV[2]` to user `ARGV[1]`'s session count in hash `KEYS[1]` (removing the user at
/// zero), bumps the version `KEYS[2]`; returns the new count, the version and the users.
const COUNT_SCRIPT: &str = r"
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
local v = redis.call('INCR', KEYS[2])
return {n, v, redis.call('HKEYS', KEYS[1])}
";

/// Who is online (see the module docs for the design).
#[service]
#[derive(Debug, Default)]
pub struct Presence {
    store: OnceLock<Store>,
    /// Sessions of this instance counted in, so each is counted out exactly once.
    counted: Mutex<HashSet<String>>,
    /// Local store: the last snapshot sent and its version. Held while sending, so local
    /// snapshots go out in order.
    local: Mutex<(Vec<String>, u64)>,
}

impl Presence {
    async fn connect(&self, options: &Options) -> anyhow::Result<()> {
        let store = match &options.presence_redis {
            None => Store::Local,
            Some(url) => {
                let client = redis::Client::open(url.as_str())
                    .with_context(|| format!("bad presence Redis URL {url}"))?;
                let conn = redis::aio::ConnectionManager::new(client)
                    .await
                    .with_context(|| format!("cannot reach the presence Redis at {url}"))?;
                Store::Redis {
                    conn,
                    key: options.presence_key.clone(),
                }
            }
        };
        self.store
            .set(store)
            .map_err(|_| anyhow::anyhow!("presence is already connected"))
    }

    fn counted(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.counted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `ws`'s session of a user opened (`opened`) or closed. Presence is a nicety: a failure
    /// (Redis away) is logged, and the session goes on; a session without a user is not
    /// counted.
    async fn update(&self, ws: &Socket<Realtime>, opened: bool) {
        let Some(user) = ws.data().values.user_id() else {
            return;
        };
        let updated = if opened {
            self.session_opened(ws, &user).await
        } else {
            self.session_closed(ws, &user).await
        };
        if let Err(error) = updated {
            tracing::warn!(%error, user, "presence not updated");
        }
    }

    /// A session of `user` opened: everyone learns when the user came online, the session
    /// alone gets the list otherwise.
    async fn session_opened(&self, ws: &Socket<Realtime>, user: &str) -> Result<()> {
        let (managed, session) = (ws.managed(), ws.id());
        match self.store.get() {
            Some(Store::Redis { conn, key }) => {
                let (count, version, mut online) = count(conn, key, user, 1).await?;
                // Counted in: from now on its close counts it out.
                self.counted().insert(session.to_owned());
                online.sort();
                let snapshot = RealtimeOut::Presence { online, version };
                if count == 1 {
                    managed.broadcast(&snapshot, &[])?;
                } else {
                    managed.to_client(session, &snapshot)?;
                }
            }
            _ => {
                self.counted().insert(session.to_owned());
                if let Some(unchanged) = self.local_presence(&managed)? {
                    managed.to_client(session, &unchanged)?;
                }
            }
        }
        Ok(())
    }

    /// Without Redis: when the users online on this instance changed since the last
    /// snapshot, everyone gets the new one and the answer is `None`; otherwise the answer is
    /// the snapshot, unchanged.
    fn local_presence(&self, managed: &Managed<RealtimeOut>) -> Result<Option<RealtimeOut>> {
        let mut last = self.local.lock().unwrap_or_else(|p| p.into_inner());
        let online = managed.local_users();
        if online == last.0 {
            let version = last.1;
            return Ok(Some(RealtimeOut::Presence { online, version }));
        }
        last.0 = online.clone();
        last.1 += 1;
        let version = last.1;
        managed.broadcast(&RealtimeOut::Presence { online, version }, &[])?;
        Ok(None)
    }

    /// A session of `user` closed: everyone learns when it was the user's last one.
    async fn session_closed(&self, ws: &Socket<Realtime>, user: &str) -> Result<()> {
        let (managed, session) = (ws.managed(), ws.id());
        if !self.counted().remove(session) {
            return Ok(());
        }
        match self.store.get() {
            Some(Store::Redis { conn, key }) => {
                let (count, version, mut online) = count(conn, key, user, -1).await?;
                if count <= 0 {
                    online.sort();
                    managed.broadcast(&RealtimeOut::Presence { online, version }, &[])?;
                }
            }
            _ => {
                self.local_presence(&managed)?;
            }
        }
        Ok(())
    }
}

/// Runs [`COUNT_SCRIPT`].
async fn count(
    conn: &redis::aio::ConnectionManager,
    key: &str,
    user: &str,
    delta: i64,
) -> Result<(i64, u64, Vec<String>)> {
    let mut conn = conn.clone();
    let answer = redis::cmd("EVAL")
        .arg(COUNT_SCRIPT)
        .arg(2)
        .arg(key)
        .arg(format!("{key}:version"))
        .arg(user)
        .arg(delta)
        .query_async(&mut conn)
        .await?;
    Ok(answer)
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
    #[inject]
    presence: Arc<Presence>,
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
        // Presence is a nicety: when Redis is away the user still gets in.
        self.presence.update(ws, true).await;
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

    async fn on_disconnected(&self, ws: &Socket<Self>, _code: u16, _reason: &str) {
        self.presence.update(ws, false).await;
    }
}

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
            get(|| async {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/javascript; charset=utf-8",
                    )],
                    CLIENT_JS,
                )
            }),
        )
        .route("/config.json", get(config))
}

/// The app's components and routes (tests add `.without_auto_registration()`, `main` the
/// transport); [`build`] makes the app with its [`Options`].
pub fn builder() -> AsenaBuilder {
    Asena::builder()
        .websocket::<Realtime>()
        .service::<Settings>()
        .service::<Presence>()
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

/// Builds the app and applies `options` (timeouts, the presence store).
pub async fn build(builder: AsenaBuilder, options: Options) -> anyhow::Result<Asena> {
    let app = builder.build().await?;
    let settings = app
        .get::<Settings>()
        .context("Settings is not registered")?;
    let presence = app
        .get::<Presence>()
        .context("Presence is not registered")?;
    presence.connect(&options).await?;
    settings
        .options
        .set(options)
        .map_err(|_| anyhow::anyhow!("the app is already configured"))?;
    Ok(app)
}
