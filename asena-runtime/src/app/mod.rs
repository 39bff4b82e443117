//! The app: [`AsenaBuilder`] builds and validates it (`builder.rs`), [`Asena`] is the running
//! handle, [`Server`] serves it over TCP (`serve.rs`). The app is the top layer: it wires the
//! container, the namespaces, the transport and the routes (`router.rs`) together, and
//! starts and stops them (`shutdown.rs`); nothing below it knows it exists.

mod builder;
mod error;
mod extract;
mod guarded;
mod router;
mod serve;
mod shutdown;

pub use builder::AsenaBuilder;
pub use error::Error;
pub use extract::{AppValue, FromApp};
pub use guarded::Middlewares;
pub use serve::Server;

use std::any::TypeId;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::Router;
use tokio::sync::watch;

use crate::di::{Component, Container};
use crate::namespace::Namespace;
use crate::observe::inspector::{Announcer, FleetState};
use crate::protocol::Endpoint;
use crate::shutdown::Tracker;
use crate::transport::{Transport, TransportStats};
use crate::ulak::{Ulak, UlakBroker};
use crate::ws::ErasedService;
use router::AsyncApiSpec;

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
    scrape: crate::observe::metrics::Scrape,
    /// Every websocket service with its namespace and name, for its protocol's start and stop.
    attached: Vec<Attached>,
    /// The fleet view, when the inspector is served or the instance announces itself.
    fleet: Option<Arc<FleetState>>,
    /// The inspector's WebSocket feed (not one of the app's namespaces).
    feed: Option<Namespace>,
    /// Announces the instance; set once the app has started.
    announcer: std::sync::OnceLock<Announcer>,
    /// Presence, when the app has it.
    presence: Option<Arc<crate::presence::Hub>>,
    #[cfg(feature = "redis")]
    history: Option<Arc<crate::history::Archive>>,
}

/// A websocket service, its namespace and its name.
type Attached = (Arc<dyn ErasedService>, Namespace, &'static str);

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
/// use asena_runtime::Asena;
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

    /// Writes [`Asena::asyncapi`], pretty-printed, to standard output, for an app that prints
    /// its protocol on request. The library reads no arguments; the app decides when:
    ///
    /// ```no_run
    /// # use asena_runtime::Asena;
    /// # async fn main_(builder: fn() -> asena_runtime::AsenaBuilder) -> anyhow::Result<()> {
    /// if std::env::args().any(|arg| arg == "--asyncapi") {
    ///     return Ok(builder().build().await?.print_asyncapi()?);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn print_asyncapi(&self) -> std::io::Result<()> {
        let mut json = serde_json::to_string_pretty(&self.asyncapi())?;
        json.push('\n');
        std::io::Write::write_all(&mut std::io::stdout().lock(), json.as_bytes())
    }

    /// The transport's counters (published, received, dropped, errors, reconnects), or
    /// `None` for a single instance (the local transport) or a transport that keeps none.
    pub fn transport_stats(&self) -> Option<TransportStats> {
        self.inner.transport.as_ref().and_then(|t| t.stats())
    }

    /// Whether the transport routes room messages by interest (NATS by default: each
    /// instance receives the messages of the rooms it has members in; see
    /// [`NatsTransport`](crate::transport::NatsTransport)). `transport_stats().subscriptions` then counts
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
}
