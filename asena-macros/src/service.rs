//! `#[service]`: a plain component.

use proc_macro2::TokenStream;
use quote::quote;

use crate::attr::{Accepts, parse_args, runtime_path};
use crate::component::{Expansion, expand as expand_component, parse_struct};
use crate::error::both;

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
