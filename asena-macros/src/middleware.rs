//! `#[middleware]`: a component that runs before the WebSocket upgrade.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};

use crate::attr::{Accepts, runtime_path};
use crate::component::{Expansion, expand as expand_component, parse_attribute};

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let (args, component) = parse_attribute(args, item, Accepts::Component, "#[middleware]")?;
    let ident = component.item.ident.clone();
    Ok(expand_component(
        component,
        Expansion {
            rt: runtime_path(&args),
            name: args.name,
            kind: quote_spanned!(ident.span()=>
                __asena::ComponentKind::Middleware(__asena::middleware_entry::<#ident>)
            ),
            extra_deps: Vec::new(),
            extra_items: quote!(),
        },
    ))
}
