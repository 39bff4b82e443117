//! [`AsenaBuilder`]: the app's options, and `build`, which validates the components, makes
//! the namespaces and the container, assembles the router (`router.rs`) and starts
//! everything (`shutdown.rs` undoes a start that fails).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use tokio::sync::watch;

use super::extract::AppRef;
use super::guarded::Middlewares;
use super::router::{Assembled, Parts, RouteOptions, allow_list};
use super::{Announcer, AppInner, Asena, Error, shutdown};
use crate::asyncapi::{Info, ServerSpec};
use crate::config::{Compression, Limits, RateLimit, SlowConsumer};
use crate::di::{self, Component, ComponentKind, ComponentRecord, Container, Plan};
use crate::middleware::{Middleware, Scope};
use crate::namespace::Namespace;
use crate::observe::inspector::{FleetState, InspectorConfig};
use crate::presence::{Hub, PresenceOptions};
use crate::protocol::Endpoint;
use crate::shutdown::Tracker;
use crate::transport::Transport;
use crate::ulak::UlakBroker;
use crate::wire;
use crate::ws::origin::OriginPolicy;

/// How often an instance announces itself to the fleet by default.
const DEFAULT_ANNOUNCE_EVERY: Duration = Duration::from_secs(1);

/// Configures and builds an [`Asena`] app.
#[must_use = "call .build().await to create the app"]
pub struct AsenaBuilder {
    auto_registration: bool,
    explicit: Vec<&'static ComponentRecord>,
    /// Everything that becomes a route or wraps one.
    routes: RouteOptions,
    transport: Option<Arc<dyn Transport>>,
    limits: Limits,
    limits_for: HashMap<String, Limits>,
    compression: Compression,
    compression_for: HashMap<String, Compression>,
    stop_timeout: Duration,
    announce_every: Option<Duration>,
    instance_name: Option<String>,
    presence: Option<PresenceOptions>,
    #[cfg(feature = "redis")]
    history: Option<crate::history::HistoryOptions>,
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
            .field("layers", &self.routes.layers.len())
            .finish()
    }
}

impl AsenaBuilder {
    pub(super) fn new() -> Self {
        AsenaBuilder {
            auto_registration: true,
            explicit: Vec::new(),
            routes: RouteOptions::new(),
            transport: None,
            limits: Limits::default(),
            limits_for: HashMap::new(),
            compression: Compression::default(),
            compression_for: HashMap::new(),
            stop_timeout: Duration::from_secs(5),
            announce_every: None,
            instance_name: None,
            presence: None,
            #[cfg(feature = "redis")]
            history: None,
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
    /// [`TokenGuard`](crate::TokenGuard) (or [`InspectorToken`](crate::InspectorToken), the same type) is a ready-made guard; a guard of your own reads the token from
    /// [`Context::bearer_token`](crate::Context::bearer_token) and compares it with
    /// [`secret_eq`](crate::secret_eq), never `==`. A browser signs in on the login form the
    /// page shows without credentials: the inspector runs the guard on the posted token and
    /// sets an `HttpOnly`, `SameSite=Strict` cookie, which it hands to the guard as the bearer
    /// token of later requests and of the feed's upgrade. A token in the URL (`?token=`) is
    /// refused with 400, whatever the guard.
    ///
    /// ```
    /// use asena_runtime::prelude::*;
    /// use asena_runtime::{Asena, secret_eq};
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
        self.routes.inspector = Some(InspectorConfig {
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
        self.routes.asyncapi_info = info;
        self
    }

    /// Adds a server to the app's AsyncAPI document (e.g.
    /// `ServerSpec::new("production", "chat.example.com", "wss")`). Without any, the served
    /// document names the host the request came to.
    pub fn asyncapi_server(mut self, server: ServerSpec) -> Self {
        self.routes.asyncapi_servers.push(server);
        self
    }

    /// Serves the app's AsyncAPI 3.0 document as JSON at `path` (e.g. `/asyncapi.json`).
    /// Off by default: a protocol description is for the clients you choose to show it to.
    pub fn serve_asyncapi(mut self, path: &str) -> Self {
        self.routes.asyncapi_route = Some(path.to_owned());
        self
    }

    /// Serves the app's Prometheus metrics as OpenMetrics text at `path` (e.g. `/metrics`).
    /// Off by default; [`Asena::metrics_text`] returns the same text for your own server.
    /// The crate docs' "Metrics" section lists the metrics.
    pub fn metrics_route(mut self, path: &str) -> Self {
        self.routes.metrics_route = Some(path.to_owned());
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
        self.routes.globals.push((T::record(), scope));
        self
    }

    /// Merges your own axum routes and layers next to the websocket routes. Handlers can
    /// receive components with [`FromApp`](crate::FromApp).
    pub fn router(mut self, router: Router) -> Self {
        self.routes.user = self.routes.user.merge(router);
        self
    }

    /// Merges your own axum routes behind middlewares `M` (one `#[middleware]` type, or a
    /// tuple of up to four, run in order), as Asena's `@Controller({ middlewares: [..] })`
    /// guards a controller; registers them too. The chain answers a request exactly as it
    /// answers an upgrade (refusals as given, 403 when a middleware neither continues nor
    /// refuses, 500 when one panics); for a request it lets through, what middlewares put in
    /// [`Context::extensions_mut`](crate::Context::extensions_mut) reaches the handler as
    /// request extensions (axum's `Extension<T>`), and their response headers are added to
    /// the handler's answer. Only the routes of `router` are guarded, not its fallback.
    ///
    /// ```
    /// use asena_runtime::prelude::*;
    /// use asena_runtime::Asena;
    /// use axum::{Extension, Router, routing::get};
    ///
    /// #[derive(Clone)]
    /// struct User(String);
    ///
    /// /// Admits requests with `x-user`, and hands the user to the handler.
    /// #[middleware]
    /// struct RequireUser;
    ///
    /// impl Middleware for RequireUser {
    ///     async fn handle(&self, ctx: &mut Context, next: Next<'_>) -> Result<(), Refusal> {
    ///         let user = ctx
    ///             .header("x-user")
    ///             .ok_or_else(|| Refusal::json(401, json!({"error": "who are you?"})))?
    ///             .to_owned();
    ///         ctx.extensions_mut().insert(User(user));
    ///         next.run(ctx).await
    ///     }
    /// }
    ///
    /// let api = Router::new().route(
    ///     "/api/me",
    ///     get(|Extension(User(name)): Extension<User>| async move { name }),
    /// );
    /// let builder = Asena::builder().guarded_router::<RequireUser>(api);
    /// ```
    #[doc(alias = "Controller")]
    pub fn guarded_router<M: Middlewares>(mut self, router: Router) -> Self {
        let records = M::records();
        self.explicit.extend(records.iter().copied());
        self.routes.guarded.push((records, router));
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
        self.routes
            .layers
            .push(Box::new(move |router: Router| router.layer(layer)));
        self
    }

    /// Sets the transport to other instances (default: [`LocalTransport`](crate::transport::LocalTransport)).
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
    /// use asena_runtime::{Asena};
    /// use asena_runtime::config::{RateLimit, RateLimitPolicy};
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
    /// use asena_runtime::{Asena};
    /// use asena_runtime::config::Limits;
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
    /// use asena_runtime::{Asena};
    /// use asena_runtime::config::Compression;
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
        self.routes.origins = allow_list(origins);
        self
    }

    /// Like [`allowed_origins`](Self::allowed_origins), for the service at `path` only
    /// (overrides the app-wide policy there).
    pub fn allowed_origins_for<I, S>(mut self, path: &str, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.routes
            .origins_for
            .insert(path.to_owned(), allow_list(origins));
        self
    }

    /// Lets pages of every origin open sockets on every service: the `Origin` header is not
    /// checked at all. Only for services that authenticate with something a browser does not
    /// send on its own (a token in the first message, not a cookie), or serve public data.
    pub fn allow_any_origin(mut self) -> Self {
        self.routes.origins = OriginPolicy::Any;
        self
    }

    /// Like [`allow_any_origin`](Self::allow_any_origin), for the service at `path` only.
    pub fn allow_any_origin_for(mut self, path: &str) -> Self {
        self.routes
            .origins_for
            .insert(path.to_owned(), OriginPolicy::Any);
        self
    }

    /// Turns on [presence](crate::presence) for every websocket service: sockets track
    /// themselves in rooms with metadata (`ws.presence().track(..)`), and
    /// `ns.presence().list(room)` tells who is in a room on every instance, through the
    /// app's transport.
    pub fn presence(mut self, options: PresenceOptions) -> Self {
        self.presence = Some(options);
        self
    }

    /// Turns on [history and recovery](crate::history): the rooms `options` picks keep their
    /// last messages in Redis, number them, and replay what a client missed when it comes
    /// back with its position.
    #[cfg(feature = "redis")]
    pub fn history(mut self, options: crate::history::HistoryOptions) -> Self {
        self.history = Some(options);
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
        let namespaces = self.namespaces(&plan, &live)?;
        let broker = UlakBroker::new(namespaces.clone());
        let mut provided = http::Extensions::new();
        provided.insert(broker.clone());
        let container = Container::build(plan, &provided)?;
        log_registered(&container);

        let shutting_down = Arc::new(AtomicBool::new(false));
        let ns_list: Arc<[Namespace]> = namespaces.iter().map(|(_, ns)| ns.clone()).collect();
        let scrape = crate::observe::metrics::Scrape {
            namespaces: ns_list.clone(),
            transport: self.transport.clone(),
        };
        let fleet = (self.routes.inspector.is_some() || self.announce_every.is_some()).then(|| {
            FleetState::new(
                self.instance_name.clone(),
                self.announce_every.unwrap_or(DEFAULT_ANNOUNCE_EVERY),
            )
        });
        let Assembled {
            router,
            attached,
            spec,
            feed,
        } = self.routes.assemble(Parts {
            container: &container,
            namespaces: &namespaces,
            ns_list: &ns_list,
            scrape: &scrape,
            fleet: fleet.as_ref(),
            live: &live,
            shutting_down: &shutting_down,
            presence: self.presence.is_some(),
        });

        let (shutdown_tx, _) = watch::channel(false);
        let inner = Arc::new_cyclic(|weak: &Weak<AppInner>| AppInner {
            router: router.layer(axum::Extension(AppRef(weak.clone()))),
            container,
            broker,
            namespaces: ns_list.clone(),
            transport: self.transport,
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
            presence: self.presence.map(|options| Hub::new(options, &ns_list)),
            #[cfg(feature = "redis")]
            history: self
                .history
                .map(|options| crate::history::Archive::new(options, &ns_list)),
        });
        shutdown::start(&inner).await?;
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

    /// One namespace for each websocket service, with its limits and compression.
    fn namespaces(
        &self,
        plan: &Plan,
        live: &Arc<Tracker>,
    ) -> Result<Vec<(std::any::TypeId, Namespace)>, Error> {
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
        Ok(namespaces)
    }
}

/// Logs how many components of each kind registered (an empty app usually means a crate
/// nothing references was not linked).
fn log_registered(container: &Container) {
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
}
