//! The live inspector ([`AsenaBuilder::inspector`](crate::AsenaBuilder::inspector)): a page,
//! a JSON API and a WebSocket feed, all behind a guard middleware the app provides.
//!
//! Under the inspector's path (say `/_asena`):
//!
//! | request | answer |
//! |---|---|
//! | `GET /_asena` | the page; without credentials, when the guard answers 401, a login form |
//! | `POST /_asena/login` `token=..` (a form) | `303` to the page with the login cookie set, when the guard admits the token (`session.rs`) |
//! | `POST /_asena/logout` | `303` to the page, the cookie cleared |
//! | `GET /_asena/api/fleet` | `{"self": id, "instances": [..]}`: every instance heard from, with its namespaces' counts and rates |
//! | `GET /_asena/api/history?since=ms` | `{"self": id, "limit": 300, "instances": [{"id","name","self","samples": [..]}]}`: each instance's last 300 samples (5 minutes at the default interval), oldest first, or those after `since` (its clock); a sample is `{at, sockets, received, sent, deliveries, broker: {published, received, dropped}?, namespaces: [{path, sockets, received, sent, deliveries}]}`, rates per second (`fleet.rs`) |
//! | `GET /_asena/api/traces` | `{"traces": [{"traceId","spanId","address","sentBy","at","deliveries":{instance: recipients}}]}`: the messages sent to the fleet within a trace ([`trace`](crate::trace)) that the instances announced (each keeps its last 32), every send linked to its deliveries on other instances, newest first |
//! | `GET /_asena/api/namespaces` | this instance's namespaces: `path`, `name`, `sockets`, `rooms` |
//! | `GET /_asena/api/sockets?ns=/chat&q=&offset=0&limit=50` | one page of the namespace's local sockets, oldest first (`id`, `path`, `addr`, `rooms`, `connectedAt`, `queuedBytes`, `acksPending`: the server's requests awaiting its reply, `data`: its state as the service shows it), filtered by `q` (part of the id, the address, a room name or a managed user) |
//! | `GET /_asena/api/rooms?ns=/chat&q=&offset=0&limit=50` | one page of its rooms (`name`, `size`, and `present`: the number of keys present in it on every instance, when the app has [presence](crate::presence)), by name |
//! | `GET /_asena/api/presence?ns=/chat&room=lobby&q=&offset=0&limit=50` | one page of who is present in the room on every instance, by key (`key`, `metas`), filtered by `q` (part of a key); none without presence |
//! | `POST /_asena/api/disconnect` `{"socket": id, "code"?: 1000, "reason"?: ".."}` | closes that socket |
//! | `POST /_asena/api/leave` `{"socket": id, "room": ".."}` | takes it out of the room |
//! | `GET /_asena/ws` (WebSocket) | `{"type":"fleet","at":ms,"self":id,"instances":[..]}` now and at every interval |
//!
//! The inspector is an axum [`Router`] with one route for each row above, served under its
//! path with `nest_service` (so `/_asena` and `/_asena/` both reach the page). The guard is
//! the layer of every route but the login and the logout, of the wrong-method answers
//! (`405 {"error":"Use GET"}` or `"Use POST"`) and of the fallback too, so a route is guarded
//! by construction and nothing under the path answers a request the guard refuses: its
//! refusal answers, the WebSocket's upgrade included. A path no route serves is the router's
//! `404 {"error":"No inspector resource at <path>"}` once the guard admits it. The login runs
//! the guard on the posted token itself; the logout only clears the cookie. Before any of
//! them, a request with `token` in its query is refused with 400 (`session.rs`).
//!
//! The token travels in an `Authorization: Bearer` header or in the login cookie, which the
//! guard's layer hands to the guard as a bearer token. Lists are paged (at most 500 rows a
//! page), so the page stays usable at tens of thousands of sockets. Sockets and rooms are
//! this instance's; the fleet view holds every instance's counts.
//!
//! The fleet view and the rates come from announcements (`fleet.rs`), made at every
//! interval by an [`Announcer`] task and sent to the other instances through the transport.

mod fleet;
mod session;

pub use session::InspectorToken;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::{any, get, post};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, header};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::channel::{Channel, Raw};
use crate::codec::{Message, close_code, close_reason};
use crate::config::{Compression, Limits};
use crate::error::Result;
use crate::middleware::{ChainOutcome, Context, ErasedMiddleware, Refusal, remote_addr, run_chain};
use crate::namespace::{Namespace, Namespaces, Socket, SocketRef};
use crate::protocol::{ChannelProtocol, Endpoint};
use crate::request::{lookup, parse_query};
use crate::service::WebSocketService;
use crate::shutdown::Tracker;
use crate::transport::{Deliver, Outbound, Transport};
use crate::wire;
use crate::ws::origin::OriginPolicy;
use crate::ws::upgrade::{self, Route};
use fleet::{Fleet, InstanceView};

/// The page, with its script and styles inline.
const PAGE: &str = include_str!("page.html");

/// Rows a list answers by default, and at most.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

/// Largest JSON of a socket's values the sockets list shows.
const MAX_VALUES: usize = 2048;

/// Largest action body read.
const MAX_BODY: usize = 16 * 1024;

/// What the builder keeps of `inspector(path, guard)`.
pub(crate) struct InspectorConfig {
    pub(crate) path: String,
    pub(crate) guard: Arc<dyn ErasedMiddleware>,
}

/// The fleet view's shared state: who this instance is and what it heard.
pub(crate) struct FleetState {
    fleet: Fleet,
    name: String,
    started_at: u64,
    every: Duration,
    /// Where the app listens, once `listen` bound it.
    addr: OnceLock<SocketAddr>,
}

impl FleetState {
    pub(crate) fn new(name: Option<String>, every: Duration) -> Arc<FleetState> {
        let id = uuid::Uuid::new_v4().to_string();
        let name = name.unwrap_or_else(default_name);
        Arc::new(FleetState {
            fleet: Fleet::new(id),
            name,
            started_at: fleet::unix_ms(),
            every,
            addr: OnceLock::new(),
        })
    }

    /// Records where the app listens (the first address bound).
    pub(crate) fn set_addr(&self, addr: SocketAddr) {
        let _ = self.addr.set(addr);
    }

    fn announcement(
        &self,
        namespaces: &[Namespace],
        transport: Option<&Arc<dyn Transport>>,
    ) -> fleet::Announcement {
        fleet::announcement(
            self.fleet.own_id(),
            &self.name,
            self.addr.get().map(ToString::to_string),
            self.started_at,
            self.every,
            namespaces,
            transport.map(|t| &**t),
        )
    }

    fn view(&self) -> Vec<InstanceView> {
        self.fleet.view(Instant::now())
    }

    fn feed_message(&self) -> serde_json::Value {
        json!({
            "type": "fleet",
            "at": fleet::unix_ms(),
            "self": self.fleet.own_id(),
            "instances": self.view(),
        })
    }
}

/// `<host name> (pid <pid>)`, or just the pid when the host has no name. `HOSTNAME` wins,
/// as containers set it to the name the orchestrator shows.
fn default_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            gethostname::gethostname()
                .into_string()
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        });
    match host {
        Some(host) => format!("{host} (pid {})", std::process::id()),
        None => format!("pid {}", std::process::id()),
    }
}

/// The transport's local delivery when the fleet view is on: announcements go to the fleet,
/// everything else to the namespaces.
pub(crate) struct FleetDelivery {
    pub(crate) namespaces: Namespaces,
    pub(crate) state: Arc<FleetState>,
}

impl Deliver for FleetDelivery {
    fn deliver(&self, topic: &str, payload: &[u8], binary: bool) -> usize {
        if topic == wire::FLEET_TOPIC {
            self.state.fleet.receive(payload, Instant::now());
            return 0;
        }
        self.namespaces.deliver(topic, payload, binary)
    }

    fn paths(&self) -> Vec<&str> {
        self.namespaces.paths()
    }
}

/// The task that announces this instance at every interval, refreshes the fleet view and
/// pushes it to the inspector's WebSocket feed.
pub(crate) struct Announcer {
    state: Arc<FleetState>,
    namespaces: Arc<[Namespace]>,
    transport: Option<Arc<dyn Transport>>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Announcer {
    /// Starts announcing (to `feed`'s sockets too, when the inspector is served).
    pub(crate) fn start(
        state: Arc<FleetState>,
        namespaces: Arc<[Namespace]>,
        transport: Option<Arc<dyn Transport>>,
        feed: Option<Namespace>,
    ) -> Announcer {
        let (stop, mut stopped) = watch::channel(false);
        let task = {
            let (state, namespaces, transport) =
                (state.clone(), namespaces.clone(), transport.clone());
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(state.every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = ticks.tick() => {}
                        _ = stopped.wait_for(|s| *s) => break,
                    }
                    let announcement = state.announcement(&namespaces, transport.as_ref());
                    if let Some(t) = &transport {
                        publish(t.as_ref(), &announcement);
                    }
                    state.fleet.record(announcement, Instant::now());
                    if let Some(feed) = &feed
                        && feed.socket_count() > 0
                    {
                        let _ = feed.broadcast(crate::codec::Json(&state.feed_message()));
                    }
                }
            })
        };
        Announcer {
            state,
            namespaces,
            transport,
            stop,
            task: Mutex::new(Some(task)),
        }
    }

    /// Stops the task and tells the fleet this instance is leaving (before the transport is
    /// destroyed).
    pub(crate) async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
            if let Some(t) = &self.transport {
                let mut bye = self.state.announcement(&self.namespaces, Some(t));
                bye.bye = true;
                publish(t.as_ref(), &bye);
            }
        }
    }
}

fn publish(transport: &dyn Transport, announcement: &fleet::Announcement) {
    match serde_json::to_vec(announcement) {
        Ok(payload) => transport.publish(Outbound::topic(
            wire::FLEET_TOPIC.to_owned(),
            payload.into(),
            false,
            false,
        )),
        Err(error) => {
            tracing::error!(target: "asena::inspector", %error, "could not encode the announcement");
        }
    }
}

/// The inspector's WebSocket: sends the fleet view on open and at every interval; what the
/// page sends is ignored.
struct Feed {
    state: Arc<FleetState>,
}

impl Channel for Feed {
    /// The feed as the default inspector path serves it; its route is [`FEED_ROUTE`] under
    /// whatever path the app chose, and its namespace is named from that.
    const PATH: &'static str = "/_asena/ws";
    const NAME: &'static str = "AsenaInspectorFeed";
    type Params = ();
    type In = Message;
    type Out = Raw;
}

impl Endpoint for Feed {
    type Protocol = ChannelProtocol;
}

impl WebSocketService for Feed {
    type Data = ();

    async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
        ws.send_json(&self.state.feed_message())?;
        Ok(())
    }

    async fn on_message(&self, _ws: &Socket<Self>, _message: Message) -> Result<()> {
        Ok(())
    }
}

/// The route of the feed's WebSocket, under the inspector's path.
const FEED_ROUTE: &str = "/ws";

/// What the inspector's routes read: its path, its guard, the app's namespaces, the fleet
/// view and the feed.
pub(crate) struct Inspector {
    /// The base path, without a trailing `/`.
    path: String,
    guard: Vec<Arc<dyn ErasedMiddleware>>,
    namespaces: Arc<[Namespace]>,
    state: Arc<FleetState>,
    feed: Arc<Route>,
}

impl Inspector {
    /// The inspector at `config.path` over `namespaces`, with the namespace of its feed (not
    /// one of the app's) at `<path>/ws`.
    pub(crate) fn new(
        config: InspectorConfig,
        namespaces: Arc<[Namespace]>,
        state: Arc<FleetState>,
        live: Arc<Tracker>,
        shutting_down: Arc<AtomicBool>,
    ) -> Arc<Inspector> {
        let path = config.path.trim_end_matches('/').to_owned();
        let ns = Namespace::new(
            &format!("{path}{FEED_ROUTE}"),
            Feed::NAME,
            Limits::default(),
            Compression::default(),
            None,
            live,
        );
        let feed = Arc::new(Route {
            ns,
            service: crate::ws::erase(Arc::new(Feed {
                state: state.clone(),
            })),
            // The guard runs as the router's layer, before the upgrade is looked at.
            chain: Vec::new(),
            // The page is served by this app: its feed is same-origin.
            origins: OriginPolicy::SameOrigin,
            shutting_down,
        });
        Arc::new(Inspector {
            path,
            guard: vec![config.guard],
            namespaces,
            state,
            feed,
        })
    }

    /// The namespace of the feed's sockets, which the [`Announcer`] pushes the fleet view to.
    pub(crate) fn feed(&self) -> &Namespace {
        &self.feed.ns
    }

    /// Serves the inspector's router under its path in `router` (at the root, merged in).
    ///
    /// `nest_service` rather than `nest`: it hands the inspector both `<path>` and `<path>/`
    /// (where the login redirects), which `nest` maps to `<path>` alone.
    pub(crate) fn mount(self: Arc<Self>, router: Router) -> Router {
        let path = self.path.clone();
        let inspector = self.router();
        if path.is_empty() {
            router.merge(inspector)
        } else {
            router.nest_service(&path, inspector)
        }
    }

    /// One route per page, API endpoint and the feed, all behind the guard (the fallback's
    /// 404 and the 405s too, so nothing answers a request the guard refuses); the login and
    /// the logout beside it, and no token in any URL.
    fn router(self: Arc<Self>) -> Router {
        let guarded = Router::new()
            .route("/", get(page).fallback(use_get))
            .route("/api/fleet", get(fleet).fallback(use_get))
            .route("/api/history", get(history).fallback(use_get))
            .route("/api/traces", get(traces).fallback(use_get))
            .route("/api/namespaces", get(namespaces).fallback(use_get))
            .route("/api/sockets", get(sockets).fallback(use_get))
            .route("/api/rooms", get(rooms).fallback(use_get))
            .route("/api/presence", get(presence).fallback(use_get))
            .route("/api/disconnect", post(disconnect).fallback(use_post))
            .route("/api/leave", post(leave).fallback(use_post))
            .route(FEED_ROUTE, any(feed))
            .fallback(not_found)
            .layer(axum::middleware::from_fn_with_state(self.clone(), guard));
        let session = Router::new()
            .route("/login", post(login).fallback(use_post))
            .route("/logout", post(logout).fallback(use_post));
        guarded
            .merge(session)
            .layer(axum::middleware::from_fn(session::refuse_token_in_url))
            .with_state(self)
    }

    /// The URI the client asked for, from the one `nest_service` left (without the
    /// inspector's path).
    fn full_uri(&self, uri: &Uri) -> Uri {
        let path = match uri.path() {
            "/" if !self.path.is_empty() => self.path.clone(),
            rest => format!("{}{rest}", self.path),
        };
        let path_and_query = match uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        let mut parts = uri.clone().into_parts();
        parts.path_and_query = path_and_query.parse().ok();
        Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
    }

    /// `POST <path>/login` (see `session.rs`): runs the guard on the posted token and sets the
    /// cookie when it passes.
    async fn login(&self, req: Request<Body>) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        if !session::same_origin(&parts.headers) {
            return error(StatusCode::FORBIDDEN, "Origin not allowed".to_owned());
        }
        let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
            Ok(bytes) => bytes,
            Err(_) => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("The body may be at most {MAX_BODY} bytes"),
                );
            }
        };
        let Some((token, headers)) = session::login_headers(&parts.headers, &bytes) else {
            return session::login_page(&self.path, StatusCode::BAD_REQUEST, true);
        };
        parts.headers = headers;
        parts.uri = self.full_uri(&parts.uri);
        let remote = remote_addr(&parts);
        let mut ctx = Context::new(parts, remote, Vec::new());
        match run_chain(&self.guard, &mut ctx, &self.path).await {
            ChainOutcome::Continue => {
                tracing::info!(target: "asena::inspector", remote = ?remote, "signed in to the inspector");
                session::redirect_with_cookie(&self.path, ctx.headers(), Some(&token))
            }
            ChainOutcome::Respond(refused) => {
                session::login_page(&self.path, refused.status(), true)
            }
        }
    }
}

/// The guard, as the layer of every route but the login and the logout: the login cookie
/// goes to it as a bearer token, and what it refuses is answered with its refusal (the page
/// answers a 401 with the login form). What it lets through goes on with the URI the client
/// asked for, so the routes and the feed's sockets see the inspector's full path.
async fn guard(
    State(inspector): State<Arc<Inspector>>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let page = parts.uri.path() == "/";
    parts.uri = inspector.full_uri(&parts.uri);
    session::cookie_as_bearer(&mut parts.headers);
    let remote = remote_addr(&parts);
    let query = parse_query(parts.uri.query());
    let mut ctx = Context::new(parts, remote, query);
    let span = tracing::debug_span!(target: "asena::inspector", "inspector", path = %ctx.path(), remote = ?remote);
    let outcome = tracing::Instrument::instrument(
        run_chain(&inspector.guard, &mut ctx, &inspector.path),
        span,
    )
    .await;
    match outcome {
        ChainOutcome::Continue => {
            let (parts, ..) = ctx.into_parts();
            next.run(Request::from_parts(parts, body)).await
        }
        // A browser that opens the page without credentials gets the login form.
        ChainOutcome::Respond(refused)
            if page
                && ctx.method() == Method::GET
                && refused.status() == StatusCode::UNAUTHORIZED =>
        {
            session::login_page(&inspector.path, StatusCode::UNAUTHORIZED, false)
        }
        ChainOutcome::Respond(refused) => refused,
    }
}

async fn page() -> Response<Body> {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .header("x-frame-options", "DENY")
        // Not `no-referrer`: under it browsers send `Origin: null` with the sign-out form's
        // POST, which the same-origin check refuses.
        .header("referrer-policy", "same-origin")
        .body(Body::from(PAGE))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

async fn fleet(State(inspector): State<Arc<Inspector>>) -> Response<Body> {
    ok(json!({
        "self": inspector.state.fleet.own_id(),
        "instances": inspector.state.view(),
    }))
}

async fn history(State(inspector): State<Arc<Inspector>>, uri: Uri) -> Response<Body> {
    let query = parse_query(uri.query());
    let since = lookup(&query, "since").and_then(|v| v.parse::<u64>().ok());
    ok(json!({
        "self": inspector.state.fleet.own_id(),
        "limit": fleet::HISTORY,
        "instances": inspector.state.fleet.history(Instant::now(), since),
    }))
}

async fn traces(State(inspector): State<Arc<Inspector>>) -> Response<Body> {
    ok(json!({ "traces": inspector.state.fleet.traces(Instant::now()) }))
}

async fn namespaces(State(inspector): State<Arc<Inspector>>) -> Response<Body> {
    let rows: Vec<_> = inspector
        .namespaces
        .iter()
        .map(|ns| {
            json!({
                "path": ns.path(),
                "name": ns.name(),
                "sockets": ns.socket_count(),
                "rooms": ns.room_count(),
            })
        })
        .collect();
    ok(json!(rows))
}

async fn sockets(State(inspector): State<Arc<Inspector>>, uri: Uri) -> Response<Body> {
    inspector.sockets(&parse_query(uri.query()))
}

async fn rooms(State(inspector): State<Arc<Inspector>>, uri: Uri) -> Response<Body> {
    inspector.rooms(&parse_query(uri.query()))
}

async fn presence(State(inspector): State<Arc<Inspector>>, uri: Uri) -> Response<Body> {
    inspector.presence(&parse_query(uri.query()))
}

async fn disconnect(State(inspector): State<Arc<Inspector>>, body: Body) -> Response<Body> {
    match read_json::<Disconnect>(body).await {
        Ok(action) => inspector.disconnect(action),
        Err(refused) => refused.into_response(),
    }
}

async fn leave(State(inspector): State<Arc<Inspector>>, body: Body) -> Response<Body> {
    match read_json::<Leave>(body).await {
        Ok(action) => inspector.leave(action),
        Err(refused) => refused.into_response(),
    }
}

/// The feed's WebSocket upgrade (the guard already let it through).
async fn feed(State(inspector): State<Arc<Inspector>>, req: Request<Body>) -> Response<Body> {
    upgrade::handle_with_globals(inspector.feed.clone(), &[], req).await
}

async fn login(State(inspector): State<Arc<Inspector>>, req: Request<Body>) -> Response<Body> {
    inspector.login(req).await
}

/// `POST <path>/logout`: clears the cookie.
async fn logout(State(inspector): State<Arc<Inspector>>, headers: HeaderMap) -> Response<Body> {
    if !session::same_origin(&headers) {
        return error(StatusCode::FORBIDDEN, "Origin not allowed".to_owned());
    }
    session::redirect_with_cookie(&inspector.path, &headers, None)
}

async fn not_found(uri: Uri) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        format!("No inspector resource at {}", uri.path()),
    )
}

async fn use_get() -> Response<Body> {
    error(StatusCode::METHOD_NOT_ALLOWED, "Use GET".to_owned())
}

async fn use_post() -> Response<Body> {
    error(StatusCode::METHOD_NOT_ALLOWED, "Use POST".to_owned())
}

impl Inspector {
    /// The namespace `?ns=` names (the first one when it names none).
    fn namespace(&self, query: &[(String, String)]) -> std::result::Result<&Namespace, String> {
        match lookup(query, "ns").filter(|p| !p.is_empty()) {
            Some(path) => self
                .namespaces
                .iter()
                .find(|ns| ns.path() == path)
                .ok_or_else(|| format!("No namespace at {path}")),
            None => self
                .namespaces
                .first()
                .ok_or_else(|| "This app has no websocket services".to_owned()),
        }
    }

    fn sockets(&self, query: &[(String, String)]) -> Response<Body> {
        self.list(query, "sockets", |ns, needle| {
            let mut sockets = ns.sockets();
            let total = sockets.len();
            if !needle.is_empty() {
                sockets.retain(|s| socket_matches(s, needle));
            }
            // UUID v7 ids sort by connection time: oldest first, stable across pages.
            sockets.sort_unstable_by(|a, b| a.id().cmp(b.id()));
            (total, sockets.into_iter().map(|s| socket_json(&s)))
        })
    }

    fn rooms(&self, query: &[(String, String)]) -> Response<Body> {
        self.list(query, "rooms", |ns, needle| {
            let mut rooms = ns.rooms();
            let total = rooms.len();
            if !needle.is_empty() {
                rooms.retain(|r| r.name.to_lowercase().contains(needle));
            }
            let presence = ns.presence();
            let rows = rooms.into_iter().map(move |r| {
                let mut row = json!({"name": r.name, "size": r.size});
                if presence.is_enabled() {
                    row["present"] = presence.list(&r.name).len().into();
                }
                row
            });
            (total, rows)
        })
    }

    /// One page of a list of the namespace `?ns=` names:
    /// `{namespace, total, matched, offset, limit, <key>: [..]}`. `rows` gives the list's
    /// total and its rows matching `?q=` (lowercased), in order, lazily turned into JSON.
    fn list<I>(
        &self,
        query: &[(String, String)],
        key: &str,
        rows: impl FnOnce(&Namespace, &str) -> (usize, I),
    ) -> Response<Body>
    where
        I: ExactSizeIterator<Item = serde_json::Value>,
    {
        let ns = match self.namespace(query) {
            Ok(ns) => ns,
            Err(message) => return error(StatusCode::NOT_FOUND, message),
        };
        let (offset, limit) = paging(query);
        let needle = lookup(query, "q").unwrap_or("").trim().to_lowercase();
        let (total, matching) = rows(ns, &needle);
        let matched = matching.len();
        let page: Vec<serde_json::Value> = matching.skip(offset).take(limit).collect();
        ok(json!({
            "namespace": ns.path(),
            "total": total,
            "matched": matched,
            "offset": offset,
            "limit": limit,
            key: page,
        }))
    }

    /// One page of who is present in `?room=`, by key, on every instance.
    fn presence(&self, query: &[(String, String)]) -> Response<Body> {
        let Some(room) = lookup(query, "room").filter(|r| !r.is_empty()) else {
            return error(StatusCode::BAD_REQUEST, "Name a room: ?room=".to_owned());
        };
        let room = room.to_owned();
        self.list(query, "entries", |ns, needle| {
            let presence = ns.presence();
            let mut entries = presence.list(&room);
            let total = entries.len();
            if !needle.is_empty() {
                entries.retain(|key, _| key.to_lowercase().contains(needle));
            }
            let rows = entries
                .into_iter()
                .map(|(key, metas)| json!({"key": key, "metas": metas.metas}));
            (total, rows)
        })
    }

    fn find(&self, id: &str) -> Option<SocketRef> {
        self.namespaces.iter().find_map(|ns| ns.socket(id))
    }

    fn disconnect(&self, action: Disconnect) -> Response<Body> {
        let code = action.code.unwrap_or(close_code::NORMAL);
        if !close_code::is_sendable(code) {
            return error(
                StatusCode::BAD_REQUEST,
                format!("Close code {code} may not be sent"),
            );
        }
        let Some(socket) = self.find(&action.socket) else {
            return error(
                StatusCode::NOT_FOUND,
                format!("No socket {} on this instance", action.socket),
            );
        };
        let reason = action
            .reason
            .unwrap_or_else(|| "Disconnected by an operator".to_owned());
        let reason = close_reason(&reason);
        tracing::info!(
            target: "asena::inspector",
            socket_id = %socket.id(),
            path = %socket.path(),
            code,
            reason,
            "disconnecting a socket from the inspector"
        );
        socket.close_with(code, reason);
        ok(json!({
            "disconnected": socket.id(),
            "namespace": socket.namespace().path(),
            "code": code,
        }))
    }

    fn leave(&self, action: Leave) -> Response<Body> {
        let Some(socket) = self.find(&action.socket) else {
            return error(
                StatusCode::NOT_FOUND,
                format!("No socket {} on this instance", action.socket),
            );
        };
        if !socket.unsubscribe(&action.room) {
            return error(
                StatusCode::NOT_FOUND,
                format!("Socket {} is not in room {}", action.socket, action.room),
            );
        }
        tracing::info!(
            target: "asena::inspector",
            socket_id = %socket.id(),
            room = %action.room,
            "removed a socket from a room from the inspector"
        );
        ok(json!({"socket": socket.id(), "room": action.room, "left": true}))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Disconnect {
    socket: String,
    #[serde(default)]
    code: Option<u16>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Leave {
    socket: String,
    room: String,
}

/// Reads a JSON action body; a bad one is refused with 400 saying why.
async fn read_json<T: serde::de::DeserializeOwned>(body: Body) -> std::result::Result<T, Refusal> {
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        Refusal::json(
            413,
            json!({"error": format!("The body may be at most {MAX_BODY} bytes")}),
        )
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Refusal::json(400, json!({"error": format!("Invalid body: {e}")})))
}

fn paging(query: &[(String, String)]) -> (usize, usize) {
    let number = |key: &str| lookup(query, key).and_then(|v| v.parse::<usize>().ok());
    let offset = number("offset").unwrap_or(0);
    let limit = number("limit").unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    (offset, limit)
}

fn socket_matches(socket: &SocketRef, needle: &str) -> bool {
    socket.id().contains(needle)
        || socket
            .remote_addr()
            .is_some_and(|a| a.to_string().contains(needle))
        || socket.path().to_lowercase().contains(needle)
        || socket_user(socket).is_some_and(|u| u.to_lowercase().contains(needle))
        || joined_rooms(socket)
            .iter()
            .any(|r| r.to_lowercase().contains(needle))
}

/// The rooms a socket joined, without its personal room (its id).
fn joined_rooms(socket: &SocketRef) -> Vec<String> {
    let mut rooms = socket.rooms();
    rooms.remove(0);
    rooms
}

fn socket_json(socket: &SocketRef) -> serde_json::Value {
    json!({
        "id": socket.id(),
        "path": socket.path(),
        "addr": socket.remote_addr().map(|a| a.to_string()),
        "rooms": joined_rooms(socket),
        "connectedAt": connected_at(socket.id()),
        "queuedBytes": socket.queued_bytes(),
        "acksPending": socket.pending_requests(),
        "data": socket_data(socket),
    })
}

/// A socket's state as its service shows it, its `values` left out (with their size) when
/// their JSON is over [`MAX_VALUES`] bytes.
fn socket_data(socket: &SocketRef) -> serde_json::Value {
    let mut data = socket.inspected_data();
    if let Some(values) = data.get("values") {
        let size = values.to_string().len();
        if size > MAX_VALUES {
            data["values"] = serde_json::Value::Null;
            data["valuesBytes"] = size.into();
        }
    }
    data
}

/// The user a managed socket authenticated as.
fn socket_user(socket: &SocketRef) -> Option<String> {
    match socket.inspected_data().get("user") {
        Some(serde_json::Value::String(user)) => Some(user.clone()),
        _ => None,
    }
}

/// When a socket connected (ms since the epoch), read from its UUID v7 id.
fn connected_at(id: &str) -> Option<u64> {
    let (secs, nanos) = uuid::Uuid::parse_str(id).ok()?.get_timestamp()?.to_unix();
    Some(secs * 1000 + u64::from(nanos) / 1_000_000)
}

fn ok(value: serde_json::Value) -> Response<Body> {
    json_response(StatusCode::OK, &value)
}

fn error(status: StatusCode, message: String) -> Response<Body> {
    json_response(status, &json!({ "error": message }))
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from(value.to_string()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connected_at_reads_the_uuid_v7_clock() {
        let before = fleet::unix_ms();
        let id = uuid::Uuid::now_v7().to_string();
        let after = fleet::unix_ms();
        let at = connected_at(&id).expect("a v7 id has a timestamp");
        assert!(before <= at && at <= after, "{before} <= {at} <= {after}");
        assert_eq!(connected_at("not-a-uuid"), None);
    }

    #[test]
    fn paging_is_bounded() {
        let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(paging(&q(&[])), (0, DEFAULT_LIMIT));
        assert_eq!(paging(&q(&[("offset", "20"), ("limit", "10")])), (20, 10));
        assert_eq!(paging(&q(&[("limit", "100000")])), (0, MAX_LIMIT));
        assert_eq!(paging(&q(&[("limit", "0"), ("offset", "x")])), (0, 1));
    }
}
