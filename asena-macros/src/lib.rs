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
    expand(item.clone(), service::expand(args.into(), item.into()))
}

/// Registers a struct as a middleware component. The struct must implement `Middleware`.
///
/// Arguments: `name = "..."`, `crate = path`.
#[proc_macro_attribute]
pub fn middleware(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(item.clone(), middleware::expand(args.into(), item.into()))
}

/// Registers a struct as a WebSocket service. The struct must implement `WebSocketService`.
///
/// Arguments: `path = "/chat"` (required, starts with `/`, may hold `{param}` segments),
/// `name = "ChatSocket"` (defaults to the type name), `middlewares = [A, B]` (run in this
/// order before the upgrade), `crate = path`.
#[proc_macro_attribute]
pub fn websocket(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(item.clone(), websocket::expand(args.into(), item.into()))
}

/// Turns a macro result into tokens. On error the original item is emitted unchanged next to
/// the `compile_error!`s, so one mistake does not cascade into "cannot find type" errors.
fn expand(item: TokenStream, result: syn::Result<proc_macro2::TokenStream>) -> TokenStream {
    match result {
        Ok(tokens) => tokens.into(),
        Err(err) => {
            let mut out: proc_macro2::TokenStream = strip_inject(item.into());
            out.extend(err.into_compile_error());
            out.into()
        }
    }
}

/// Removes `#[inject]` from the fields of an item we failed to expand, so rustc does not add
/// "cannot find attribute `inject`" to the real error.
fn strip_inject(item: proc_macro2::TokenStream) -> proc_macro2::TokenStream {
    match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Struct(mut s)) => {
            for field in s.fields.iter_mut() {
                field.attrs.retain(|a| !a.path().is_ident("inject"));
            }
            quote::ToTokens::into_token_stream(s)
        }
        _ => item,
    }
}
