//! Attribute macros for [Asena for Rust](https://docs.rs/asena-runtime).
//!
//! Do not depend on this crate directly: use `asena-runtime`, which re-exports every macro
//! and is the only path the generated code names (`::asena_runtime::__private`).
//!
//! - [`macro@service`] registers a plain component.
//! - [`macro@middleware`] registers a component that runs before the WebSocket upgrade.
//! - [`macro@websocket`] registers a WebSocket service on a path.
//!
//! Fields marked `#[inject]` are resolved from the container; every other field is built with
//! `Default::default()`.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::quote;

use crate::attr::Accepts;

mod attr;
mod component;
mod error;
mod middleware;
mod service;
mod websocket;

/// Registers a struct as a service component (a singleton in the app's container).
///
/// Arguments: `name = "..."` (defaults to the type name), `crate = path` (defaults to
/// `::asena_runtime`).
#[proc_macro_attribute]
pub fn service(args: TokenStream, item: TokenStream) -> TokenStream {
    let (args, item): (TokenStream2, TokenStream2) = (args.into(), item.into());
    expand(service::expand(args.clone(), item.clone()), || {
        component::stand_in(args, item, Accepts::Component, |_, _| quote!())
    })
}

/// Registers a struct as a middleware component. The struct must implement `Middleware`.
///
/// Arguments: `name = "..."`, `crate = path`.
#[proc_macro_attribute]
pub fn middleware(args: TokenStream, item: TokenStream) -> TokenStream {
    let (args, item): (TokenStream2, TokenStream2) = (args.into(), item.into());
    expand(middleware::expand(args.clone(), item.clone()), || {
        component::stand_in(args, item, Accepts::Component, |_, _| quote!())
    })
}

/// Registers a struct as a WebSocket service. The struct must implement `WebSocketService`.
///
/// Arguments: `path = "/chat"` (required, starts with `/`, may hold `{param}` segments; a
/// string alone first is the path: `#[websocket("/chat")]`), `name = "ChatSocket"` (defaults
/// to the type name), `middlewares = [A, B]` (run in this order before the upgrade),
/// `params = P`, `receives = I`, `sends = O` (a typed channel), `channel = C` (instead of the
/// path and the three types: a contract such as `asena-codegen` generates), `managed` (the
/// managed protocol), `crate = path`.
#[proc_macro_attribute]
pub fn websocket(args: TokenStream, item: TokenStream) -> TokenStream {
    let (args, item): (TokenStream2, TokenStream2) = (args.into(), item.into());
    expand(websocket::expand(args.clone(), item.clone()), || {
        component::stand_in(args, item, Accepts::WebSocket, websocket::channel_stand_in)
    })
}

/// Turns a macro result into tokens. On error, `stand_in` gives the item plus the impls other
/// code relies on, next to the `compile_error!`s, so one mistake is reported once instead of
/// cascading into "cannot find type" or "trait not implemented" errors.
fn expand(
    result: syn::Result<TokenStream2>,
    stand_in: impl FnOnce() -> TokenStream2,
) -> TokenStream {
    match result {
        Ok(tokens) => tokens.into(),
        Err(err) => {
            let mut out = stand_in();
            out.extend(err.into_compile_error());
            out.into()
        }
    }
}
