//! `#[websocket(path = "...", name = "...", middlewares = [..], managed)]`: a WebSocket service
//! and the protocol it speaks (`managed`: the managed protocol; otherwise its channel's messages).

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::LitStr;
use syn::spanned::Spanned;

use crate::attr::{Accepts, Args, runtime_path};
use crate::component::{Expansion, expand as expand_component, parse_attribute};

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let (args, component) = parse_attribute(args, item, Accepts::WebSocket, "#[websocket]")?;
    let ident = component.item.ident.clone();
    let path = match (&args.path, &args.channel) {
        (Some(path), None) => {
            validate_path(path)?;
            let path = path.value();
            quote!(#path)
        }
        (None, Some(channel)) => {
            if let Some(ty) = [&args.params, &args.receives, &args.sends]
                .into_iter()
                .flatten()
                .next()
            {
                return Err(syn::Error::new(
                    ty.span(),
                    "`channel` declares the path parameters and messages; remove `params`, \
                     `receives` and `sends`",
                ));
            }
            quote_spanned!(channel.span()=> <#channel as __asena::Channel>::PATH)
        }
        (Some(path), Some(_)) => {
            return Err(syn::Error::new(
                path.span(),
                "`channel` declares the path; remove `path`",
            ));
        }
        (None, None) => {
            return Err(syn::Error::new(
                proc_macro2::Span::call_site(),
                "#[websocket] needs a `path`\nhint: `#[websocket(path = \"/chat\")]`, or \
                 `#[websocket(channel = user_events::UserEvents)]` for a generated contract",
            ));
        }
    };
    let name = match &args.name {
        Some(name) => name.value(),
        None => ident.to_string(),
    };
    let rt = runtime_path(&args);
    let socket_impls = socket_impls(&args, &ident, &path, &name);
    let middlewares: Vec<syn::Path> = args.middlewares.map(|m| m.1).unwrap_or_default();
    let refs = middlewares.iter().map(|m| {
        quote_spanned!(m.span()=> __asena::MiddlewareRef {
            type_id: ::core::any::TypeId::of::<#m>,
            type_name: ::core::any::type_name::<#m>,
        })
    });
    let deps = middlewares
        .iter()
        .map(|m| quote_spanned!(m.span()=> __asena::Dependency::required::<#m>()))
        .collect();
    let checks = middlewares
        .iter()
        .map(|m| quote_spanned!(m.span()=> __asena::assert_middleware::<#m>();));
    Ok(expand_component(
        component,
        Expansion {
            rt,
            name: args.name,
            kind: quote_spanned!(ident.span()=>
                __asena::ComponentKind::WebSocket(__asena::WebSocketRecord {
                    path: #path,
                    name: #name,
                    middlewares: &[#(#refs,)*],
                    entry: __asena::websocket_entry::<#ident>,
                })
            ),
            extra_deps: deps,
            extra_items: quote! {
                #[allow(dead_code)]
                fn __asena_checks() { #(#checks)* }
                #socket_impls
            },
        },
    ))
}

/// The protocol a socket speaks: the managed one when declared `managed`.
fn protocol_type(args: &Args) -> TokenStream {
    match args.managed {
        Some(span) => quote_spanned!(span=> __asena::ManagedProtocol),
        None => quote!(__asena::ChannelProtocol),
    }
}

/// The `Params`, `In` and `Out` types of a socket's `Channel` impl: the `channel`'s, the
/// declared ones, or `()`, `Message` and `Raw`.
fn channel_types(args: &Args) -> (TokenStream, TokenStream, TokenStream) {
    if let Some(channel) = &args.channel {
        return (
            quote_spanned!(channel.span()=> <#channel as __asena::Channel>::Params),
            quote_spanned!(channel.span()=> <#channel as __asena::Channel>::In),
            quote_spanned!(channel.span()=> <#channel as __asena::Channel>::Out),
        );
    }
    let params = args
        .params
        .as_ref()
        .map_or_else(|| quote!(()), |t| quote_spanned!(t.span()=> #t));
    let receives = args.receives.as_ref().map_or_else(
        || quote!(__asena::Message),
        |t| quote_spanned!(t.span()=> #t),
    );
    let sends = args
        .sends
        .as_ref()
        .map_or_else(|| quote!(__asena::Raw), |t| quote_spanned!(t.span()=> #t));
    (params, receives, sends)
}

/// The `Channel` and `Endpoint` impls of a socket at `path` named `name`, with the declared
/// types (or `()`, `Message` and `Raw`) and protocol.
fn socket_impls(args: &Args, ident: &syn::Ident, path: &TokenStream, name: &str) -> TokenStream {
    let (params, receives, sends) = channel_types(args);
    let protocol = protocol_type(args);
    // A typed service's messages choose their delivery when their type implements
    // `Delivered`; the probe says `None` for one that does not.
    let delivery = (args.sends.is_some() && args.channel.is_none()).then(|| {
        quote! {
            fn delivery(message: &Self::Out) -> ::core::option::Option<__asena::Delivery> {
                #[allow(unused_imports)]
                use __asena::delivery_probe::{ByTrait as _, Undeclared as _};
                (&&__asena::delivery_probe::Probe(message)).delivery()
            }
        }
    });
    quote! {
        impl __asena::Channel for #ident {
            const PATH: &'static str = #path;
            const NAME: &'static str = #name;
            type Params = #params;
            type In = #receives;
            type Out = #sends;
            #delivery
        }
        impl __asena::Endpoint for #ident {
            type Protocol = #protocol;
        }
    }
}

/// The impls of a socket whose attribute has a mistake (see [`crate::component::stand_in`]):
/// the declared types when the arguments parse, so the user's `impl WebSocketService` matches
/// them.
pub(crate) fn channel_stand_in(args: &Args, ident: &syn::Ident) -> TokenStream {
    socket_impls(args, ident, &quote!("/"), &ident.to_string())
}

fn validate_path(path: &LitStr) -> syn::Result<()> {
    let value = path.value();
    let hint = "hint: write an absolute path such as `path = \"/chat\"` or `path = \"/user/{id}\"`";
    if value.is_empty() {
        return Err(syn::Error::new(
            path.span(),
            format!("`path` must not be empty\n{hint}"),
        ));
    }
    if !value.starts_with('/') {
        return Err(syn::Error::new(
            path.span(),
            format!("`path` must start with `/`, found `{value}`\n{hint}"),
        ));
    }
    if value.contains(['?', '#', ' ']) {
        return Err(syn::Error::new(
            path.span(),
            format!(
                "`path` must be a plain path without query, fragment or spaces, found `{value}`\n{hint}"
            ),
        ));
    }
    if value.contains('.') {
        return Err(syn::Error::new(
            path.span(),
            format!(
                "`path` must not contain `.`, found `{value}`: instances name a room `<path>.<room>` between them, so a dot in the path would make `/a` room `b.x` and `/a.b` room `x` one channel\n{hint}"
            ),
        ));
    }
    let mut depth = 0i32;
    for c in value.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            break;
        }
    }
    if depth != 0 || value.contains("{}") {
        return Err(syn::Error::new(
            path.span(),
            format!("`path` has an unbalanced or empty `{{param}}` in `{value}`\n{hint}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::parsed::{Expanded, only_arg, slice_elems, str_value, struct_field};
    use syn::{Expr, Stmt, parse_quote};

    fn err(args: TokenStream) -> String {
        match expand(
            args,
            quote!(
                struct S;
            ),
        ) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn path_is_required() {
        assert!(err(quote!(name = "S")).starts_with("#[websocket] needs a `path`"));
    }

    #[test]
    fn path_must_start_with_slash() {
        assert!(err(quote!(path = "chat")).starts_with("`path` must start with `/`, found `chat`"));
    }

    #[test]
    fn path_rejects_query_and_bad_params() {
        assert!(err(quote!(path = "/a?b")).contains("without query"));
        assert!(err(quote!(path = "/a.b")).contains("must not contain `.`"));
        assert!(err(quote!(path = "/a/{b")).contains("unbalanced"));
        assert!(err(quote!(path = "/a/{}")).contains("empty"));
    }

    #[test]
    fn expansion_names_path_middlewares_and_entry() {
        let out = Expanded::parse(
            expand(
                quote!(path = "/chat/{room}", middlewares = [Auth, Log]),
                quote!(
                    struct Chat;
                ),
            )
            .expect("valid"),
        );
        assert_eq!(str_value(out.record_field("name")), "Chat");
        let socket = only_arg(
            out.record_field("kind"),
            &parse_quote!(__asena::ComponentKind::WebSocket),
        );
        assert_eq!(str_value(struct_field(socket, "path")), "/chat/{room}");
        assert_eq!(str_value(struct_field(socket, "name")), "Chat");
        assert_eq!(
            *struct_field(socket, "entry"),
            parse_quote!(__asena::websocket_entry::<Chat>)
        );
        let deps: [Expr; 2] = [
            parse_quote!(__asena::Dependency::required::<Auth>()),
            parse_quote!(__asena::Dependency::required::<Log>()),
        ];
        assert_eq!(
            slice_elems(out.record_field("deps")),
            deps.iter().collect::<Vec<_>>()
        );
        let checks: [Stmt; 2] = [
            parse_quote!(__asena::assert_middleware::<Auth>();),
            parse_quote!(__asena::assert_middleware::<Log>();),
        ];
        assert_eq!(out.fn_body("__asena_checks"), checks);
    }

    /// `type NAME = ..;` and `const NAME: .. = ..;` of an impl, as written.
    fn impl_items(item: &syn::ItemImpl) -> Vec<(String, String)> {
        item.items
            .iter()
            .filter_map(|i| match i {
                syn::ImplItem::Type(t) => Some((t.ident.to_string(), quote!(#t).to_string())),
                syn::ImplItem::Const(c) => Some((c.ident.to_string(), quote!(#c).to_string())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_typed_channel_implements_channel_with_its_types() {
        let out = Expanded::parse(
            expand(
                quote!(
                    path = "/user/{id}",
                    params = UserPath,
                    receives = In,
                    sends = out::Out
                ),
                quote!(
                    struct Events;
                ),
            )
            .expect("valid"),
        );
        let channel = out.impl_of("Channel");
        assert_eq!(*channel.self_ty, parse_quote!(Events));
        let expected: Vec<(String, String)> = [
            (
                "PATH",
                quote!(
                    const PATH: &'static str = "/user/{id}";
                ),
            ),
            (
                "NAME",
                quote!(
                    const NAME: &'static str = "Events";
                ),
            ),
            (
                "Params",
                quote!(
                    type Params = UserPath;
                ),
            ),
            (
                "In",
                quote!(
                    type In = In;
                ),
            ),
            (
                "Out",
                quote!(
                    type Out = out::Out;
                ),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_string()))
        .collect();
        assert_eq!(impl_items(channel), expected);
    }

    #[test]
    fn an_untyped_service_receives_messages_and_sends_anything() {
        let out = Expanded::parse(
            expand(
                quote!(path = "/chat"),
                quote!(
                    struct Chat;
                ),
            )
            .expect("valid"),
        );
        let items = impl_items(out.impl_of("Channel"));
        for (name, item) in [
            (
                "Params",
                quote!(
                    type Params = ();
                ),
            ),
            (
                "In",
                quote!(
                    type In = __asena::Message;
                ),
            ),
            (
                "Out",
                quote!(
                    type Out = __asena::Raw;
                ),
            ),
        ] {
            let expected = (name.to_owned(), item.to_string());
            assert!(items.contains(&expected), "{expected:?} in {items:?}");
        }
    }

    #[test]
    fn typed_arguments_need_types_and_appear_once() {
        assert!(err(quote!(path = "/a", receives = "In")).starts_with("`receives` expects a type"));
        assert!(
            err(quote!(path = "/a", sends = A, sends = B))
                .starts_with("`sends` specified more than once")
        );
    }
}
