//! Router assembly: a route for each websocket service (its middleware chain, the global
//! middlewares, its Origin policy), the layers around them, the AsyncAPI and metrics routes,
//! the inspector, the user's routes merged in, and the answer to an upgrade nobody serves.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::body::Body;

use super::Attached;
use crate::asyncapi::{self, Info, QueryParam, ServerSpec};
use crate::di::{ComponentKind, ComponentRecord, Container};
use crate::middleware::{self, ErasedMiddleware, Refusal, Scope};
use crate::namespace::Namespace;
use crate::observe::inspector::{FleetState, Inspector, InspectorConfig};
use crate::shutdown::Tracker;
use crate::ws::ErasedService;
use crate::ws::origin::OriginPolicy;
use crate::ws::upgrade::{self, Route};

/// A tower layer applied to the websocket routes, kept until the router exists.
pub(super) type LayerFn = Box<dyn FnOnce(Router) -> Router + Send>;

/// The Origin policy of an allow-list.
pub(super) fn allow_list<I, S>(origins: I) -> OriginPolicy
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    OriginPolicy::AllowList(origins.into_iter().map(Into::into).collect())
}

/// The builder's options that become routes or wrap them.
pub(super) struct RouteOptions {
    /// Middlewares run before every websocket service whose path their scope matches.
    pub(super) globals: Vec<(&'static ComponentRecord, Scope)>,
    /// The user's own routes.
    pub(super) user: Router,
    /// The user's routes guarded by middlewares, with the middlewares' records in order.
    pub(super) guarded: Vec<(Vec<&'static ComponentRecord>, Router)>,
    pub(super) origins: OriginPolicy,
    pub(super) origins_for: HashMap<String, OriginPolicy>,
    pub(super) layers: Vec<LayerFn>,
    pub(super) asyncapi_info: Info,
    pub(super) asyncapi_servers: Vec<ServerSpec>,
    pub(super) asyncapi_route: Option<String>,
    pub(super) metrics_route: Option<String>,
    pub(super) inspector: Option<InspectorConfig>,
}

/// What `build` made that the routes serve.
pub(super) struct Parts<'a> {
    pub(super) container: &'a Container,
    /// Each websocket service's namespace, by the service's type.
    pub(super) namespaces: &'a [(TypeId, Namespace)],
    pub(super) ns_list: &'a Arc<[Namespace]>,
    pub(super) scrape: &'a crate::observe::metrics::Scrape,
    /// The fleet view, when the inspector is served or the instance announces itself.
    pub(super) fleet: Option<&'a Arc<FleetState>>,
    pub(super) live: &'a Arc<Tracker>,
    pub(super) shutting_down: &'a Arc<AtomicBool>,
    /// Whether the app has presence (its messages go in the AsyncAPI document).
    pub(super) presence: bool,
}

/// The assembled router and what the app keeps of the assembly.
pub(super) struct Assembled {
    pub(super) router: Router,
    /// Every websocket service with its namespace and name, in registration order.
    pub(super) attached: Vec<Attached>,
    pub(super) spec: Arc<AsyncApiSpec>,
    /// The inspector's WebSocket feed, when the inspector is served.
    pub(super) feed: Option<Namespace>,
}

impl RouteOptions {
    pub(super) fn new() -> Self {
        RouteOptions {
            globals: Vec::new(),
            user: Router::new(),
            guarded: Vec::new(),
            origins: OriginPolicy::SameOrigin,
            origins_for: HashMap::new(),
            layers: Vec::new(),
            asyncapi_info: Info::default(),
            asyncapi_servers: Vec::new(),
            asyncapi_route: None,
            metrics_route: None,
            inspector: None,
        }
    }

    pub(super) fn assemble(self, parts: Parts<'_>) -> Assembled {
        let (mut router, attached, queries) = self.websocket_routes(&parts);
        for layer in self.layers {
            router = layer(router);
        }
        let spec = Arc::new(AsyncApiSpec {
            info: self.asyncapi_info,
            servers: self.asyncapi_servers,
            services: attached
                .iter()
                .map(|(s, _, _)| s.clone())
                .zip(queries)
                .collect(),
            presence: parts
                .presence
                .then(|| attached.iter().map(|(_, ns, _)| ns.clone()).collect()),
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
        if let Some(path) = &self.metrics_route {
            let scrape = parts.scrape.clone();
            router = router.route(
                path,
                axum::routing::get(move || {
                    let scrape = scrape.clone();
                    async move {
                        (
                            [(
                                http::header::CONTENT_TYPE,
                                crate::observe::metrics::CONTENT_TYPE,
                            )],
                            scrape.text(),
                        )
                    }
                }),
            );
        }
        let mut feed = None;
        if let (Some(config), Some(state)) = (self.inspector, parts.fleet) {
            let inspector = Inspector::new(
                config,
                parts.ns_list.clone(),
                state.clone(),
                parts.live.clone(),
                parts.shutting_down.clone(),
            );
            feed = Some(inspector.feed().clone());
            router = inspector.mount(router);
        }
        for (records, routes) in self.guarded {
            let chain: middleware::Chain = records
                .iter()
                .map(|record| {
                    erased_middleware(parts.container, record)
                        .expect("invariant: guarded_router registered this middleware")
                })
                .collect();
            router = router.merge(routes.route_layer(axum::middleware::from_fn_with_state(
                chain,
                middleware::guard_http,
            )));
        }
        let router = router
            .merge(self.user)
            .layer(axum::middleware::map_response(unknown_namespace));
        Assembled {
            router,
            attached,
            spec,
            feed,
        }
    }

    /// A route for each websocket service, the services with their namespaces, and the query
    /// parameters each service's middlewares read (for the AsyncAPI document).
    fn websocket_routes(&self, parts: &Parts<'_>) -> (Router, Vec<Attached>, Vec<Vec<QueryParam>>) {
        let container = parts.container;
        let globals: Arc<[(Arc<dyn ErasedMiddleware>, Scope)]> = self
            .globals
            .iter()
            .map(|(r, scope)| {
                let m = erased_middleware(container, r)
                    .expect("invariant: with_middleware registered this middleware");
                (m, scope.clone())
            })
            .collect();
        let mut router = Router::new();
        let mut attached: Vec<Attached> = Vec::new();
        let mut queries = Vec::new();
        for record in &container.order {
            let ComponentKind::WebSocket(ws) = &record.kind else {
                continue;
            };
            let Some(instance) = container.get((record.type_id)()) else {
                continue;
            };
            let ns = parts
                .namespaces
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
                        .and_then(|r| erased_middleware(container, r))
                        .expect("invariant: validated middleware is built")
                })
                .collect();
            let origins = self
                .origins_for
                .get(ws.path)
                .unwrap_or(&self.origins)
                .clone();
            let service = (ws.entry)(instance.clone());
            attached.push((service.clone(), ns.clone(), ws.name));
            let mut query: Vec<QueryParam> = Vec::new();
            let applying = globals.iter().filter(|(_, scope)| scope.matches(ws.path));
            for m in applying.map(|(m, _)| m).chain(&own) {
                for q in m.query() {
                    if !query.iter().any(|known| known.name == q.name) {
                        query.push(*q);
                    }
                }
            }
            queries.push(query);
            let endpoint = Arc::new(Route {
                ns,
                service,
                chain: own,
                origins,
                shutting_down: parts.shutting_down.clone(),
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
        (router, attached, queries)
    }
}

/// What the AsyncAPI document is made from.
pub(super) struct AsyncApiSpec {
    info: Info,
    pub(super) servers: Vec<ServerSpec>,
    services: Vec<(Arc<dyn ErasedService>, Vec<QueryParam>)>,
    /// With presence, each service's namespace (in the order of `services`).
    presence: Option<Vec<Namespace>>,
}

impl AsyncApiSpec {
    pub(super) fn document(&self, servers: &[ServerSpec]) -> serde_json::Value {
        let mut generator = asyncapi::generator();
        let channels: Vec<_> = self
            .services
            .iter()
            .enumerate()
            .map(|(i, (s, query))| {
                let mut spec = s.describe(&mut generator);
                spec.query = query.clone();
                if let Some(ns) = self.presence.as_ref().and_then(|list| list.get(i)) {
                    crate::presence::describe(&mut spec, ns);
                }
                spec
            })
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

/// The built middleware of `record`, type-erased as chains hold it; `None` when `record` is
/// not a middleware the container built.
fn erased_middleware(
    container: &Container,
    record: &ComponentRecord,
) -> Option<Arc<dyn ErasedMiddleware>> {
    match record.kind {
        ComponentKind::Middleware(entry) => {
            container.get((record.type_id)()).map(|i| entry(i.clone()))
        }
        _ => None,
    }
}
