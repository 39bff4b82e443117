//! `#[service]`: a plain component.

use proc_macro2::TokenStream;
use quote::quote;

use crate::attr::{Accepts, runtime_path};
use crate::component::{Expansion, expand as expand_component, parse_attribute};

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let (args, component) = parse_attribute(args, item, Accepts::Component, "#[service]")?;
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
