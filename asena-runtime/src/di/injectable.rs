//! [`Injectable`]: the field types `#[inject]` understands.

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
pub trait Injectable: Sized {
    /// What this field needs from the container.
    const DEPENDENCY: Dependency;
    /// Builds the field; `field` names it in errors.
    fn resolve(resolver: &Resolver<'_>, field: &'static str) -> Result<Self, DiError>;
}

impl<T: Component> Injectable for Arc<T> {
    const DEPENDENCY: Dependency = Dependency::required::<T>();
    fn resolve(resolver: &Resolver<'_>, field: &'static str) -> Result<Self, DiError> {
        resolver.get::<T>().ok_or_else(|| DiError::Unresolved {
            component: resolver.current().to_owned(),
            field,
            needs: std::any::type_name::<T>(),
        })
    }
}

impl<T: Component> Injectable for Option<Arc<T>> {
    const DEPENDENCY: Dependency = Dependency::optional::<T>();
    fn resolve(resolver: &Resolver<'_>, _field: &'static str) -> Result<Self, DiError> {
        Ok(resolver.get::<T>())
    }
}

/// Probe used by generated code to warn about `Arc<T>` fields of a component `T` that lack
/// `#[inject]`: such a field gets its own `T::default()` instead of the app's shared `T`.
#[doc(hidden)]
#[derive(Debug)]
pub struct FieldProbe<T>(std::marker::PhantomData<T>);

impl<T> FieldProbe<T> {
    #[doc(hidden)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        FieldProbe(std::marker::PhantomData)
    }
}

#[doc(hidden)]
pub trait ProbeUninjectedComponent {
    #[deprecated(
        note = "this field holds a registered component but is not marked `#[inject]`: it gets a separate `Default::default()` instance, not the app's shared singleton. Add `#[inject]` (or wrap the value in your own type if a private instance is really meant)"
    )]
    fn __asena_check_field(&self) {}
}

impl<T: Component> ProbeUninjectedComponent for FieldProbe<Arc<T>> {}

#[doc(hidden)]
pub trait ProbePlainField {
    fn __asena_check_field(&self) {}
}

impl<T> ProbePlainField for &FieldProbe<T> {}
