//! Ulak: sending to sockets from anywhere, without dependency cycles.
//!
//! # `Ulak<N>` or the socket service itself?
//!
//! [`Ulak<N>`] is a typed handle to the *namespace* of websocket service `N` (its sockets and
//! rooms), not to the service. It is resolved through the app's broker, so injecting it adds
//! **no dependency edge** to `N`: a `#[service]` may hold `Ulak<NotificationSocket>` while
//! `NotificationSocket` injects that service, and the app starts fine.
//!
//! - Inject **`Ulak<N>`** whenever code only needs to *send* to `N`'s clients — business
//!   services, HTTP handlers ([`Inject<Ulak<N>>`](crate::Inject)), background jobs — and
//!   always when `N` injects you back. The type parameter makes a wrong namespace a compile
//!   error, and it is cheap to clone (one `Arc`).
//! - Inject **`Arc<N>`** only to call `N`'s own methods (state the service keeps, helpers it
//!   defines). That is a real dependency: `N` is built first, and `N` may not inject you back
//!   (that cycle is reported at startup as `Circular dependency detected: A -> B -> A`).
//! - Use **[`UlakBroker`]** when the namespace is chosen at run time by path
//!   ([`UlakBroker::namespace`]), to reach every namespace ([`UlakBroker::broadcast_all`]), or
//!   to send a batch ([`UlakBroker::bulk_send`]).
//!
//! ```
//! use asena_runtime::prelude::*;
//!
//! #[service]
//! struct UserService {
//!     #[inject]
//!     notifications: Ulak<NotificationSocket>, // no edge: no cycle
//! }
//!
//! impl UserService {
//!     fn profile_changed(&self, user_id: &str) -> Result<(), asena_runtime::UlakError> {
//!         let room = format!("user:{user_id}");
//!         self.notifications.to(&room, Json(json!({"type": "profile_updated"})))?;
//!         Ok(())
//!     }
//! }
//!
//! #[websocket(path = "/notifications", name = "NotificationSocket")]
//! struct NotificationSocket {
//!     #[inject]
//!     users: Arc<UserService>, // the socket service may depend on the service
//! }
//!
//! impl WebSocketService for NotificationSocket {
//!     type Data = ();
//!     async fn on_message(&self, _ws: &Socket<()>, _msg: Message) -> Result<()> {
//!         Ok(())
//!     }
//! }
//! ```
//!
//! # Messages
//! Everything sent follows one rule ([`IntoFrame`]): `&str`/`String` go out as text frames
//! exactly as given (a string is never re-quoted as JSON), bytes (`&[u8]`, `Vec<u8>`,
//! `Bytes`) as binary frames, and any `Serialize` value as JSON text through [`Json`](crate::Json)
//! (a `serde_json::Value` is JSON already). A message is encoded once per call, however many
//! sockets receive it.
//!
//! # Where messages go
//! Room sends and broadcasts reach local sockets directly and every other instance through
//! the app's [`Transport`](crate::Transport); the returned counts are *local* recipients.
//! [`UlakNamespace::to_socket`] delivers to a local socket, forwards to the other instances
//! when the id is unknown here and a transport exists, and fails with
//! [`SocketNotFound`](UlakErrorCode::SocketNotFound) when there is no transport.
//!
//! # Errors
//! Every failure is an [`UlakError`] with a stable [`UlakErrorCode`]. Batch operations
//! ([`UlakBroker::bulk_send`], [`UlakBroker::broadcast_all`]) never fail as a whole: they
//! return a [`BulkResult`] with one result per item. The codes this version produces:
//!
//! | code | when |
//! |---|---|
//! | `NamespaceNotFound` | [`UlakBroker::namespace`] (and bulk items) for a path no service serves |
//! | `InvalidNamespace` | a path that does not start with `/` |
//! | `InvalidMessage` | a [`Json`](crate::Json) value that cannot be serialised |
//! | `SendFailed` | `to_socket` to a local socket that is closing or whose queue is full |
//! | `SocketNotFound` | `to_socket` to an id unknown here, with no transport to forward it |
//!
//! The other codes are reserved so that matching code keeps compiling as the API grows:
//! `NamespaceAlreadyExists` (namespaces are fixed when the app is built; duplicate paths are
//! a startup error), `BroadcastFailed` (a local broadcast cannot fail as a whole; transport
//! publishing is asynchronous, and its failures are logged and counted by the transport),
//! `ServiceNotInitialized` (handles exist only once the app is built), `NoTransport`,
//! `TransportNotFound`, `Timeout` and `RemoteError` (for acknowledged and remote operations).

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
    /// Reserved: a namespace with that path already exists. Namespaces are fixed when the
    /// app is built (duplicate paths are a startup error), so this version never returns it.
    NamespaceAlreadyExists,
    /// The path is not a namespace path (it must start with `/`).
    InvalidNamespace,
    /// The message could not be encoded (JSON serialisation failed).
    InvalidMessage,
    /// A send to a local socket failed: it is closing, or its send queue is full.
    SendFailed,
    /// Reserved: a broadcast failed as a whole. Local broadcasts cannot; transport
    /// publishing is asynchronous and its failures are logged by the transport.
    BroadcastFailed,
    /// No local socket has that id and no transport could carry the message elsewhere.
    SocketNotFound,
    /// Reserved: a handle was used before the app was built. Handles only exist afterwards.
    ServiceNotInitialized,
    /// Reserved: the operation needs a transport to other instances and the app has none.
    NoTransport,
    /// Reserved: a transport was named that the app does not have.
    TransportNotFound,
    /// Reserved: an acknowledged or remote operation did not finish in time.
    Timeout,
    /// Reserved: another instance reported an error.
    RemoteError,
}

impl UlakErrorCode {
    /// The code as Asena spells it on the wire and in logs (`"NAMESPACE_NOT_FOUND"`).
    pub fn as_str(self) -> &'static str {
        match self {
            UlakErrorCode::NamespaceNotFound => "NAMESPACE_NOT_FOUND",
            UlakErrorCode::NamespaceAlreadyExists => "NAMESPACE_ALREADY_EXISTS",
            UlakErrorCode::InvalidNamespace => "INVALID_NAMESPACE",
            UlakErrorCode::InvalidMessage => "INVALID_MESSAGE",
            UlakErrorCode::SendFailed => "SEND_FAILED",
            UlakErrorCode::BroadcastFailed => "BROADCAST_FAILED",
            UlakErrorCode::SocketNotFound => "SOCKET_NOT_FOUND",
            UlakErrorCode::ServiceNotInitialized => "SERVICE_NOT_INITIALIZED",
            UlakErrorCode::NoTransport => "NO_TRANSPORT",
            UlakErrorCode::TransportNotFound => "TRANSPORT_NOT_FOUND",
            UlakErrorCode::Timeout => "TIMEOUT",
            UlakErrorCode::RemoteError => "REMOTE_ERROR",
        }
    }
}

impl fmt::Display for UlakErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An Ulak operation failed.
#[derive(Debug, thiserror::Error)]
#[error("{code}{}: {message}", namespace.as_deref().map(|n| format!(" on {n}")).unwrap_or_default())]
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
    pub(crate) fn new(
        code: UlakErrorCode,
        namespace: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        UlakError {
            code,
            namespace: namespace.map(str::to_owned),
            message: message.into(),
            source: None,
        }
    }

    fn invalid_message(
        namespace: &str,
        err: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        UlakError {
            code: UlakErrorCode::InvalidMessage,
            namespace: Some(namespace.to_owned()),
            message: "message could not be encoded as JSON".into(),
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
    message: Result<Frame, serde_json::Error>,
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
            message: message.into_frame(),
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

    /// Broadcasts to every namespace; one result per namespace, in path order (`Ok` holds
    /// local recipients). A message that cannot be encoded fails every item with
    /// `InvalidMessage`.
    pub fn broadcast_all(&self, message: impl IntoFrame) -> BulkResult {
        let paths = self.namespaces();
        let results = match message.into_frame() {
            Ok(frame) => paths
                .iter()
                .map(|p| Ok(self.inner.by_path[p].emit_all(&frame)))
                .collect(),
            Err(e) => {
                let e = Arc::new(e);
                paths
                    .iter()
                    .map(|p| Err(UlakError::invalid_message(p, e.clone())))
                    .collect()
            }
        };
        BulkResult::from_results(results)
    }

    /// Runs every operation in order; each one's failure is reported in its own result
    /// (`NamespaceNotFound`, `InvalidNamespace`, `InvalidMessage`, `SocketNotFound`,
    /// `SendFailed`) and never stops the others. `Ok` holds local recipients (1 for a
    /// delivered or forwarded `to_socket`).
    pub fn bulk_send(&self, ops: impl IntoIterator<Item = BulkOp>) -> BulkResult {
        let results = ops
            .into_iter()
            .map(|op| {
                let ns = self.namespace(&op.namespace)?;
                let frame = op
                    .message
                    .map_err(|e| UlakError::invalid_message(&op.namespace, e))?;
                match op.target {
                    BulkTarget::Room(room) => ns.to(&room, &frame),
                    BulkTarget::Broadcast => ns.broadcast(&frame),
                    BulkTarget::Socket(id) => ns.to_socket(&id, &frame).map(|()| 1),
                }
            })
            .collect();
        BulkResult::from_results(results)
    }
}
