//! The app: [`AsenaBuilder`] builds and validates it, [`Asena`] is the running handle,
//! [`Server`] serves it over TCP. The app is the top layer: it wires the container, the
//! namespaces, the transport and the routes together; nothing below it knows it exists.

mod error;
mod extract;
mod inspector;
mod metrics;

pub use error::Error;
pub use extract::{AppValue, FromApp};
pub use inspector::InspectorToken;

use std::any::TypeId;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::watch;
use tower_service::Service;

use crate::asyncapi::{self, Info, ServerSpec};
use crate::config::{Compression, Limits, RateLimit, SlowConsumer};
use crate::di::{self, Component, ComponentKind, ComponentRecord, Container, Plan};
use crate::frame::close_code;
use crate::middleware::{ErasedMiddleware, Middleware, Refusal, Scope};
use crate::namespace::{Namespace, Namespaces};
use crate::protocol::Endpoint;
use crate::shutdown::Tracker;
use crate::transport::{Inbound, Transport, TransportStats};
use crate::ulak::{Ulak, UlakBroker};
use crate::wire;
use crate::ws::ErasedService;
use crate::ws::origin::OriginPolicy;
use crate::ws::upgrade::{self, Route};
use extract::AppRef;
use inspector::{Announcer, FleetDelivery, FleetState, Inspector, InspectorConfig};

/// How often an instance announces itself to the fleet by default.
const DEFAULT_ANNOUNCE_EVERY: Duration = Duration::from_secs(1);

/// The Origin policy of an allow-list.
fn allow_list<I, S>(origins: I) -> OriginPolicy
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    OriginPolicy::AllowList(origins.into_iter().map(Into::into).collect())
}

/// A tower layer applied to the websocket routes, kept until the router exists.
type LayerFn = Box<dyn FnOnce(Router) -> Router + Send>;

/// Configures and builds an [`Asena`] app.
#[must_use = "call .build().await to create the app"]
pub struct AsenaBuilder {
    auto_registration: bool,
    explicit: Vec<&'static ComponentRecord>,
    globals: Vec<(&'static ComponentRecord, Scope)>,
    router: Router,
    transport: Option<Arc<dyn Transport>>,
    limits: Limits,
    limits_for: HashMap<String, Limits>,
    compression: Compression,
    compression_for: HashMap<String, Compression>,
    origins: OriginPolicy,
    origins_for: HashMap<String, OriginPolicy>,
    stop_timeout: Duration,
    layers: Vec<LayerFn>,
    asyncapi_info: Info,
    asyncapi_servers: Vec<ServerSpec>,
    asyncapi_route: Option<String>,
    metrics_route: Option<String>,
    inspector: Option<InspectorConfig>,
    announce_every: Option<Duration>,
    instance_name: Option<String>,
}

impl std::fmt::Debug for AsenaBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsenaBuilder")
            .field("auto_registration", &self.auto_registration)
            .field(
                "explicit",
                &self.explicit.iter().map(|r| r.name).collect::<Vec<_>>(),
            )
            .field("limits", &self.limits)
            .field("layers", &self.layers.len())
            .finish()
    }
}

impl AsenaBuilder {
    fn new() -> Self {
        AsenaBuilder {
            auto_registration: true,
            explicit: Vec::new(),
            globals: Vec::new(),
            router: Router::new(),
            transport: None,
            limits: Limits::default(),
            limits_for: HashMap::new(),
            compression: Compression::default(),
            compression_for: HashMap::new(),
            origins: OriginPolicy::SameOrigin,
            origins_for: HashMap::new(),
            stop_timeout: Duration::from_secs(5),
            layers: Vec::new(),
            asyncapi_info: Info::default(),
            asyncapi_servers: Vec::new(),
            asyncapi_route: None,
            metrics_route: None,
            inspector: None,
            announce_every: None,
            instance_name: None,
        }
    }

    /// Serves the live inspector at `path` (e.g. `/_asena`): a page showing the fleet's
    /// instances with their sockets, rooms and message rates (live, over a WebSocket the app
    /// serves at `<path>/ws`), this instance's sockets (id, address, rooms, connected since,
    /// queued bytes) and rooms, paged and searchable, and two actions: disconnect a socket,
    /// take a socket out of a room. Its JSON API is under `<path>/api/`; the crate docs'
    /// "Inspector" section lists it.
    ///
    /// Every request to it, the WebSocket's upgrade included, passes `guard` first, a
    /// [`Middleware`] like any other: what it refuses gets its refusal, and one that neither
    /// continues nor refuses gets 403. There is no unguarded inspector.
    ///
    /// The instance also announces itself and its counts through the transport at every
    /// [`announce_every`](Self::announce_every) interval (default 1 s), so every instance
    /// that serves the inspector (or announces) appears in the fleet view of the others; an
    /// instance silent for three intervals drops off, and one that shuts down leaves at once.
    ///
    /// [`InspectorToken`] is a ready-made guard; a guard of your own reads the token from
    /// [`Context::bearer_token`](crate::Context::bearer_token) and compares it with
    /// [`secret_eq`](crate::secret_eq), never `==`. A browser signs in on the login form the
    /// page shows without credentials: the inspector runs the guard on the posted token and
    /// sets an `HttpOnly`, `SameSite=Strict` cookie, which it hands to the guard as the bearer
    /// token of later requests and of the feed's upgrade. A token in the URL (`?token=`) is
    /// refused with 400, whatever the guard.
    ///
    /// ```
    /// use asena_runtime::prelude::*;
    /// use asena_runtime::secret_eq;
    ///
    /// /// Lets through requests that carry the token as `Authorization: Bearer <token>` (or
    /// /// the inspector's login cookie, which arrives as one), from the office network.
    /// struct OfficeOnly(String);
    ///
    /// impl Middleware for OfficeOnly {
    ///     async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
    ///         let from_office = ctx.remote_addr().is_some_and(|a| a.ip().is_loopback());
    ///         let token_ok = ctx.bearer_token().is_some_and(|t| secret_eq(t, &self.0));
    ///         if !(from_office && token_ok) {
    ///             return Err(Refusal::json(401, json!({"error": "Unauthorized"})));
    ///         }
    ///         next.run(ctx).await
    ///     }
    /// }
    ///
    /// # fn builder() -> asena_runtime::AsenaBuilder {
    /// Asena::builder().inspector("/_asena", OfficeOnly("s3cret".into()))
    /// # }
    /// ```
    pub fn inspector<M: Middleware>(mut self, path: &str, guard: M) -> Self {
        self.inspector = Some(InspectorConfig {
            path: path.to_owned(),
            guard: crate::middleware::erase(Arc::new(guard), std::any::type_name::<M>()),
        });
        self
    }

    /// How often the instance announces itself and its counts to the fleet and refreshes the
    /// inspector (default 1 s). Setting it turns announcing on even without
    /// [`inspector`](Self::inspector), so an instance that serves no inspector page still
    /// appears in the fleet view of those that do.
    pub fn announce_every(mut self, every: Duration) -> Self {
        self.announce_every = Some(every.max(Duration::from_millis(10)));
        self
    }

    /// The instance's name in the inspector's fleet view (default: the host name and the
    /// process id).
    pub fn instance_name(mut self, name: &str) -> Self {
        self.instance_name = Some(name.to_owned());
        self
    }

    /// The title, version and description of the app's AsyncAPI document
    /// ([`Asena::asyncapi`]).
    pub fn asyncapi_info(mut self, info: Info) -> Self {
        self.asyncapi_info = info;
        self
    }

    /// Adds a server to the app's AsyncAPI document (e.g.
    /// `ServerSpec::new("production", "chat.example.com", "wss")`). Without any, the served
    /// document names the host the request came to.
    pub fn asyncapi_server(mut self, server: ServerSpec) -> Self {
        self.asyncapi_servers.push(server);
        self
    }

    /// Serves the app's AsyncAPI 3.0 document as JSON at `path` (e.g. `/asyncapi.json`).
    /// Off by default: a protocol description is for the clients you choose to show it to.
    pub fn serve_asyncapi(mut self, path: &str) -> Self {
        self.asyncapi_route = Some(path.to_owned());
        self
    }

    /// Serves the app's Prometheus metrics as OpenMetrics text at `path` (e.g. `/metrics`).
    /// Off by default; [`Asena::metrics_text`] returns the same text for your own server.
    /// The crate docs' "Metrics" section lists the metrics.
    pub fn metrics_route(mut self, path: &str) -> Self {
        self.metrics_route = Some(path.to_owned());
        self
    }

    /// Registers a `#[service]` explicitly.
    pub fn service<T: Component>(mut self) -> Self {
        self.explicit.push(T::record());
        self
    }

    /// Registers a `#[websocket]` service explicitly.
    pub fn websocket<T: Component + Endpoint>(mut self) -> Self {
        self.explicit.push(T::record());
        self
    }

    /// Registers a `#[middleware]` explicitly (it runs only where listed or made global).
    pub fn middleware<T: Component + Middleware>(mut self) -> Self {
        self.explicit.push(T::record());
        self
    }

    /// Uses only the explicitly registered components, ignoring what the macros registered
    /// through `inventory` (tests, several apps in one process, platforms without
    /// `inventory`).
    pub fn without_auto_registration(mut self) -> Self {
        self.auto_registration = false;
        self
    }

    /// Runs middleware `T` before every websocket service whose request path `scope`
    /// matches, ahead of the service's own middlewares. Registers `T` too.
    pub fn with_middleware<T: Component + Middleware>(mut self, scope: Scope) -> Self {
        self.explicit.push(T::record());
        self.globals.push((T::record(), scope));
        self
    }

    /// Merges your own axum routes and layers next to the websocket routes. Handlers can
    /// receive components with [`FromApp`].
    pub fn router(mut self, router: Router) -> Self {
        self.router = self.router.merge(router);
        self
    }

    /// Wraps the websocket routes in a [tower layer](tower_layer::Layer), as axum's
    /// `Router::layer` does: it sees every upgrade request before the handshake checks and
    /// the middleware chain, and the response after (e.g. `tower-http` tracing, timeouts,
    /// CORS, or `axum::middleware::from_fn`). Layers added later wrap the earlier ones. Your
    /// own routes (from [`router`](Self::router)) keep their own layers.
    ///
    /// ```
    /// use asena_runtime::Asena;
    /// use axum::{extract::Request, middleware::{self, Next}, response::Response};
    ///
    /// async fn log_upgrade(request: Request, next: Next) -> Response {
    ///     tracing::info!(path = %request.uri().path(), "upgrade request");
    ///     next.run(request).await
    /// }
    ///
    /// let builder = Asena::builder().layer(middleware::from_fn(log_upgrade));
    /// ```
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: tower_layer::Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
        L::Service: tower_service::Service<http::Request<Body>> + Clone + Send + Sync + 'static,
        <L::Service as tower_service::Service<http::Request<Body>>>::Response:
            axum::response::IntoResponse + 'static,
        <L::Service as tower_service::Service<http::Request<Body>>>::Error:
            Into<Infallible> + 'static,
        <L::Service as tower_service::Service<http::Request<Body>>>::Future: Send + 'static,
    {
        self.layers
            .push(Box::new(move |router: Router| router.layer(layer)));
        self
    }

    /// Sets the transport to other instances (default: [`LocalTransport`](crate::LocalTransport)).
    /// A transport instance serves one app.
    pub fn transport(mut self, transport: impl Transport) -> Self {
        self.transport = if transport.is_local() {
            None
        } else {
            Some(Arc::new(transport))
        };
        self
    }

    /// Sets the transport from an `Arc` (e.g. from [`transport::from_env`](crate::transport::from_env)).
    /// A transport instance serves one app: build a new one for each app, also in tests that
    /// run several instances in one process.
    pub fn transport_arc(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = if transport.is_local() {
            None
        } else {
            Some(transport)
        };
        self
    }

    /// Uses the transport named by `ASENA_TRANSPORT` (`redis://…`, `nats://…`; unset, empty
    /// or `local` keeps the local transport), as the examples do. A value that names no
    /// transport is an error, never a silent fallback.
    pub fn transport_from_env(self) -> Result<Self, Error> {
        Ok(match crate::transport::from_env()? {
            Some(transport) => self.transport_arc(transport),
            None => self,
        })
    }

    /// Largest message a client may send (default 1 MiB); larger ones close with 1009.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.limits.max_message_size = bytes;
        self
    }

    /// Bytes a socket's send queue may hold before the slow-consumer policy applies
    /// (default 16 MiB).
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_queued_bytes = bytes;
        self
    }

    /// What happens to a socket whose send queue is full (default: close with 1008).
    pub fn slow_consumer(mut self, policy: SlowConsumer) -> Self {
        self.limits.slow_consumer = policy;
        self
    }

    /// Closes sockets that sent nothing for this long with 1001 (default 120 s; `None` off).
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.limits.idle_timeout = timeout;
        self
    }

    /// Pings sockets that have been quiet for `interval` (default 30 s; `None` turns pings
    /// off) and closes those that send nothing within `timeout` of a ping with 1001
    /// "Ping timeout" (default 30 s). Browsers answer pings by themselves, so an open but
    /// quiet tab stays connected and a vanished peer is noticed.
    pub fn ping(mut self, interval: Option<Duration>, timeout: Duration) -> Self {
        self.limits.ping_interval = interval;
        self.limits.ping_timeout = timeout;
        self
    }

    /// Most sockets per websocket service; more are closed with 1008
    /// "Connection limit reached".
    pub fn max_connections(mut self, max: usize) -> Self {
        self.limits.max_connections = Some(max);
        self
    }

    /// How many messages and payload bytes a second each socket may send, and what happens
    /// to a message over it (default [`RateLimit::default`]: 1,000 messages and 4 MiB a
    /// second, a second's worth at once, close with 1008 "rate limit exceeded"); `None`
    /// turns the limit off.
    ///
    /// ```
    /// use asena_runtime::{Asena, RateLimit, RateLimitPolicy};
    /// let builder = Asena::builder().rate_limit(Some(
    ///     RateLimit::per_second(50, 64 * 1024).with_policy(RateLimitPolicy::DropMessages),
    /// ));
    /// ```
    pub fn rate_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.limits.rate_limit = limit;
        self
    }

    /// Limits for the service at `path` only, replacing the app-wide ones there.
    ///
    /// ```
    /// use asena_runtime::{Asena, Limits};
    /// let builder = Asena::builder().limits_for(
    ///     "/chat",
    ///     Limits { max_connections: Some(10_000), ..Limits::default() },
    /// );
    /// ```
    pub fn limits_for(mut self, path: &str, limits: Limits) -> Self {
        self.limits_for.insert(path.to_owned(), limits);
        self
    }

    /// permessage-deflate for every service (default: offered by the client → accepted,
    /// messages from 256 bytes compressed at level 1). [`Compression::disabled`] turns it
    /// off.
    ///
    /// ```
    /// use asena_runtime::{Asena, Compression};
    /// let builder = Asena::builder()
    ///     .compression(Compression { threshold: 1024, ..Compression::default() })
    ///     .compression_for("/binary-feed", Compression::disabled());
    /// ```
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Compression for the service at `path` only, replacing the app-wide setting there.
    pub fn compression_for(mut self, path: &str, compression: Compression) -> Self {
        self.compression_for.insert(path.to_owned(), compression);
        self
    }

    /// Browser origins allowed to open sockets on every service, replacing the same-origin
    /// default: an `Origin` equal to an entry (ASCII case-insensitively; `*` allows any) is
    /// let through, any other is answered 403, as is one that is not visible ASCII. Requests
    /// without `Origin` (non-browser clients) are allowed. Guards against cross-site
    /// WebSocket hijacking.
    ///
    /// Without it, an upgrade is same-origin only: an `Origin` whose host and port differ
    /// from the request's `Host` gets 403 (what a page served by this app sends passes). List
    /// the public origins here when a proxy rewrites `Host`, or pages of other origins must
    /// connect.
    ///
    /// ```
    /// use asena_runtime::Asena;
    /// let builder = Asena::builder()
    ///     .allowed_origins(["https://app.example", "https://admin.example"])
    ///     .allow_any_origin_for("/public-feed");
    /// ```
    pub fn allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.origins = allow_list(origins);
        self
    }

    /// Like [`allowed_origins`](Self::allowed_origins), for the service at `path` only
    /// (overrides the app-wide policy there).
    pub fn allowed_origins_for<I, S>(mut self, path: &str, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.origins_for
            .insert(path.to_owned(), allow_list(origins));
        self
    }

    /// Lets pages of every origin open sockets on every service: the `Origin` header is not
    /// checked at all. Only for services that authenticate with something a browser does not
    /// send on its own (a token in the first message, not a cookie), or serve public data.
    pub fn allow_any_origin(mut self) -> Self {
        self.origins = OriginPolicy::Any;
        self
    }

    /// Like [`allow_any_origin`](Self::allow_any_origin), for the service at `path` only.
    pub fn allow_any_origin_for(mut self, path: &str) -> Self {
        self.origins_for.insert(path.to_owned(), OriginPolicy::Any);
        self
    }

    /// Bound for each component's `on_stop` hook (default 5 s).
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }

    /// Validates the components, builds them in dependency order, starts the transport and
    /// runs every `on_start` hook.
    pub async fn build(self) -> Result<Asena, Error> {
        let mut records = self.explicit.clone();
        if self.auto_registration {
            records.extend(di::registered());
        }
        di::sort_records(&mut records);
        let plan = Plan::new(&records)?;

        let live = Arc::new(Tracker::default());
        let mut namespaces = Vec::new();
        for record in &plan.order {
            if let ComponentKind::WebSocket(ws) = &record.kind {
                if !wire::is_namespace_path(ws.path) {
                    return Err(Error::Config(format!(
                        "the websocket path `{}` holds a `.`: instances name a room `<path>.<room>` between them, so the dot would make two namespaces' rooms one",
                        ws.path
                    )));
                }
                let ns = Namespace::new(
                    ws.path,
                    ws.name,
                    self.limits_for.get(ws.path).unwrap_or(&self.limits).clone(),
                    *self
                        .compression_for
                        .get(ws.path)
                        .unwrap_or(&self.compression),
                    self.transport.clone(),
                    live.clone(),
                );
                namespaces.push(((record.type_id)(), ns));
            }
        }
        let broker = UlakBroker::new(namespaces.clone());
        let mut provided = http::Extensions::new();
        provided.insert(broker.clone());
        let container = Container::build(plan, &provided)?;

        let (mut services, mut sockets, mut middlewares) = (0, 0, 0);
        for r in &container.order {
            match r.kind {
                ComponentKind::Service => services += 1,
                ComponentKind::WebSocket(_) => sockets += 1,
                ComponentKind::Middleware(_) => middlewares += 1,
            }
        }
        tracing::info!(
            target: "asena::di",
            services,
            websockets = sockets,
            middlewares,
            "registered {services} services, {sockets} websockets, {middlewares} middlewares"
        );

        let erased_middleware = |record: &ComponentRecord| -> Option<Arc<dyn ErasedMiddleware>> {
            match record.kind {
                ComponentKind::Middleware(entry) => {
                    container.get((record.type_id)()).map(|i| entry(i.clone()))
                }
                _ => None,
            }
        };
        let globals: Vec<(Arc<dyn ErasedMiddleware>, Scope)> = self
            .globals
            .iter()
            .map(|(r, scope)| {
                let m = erased_middleware(r)
                    .expect("invariant: with_middleware registered this middleware");
                (m, scope.clone())
            })
            .collect();
        let globals: Arc<[(Arc<dyn ErasedMiddleware>, Scope)]> = globals.into();

        let shutting_down = Arc::new(AtomicBool::new(false));
        let mut router = Router::new();
        let mut services: Vec<Arc<dyn ErasedService>> = Vec::new();
        let mut attached: Vec<Attached> = Vec::new();
        for record in &container.order {
            let ComponentKind::WebSocket(ws) = &record.kind else {
                continue;
            };
            let Some(instance) = container.get((record.type_id)()) else {
                continue;
            };
            let ns = namespaces
                .iter()
                .find(|(id, _)| *id == (record.type_id)())
                .map(|(_, ns)| ns.clone())
                .expect("invariant: every websocket record has a namespace");
            // Plan::new proved every listed middleware is a registered middleware: a missing
            // link here would fail open, so it is an invariant, not something to skip.
            let own: Vec<Arc<dyn ErasedMiddleware>> = ws
                .middlewares
                .iter()
                .map(|m| {
                    container
                        .order
                        .iter()
                        .find(|r| (r.type_id)() == (m.type_id)())
                        .and_then(|r| erased_middleware(r))
                        .expect("invariant: validated middleware is built")
                })
                .collect();
            let origins = self
                .origins_for
                .get(ws.path)
                .unwrap_or(&self.origins)
                .clone();
            let service = (ws.entry)(instance.clone());
            services.push(service.clone());
            attached.push((service.clone(), ns.clone(), ws.name));
            let endpoint = Arc::new(Route {
                ns,
                service,
                chain: own,
                origins,
                shutting_down: shutting_down.clone(),
            });
            let globals = globals.clone();
            router = router.route(
                ws.path,
                axum::routing::any(move |req: http::Request<Body>| {
                    let endpoint = endpoint.clone();
                    let globals = globals.clone();
                    async move { upgrade::handle_with_globals(endpoint, &globals, req).await }
                }),
            );
        }
        for layer in self.layers {
            router = layer(router);
        }
        let spec = Arc::new(AsyncApiSpec {
            info: self.asyncapi_info,
            servers: self.asyncapi_servers,
            services,
        });
        if let Some(path) = &self.asyncapi_route {
            let spec = spec.clone();
            router = router.route(
                path,
                axum::routing::get(move |headers: http::HeaderMap| {
                    let spec = spec.clone();
                    async move { axum::Json(spec.served(&headers)) }
                }),
            );
        }
        let ns_list: Arc<[Namespace]> = namespaces.iter().map(|(_, ns)| ns.clone()).collect();
        let scrape = metrics::Scrape {
            namespaces: ns_list.clone(),
            transport: self.transport.clone(),
        };
        if let Some(path) = &self.metrics_route {
            let scrape = scrape.clone();
            router = router.route(
                path,
                axum::routing::get(move || {
                    let scrape = scrape.clone();
                    async move {
                        (
                            [(http::header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
                            scrape.text(),
                        )
                    }
                }),
            );
        }
        let fleet = (self.inspector.is_some() || self.announce_every.is_some()).then(|| {
            FleetState::new(
                self.instance_name.clone(),
                self.announce_every.unwrap_or(DEFAULT_ANNOUNCE_EVERY),
            )
        });
        let mut feed = None;
        if let (Some(config), Some(state)) = (self.inspector, &fleet) {
            let ns = Namespace::new(
                &format!("{}/ws", config.path.trim_end_matches('/')),
                "AsenaInspectorFeed",
                Limits::default(),
                Compression::default(),
                None,
                live.clone(),
            );
            let inspector = Inspector::new(
                config,
                ns_list.clone(),
                state.clone(),
                ns.clone(),
                shutting_down.clone(),
            );
            router = inspector.route(router);
            feed = Some(ns);
        }
        let router = router
            .merge(self.router)
            .layer(axum::middleware::map_response(unknown_namespace));

        let (shutdown_tx, _) = watch::channel(false);
        let inner = Arc::new_cyclic(|weak: &Weak<AppInner>| AppInner {
            router: router.layer(axum::Extension(AppRef(weak.clone()))),
            container,
            broker,
            namespaces: ns_list.clone(),
            transport: self.transport.clone(),
            shutdown: shutdown_tx,
            shutting_down,
            live,
            stop_timeout: self.stop_timeout,
            finished: tokio::sync::Mutex::new(false),
            asyncapi: spec,
            scrape,
            attached,
            fleet: fleet.clone(),
            feed: feed.clone(),
            announcer: std::sync::OnceLock::new(),
        });

        // Protocols start first: what they listen to is subscribed when the transport starts.
        let bus = crate::protocol::Fleet::new(
            inner
                .transport
                .clone()
                .unwrap_or_else(|| Arc::new(crate::transport::LocalTransport)),
        );
        for (service, ns, name) in &inner.attached {
            if let Err(source) = service.start(ns, &bus).await {
                inner.undo_start().await;
                return Err(Error::Start {
                    component: name,
                    source,
                });
            }
        }
        if let Some(t) = &inner.transport {
            let namespaces = Namespaces(ns_list.clone());
            let local: Arc<dyn crate::transport::Deliver> = match &fleet {
                Some(state) => Arc::new(FleetDelivery {
                    namespaces,
                    state: state.clone(),
                }),
                None => Arc::new(namespaces),
            };
            if let Err(e) = t.init(Inbound::new(local, bus.listeners())).await {
                inner.undo_start().await;
                return Err(e.into());
            }
            tracing::info!(target: "asena::transport", transport = t.name(), "transport started");
        }
        if let Err((component, source)) = inner.container.start(inner.stop_timeout).await {
            inner.undo_start().await;
            return Err(Error::Start { component, source });
        }
        if let Some(state) = fleet {
            let _ = inner.announcer.set(Announcer::start(
                state,
                ns_list,
                inner.transport.clone(),
                feed,
            ));
        }
        Ok(Asena { inner })
    }
}

impl AppInner {
    /// Undoes a start that failed part way: every service's protocol is stopped and the
    /// transport destroyed (both are idempotent and safe on what never started).
    async fn undo_start(&self) {
        for (service, ns, _) in &self.attached {
            service.stop(ns).await;
        }
        if let Some(t) = &self.transport {
            t.destroy().await;
        }
    }
}

pub(crate) struct AppInner {
    router: Router,
    container: Container,
    broker: UlakBroker,
    namespaces: Arc<[Namespace]>,
    transport: Option<Arc<dyn Transport>>,
    shutdown: watch::Sender<bool>,
    shutting_down: Arc<AtomicBool>,
    live: Arc<Tracker>,
    stop_timeout: Duration,
    finished: tokio::sync::Mutex<bool>,
    asyncapi: Arc<AsyncApiSpec>,
    /// What the metrics exposition reads.
    scrape: metrics::Scrape,
    /// Every websocket service with its namespace and name, for attach and detach.
    attached: Vec<Attached>,
    /// The fleet view, when the inspector is served or the instance announces itself.
    fleet: Option<Arc<FleetState>>,
    /// The inspector's WebSocket feed (not one of the app's namespaces).
    feed: Option<Namespace>,
    /// Announces the instance; set once the app has started.
    announcer: std::sync::OnceLock<Announcer>,
}

/// A websocket service, its namespace and its name.
type Attached = (Arc<dyn ErasedService>, Namespace, &'static str);

/// What the AsyncAPI document is made from.
struct AsyncApiSpec {
    info: Info,
    servers: Vec<ServerSpec>,
    services: Vec<Arc<dyn ErasedService>>,
}

impl AsyncApiSpec {
    fn document(&self, servers: &[ServerSpec]) -> serde_json::Value {
        let mut generator = asyncapi::generator();
        let channels: Vec<_> = self
            .services
            .iter()
            .map(|s| s.describe(&mut generator))
            .collect();
        asyncapi::document(&self.info, servers, &channels, generator)
    }

    /// The document as the route serves it: the configured servers, or the host asked.
    fn served(&self, headers: &http::HeaderMap) -> serde_json::Value {
        if !self.servers.is_empty() {
            return self.document(&self.servers);
        }
        let host = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| !h.is_empty());
        match host {
            Some(host) => self.document(&[ServerSpec::new("default", host, "ws")]),
            None => self.document(&[]),
        }
    }
}

impl AppInner {
    fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.container
            .get(TypeId::of::<T>())
            .and_then(|i| i.clone().downcast::<T>().ok())
    }
}

/// A built app. Cheap to clone; every clone is the same app.
///
/// ```no_run
/// use asena_runtime::prelude::*;
///
/// #[tokio::main]
/// async fn main() -> Result<(), asena_runtime::Error> {
///     Asena::builder().build().await?.serve("127.0.0.1:3000").await
/// }
/// ```
#[derive(Clone)]
pub struct Asena {
    inner: Arc<AppInner>,
}

impl std::fmt::Debug for Asena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Asena")
            .field("namespaces", &self.inner.namespaces)
            .finish()
    }
}

impl Asena {
    pub(crate) fn from_inner(inner: Arc<AppInner>) -> Asena {
        Asena { inner }
    }

    /// Starts configuring an app.
    pub fn builder() -> AsenaBuilder {
        AsenaBuilder::new()
    }

    /// The singleton instance of component `T`.
    pub fn get<T: Component>(&self) -> Option<Arc<T>> {
        self.inner.get::<T>()
    }

    /// The typed Ulak handle of websocket service `N`.
    pub fn ulak<N: Endpoint>(&self) -> Option<Ulak<N>> {
        self.inner.broker.ulak::<N>()
    }

    /// The app's broker.
    pub fn broker(&self) -> &UlakBroker {
        &self.inner.broker
    }

    /// The namespace served at `path`.
    pub fn namespace(&self, path: &str) -> Option<Namespace> {
        self.inner
            .namespaces
            .iter()
            .find(|n| n.path() == path)
            .cloned()
    }

    /// Every namespace.
    pub fn namespaces(&self) -> &[Namespace] {
        &self.inner.namespaces
    }

    /// The app's AsyncAPI 3.0 document: every websocket service as a channel (its address
    /// with parameters, the messages it receives and sends with their JSON Schemas, garde
    /// constraints included), a `receive` and a `send` operation for each, the servers given
    /// to [`AsenaBuilder::asyncapi_server`] and the close codes in the description.
    /// [`AsenaBuilder::serve_asyncapi`] serves it over HTTP.
    pub fn asyncapi(&self) -> serde_json::Value {
        self.inner.asyncapi.document(&self.inner.asyncapi.servers)
    }

    /// Writes [`Asena::asyncapi`], pretty-printed, to standard output: an app's
    /// `--asyncapi` flag (see [`Asena::asyncapi_requested`]).
    pub fn print_asyncapi(&self) -> std::io::Result<()> {
        let mut json = serde_json::to_string_pretty(&self.asyncapi())?;
        json.push('\n');
        std::io::Write::write_all(&mut std::io::stdout().lock(), json.as_bytes())
    }

    /// Whether the process was started with `--asyncapi`, the flag with which this
    /// repository's examples print their protocol instead of serving it:
    ///
    /// ```no_run
    /// # use asena_runtime::Asena;
    /// # async fn main_(builder: fn() -> asena_runtime::AsenaBuilder) -> anyhow::Result<()> {
    /// if Asena::asyncapi_requested() {
    ///     return Ok(builder().build().await?.print_asyncapi()?);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn asyncapi_requested() -> bool {
        std::env::args_os().skip(1).any(|arg| arg == "--asyncapi")
    }

    /// The transport's counters (published, received, dropped, errors, reconnects), or
    /// `None` for a single instance (the local transport) or a transport that keeps none.
    pub fn transport_stats(&self) -> Option<TransportStats> {
        self.inner.transport.as_ref().and_then(|t| t.stats())
    }

    /// Whether the transport routes room messages by interest (NATS by default: each
    /// instance receives the messages of the rooms it has members in; see
    /// [`NatsTransport`](crate::NatsTransport)). `transport_stats().subscriptions` then counts
    /// the rooms it is subscribed to.
    pub fn transport_routes_by_interest(&self) -> bool {
        self.inner
            .transport
            .as_ref()
            .is_some_and(|t| t.routes_by_interest())
    }

    /// The app's Prometheus metrics as OpenMetrics text (what
    /// [`AsenaBuilder::metrics_route`] serves), for an app that serves them itself; its
    /// `Content-Type` is `application/openmetrics-text; version=1.0.0; charset=utf-8`. Made
    /// now from the counters; the crate docs' "Metrics" section lists the metrics.
    pub fn metrics_text(&self) -> String {
        self.inner.scrape.text()
    }

    /// The router (websocket routes plus yours), to serve with your own server. Prefer
    /// [`serve`](Self::serve): with another server, sockets fall back to a slower I/O path
    /// and need that server to support HTTP/1.1 upgrades.
    pub fn router(&self) -> Router {
        self.inner.router.clone()
    }

    /// Binds `addr` and returns the server, not yet running.
    pub async fn listen(
        &self,
        addr: impl ToSocketAddrs + std::fmt::Display,
    ) -> Result<Server, Error> {
        let text = addr.to_string();
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr: text, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| Error::Io { addr: None, source })?;
        if let Some(fleet) = &self.inner.fleet {
            fleet.set_addr(local_addr);
        }
        Ok(Server {
            app: self.clone(),
            listener,
            local_addr,
        })
    }

    /// Serves on `addr` until Ctrl-C, SIGTERM or [`shutdown`](Self::shutdown), then shuts
    /// down gracefully.
    pub async fn serve(self, addr: impl ToSocketAddrs + std::fmt::Display) -> Result<(), Error> {
        let server = self.listen(addr).await?;
        tracing::info!(target: "asena::ws", addr = %server.local_addr(), "listening");
        server.run_until(termination_signal()).await
    }

    /// Stops the app: refuses new connections, closes every socket with 1001 (running each
    /// `on_close`), runs the `on_stop` hooks in reverse order and destroys the transport.
    /// Returns when all of that is done; later calls return at once.
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
        self.inner.shutdown.send_replace(true);
        let mut finished = self.inner.finished.lock().await;
        if *finished {
            return;
        }
        for ns in self.inner.namespaces.iter().chain(&self.inner.feed) {
            ns.close_all(close_code::GOING_AWAY, "Server shutting down");
        }
        // Wait for every connection task to run its on_close.
        if !self.inner.live.wait_idle(Duration::from_secs(15)).await {
            tracing::warn!(target: "asena::ws", "some connections did not finish closing in 15 s");
        }
        for (service, ns, _) in &self.inner.attached {
            service.stop(ns).await;
        }
        self.inner.container.stop(self.inner.stop_timeout).await;
        if let Some(announcer) = self.inner.announcer.get() {
            // Says goodbye to the fleet while the transport is still up.
            announcer.stop().await;
        }
        if let Some(t) = &self.inner.transport {
            t.destroy().await;
        }
        *finished = true;
        tracing::info!(target: "asena::ws", "shut down");
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }
}

async fn termination_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// A bound server; [`run`](Server::run) serves until the app shuts down.
#[derive(Debug)]
pub struct Server {
    app: Asena,
    listener: TcpListener,
    local_addr: SocketAddr,
}

impl Server {
    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until [`Asena::shutdown`] is called.
    pub async fn run(self) -> Result<(), Error> {
        self.run_until(std::future::pending()).await
    }

    /// Serves until `signal` completes or [`Asena::shutdown`] is called, then shuts down
    /// gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()> + Send) -> Result<(), Error> {
        let Server { app, listener, .. } = self;
        let mut stop = app.inner.shutdown.subscribe();
        tokio::pin!(signal);
        loop {
            tokio::select! {
                _ = &mut signal => break,
                _ = stopped(&mut stop) => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, remote)) => {
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(serve_http(stream, remote, app.inner.router.clone(), app.inner.shutdown.subscribe()));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: log, back off, keep serving.
                        tracing::error!(target: "asena::ws", error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
        drop(listener);
        app.shutdown().await;
        Ok(())
    }
}

/// A WebSocket upgrade to a path no service (and no user route) serves gets a JSON answer
/// that says so, and a log line, instead of an empty 404.
async fn unknown_namespace(
    uri: http::Uri,
    headers: http::HeaderMap,
    response: axum::response::Response,
) -> axum::response::Response {
    let upgrade = headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !upgrade || response.status() != http::StatusCode::NOT_FOUND {
        return response;
    }
    tracing::warn!(target: "asena::ws", path = uri.path(), "upgrade to an unknown namespace");
    Refusal::json(
        404,
        serde_json::json!({ "error": format!("No WebSocket service at {}", uri.path()) }),
    )
    .into_response()
}

/// Resolves once the shutdown flag is set (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

async fn serve_http(
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    router: Router,
    mut stop: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(remote));
        let mut router = router.clone();
        async move {
            let resp: Result<_, Infallible> = router.call(req.map(Body::new)).await;
            resp
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        // hyper's read buffer, at most (its default is about 400 KiB); a head it reads
        // whole may still pass this by one read, and the upgrade refuses it then.
        .max_buf_size(crate::request::MAX_REQUEST_HEAD)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(target: "asena::ws", error = %e, "http connection error");
            }
        }
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}
