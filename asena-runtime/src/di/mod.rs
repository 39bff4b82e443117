//! Dependency injection wired at link time.
//!
//! The macros submit one [`ComponentRecord`] per annotated struct through `inventory`. At
//! startup the app snapshots those records (or the ones registered explicitly), validates the
//! whole graph at once, and builds every component exactly once in dependency order.
//!
//! The container knows components, not what they are for: values the app provides to
//! constructors (the [`UlakBroker`](crate::UlakBroker)) reach them through
//! [`Resolver::provided`], and field types opt in by implementing [`Injectable`].

mod container;
mod injectable;
mod lifecycle;
mod record;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

pub(crate) use container::{Container, Plan};
pub use container::{ContainerError, Problem};
pub use injectable::Injectable;
#[doc(hidden)]
pub use injectable::{FieldProbe, ProbePlainField, ProbeUninjectedComponent};
pub use lifecycle::Lifecycle;
#[doc(hidden)]
pub use lifecycle::{HookProbe, Hooks, ProbeDefault, ProbeLifecycle};
#[doc(hidden)]
pub use record::{
    AnyArc, ComponentKind, ComponentRecord, MiddlewareRef, Registration, WebSocketRecord,
};
pub use record::{Dependency, DependencyKind};
#[doc(hidden)]
pub use record::{assert_middleware, middleware_entry, websocket_entry};
pub(crate) use record::{registered, sort_records};

use http::Extensions;

/// A type registered with `#[service]`, `#[middleware]` or `#[websocket]`.
///
/// Implemented by the macros; not meant to be implemented by hand.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a registered component",
    label = "not a component",
    note = "annotate `{Self}` with `#[service]`, `#[middleware]` or `#[websocket(path = \"..\")]`"
)]
pub trait Component: Send + Sync + Sized + 'static {
    /// The registration record the macro emitted.
    fn record() -> &'static ComponentRecord;
    /// Builds the component, resolving its `#[inject]` fields.
    fn construct(resolver: &Resolver<'_>) -> Result<Self, DiError>;
}

/// Builds `T` and erases its type; referenced by generated records.
#[doc(hidden)]
pub fn construct_erased<T: Component>(resolver: &Resolver<'_>) -> Result<AnyArc, DiError> {
    Ok(Arc::new(T::construct(resolver)?))
}

/// What a component's constructor can see: the components built so far and the values the
/// app provides.
pub struct Resolver<'a> {
    pub(crate) instances: &'a HashMap<TypeId, AnyArc>,
    pub(crate) current: &'static str,
    pub(crate) provided: &'a Extensions,
}

impl std::fmt::Debug for Resolver<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("current", &self.current)
            .field("built", &self.instances.len())
            .finish()
    }
}

impl Resolver<'_> {
    /// The built instance of `T`, if `T` is registered.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.instances
            .get(&TypeId::of::<T>())
            .and_then(|any| Arc::clone(any).downcast::<T>().ok())
    }

    /// A value the app provides to every constructor (such as the
    /// [`UlakBroker`](crate::UlakBroker)), by type.
    pub fn provided<T: Clone + Send + Sync + 'static>(&self) -> Option<&T> {
        self.provided.get::<T>()
    }

    /// Name of the component being built.
    pub fn current(&self) -> &'static str {
        self.current
    }
}

/// A component could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiError {
    /// A field's dependency was not available when the component was built.
    #[error("{component}.{field} needs `{needs}`, which is not registered")]
    Unresolved {
        /// The component being built.
        component: String,
        /// The field.
        field: &'static str,
        /// The type it needs.
        needs: &'static str,
    },
    /// `Ulak<N>` names a type that is not a registered websocket service.
    #[error(
        "{component}.{field} injects `Ulak<{service}>`, but `{service}` is not a registered websocket service"
    )]
    NamespaceMissing {
        /// The component being built.
        component: String,
        /// The field.
        field: &'static str,
        /// The websocket service type.
        service: &'static str,
    },
}
