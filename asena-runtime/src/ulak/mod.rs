//! Ulak: sending to sockets from anywhere, without dependency cycles.
//!
//! [`Ulak<N>`] is a typed handle to the namespace of websocket service `N`. Injecting it adds
//! no dependency edge to `N`: a service can hold `Ulak<ChatSocket>` while `ChatSocket` injects
//! that service. Use `Ulak<N>` whenever code only needs to *send* to `N`'s sockets; inject
//! `Arc<N>` only to call `N`'s own methods (and then `N` may not inject you back).
//!
//! [`UlakBroker`] is the app-wide broker for namespaces chosen at run time by path.

use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

use crate::di::{Component, Dependency, DiError, Inject, Resolver};
use crate::error::BoxError;
use crate::namespace::Namespace;
use crate::ws::{Frame, IntoFrame, WebSocketService};

/// What went wrong, as a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UlakErrorCode {
    /// No websocket service is registered at that path.
    NamespaceNotFound,
    /// A namespace with that path already exists (reserved for dynamic namespaces).
    NamespaceAlreadyExists,
    /// The path is not a namespace path (it must start with `/`).
    InvalidNamespace,
    /// The message could not be encoded (e.g. JSON serialisation failed).
    InvalidMessage,
    /// A send to a room or socket failed.
    SendFailed,
    /// A broadcast failed.
    BroadcastFailed,
    /// No local socket has that id and no transport could carry the message elsewhere.
    SocketNotFound,
    /// The broker was used before the app finished building.
    ServiceNotInitialized,
    /// The operation needs a transport to other instances, and the app has none.
    NoTransport,
    /// A transport was named that the app does not have.
    TransportNotFound,
    /// The operation did not finish in time.
    Timeout,
    /// Another instance reported an error.
    RemoteError,
}

/// An Ulak operation failed.
#[derive(Debug, thiserror::Error)]
#[error("{code:?}{}: {message}", namespace.as_deref().map(|n| format!(" on {n}")).unwrap_or_default())]
pub struct UlakError {
    /// The code.
    pub code: UlakErrorCode,
    /// The namespace involved, if any.
    pub namespace: Option<String>,
    /// What happened.
    pub message: String,
    /// The underlying error, if any.
    #[source]
    pub source: Option<BoxError>,
}

impl UlakError {
    pub(crate) fn new(code: UlakErrorCode, namespace: Option<&str>, message: impl Into<String>) -> Self {
        UlakError {
            code,
            namespace: namespace.map(str::to_owned),
            message: message.into(),
            source: None,
        }
    }

    fn invalid_message(namespace: &str, err: serde_json::Error) -> Self {
        UlakError {
            code: UlakErrorCode::InvalidMessage,
            namespace: Some(namespace.to_owned()),
            message: "message could not be encoded".into(),
            source: Some(Box::new(err)),
        }
    }
}

/// An untyped sending handle to one namespace; [`Ulak<N>`] dereferences to it, and
/// [`UlakBroker::namespace`] returns it.
#[derive(Clone, Debug)]
pub struct UlakNamespace {
    ns: Namespace,
}

impl UlakNamespace {
    fn encode(&self, message: impl IntoFrame) -> Result<Frame, UlakError> {
        message
            .into_frame()
            .map_err(|e| UlakError::invalid_message(self.ns.path(), e))
    }

    /// The namespace path.
    pub fn path(&self) -> &str {
        self.ns.path()
    }

    /// The namespace itself (sockets, rooms).
    pub fn namespace(&self) -> &Namespace {
        &self.ns
    }

    /// Sends to every socket of the namespace on every instance. Returns local recipients.
    pub fn broadcast(&self, message: impl IntoFrame) -> Result<usize, UlakError> {
        let frame = self.encode(message)?;
        Ok(self.ns.emit_all(&frame))
    }

    /// Sends to every member of `room` on every instance. Returns local recipients.
    pub fn to(&self, room: &str, message: impl IntoFrame) -> Result<usize, UlakError> {
        let frame = self.encode(message)?;
        Ok(self.ns.emit_room(room, &frame, None))
    }

    /// Sends to one socket by id. Locally unknown ids go to the other instances when the app
    /// has a transport, and fail with `SocketNotFound` when it does not.
    pub fn to_socket(&self, id: &str, message: impl IntoFrame) -> Result<(), UlakError> {
        let frame = self.encode(message)?;
        if let Some(socket) = self.ns.socket(id) {
            return socket.conn.push(&frame).map_err(|e| UlakError {
                code: UlakErrorCode::SendFailed,
                namespace: Some(self.ns.path().to_owned()),
                message: format!("send to socket {id} failed"),
                source: Some(Box::new(e)),
            });
        }
        if self.ns.has_transport() {
            self.ns.emit_room(id, &frame, None);
            return Ok(());
        }
        Err(UlakError::new(
            UlakErrorCode::SocketNotFound,
            Some(self.ns.path()),
            format!("no socket with id {id}"),
        ))
    }

    /// Sends to each of `rooms` (like calling [`to`](Self::to) for each; a socket in two of
    /// them gets the message twice). The message is encoded once. Returns local recipients.
    pub fn to_many<'r>(
        &self,
        rooms: impl IntoIterator<Item = &'r str>,
        message: impl IntoFrame,
    ) -> Result<usize, UlakError> {
        let frame = self.encode(message)?;
        Ok(rooms
            .into_iter()
            .map(|room| self.ns.emit_room(room, &frame, None))
            .sum())
    }

    /// Local sockets of the namespace.
    pub fn socket_count(&self) -> usize {
        self.ns.socket_count()
    }
}

/// Typed handle to the namespace of websocket service `N`. Cheap to clone; inject it with
/// `#[inject] notifications: Ulak<NotificationSocket>`.
pub struct Ulak<N> {
    inner: UlakNamespace,
    _service: PhantomData<fn() -> N>,
}

impl<N> Clone for Ulak<N> {
    fn clone(&self) -> Self {
        Ulak {
            inner: self.inner.clone(),
            _service: PhantomData,
        }
    }
}

impl<N> fmt::Debug for Ulak<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ulak")
            .field("service", &std::any::type_name::<N>())
            .field("path", &self.inner.path())
            .finish()
    }
}

impl<N> Deref for Ulak<N> {
    type Target = UlakNamespace;
    fn deref(&self) -> &UlakNamespace {
        &self.inner
    }
}

impl<N: WebSocketService + Component> Inject for Ulak<N> {
    const DEPENDENCY: Dependency = Dependency::namespace::<N>();
    fn resolve(resolver: &Resolver<'_>, field: &'static str) -> Result<Self, DiError> {
        resolver
            .broker()
            .ulak::<N>()
            .ok_or_else(|| DiError::NamespaceMissing {
                component: resolver.current().to_owned(),
                field,
                service: std::any::type_name::<N>(),
            })
    }
}

impl Inject for UlakBroker {
    const DEPENDENCY: Dependency = Dependency::nothing();
    fn resolve(resolver: &Resolver<'_>, _field: &'static str) -> Result<Self, DiError> {
        Ok(resolver.broker().clone())
    }
}

/// One operation of [`UlakBroker::bulk_send`].
#[derive(Debug)]
pub struct BulkOp {
    namespace: String,
    target: BulkTarget,
    message: Result<Frame, String>,
}

#[derive(Debug, Clone)]
enum BulkTarget {
    Room(String),
    Socket(String),
    Broadcast,
}

impl BulkOp {
    fn new(namespace: &str, target: BulkTarget, message: impl IntoFrame) -> BulkOp {
        BulkOp {
            namespace: namespace.to_owned(),
            target,
            message: message.into_frame().map_err(|e| e.to_string()),
        }
    }
    /// Send to a room of a namespace.
    pub fn to(namespace: &str, room: &str, message: impl IntoFrame) -> BulkOp {
        BulkOp::new(namespace, BulkTarget::Room(room.to_owned()), message)
    }
    /// Send to one socket of a namespace.
    pub fn to_socket(namespace: &str, id: &str, message: impl IntoFrame) -> BulkOp {
        BulkOp::new(namespace, BulkTarget::Socket(id.to_owned()), message)
    }
    /// Broadcast to a namespace.
    pub fn broadcast(namespace: &str, message: impl IntoFrame) -> BulkOp {
        BulkOp::new(namespace, BulkTarget::Broadcast, message)
    }
}

/// Per-operation outcome of a bulk send; the batch itself never fails.
#[derive(Debug)]
pub struct BulkResult {
    /// Operations attempted.
    pub total: usize,
    /// Operations that succeeded.
    pub succeeded: usize,
    /// Operations that failed.
    pub failed: usize,
    /// One result per operation, in order (`Ok` holds local recipients).
    pub results: Vec<Result<usize, UlakError>>,
}

impl BulkResult {
    fn from_results(results: Vec<Result<usize, UlakError>>) -> BulkResult {
        let succeeded = results.iter().filter(|r| r.is_ok()).count();
        BulkResult {
            total: results.len(),
            succeeded,
            failed: results.len() - succeeded,
            results,
        }
    }
}

/// The app-wide broker: every namespace by path. Cheap to clone; injectable.
#[derive(Clone)]
pub struct UlakBroker {
    inner: Arc<BrokerInner>,
}

struct BrokerInner {
    by_path: HashMap<String, Namespace>,
    by_type: HashMap<TypeId, Namespace>,
}

impl fmt::Debug for UlakBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UlakBroker")
            .field("namespaces", &self.namespaces())
            .finish()
    }
}

impl UlakBroker {
    pub(crate) fn new(namespaces: Vec<(TypeId, Namespace)>) -> UlakBroker {
        UlakBroker {
            inner: Arc::new(BrokerInner {
                by_path: namespaces
                    .iter()
                    .map(|(_, ns)| (ns.path().to_owned(), ns.clone()))
                    .collect(),
                by_type: namespaces.into_iter().collect(),
            }),
        }
    }

    /// The typed handle for websocket service `N`, if registered in this app.
    pub fn ulak<N: WebSocketService>(&self) -> Option<Ulak<N>> {
        self.inner.by_type.get(&TypeId::of::<N>()).map(|ns| Ulak {
            inner: UlakNamespace { ns: ns.clone() },
            _service: PhantomData,
        })
    }

    /// The namespace at `path` (e.g. `"/chat"`).
    pub fn namespace(&self, path: &str) -> Result<UlakNamespace, UlakError> {
        if !path.starts_with('/') {
            return Err(UlakError::new(
                UlakErrorCode::InvalidNamespace,
                Some(path),
                "namespace paths start with `/`",
            ));
        }
        self.inner
            .by_path
            .get(path)
            .map(|ns| UlakNamespace { ns: ns.clone() })
            .ok_or_else(|| {
                UlakError::new(
                    UlakErrorCode::NamespaceNotFound,
                    Some(path),
                    "no websocket service is registered at this path",
                )
            })
    }

    /// Paths of every namespace, sorted.
    pub fn namespaces(&self) -> Vec<String> {
        let mut paths: Vec<String> = self.inner.by_path.keys().cloned().collect();
        paths.sort();
        paths
    }

    /// Whether a namespace exists at `path`.
    pub fn has_namespace(&self, path: &str) -> bool {
        self.inner.by_path.contains_key(path)
    }

    /// Broadcasts to every namespace; one result per namespace, in path order.
    pub fn broadcast_all(&self, message: impl IntoFrame) -> BulkResult {
        let frame = match message.into_frame() {
            Ok(f) => f,
            Err(e) => {
                let msg = e.to_string();
                return BulkResult::from_results(
                    self.namespaces()
                        .iter()
                        .map(|p| {
                            Err(UlakError::new(UlakErrorCode::InvalidMessage, Some(p), msg.clone()))
                        })
                        .collect(),
                );
            }
        };
        let results = self
            .namespaces()
            .iter()
            .map(|p| Ok(self.inner.by_path[p].emit_all(&frame)))
            .collect();
        BulkResult::from_results(results)
    }

    /// Runs every operation; failures are reported per operation.
    pub fn bulk_send(&self, ops: impl IntoIterator<Item = BulkOp>) -> BulkResult {
        let results = ops
            .into_iter()
            .map(|op| {
                let ns = self.namespace(&op.namespace)?;
                let frame = op.message.map_err(|m| {
                    UlakError::new(UlakErrorCode::InvalidMessage, Some(&op.namespace), m)
                })?;
                match op.target {
                    BulkTarget::Room(room) => ns.to(&room, &frame),
                    BulkTarget::Broadcast => ns.broadcast(&frame).map_err(|mut e| {
                        e.code = UlakErrorCode::BroadcastFailed;
                        e
                    }),
                    BulkTarget::Socket(id) => ns.to_socket(&id, &frame).map(|()| 1),
                }
            })
            .collect();
        BulkResult::from_results(results)
    }
}
