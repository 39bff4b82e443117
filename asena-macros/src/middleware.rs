//! `#[middleware]`: a component that runs before the WebSocket upgrade.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};

use crate::attr::{Accepts, parse_args, runtime_path};
use crate::component::{Expansion, expand as expand_component, parse_struct};
use crate::error::both;

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let (args, component) = both(
        parse_args(args, Accepts::Component),
        parse_struct(item, "#[middleware]"),
    )?;
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
