//! Optional `on_start` / `on_stop` hooks of components.
//!
//! A component opts in by implementing [`Lifecycle`]; the macros find the impl on their own
//! (through method-resolution probing), so components without hooks need nothing.

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use crate::error::BoxError;

/// Start and stop hooks of a component.
///
/// `on_start` runs after the app built every component, dependencies first; an error aborts
/// startup and names the component. `on_stop` runs on shutdown in reverse order, each bounded
/// by a timeout; failures are logged and the remaining hooks still run.
///
/// ```
/// use asena_runtime::prelude::*;
///
/// #[service]
/// struct Cache;
///
/// impl Lifecycle for Cache {
///     async fn on_start(&self) -> Result<()> {
///         // warm up, open connections ...
///         Ok(())
///     }
///     async fn on_stop(&self) {
///         // flush ...
///     }
/// }
/// ```
pub trait Lifecycle: Send + Sync + 'static {
    /// Runs once at startup, after the component's dependencies started.
    fn on_start(&self) -> impl Future<Output = Result<(), BoxError>> + Send {
        async { Ok(()) }
    }
    /// Runs once at shutdown, before the component's dependencies stop.
    fn on_stop(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
type StartFn = for<'a> fn(&'a (dyn Any + Send + Sync)) -> BoxFut<'a, Result<(), BoxError>>;
type StopFn = for<'a> fn(&'a (dyn Any + Send + Sync)) -> BoxFut<'a, ()>;

/// Type-erased hooks of one component type.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hooks {
    pub(crate) start: Option<StartFn>,
    pub(crate) stop: Option<StopFn>,
}

fn start_erased<T: Lifecycle>(this: &(dyn Any + Send + Sync)) -> BoxFut<'_, Result<(), BoxError>> {
    match this.downcast_ref::<T>() {
        Some(t) => Box::pin(t.on_start()),
        None => Box::pin(async { Ok(()) }),
    }
}

fn stop_erased<T: Lifecycle>(this: &(dyn Any + Send + Sync)) -> BoxFut<'_, ()> {
    match this.downcast_ref::<T>() {
        Some(t) => Box::pin(t.on_stop()),
        None => Box::pin(async {}),
    }
}

/// Probe used by generated code: `(&HookProbe::<T>::new()).hooks()` picks the
/// [`Lifecycle`] hooks when `T` implements it, and no hooks otherwise.
#[doc(hidden)]
#[derive(Debug)]
pub struct HookProbe<T>(PhantomData<T>);

impl<T> HookProbe<T> {
    #[doc(hidden)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

#[doc(hidden)]
pub trait ProbeLifecycle {
    fn hooks(&self) -> Hooks;
}

impl<T: Lifecycle> ProbeLifecycle for HookProbe<T> {
    fn hooks(&self) -> Hooks {
        Hooks {
            start: Some(start_erased::<T>),
            stop: Some(stop_erased::<T>),
        }
    }
}

#[doc(hidden)]
pub trait ProbeDefault {
    fn hooks(&self) -> Hooks;
}

impl<T> ProbeDefault for &HookProbe<T> {
    fn hooks(&self) -> Hooks {
        Hooks::default()
    }
}
