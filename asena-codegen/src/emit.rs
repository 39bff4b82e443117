//! The generated Rust code, as tokens: the types, then a module per endpoint with its
//! parameters, its two message types, its contract and its client functions.

use heck::ToSnakeCase;
use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};
use serde_json::Value;

use crate::Error;
use crate::model::{Api, Endpoint, Msg};
use crate::source::{Loc, Sources};
use crate::types::{
    Body, Def, Num, Rule, Rules, Ty, TypeSpace, field_name, type_name, unique, variant_name,
};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    pub client: bool,
    pub rules: bool,
}

/// The whole generated file.
pub fn file(sources: &Sources, api: &Api, options: &Options) -> Result<TokenStream, Error> {
    let mut space = TypeSpace::new(sources, options.rules);
    let mut modules = Vec::new();
    let mut module_names = std::collections::HashSet::new();
    for endpoint in &api.endpoints {
        let module = unique(&mut module_names, field_name(&endpoint.name), "_");
        modules.push(endpoint_module(
            &mut space, sources, endpoint, &module, options,
        )?);
    }
    let defs = space.defs.iter().map(|def| definition(&space, def));
    Ok(quote! {
        #(#defs)*
        #(#modules)*
    })
}

fn ident(name: &str) -> syn::Ident {
    if syn::parse_str::<syn::Ident>(name).is_ok() {
        format_ident!("{}", name)
    } else {
        syn::Ident::new_raw(name, proc_macro2::Span::call_site())
    }
}

fn docs(doc: Option<&str>) -> TokenStream {
    match doc {
        Some(text) => {
            let lines = text.lines().map(|l| {
                let l = format!(" {}", l.trim_end());
                quote!(#[doc = #l])
            });
            quote!(#(#lines)*)
        }
        None => quote!(),
    }
}

fn derives() -> TokenStream {
    quote! {
        #[derive(Debug, Clone, PartialEq, ::serde::Serialize, ::serde::Deserialize, ::schemars::JsonSchema, ::garde::Validate)]
        #[garde(allow_unvalidated)]
    }
}

pub fn ty_tokens(space: &TypeSpace<'_>, ty: &Ty, prefix: &TokenStream) -> TokenStream {
    match ty {
        Ty::Str => quote!(::std::string::String),
        Ty::Bool => quote!(bool),
        Ty::Int { signed: true } => quote!(i64),
        Ty::Int { signed: false } => quote!(u64),
        Ty::Float => quote!(f64),
        Ty::Value => quote!(::serde_json::Value),
        Ty::Unit => quote!(()),
        Ty::Option(t) => {
            let t = ty_tokens(space, t, prefix);
            quote!(::core::option::Option<#t>)
        }
        Ty::Vec(t) => {
            let t = ty_tokens(space, t, prefix);
            quote!(::std::vec::Vec<#t>)
        }
        Ty::Map(t) => {
            let t = ty_tokens(space, t, prefix);
            quote!(::std::collections::BTreeMap<::std::string::String, #t>)
        }
        Ty::Boxed(t) => {
            let t = ty_tokens(space, t, prefix);
            quote!(::std::boxed::Box<#t>)
        }
        Ty::Named(id) => {
            let name = format_ident!("{}", space.defs[*id].name);
            quote!(#prefix #name)
        }
    }
}

fn num(n: Num) -> Literal {
    match n {
        Num::Int(v) => Literal::i64_unsuffixed(v),
        Num::Uint(v) => Literal::u64_unsuffixed(v),
        Num::Float(v) => Literal::f64_unsuffixed(v),
    }
}

fn rule_tokens(rule: &Rule) -> TokenStream {
    let bound = |min: &Option<u64>, max: &Option<u64>| {
        let min = min.map(|m| {
            let m = Literal::u64_unsuffixed(m);
            quote!(min = #m,)
        });
        let max = max.map(|m| {
            let m = Literal::u64_unsuffixed(m);
            quote!(max = #m,)
        });
        quote!(#min #max)
    };
    match rule {
        Rule::Chars { min, max } => {
            let b = bound(min, max);
            quote!(length(chars, #b))
        }
        Rule::Items { min, max } => {
            let b = bound(min, max);
            quote!(length(#b))
        }
        Rule::Range { min, max } => {
            let min = min.map(|m| {
                let m = num(m);
                quote!(min = #m,)
            });
            let max = max.map(|m| {
                let m = num(m);
                quote!(max = #m,)
            });
            quote!(range(#min #max))
        }
        Rule::Above(v) => {
            let v = Literal::f64_unsuffixed(*v);
            quote!(custom(::asena_protocol::rules::greater_than(#v)))
        }
        Rule::Below(v) => {
            let v = Literal::f64_unsuffixed(*v);
            quote!(custom(::asena_protocol::rules::less_than(#v)))
        }
        Rule::MultipleOf(v) => {
            let v = Literal::f64_unsuffixed(*v);
            quote!(custom(::asena_protocol::rules::multiple_of(#v)))
        }
        Rule::Pattern(p) => quote!(pattern(#p)),
        Rule::Email => quote!(email),
        Rule::Url => quote!(url),
        Rule::DateTime => quote!(custom(::asena_protocol::rules::date_time)),
        Rule::Uuid => quote!(custom(::asena_protocol::rules::uuid)),
        Rule::OneOf(values) => {
            let values = values.iter().map(|v| Literal::f64_unsuffixed(*v));
            quote!(custom(::asena_protocol::rules::one_of(&[#(#values),*])))
        }
        Rule::Inner(rules) => {
            let inner = rules.list.iter().map(rule_tokens);
            quote!(inner(#(#inner),*))
        }
    }
}

/// The `#[garde(..)]` of a value of `ty` (inside one more `Option` when `optional`). garde
/// applies most rules through an `Option`, but `inner` to the `Option`'s own content, so it
/// is nested once per `Option`.
fn garde_attr(space: &TypeSpace<'_>, ty: &Ty, rules: &Rules, optional: bool) -> TokenStream {
    let mut options = usize::from(optional);
    let mut t = ty;
    while let Ty::Option(inner) = t {
        options += 1;
        t = inner;
    }
    let mut parts: Vec<TokenStream> = rules
        .list
        .iter()
        .map(|rule| {
            let mut tokens = rule_tokens(rule);
            if matches!(rule, Rule::Inner(_)) {
                for _ in 0..options {
                    tokens = quote!(inner(#tokens));
                }
            }
            tokens
        })
        .collect();
    if space.dives(ty) {
        parts.push(quote!(dive));
    }
    if parts.is_empty() {
        quote!()
    } else {
        quote!(#[garde(#(#parts),*)])
    }
}

fn definition(space: &TypeSpace<'_>, def: &Def) -> TokenStream {
    let name = format_ident!("{}", def.name);
    let doc = docs(def.doc.as_deref());
    let none = quote!();
    match &def.body {
        Body::Pending => quote!(),
        Body::Values(values) => {
            let variants = values.iter().map(|(variant, value)| {
                let variant = format_ident!("{}", variant);
                quote!(#[serde(rename = #value)] #variant)
            });
            let names = values.iter().map(|(_, v)| v.as_str());
            let list = names.clone().collect::<Vec<_>>().join("`, `");
            let as_str = values.iter().map(|(variant, value)| {
                let variant = format_ident!("{}", variant);
                quote!(#name::#variant => #value)
            });
            let list_doc = format!(" One of `{list}`.");
            quote! {
                #doc
                #[doc = #list_doc]
                #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize, ::schemars::JsonSchema)]
                pub enum #name { #(#variants,)* }

                impl #name {
                    /// The value as written in the document.
                    pub fn as_str(&self) -> &'static str {
                        match self { #(#as_str,)* }
                    }
                }
            }
        }
        Body::Struct {
            fields,
            deny_unknown,
            rest,
        } => {
            let derive = derives();
            let deny = deny_unknown.then(|| quote!(#[serde(deny_unknown_fields)]));
            let fields = fields.iter().map(|f| {
                let ident = ident(&f.ident);
                let doc = docs(f.doc.as_deref());
                let json = &f.json;
                let rename = (f.ident != *json).then(|| quote!(#[serde(rename = #json)]));
                let inner = ty_tokens(space, &f.ty, &none);
                let (ty, optional) = if f.required || matches!(f.ty, Ty::Option(_)) {
                    (inner, matches!(f.ty, Ty::Option(_)) && !f.required)
                } else {
                    (quote!(::core::option::Option<#inner>), true)
                };
                let skip = optional.then(|| {
                    quote!(#[serde(default, skip_serializing_if = "::core::option::Option::is_none")])
                });
                let garde = garde_attr(space, &f.ty, &f.rules, !f.required && !matches!(f.ty, Ty::Option(_)));
                quote! { #doc #rename #skip #garde pub #ident: #ty }
            });
            let rest = rest.as_ref().map(|(ty, rules)| {
                let garde = garde_attr(space, &Ty::Map(Box::new(ty.clone())), rules, false);
                let ty = ty_tokens(space, ty, &none);
                quote! {
                    /// The other properties (`additionalProperties`).
                    #[serde(flatten)]
                    #garde
                    pub additional_properties: ::std::collections::BTreeMap<::std::string::String, #ty>
                }
            });
            let comma = rest.as_ref().map(|_| quote!(,));
            // Fields carry their JSON names where those are identifiers (see `types`).
            let case = fields_of(def)
                .any(|f| f.ident != f.ident.to_snake_case())
                .then(|| quote!(#[allow(non_snake_case)]));
            quote! {
                #doc
                #derive
                #deny
                #case
                pub struct #name { #(#fields,)* #rest #comma }
            }
        }
        Body::Union { tag, variants } => {
            let repr = match tag {
                Some(tag) => quote!(#[serde(tag = #tag)]),
                None => quote!(#[serde(untagged)]),
            };
            let variants: Vec<UnionVariant> = variants
                .iter()
                .map(|v| UnionVariant {
                    name: format_ident!("{}", v.name),
                    attrs: {
                        let doc = docs(v.doc.as_deref());
                        let rename = v.tag.as_ref().map(|t| quote!(#[serde(rename = #t)]));
                        quote!(#doc #rename)
                    },
                    ty: v.ty.clone(),
                    rules: v.rules.clone(),
                })
                .collect();
            union(space, &name, doc, repr, &variants, &none)
        }
    }
}

/// The fields of a struct definition.
fn fields_of(def: &Def) -> impl Iterator<Item = &crate::types::Field> {
    match &def.body {
        Body::Struct { fields, .. } => fields.iter(),
        _ => [].iter(),
    }
}

/// One variant of an enum of alternatives.
struct UnionVariant {
    name: syn::Ident,
    attrs: TokenStream,
    ty: Ty,
    rules: Rules,
}

/// An enum of alternatives (`oneOf`, or a direction's messages). Its `garde::Validate`
/// passes each variant's check through without a path segment of its own, so a violation's
/// path is the JSON path (`pair[1]`, not `[0].pair[1]`); an untagged variant with rules of
/// its own needs garde's derive instead.
fn union(
    space: &TypeSpace<'_>,
    name: &syn::Ident,
    attrs: TokenStream,
    repr: TokenStream,
    variants: &[UnionVariant],
    prefix: &TokenStream,
) -> TokenStream {
    let own_rules = variants.iter().any(|v| !v.rules.list.is_empty());
    let body = variants.iter().map(|v| {
        let vname = &v.name;
        let vattrs = &v.attrs;
        let garde = if own_rules {
            garde_attr(space, &v.ty, &v.rules, false)
        } else {
            quote!()
        };
        let ty = ty_tokens(space, &v.ty, prefix);
        quote! { #vattrs #vname(#garde #ty) }
    });
    if own_rules {
        let derive = derives();
        return quote! {
            #attrs
            #derive
            #repr
            pub enum #name { #(#body,)* }
        };
    }
    let arms = variants.iter().map(|v| {
        let vname = &v.name;
        if space.dives(&v.ty) {
            quote!(Self::#vname(value) => ::garde::Validate::validate_into(value, ctx, parent, report))
        } else {
            quote!(Self::#vname(_) => {})
        }
    });
    let (ctx, parent, report) = if variants.iter().any(|v| space.dives(&v.ty)) {
        (quote!(ctx), quote!(parent), quote!(report))
    } else {
        (quote!(_), quote!(_), quote!(_))
    };
    quote! {
        #attrs
        #[derive(Debug, Clone, PartialEq, ::serde::Serialize, ::serde::Deserialize, ::schemars::JsonSchema)]
        #repr
        pub enum #name { #(#body,)* }

        impl ::garde::Validate for #name {
            type Context = ();

            fn validate_into(
                &self,
                #ctx: &(),
                #parent: &mut dyn FnMut() -> ::garde::Path,
                #report: &mut ::garde::Report,
            ) {
                match self { #(#arms,)* }
            }
        }
    }
}

/// The type of one direction's messages: the payload type itself for one message whose
/// payload is a struct or union, else an enum of them (tagged when the payloads share a
/// constant property).
fn direction(
    space: &mut TypeSpace<'_>,
    messages: &[Msg],
    tag: Option<&str>,
    name: &str,
    endpoint: &str,
    who: &str,
) -> Result<TokenStream, Error> {
    let ident = format_ident!("{}", name);
    let sup = quote!(super::);
    let doc = format!(" The messages {who} on this endpoint.");
    if let [one] = messages
        && let Some(payload) = &one.payload
    {
        let hint = payload_hint(endpoint, one);
        let (ty, _) = space.ty(payload, &hint, 0)?;
        if matches!(ty, Ty::Named(_)) && space.dives(&ty) {
            let ty = ty_tokens(space, &ty, &sup);
            return Ok(quote! { #[doc = #doc] pub type #ident = #ty; });
        }
    }
    if messages.is_empty() {
        let doc = format!(" No messages: {who} nothing on this endpoint (any message is refused).");
        return Ok(quote! {
            #[doc = #doc]
            #[derive(Debug, Clone, PartialEq, ::serde::Serialize, ::serde::Deserialize, ::schemars::JsonSchema)]
            pub enum #ident {}

            impl ::garde::Validate for #ident {
                type Context = ();
                fn validate_into(&self, _: &(), _: &mut dyn FnMut() -> ::garde::Path, _: &mut ::garde::Report) {
                    match *self {}
                }
            }
        });
    }
    let mut variants = Vec::new();
    let mut taken = std::collections::HashSet::new();
    for (i, m) in messages.iter().enumerate() {
        let label = m.name.as_deref().unwrap_or(&m.key);
        let vname = unique(
            &mut taken,
            variant_name(label, &format!("Message{}", i + 1)),
            "",
        );
        let mdoc = docs(m.doc.as_deref());
        let hint = payload_hint(endpoint, m);
        let (ty, rules, rename) = match (tag, &m.payload) {
            (Some(tag), Some(payload)) => {
                let value = space.tag_value(payload, tag)?.unwrap_or_default();
                let id = space.def(payload, &hint, Some(tag), 0)?;
                (
                    Ty::Named(id),
                    Rules::default(),
                    Some(quote!(#[serde(rename = #value)])),
                )
            }
            (_, Some(payload)) => {
                let (ty, rules) = space.ty(payload, &hint, 0)?;
                (ty, rules, None)
            }
            (_, None) => (Ty::Value, Rules::default(), None),
        };
        variants.push(UnionVariant {
            name: format_ident!("{}", vname),
            attrs: quote!(#mdoc #rename),
            ty,
            rules,
        });
    }
    let repr = match tag {
        Some(tag) => {
            let strategy = format!(" Told apart by the `{tag}` property.");
            quote!(#[doc = ""] #[doc = #strategy] #[serde(tag = #tag)])
        }
        None if messages.len() > 1 => {
            quote!(#[doc = ""] #[doc = " Told apart by trying each message in order (untagged)."] #[serde(untagged)])
        }
        None => quote!(#[serde(untagged)]),
    };
    Ok(union(
        space,
        &ident,
        quote!(#[doc = #doc]),
        repr,
        &variants,
        &sup,
    ))
}

/// The property that tells one direction's messages apart, when every message has a
/// payload and they share one with a distinct constant value.
fn direction_tag(space: &TypeSpace<'_>, messages: &[Msg]) -> Option<String> {
    let payloads: Vec<Loc> = messages.iter().filter_map(|m| m.payload.clone()).collect();
    if payloads.len() == messages.len() && !messages.is_empty() {
        space.common_tag(&payloads)
    } else {
        None
    }
}

fn payload_hint(endpoint: &str, m: &Msg) -> String {
    // A message's payload is named after the message component (`#/components/messages/X`),
    // or the endpoint and the message's key.
    if m.loc.pointer.starts_with("/components/messages/") {
        m.loc.last()
    } else {
        format!("{endpoint} {}", m.key)
    }
}

/// The document's example payloads of `messages`, and for a message without any, one made
/// from its schema (when one can be made for sure). In a direction told apart by `tag`, a
/// sample gets the tag's value when its schema left the property optional.
fn examples(
    space: &TypeSpace<'_>,
    sources: &Sources,
    messages: &[Msg],
    tag: Option<&str>,
) -> Vec<String> {
    let mut out = Vec::new();
    for m in messages {
        if !m.examples.is_empty() {
            out.extend(m.examples.iter().map(Value::to_string));
            continue;
        }
        let Some(payload) = &m.payload else { continue };
        let schema = sources.inline(payload, 32);
        let Some(mut sample) = asena_protocol::example::example(&schema, &|s| s) else {
            continue;
        };
        if let (Some(tag), Value::Object(fields)) = (tag, &mut sample)
            && let Ok(Some(value)) = space.tag_value(payload, tag)
        {
            fields.entry(tag.to_owned()).or_insert(Value::String(value));
        }
        out.push(sample.to_string());
    }
    out
}

fn endpoint_module(
    space: &mut TypeSpace<'_>,
    sources: &Sources,
    endpoint: &Endpoint,
    module: &str,
    options: &Options,
) -> Result<TokenStream, Error> {
    let mod_ident = ident(module);
    let contract = format_ident!("{}", {
        let n = type_name(&endpoint.name);
        if n.is_empty() { "Root".to_owned() } else { n }
    });
    let path = &endpoint.path;
    let name = &endpoint.name;
    let mut doc = format!(" `{path}`");
    if let Some(d) = &endpoint.description {
        doc.push_str(": ");
        doc.push_str(d.lines().next().unwrap_or_default());
    }
    let params = params(endpoint);
    // Each direction's tag, found once for its type and its examples.
    let client_tag = direction_tag(space, &endpoint.receives);
    let server_tag = direction_tag(space, &endpoint.sends);
    let client_messages = direction(
        space,
        &endpoint.receives,
        client_tag.as_deref(),
        "ClientMessage",
        &endpoint.name,
        "clients send",
    )?;
    let server_messages = direction(
        space,
        &endpoint.sends,
        server_tag.as_deref(),
        "ServerMessage",
        &endpoint.name,
        "the server sends",
    )?;
    let client_examples = examples(space, sources, &endpoint.receives, client_tag.as_deref());
    let server_examples = examples(space, sources, &endpoint.sends, server_tag.as_deref());
    let ops: Vec<String> = endpoint
        .operations
        .iter()
        .map(|o| {
            let dir = match o.action {
                crate::model::Action::Receive => "clients send",
                crate::model::Action::Send => "the server sends",
            };
            let mut line = format!(" - `{}`: {dir} {}", o.name, list(&o.messages));
            if !o.reply.is_empty() {
                line.push_str(&format!(", answered with {}", list(&o.reply)));
            }
            line
        })
        .collect();
    let ops_doc = (!ops.is_empty())
        .then(|| quote!(#[doc = ""] #[doc = " Operations:"] #[doc = ""] #(#[doc = #ops])*));
    let contract_doc = format!(
        " The contract of `{path}`: a server is `#[websocket(channel = {module}::{contract})]` on a struct; a client is `asena_client::Client::<{module}::{contract}>`."
    );
    let has_params = !endpoint.params.is_empty();
    let client = options.client.then(|| {
        let connect = if has_params {
            quote! {
                /// A client builder for this endpoint at `base` (`ws://host:port`), its path filled from `params`.
                pub fn client(base: &str, params: &Params) -> ::asena_client::ClientBuilder<#contract> {
                    ::asena_client::Client::<#contract>::builder(base).params(params)
                }
            }
        } else {
            quote! {
                /// A client builder for this endpoint at `base` (`ws://host:port`).
                pub fn client(base: &str) -> ::asena_client::ClientBuilder<#contract> {
                    ::asena_client::Client::<#contract>::builder(base)
                }
            }
        };
        quote! {
            #connect

            /// Checks `message` against the document (unless `options` skips it), then sends it.
            pub async fn publish(
                client: &::asena_client::Client<#contract>,
                message: &ClientMessage,
                options: ::asena_client::MessageOptions,
            ) -> ::core::result::Result<(), ::asena_client::ClientError> {
                ::asena_client::publish(client, message, options).await
            }

            /// Hands each message the server sends to `on_data`, checked against the document
            /// (unless `options` skips it): `Err` with the JSON path and the broken rule for one
            /// that fails. Returns when the client's stream ends.
            pub async fn subscribe(
                client: &mut ::asena_client::Client<#contract>,
                options: ::asena_client::MessageOptions,
                on_data: impl FnMut(::core::result::Result<ServerMessage, ::asena_client::DecodeError>),
            ) {
                ::asena_client::subscribe(client, options, on_data).await
            }

            /// [`publish`] over a WebSocket the application connected itself.
            pub async fn publish_on<S>(
                ws: &mut S,
                message: &ClientMessage,
                options: ::asena_client::MessageOptions,
            ) -> ::core::result::Result<(), ::asena_client::ClientError>
            where
                S: ::asena_client::Sink<
                        ::asena_client::tokio_tungstenite::tungstenite::Message,
                        Error = ::asena_client::tokio_tungstenite::tungstenite::Error,
                    > + ::core::marker::Unpin,
            {
                ::asena_client::publish_on::<#contract, S>(ws, message, options).await
            }

            /// [`subscribe`] over a WebSocket the application connected itself: returns the
            /// server's close frame when it closes, `None` when the stream just ends.
            pub async fn subscribe_on<S>(
                ws: &mut S,
                options: ::asena_client::MessageOptions,
                on_data: impl FnMut(::core::result::Result<ServerMessage, ::asena_client::DecodeError>),
            ) -> ::core::result::Result<
                ::core::option::Option<::asena_client::tokio_tungstenite::tungstenite::protocol::CloseFrame>,
                ::asena_client::ClientError,
            >
            where
                S: ::asena_client::Stream<
                        Item = ::core::result::Result<
                            ::asena_client::tokio_tungstenite::tungstenite::Message,
                            ::asena_client::tokio_tungstenite::tungstenite::Error,
                        >,
                    > + ::core::marker::Unpin,
            {
                ::asena_client::subscribe_on::<#contract, S>(ws, options, on_data).await
            }
        }
    });
    Ok(quote! {
        #[doc = #doc]
        #ops_doc
        pub mod #mod_ident {
            #params
            #client_messages
            #server_messages

            #[doc = #contract_doc]
            #[derive(Debug, Clone, Copy, Default)]
            pub struct #contract;

            impl ::asena_protocol::Channel for #contract {
                const PATH: &'static str = #path;
                const NAME: &'static str = #name;
                type Params = Params;
                type In = ClientMessage;
                type Out = ServerMessage;
            }

            /// Example payloads of messages clients send, as JSON: the document's examples, and
            /// for a message without any, one made from its schema.
            pub const CLIENT_EXAMPLES: &[&str] = &[#(#client_examples),*];
            /// Example payloads of messages the server sends, as JSON: the document's examples,
            /// and for a message without any, one made from its schema.
            pub const SERVER_EXAMPLES: &[&str] = &[#(#server_examples),*];

            #client
        }
    })
}

fn list(keys: &[String]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn params(endpoint: &Endpoint) -> TokenStream {
    if endpoint.params.is_empty() {
        return quote! {
            /// The endpoint's path has no parameters.
            pub type Params = ();
        };
    }
    let mut enums = Vec::new();
    let fields = endpoint.params.iter().map(|p| {
        let f = ident(&field_name(&p.name));
        let json = &p.name;
        let rename = (field_name(&p.name) != *json).then(|| quote!(#[serde(rename = #json)]));
        let doc = docs(p.description.as_deref());
        let ty = match &p.values {
            Some(values) => {
                // Not one of the module's own names (a parameter called `params`).
                let ename = match type_name(&p.name) {
                    n if matches!(n.as_str(), "Params" | "ClientMessage" | "ServerMessage") => {
                        format!("{n}Value")
                    }
                    n => n,
                };
                let ename = format_ident!("{}", ename);
                let mut taken = std::collections::HashSet::new();
                let variants = values.iter().map(|v| {
                    let n = unique(&mut taken, variant_name(v, "Empty"), "");
                    let n = format_ident!("{}", n);
                    quote!(#[serde(rename = #v)] #n)
                });
                let edoc = format!(" The values of the path parameter `{}`.", p.name);
                enums.push(quote! {
                    #[doc = #edoc]
                    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize, ::schemars::JsonSchema)]
                    pub enum #ename { #(#variants,)* }
                });
                quote!(#ename)
            }
            None => quote!(::std::string::String),
        };
        quote! { #doc #rename pub #f: #ty }
    }).collect::<Vec<_>>();
    let names = endpoint
        .params
        .iter()
        .map(|p| format!("`{}`", p.name))
        .collect::<Vec<_>>()
        .join(", ");
    let doc = format!(
        " The path parameters {names} of `{}` (a value outside an `enum` is refused with 400).",
        endpoint.path
    );
    quote! {
        #(#enums)*
        #[doc = #doc]
        #[derive(Debug, Clone, PartialEq, Eq, ::serde::Serialize, ::serde::Deserialize, ::schemars::JsonSchema)]
        pub struct Params { #(#fields,)* }
    }
}
