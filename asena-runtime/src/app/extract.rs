//! Plain axum handlers next to the websocket routes: the [`FromApp`] extractor.

use std::sync::{Arc, Weak};

use axum::extract::FromRequestParts;
use http::StatusCode;
use http::request::Parts;

use super::{AppInner, Asena};
use crate::di::Component;
use crate::protocol::Endpoint;
use crate::ulak::{Ulak, UlakBroker};

/// A weak handle to the app, stored in every request's extensions.
#[derive(Clone)]
pub(crate) struct AppRef(pub(crate) Weak<AppInner>);

/// Takes a component (or an [`Ulak<N>`] / [`UlakBroker`]) from the app in an axum handler.
///
/// ```no_run
/// use asena_runtime::prelude::*;
/// use asena_runtime::{Asena, FromApp};
/// use axum::routing::post;
///
/// #[service]
/// struct Greeter;
/// impl Greeter { fn hello(&self) -> &'static str { "hello" } }
///
/// async fn hello(FromApp(greeter): FromApp<Greeter>) -> &'static str {
///     greeter.hello()
/// }
///
/// # async fn run() -> Result<(), asena_runtime::Error> {
/// Asena::builder()
///     .service::<Greeter>()
///     .router(axum::Router::new().route("/hello", post(hello)))
///     .build().await?
///     .serve("127.0.0.1:3000").await
/// # }
/// ```
#[derive(Debug)]
pub struct FromApp<T: ?Sized + AppValue>(pub T::Output);

/// What [`FromApp`] can take from the app: a registered component `T` (as `Arc<T>`), an
/// [`Ulak<N>`], or the [`UlakBroker`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be taken from the app with `FromApp`",
    note = "use `FromApp<T>` for a registered component `T`, `FromApp<Ulak<N>>`, or `FromApp<UlakBroker>`"
)]
pub trait AppValue {
    /// The extracted value.
    type Output;
    #[doc(hidden)]
    fn extract(app: &Asena) -> Option<Self::Output>;
}

impl<T: Component> AppValue for T {
    type Output = Arc<T>;
    fn extract(app: &Asena) -> Option<Arc<T>> {
        app.get::<T>()
    }
}

impl<N: Endpoint> AppValue for Ulak<N> {
    type Output = Ulak<N>;
    fn extract(app: &Asena) -> Option<Ulak<N>> {
        app.ulak::<N>()
    }
}

impl AppValue for UlakBroker {
    type Output = UlakBroker;
    fn extract(app: &Asena) -> Option<UlakBroker> {
        Some(app.broker().clone())
    }
}

impl<S: Send + Sync, T: AppValue + ?Sized> FromRequestParts<S> for FromApp<T> {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let app = parts
            .extensions
            .get::<AppRef>()
            .and_then(|a| a.0.upgrade())
            .map(Asena::from_inner)
            .ok_or((
                StatusCode::INTERNAL_SERVER_ERROR,
                "Asena app is not running",
            ))?;
        match T::extract(&app) {
            Some(v) => Ok(FromApp(v)),
            None => {
                tracing::error!(
                    target: "asena::di",
                    component = std::any::type_name::<T>(),
                    "FromApp<T>: the component is not registered in this app"
                );
                Err((
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "component not registered",
                ))
            }
        }
    }
}
