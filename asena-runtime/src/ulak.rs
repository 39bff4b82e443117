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
//!   services, HTTP handlers ([`FromApp<Ulak<N>>`](crate::FromApp)), background jobs — and
//!   always when `N` injects you back. The type parameter makes a wrong namespace a compile
//!   error, and it is cheap to clone (one `Arc`).
//! - Inject **`Arc<N>`** only to call `N`'s own methods (state the service keeps, helpers it
//!   defines). That is a real dependency: `N` is built first, and `N` may not inject you back
//!   (that cycle is reported at startup as `Circular dependency detected: A -> B -> A`).
//! - Inject **`Ulak<Self>`** in a socket service to send from its own methods, as Asena's
//!   `this.to(room, data)`, `this.in(data)` and `this.sockets` do inside a service: the
//!   handle is the service's own namespace, reached without a cycle, and code holding the
//!   service (`Arc<ChatSocket>`) calls those methods.
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
//!     fn profile_changed(&self, user_id: &str) -> Result<(), asena_runtime::SendError> {
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
//!     async fn on_message(&self, _ws: &Socket<Self>, _msg: Message) -> Result<()> {
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
//! [`Ulak<N>`] dereferences to `N`'s [`Namespace`], the one sending handle: room sends and
//! broadcasts reach local sockets directly and every other instance through the app's
//! [`Transport`](crate::transport::Transport); the returned counts are *local* recipients.
//! [`Namespace::to_socket`] delivers to a local socket, forwards to the other instances when
//! the id is unknown here and a transport exists, and fails with
//! [`SocketNotFound`](SendErrorCode::SocketNotFound) when there is no transport.
//!
//! # Errors
//! Every failure is a [`SendError`] with a stable [`SendErrorCode`]. Batch operations
//! ([`UlakBroker::bulk_send`], [`UlakBroker::broadcast_all`]) never fail as a whole: they
//! return a [`BulkResult`] with one result per item. The codes:
//!
//! | code | when |
//! |---|---|
//! | `NamespaceNotFound` | [`UlakBroker::namespace`] (and bulk items) for a path no service serves |
//! | `InvalidNamespace` | a path that does not start with `/` |
//! | `InvalidMessage` | a [`Json`](crate::Json) value that cannot be serialised |
//! | `SendFailed` | a send to a local socket that is closing or whose queue is full |
//! | `SocketNotFound` | `to_socket` to an id unknown here, with no transport to forward it |

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

use crate::channel::Channel;
use crate::codec::{Frame, IntoFrame};
use crate::di::{Component, Dependency, DiError, Injectable, Resolver};
use crate::managed::{Managed, ManagedService};
use crate::namespace::{Namespace, SendError, SendErrorCode, Socket, SocketRef};
use crate::protocol::Endpoint;

/// Typed handle to the namespace of websocket service `N`. Cheap to clone; inject it with
/// `#[inject] notifications: Ulak<NotificationSocket>`. Dereferences to the service's
/// [`Namespace`], which for a service declared with `sends = T` accepts only `T`
/// (`ulak.raw()` is the untyped namespace).
///
/// The struct itself puts no bound on `N` (the impls do), so a mistaken `Ulak<SomeService>`
/// field is reported once, where it is injected, with the hint to inject `Arc<SomeService>`.
pub struct Ulak<N> {
    /// The `Namespace<N::Out>`, erased so the struct's type needs no `N: Channel`.
    ns: Arc<dyn Any + Send + Sync>,
    _service: PhantomData<fn() -> N>,
}

impl<N: Channel> Ulak<N> {
    fn new(ns: Namespace<N::Out>) -> Self {
        Ulak {
            ns: Arc::new(ns),
            _service: PhantomData,
        }
    }
}

/// `N`'s sockets with `N`'s types: the [`Namespace`]'s listings give [`SocketRef`]s, which
/// know nothing of the service; these give [`Socket<N>`]s, whose [`params`](Socket::params)
/// and [`data`](Socket::data) are `N`'s. `ulak.raw()` lists the untyped handles.
impl<N: Endpoint> Ulak<N> {
    /// The local socket with this id, if it is connected here.
    pub fn socket(&self, id: &str) -> Option<Socket<N>> {
        Deref::deref(self).socket(id).map(Socket::of_service)
    }

    /// Every local socket.
    pub fn sockets(&self) -> Vec<Socket<N>> {
        typed(Deref::deref(self).sockets())
    }

    /// The local members of `room` (a socket id names that socket's personal room).
    pub fn sockets_in(&self, room: &str) -> Vec<Socket<N>> {
        typed(Deref::deref(self).sockets_in(room))
    }
}

/// Sockets of `N`'s namespace as `N`'s sockets.
fn typed<N: Endpoint>(sockets: Vec<SocketRef<N::Out>>) -> Vec<Socket<N>> {
    sockets.into_iter().map(Socket::of_service).collect()
}

impl<N> Clone for Ulak<N> {
    fn clone(&self) -> Self {
        Ulak {
            ns: self.ns.clone(),
            _service: PhantomData,
        }
    }
}

impl<N: Channel> fmt::Debug for Ulak<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ulak")
            .field("service", &std::any::type_name::<N>())
            .field("path", &self.path())
            .finish()
    }
}

impl<N: Channel> Deref for Ulak<N> {
    type Target = Namespace<N::Out>;
    fn deref(&self) -> &Namespace<N::Out> {
        self.ns
            .downcast_ref()
            .expect("Ulak::new stores a Namespace<N::Out>")
    }
}

impl<N: Endpoint + Component> Injectable for Ulak<N> {
    const DEPENDENCY: Dependency = Dependency::namespace::<N>();
    fn resolve(resolver: &Resolver<'_>, field: &'static str) -> Result<Self, DiError> {
        resolver
            .provided::<UlakBroker>()
            .and_then(|broker| broker.ulak::<N>())
            .ok_or_else(|| DiError::NamespaceMissing {
                component: resolver.current().to_owned(),
                field,
                service: std::any::type_name::<N>(),
            })
    }
}

impl<N: ManagedService> Ulak<N> {
    /// The managed-protocol sender of `N`, a service declared `managed`: to a client, a
    /// user's every session, a room or everyone, on every instance.
    pub fn managed(&self) -> Managed<N::Out> {
        Deref::deref(self).managed()
    }
}

impl Injectable for UlakBroker {
    const DEPENDENCY: Dependency = Dependency::nothing();
    fn resolve(resolver: &Resolver<'_>, field: &'static str) -> Result<Self, DiError> {
        resolver
            .provided::<UlakBroker>()
            .cloned()
            .ok_or_else(|| DiError::Unresolved {
                component: resolver.current().to_owned(),
                field,
                needs: "UlakBroker",
            })
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
    pub results: Vec<Result<usize, SendError>>,
}

impl BulkResult {
    fn from_results(results: Vec<Result<usize, SendError>>) -> BulkResult {
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
    pub fn ulak<N: Endpoint>(&self) -> Option<Ulak<N>> {
        self.inner
            .by_type
            .get(&TypeId::of::<N>())
            .map(|ns| Ulak::new(ns.retype()))
    }

    /// The namespace at `path` (e.g. `"/chat"`).
    pub fn namespace(&self, path: &str) -> Result<Namespace, SendError> {
        if !path.starts_with('/') {
            return Err(SendError::new(
                SendErrorCode::InvalidNamespace,
                Some(path),
                "namespace paths start with `/`",
            ));
        }
        self.inner.by_path.get(path).cloned().ok_or_else(|| {
            SendError::new(
                SendErrorCode::NamespaceNotFound,
                Some(path),
                "no websocket service is registered at this path",
            )
        })
    }

    /// Sends to every member of `room` of the namespace at `path`, on every instance (Asena's
    /// `ulak.to('/chat', room, data)`, for code that does not know the service's type).
    /// Returns the local recipients.
    pub fn to(&self, path: &str, room: &str, message: impl IntoFrame) -> Result<usize, SendError> {
        self.namespace(path)?.to(room, message)
    }

    /// Sends to every socket of the namespace at `path`, on every instance (Asena's
    /// `ulak.broadcast('/chat', data)`). Returns the local recipients.
    pub fn broadcast(&self, path: &str, message: impl IntoFrame) -> Result<usize, SendError> {
        self.namespace(path)?.broadcast(message)
    }

    /// Sends to the socket `id` of the namespace at `path`, wherever in the fleet it is
    /// (Asena's `ulak.toSocket('/chat', id, data)`).
    #[doc(alias = "toSocket")]
    pub fn to_socket(
        &self,
        path: &str,
        id: &str,
        message: impl IntoFrame,
    ) -> Result<(), SendError> {
        self.namespace(path)?.to_socket(id, message)
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
                    .map(|p| Err(SendError::invalid_message(Some(p), e.clone())))
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
                    .map_err(|e| SendError::invalid_message(Some(&op.namespace), e))?;
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
