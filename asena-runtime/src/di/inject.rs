//! Field types `#[inject]` understands.

use std::sync::Arc;

use super::{Component, Dependency, DiError, Resolver};

/// A field type the container can fill.
///
/// Implemented for `Arc<T>` and `Option<Arc<T>>` of registered components, for
/// [`Ulak<N>`](crate::Ulak) and for [`UlakBroker`](crate::UlakBroker).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be injected",
    label = "not an injectable field type",
    note = "`#[inject]` accepts `Arc<T>` or `Option<Arc<T>>` for a registered component `T`, `Ulak<N>` for a websocket service `N`, or `UlakBroker`",
    note = "remove `#[inject]` to build the field with `Default::default()` instead"
)]
pub trait Inject: Sized {
    /// What this field needs from the container.
    const DEPENDENCY: Dependency;
    /// Builds the field; `field` names it in errors.
    fn resolve(resolver: &Resolver<'_>, field: &'static str) -> Result<Self, DiError>;
}

impl<T: Component> Inject for Arc<T> {
    const DEPENDENCY: Dependency = Dependency::required::<T>();
    fn resolve(resolver: &Resolver<'_>, field: &'static str) -> Result<Self, DiError> {
        resolver.get::<T>().ok_or_else(|| DiError::Unresolved {
            component: resolver.current().to_owned(),
            field,
            needs: std::any::type_name::<T>(),
        })
    }
}

impl<T: Component> Inject for Option<Arc<T>> {
    const DEPENDENCY: Dependency = Dependency::optional::<T>();
    fn resolve(resolver: &Resolver<'_>, _field: &'static str) -> Result<Self, DiError> {
        Ok(resolver.get::<T>())
    }
}
