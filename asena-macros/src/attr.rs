//! Shared argument parsing for the attribute macros: keywords, duplicates, unknown arguments.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{LitStr, Path, Token, bracketed};

mod kw {
    syn::custom_keyword!(path);
    syn::custom_keyword!(name);
    syn::custom_keyword!(middlewares);
    syn::custom_keyword!(params);
    syn::custom_keyword!(receives);
    syn::custom_keyword!(sends);
    syn::custom_keyword!(channel);
    syn::custom_keyword!(managed);
}

/// Every argument any of our attributes understands; each macro says which it accepts.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) path: Option<LitStr>,
    pub(crate) name: Option<LitStr>,
    pub(crate) middlewares: Option<(Span, Vec<Path>)>,
    pub(crate) krate: Option<Path>,
    /// `params = T`, `receives = T`, `sends = T`: the service's typed channel.
    pub(crate) params: Option<syn::Type>,
    pub(crate) receives: Option<syn::Type>,
    pub(crate) sends: Option<syn::Type>,
    /// `channel = C`: the path, params and messages of an existing `Channel` (a contract
    /// generated from an AsyncAPI document), instead of `path`, `params`, `receives`, `sends`.
    pub(crate) channel: Option<syn::Type>,
    /// `managed`: the service speaks the managed protocol.
    pub(crate) managed: Option<Span>,
}

/// Which arguments a macro accepts, for "expected ..." messages.
#[derive(Clone, Copy)]
pub(crate) enum Accepts {
    Component,
    WebSocket,
}

impl Accepts {
    fn expected(self) -> &'static str {
        match self {
            Accepts::Component => "expected `name` or `crate`",
            Accepts::WebSocket => {
                "expected `path`, `name`, `middlewares`, `params`, `receives`, `sends`, `channel`, `managed` or `crate`"
            }
        }
    }
}

pub(crate) fn parse_args(tokens: proc_macro2::TokenStream, accepts: Accepts) -> syn::Result<Args> {
    let parser = move |input: ParseStream<'_>| parse_inner(input, accepts);
    syn::parse::Parser::parse2(parser, tokens)
}

fn duplicate(span: Span, key: &str) -> syn::Error {
    syn::Error::new(
        span,
        format!("`{key}` specified more than once\nhint: keep a single `{key} = ...`"),
    )
}

/// `= "..."` after `key`; a non-string value gets an example of the right form.
fn string_value(input: ParseStream<'_>, key: &str, example: &str) -> syn::Result<LitStr> {
    input.parse::<Token![=]>()?;
    if input.peek(LitStr) {
        return input.parse();
    }
    Err(syn::Error::new(
        input.span(),
        format!("`{key}` expects a string literal\nhint: `{key} = {example}`"),
    ))
}

fn parse_inner(input: ParseStream<'_>, accepts: Accepts) -> syn::Result<Args> {
    let mut args = Args::default();
    let mut errors: Option<syn::Error> = None;
    let mut push = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    // `#[websocket("/chat")]`: the path alone, first, as Asena's `@WebSocket('/chat')`.
    if matches!(accepts, Accepts::WebSocket) && input.peek(LitStr) {
        args.path = Some(input.parse()?);
        if !input.is_empty() {
            input.parse::<Token![,]>()?;
        }
    }
    while !input.is_empty() {
        let lookahead = input.lookahead1();
        if lookahead.peek(kw::path) && matches!(accepts, Accepts::WebSocket) {
            let key = input.parse::<kw::path>()?;
            let value = string_value(input, "path", "\"/chat\"")?;
            if args.path.is_some() {
                push(duplicate(key.span, "path"));
            }
            args.path = Some(value);
        } else if lookahead.peek(kw::name) {
            let key = input.parse::<kw::name>()?;
            let value = string_value(input, "name", "\"ChatSocket\"")?;
            if value.value().trim().is_empty() {
                push(syn::Error::new(
                    value.span(),
                    "`name` must not be empty\nhint: remove `name` to use the type's name, \
                     or write e.g. `name = \"ChatSocket\"`",
                ));
            }
            if args.name.is_some() {
                push(duplicate(key.span, "name"));
            }
            args.name = Some(value);
        } else if lookahead.peek(kw::middlewares) && matches!(accepts, Accepts::WebSocket) {
            let key = input.parse::<kw::middlewares>()?;
            input.parse::<Token![=]>()?;
            if !input.peek(syn::token::Bracket) {
                return Err(syn::Error::new(
                    input.span(),
                    "`middlewares` expects a list of middleware types in square brackets\n\
                     hint: `middlewares = [Auth]` or `middlewares = [Auth, RateLimit]`",
                ));
            }
            let content;
            bracketed!(content in input);
            let list = Punctuated::<Path, Token![,]>::parse_terminated(&content)?;
            if args.middlewares.is_some() {
                push(duplicate(key.span, "middlewares"));
            }
            args.middlewares = Some((key.span, list.into_iter().collect()));
        } else if matches!(accepts, Accepts::WebSocket)
            && (lookahead.peek(kw::params)
                || lookahead.peek(kw::receives)
                || lookahead.peek(kw::sends)
                || lookahead.peek(kw::channel))
        {
            let key: syn::Ident = input.call(syn::ext::IdentExt::parse_any)?;
            input.parse::<Token![=]>()?;
            let value: syn::Type = input.parse().map_err(|e| {
                let mut err = syn::Error::new(
                    e.span(),
                    if key == "channel" {
                        "`channel` expects a type\nhint: `channel = user_events::UserEvents`"
                            .to_owned()
                    } else {
                        format!("`{key}` expects a type\nhint: `{key} = ChatIn`")
                    },
                );
                err.combine(e);
                err
            })?;
            let slot = match key.to_string().as_str() {
                "params" => &mut args.params,
                "receives" => &mut args.receives,
                "channel" => &mut args.channel,
                _ => &mut args.sends,
            };
            if slot.is_some() {
                push(duplicate(key.span(), &key.to_string()));
            }
            *slot = Some(value);
        } else if lookahead.peek(kw::managed) && matches!(accepts, Accepts::WebSocket) {
            let key = input.parse::<kw::managed>()?;
            if args.managed.is_some() {
                push(syn::Error::new(
                    key.span,
                    "`managed` specified more than once\nhint: keep a single `managed`",
                ));
            }
            args.managed = Some(key.span);
        } else if lookahead.peek(Token![crate]) {
            let key = input.parse::<Token![crate]>()?;
            input.parse::<Token![=]>()?;
            let value: Path = input.parse()?;
            if args.krate.is_some() {
                push(duplicate(key.span, "crate"));
            }
            args.krate = Some(value);
        } else if input.peek(syn::Ident) {
            let ident: syn::Ident = input.parse()?;
            return Err(syn::Error::new(
                ident.span(),
                format!("unknown argument `{ident}`; {}", accepts.expected()),
            ));
        } else {
            let mut err = lookahead.error();
            err.combine(syn::Error::new(input.span(), accepts.expected()));
            return Err(err);
        }
        if !input.is_empty() {
            input.parse::<Token![,]>()?;
        }
    }
    match errors {
        Some(e) => Err(e),
        None => Ok(args),
    }
}

/// `crate = path` override, or `::asena_runtime`.
pub(crate) fn runtime_path(args: &Args) -> proc_macro2::TokenStream {
    match &args.krate {
        Some(path) => quote::quote!(#path),
        None => quote::quote!(::asena_runtime),
    }
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        parse_inner(input, Accepts::WebSocket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn err(tokens: proc_macro2::TokenStream, accepts: Accepts) -> String {
        match parse_args(tokens, accepts) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_all_websocket_arguments() {
        let args = parse_args(
            quote!(path = "/chat", name = "Chat", middlewares = [A, b::B]),
            Accepts::WebSocket,
        )
        .expect("valid arguments");
        assert_eq!(args.path.map(|p| p.value()).as_deref(), Some("/chat"));
        assert_eq!(args.name.map(|p| p.value()).as_deref(), Some("Chat"));
        assert_eq!(args.middlewares.map(|m| m.1.len()), Some(2));
    }

    #[test]
    fn a_leading_string_is_the_path() {
        let args = parse_args(quote!("/chat", name = "Chat"), Accepts::WebSocket)
            .expect("valid arguments");
        assert_eq!(args.path.map(|p| p.value()).as_deref(), Some("/chat"));
        assert_eq!(args.name.map(|p| p.value()).as_deref(), Some("Chat"));
        let twice = err(quote!("/a", path = "/b"), Accepts::WebSocket);
        assert!(
            twice.starts_with("`path` specified more than once"),
            "{twice}"
        );
        let component = err(quote!("/a"), Accepts::Component);
        assert!(!component.is_empty());
    }

    #[test]
    fn rejects_unknown_argument_with_expected_list() {
        let msg = err(quote!(path = "/a", room = "x"), Accepts::WebSocket);
        assert_eq!(
            msg,
            "unknown argument `room`; expected `path`, `name`, `middlewares`, `params`, \
             `receives`, `sends`, `channel`, `managed` or `crate`"
        );
    }

    #[test]
    fn managed_is_a_flag_given_once() {
        let args =
            parse_args(quote!(path = "/rt", managed), Accepts::WebSocket).expect("valid arguments");
        assert!(args.managed.is_some());
        let plain = parse_args(quote!(path = "/rt"), Accepts::WebSocket).expect("valid arguments");
        assert!(plain.managed.is_none());
        let twice = err(quote!(path = "/rt", managed, managed), Accepts::WebSocket);
        assert!(
            twice.starts_with("`managed` specified more than once"),
            "{twice}"
        );
        let service = err(quote!(managed), Accepts::Component);
        assert!(
            service.starts_with("unknown argument `managed`"),
            "{service}"
        );
    }

    #[test]
    fn path_is_not_a_component_argument() {
        let msg = err(quote!(path = "/a"), Accepts::Component);
        assert_eq!(msg, "unknown argument `path`; expected `name` or `crate`");
    }

    #[test]
    fn reports_duplicates() {
        let msg = err(quote!(path = "/a", path = "/b"), Accepts::WebSocket);
        assert_eq!(
            msg,
            "`path` specified more than once\nhint: keep a single `path = ...`"
        );
    }

    #[test]
    fn reports_every_duplicate_at_once() {
        let result = parse_args(
            quote!(path = "/a", name = "A", path = "/b", name = "B"),
            Accepts::WebSocket,
        );
        let messages: Vec<String> = match result {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        };
        assert_eq!(messages.len(), 2);
        assert!(messages[0].starts_with("`path` specified more than once"));
        assert!(messages[1].starts_with("`name` specified more than once"));
    }

    #[test]
    fn rejects_empty_name() {
        let msg = err(quote!(name = " "), Accepts::Component);
        assert!(msg.starts_with("`name` must not be empty\nhint: "), "{msg}");
    }

    #[test]
    fn non_string_values_get_an_example() {
        let msg = err(quote!(path = chat), Accepts::WebSocket);
        assert_eq!(
            msg,
            "`path` expects a string literal\nhint: `path = \"/chat\"`"
        );
        let msg = err(quote!(name = 3), Accepts::Component);
        assert_eq!(
            msg,
            "`name` expects a string literal\nhint: `name = \"ChatSocket\"`"
        );
    }

    #[test]
    fn middlewares_must_be_a_list() {
        let msg = err(quote!(path = "/a", middlewares = Auth), Accepts::WebSocket);
        assert!(
            msg.starts_with("`middlewares` expects a list of middleware types in square brackets"),
            "{msg}"
        );
    }
}
