//! `#[service]`: a plain component.

use proc_macro2::TokenStream;
use quote::quote;

use crate::attr::{Accepts, parse_args, runtime_path};
use crate::component::{Expansion, expand as expand_component, parse_struct};

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let (args, component) = both(
        parse_args(args, Accepts::Component),
        parse_struct(item, "#[service]"),
    )?;
    Ok(expand_component(
        component,
        Expansion {
            rt: runtime_path(&args),
            name: args.name,
            kind: quote!(__asena::ComponentKind::Service),
            extra_deps: Vec::new(),
            extra_items: TokenStream::new(),
        },
    ))
}

/// Runs two checks and reports the errors of both.
pub(crate) fn both<A, B>(a: syn::Result<A>, b: syn::Result<B>) -> syn::Result<(A, B)> {
    match (a, b) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
        (Err(mut e1), Err(e2)) => {
            e1.combine(e2);
            Err(e1)
        }
    }
}
