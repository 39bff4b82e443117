//! The const registration records the macros emit, and what the container reads from them.

use std::any::{Any, TypeId};
use std::sync::Arc;

use super::{Component, DiError, Hooks, Resolver};
use crate::middleware::{self, ErasedMiddleware, Middleware};
use crate::protocol::Endpoint;
use crate::ws::{self, ErasedService};

/// A component instance with its type erased.
pub type AnyArc = Arc<dyn Any + Send + Sync>;

/// One registered component: plain const data and fn pointers, nothing runs before `main`.
#[derive(Debug)]
pub struct ComponentRecord {
    /// The component's name (`name = "..."`, or the type name).
    pub name: &'static str,
    /// `std::any::type_name` of the component type.
    pub type_name: fn() -> &'static str,
    /// `TypeId` of the component type.
    pub type_id: fn() -> TypeId,
    /// Where the component was declared.
    pub module_path: &'static str,
    /// What the component needs from the container.
    pub deps: &'static [Dependency],
    /// Builds the component from its dependencies.
    pub construct: fn(&Resolver<'_>) -> Result<AnyArc, DiError>,
    /// Its lifecycle hooks.
    pub hooks: fn() -> Hooks,
    /// Service, middleware or WebSocket service.
    pub kind: ComponentKind,
}

impl ComponentRecord {
    /// The kind as a word, for messages and logs.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            ComponentKind::Service => "service",
            ComponentKind::Middleware(_) => "middleware",
            ComponentKind::WebSocket(_) => "websocket",
        }
    }

    pub(crate) fn websocket(&self) -> Option<&WebSocketRecord> {
        match &self.kind {
            ComponentKind::WebSocket(ws) => Some(ws),
            _ => None,
        }
    }
}

/// What sort of component a record describes.
#[derive(Debug)]
#[non_exhaustive]
pub enum ComponentKind {
    /// `#[service]`.
    Service,
    /// `#[middleware]`, with the function that turns the instance into a chain link.
    Middleware(fn(AnyArc) -> Arc<dyn ErasedMiddleware>),
    /// `#[websocket]`.
    WebSocket(WebSocketRecord),
}

/// The WebSocket part of a `#[websocket]` record.
#[derive(Debug)]
pub struct WebSocketRecord {
    /// Route path, e.g. `/chat` or `/user/{id}`.
    pub path: &'static str,
    /// Service name.
    pub name: &'static str,
    /// The service's own middlewares, in declared order.
    pub middlewares: &'static [MiddlewareRef],
    /// Turns the instance into something the router can serve.
    pub entry: fn(AnyArc) -> Arc<dyn ErasedService>,
}

/// A middleware named in `middlewares = [..]`.
#[derive(Debug)]
pub struct MiddlewareRef {
    /// `TypeId` of the middleware type.
    pub type_id: fn() -> TypeId,
    /// Its type name.
    pub type_name: fn() -> &'static str,
}

/// One thing a component needs.
#[derive(Debug, Clone, Copy)]
pub struct Dependency {
    /// `TypeId` of the needed component.
    pub type_id: fn() -> TypeId,
    /// Its type name.
    pub type_name: fn() -> &'static str,
    /// How it is needed.
    pub kind: DependencyKind,
}

/// How a component needs another one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DependencyKind {
    /// Must be registered; built first (`Arc<T>`).
    Required,
    /// Built first when registered, `None` otherwise (`Option<Arc<T>>`).
    Optional,
    /// Must be a registered WebSocket service, but adds no ordering edge (`Ulak<N>`).
    Namespace,
    /// Nothing from the container (`UlakBroker`, app handles).
    Nothing,
}

impl Dependency {
    /// `Arc<T>`.
    pub const fn required<T: 'static>() -> Self {
        Self::of::<T>(DependencyKind::Required)
    }
    /// `Option<Arc<T>>`.
    pub const fn optional<T: 'static>() -> Self {
        Self::of::<T>(DependencyKind::Optional)
    }
    /// `Ulak<N>`.
    pub const fn namespace<T: 'static>() -> Self {
        Self::of::<T>(DependencyKind::Namespace)
    }
    /// Needs nothing from the container.
    pub const fn nothing() -> Self {
        Self::of::<()>(DependencyKind::Nothing)
    }
    const fn of<T: 'static>(kind: DependencyKind) -> Self {
        Self {
            type_id: TypeId::of::<T>,
            type_name: std::any::type_name::<T>,
            kind,
        }
    }
}

/// The item `inventory` collects: a pointer to a component's record.
#[derive(Debug)]
pub struct Registration(pub &'static ComponentRecord);

inventory::collect!(Registration);

/// Every record linked into this binary, sorted by (path, name, type) so order never depends
/// on the linker.
pub(crate) fn registered() -> Vec<&'static ComponentRecord> {
    let mut all: Vec<&'static ComponentRecord> = inventory::iter::<Registration>
        .into_iter()
        .map(|r| r.0)
        .collect();
    sort_records(&mut all);
    all
}

pub(crate) fn sort_records(records: &mut [&'static ComponentRecord]) {
    records.sort_by_key(|r| {
        (
            r.websocket().map(|w| w.path).unwrap_or(""),
            r.name,
            (r.type_name)(),
        )
    });
}

/// The built instance behind an erased record entry.
fn downcast<T: Send + Sync + 'static>(instance: AnyArc) -> Arc<T> {
    instance.downcast::<T>().unwrap_or_else(|_| {
        panic!(
            "invariant: record of {} built another type",
            std::any::type_name::<T>()
        )
    })
}

/// Turns a built middleware into a chain link; referenced by generated records.
#[doc(hidden)]
pub fn middleware_entry<M: Middleware + Component>(instance: AnyArc) -> Arc<dyn ErasedMiddleware> {
    middleware::erase(downcast::<M>(instance), M::record().name)
}

/// Wraps a built websocket service for the router; referenced by generated records.
#[doc(hidden)]
pub fn websocket_entry<S: Endpoint>(instance: AnyArc) -> Arc<dyn ErasedService> {
    ws::erase(downcast::<S>(instance))
}

/// Compile-time check that a type listed in `middlewares = [..]` is a middleware component.
#[doc(hidden)]
pub fn assert_middleware<M: Middleware + Component>() {}
