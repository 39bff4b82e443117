//! What every component macro shares: checking the item is a plain struct, collecting the
//! `#[inject]` fields, and expanding the registration record plus the `Component` impl.

use proc_macro2::TokenStream;
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Item, ItemStruct, LitStr};

use crate::attr::{Accepts, Args, parse_args, runtime_path};
use crate::error::both;

/// A struct accepted by one of the component macros, with `#[inject]` stripped.
pub(crate) struct ComponentStruct {
    pub(crate) item: ItemStruct,
    fields: Vec<FieldPlan>,
}

struct FieldPlan {
    member: syn::Member,
    ty: syn::Type,
    inject: bool,
}

/// Parses an attribute's arguments and the struct it annotates, reporting the errors of both.
pub(crate) fn parse_attribute(
    args: TokenStream,
    item: TokenStream,
    accepts: Accepts,
    macro_name: &str,
) -> syn::Result<(Args, ComponentStruct)> {
    both(parse_args(args, accepts), parse_struct(item, macro_name))
}

/// Parses the annotated item; `macro_name` is used in messages ("#[service]").
pub(crate) fn parse_struct(item: TokenStream, macro_name: &str) -> syn::Result<ComponentStruct> {
    let item: Item = syn::parse2(item)?;
    let mut item = match item {
        Item::Struct(s) => s,
        other => {
            let what = match &other {
                Item::Enum(_) => "an enum",
                Item::Fn(_) => "a function",
                Item::Impl(_) => "an impl block",
                Item::Trait(_) => "a trait",
                Item::Union(_) => "a union",
                Item::Mod(_) => "a module",
                _ => "this item",
            };
            return Err(syn::Error::new_spanned(
                item_head(&other),
                format!(
                    "{macro_name} can only be applied to a struct, not {what}\n\
                     hint: declare a struct, e.g. {}",
                    struct_example(macro_name)
                ),
            ));
        }
    };
    if !item.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &item.generics,
            format!(
                "{macro_name} does not support generic structs: the container builds exactly one \
                 instance of each registered type\n\
                 hint: wrap a concrete instantiation in a non-generic struct, e.g. \
                 `{macro_name} struct UserCache {{ cache: Cache<User> }}`"
            ),
        ));
    }
    let mut errors: Option<syn::Error> = None;
    let mut fields = Vec::new();
    for (index, field) in item.fields.iter_mut().enumerate() {
        let mut inject = false;
        let mut keep = Vec::with_capacity(field.attrs.len());
        for attr in field.attrs.drain(..) {
            if attr.path().is_ident("inject") {
                if attr.meta.require_path_only().is_err() {
                    let e = syn::Error::new_spanned(
                        &attr.meta,
                        "`#[inject]` takes no arguments: the field's type says what is injected\n\
                         hint: write `#[inject]` alone, e.g. `#[inject] tokens: Arc<TokenService>`",
                    );
                    match &mut errors {
                        Some(all) => all.combine(e),
                        None => errors = Some(e),
                    }
                }
                if inject {
                    let e = syn::Error::new(attr.span(), "`#[inject]` specified more than once");
                    match &mut errors {
                        Some(all) => all.combine(e),
                        None => errors = Some(e),
                    }
                }
                inject = true;
            } else {
                keep.push(attr);
            }
        }
        field.attrs = keep;
        let member = match &field.ident {
            Some(ident) => syn::Member::Named(ident.clone()),
            None => syn::Member::Unnamed(syn::Index::from(index)),
        };
        fields.push(FieldPlan {
            member,
            ty: field.ty.clone(),
            inject,
        });
    }
    match errors {
        Some(e) => Err(e),
        None => Ok(ComponentStruct { item, fields }),
    }
}

/// The tokens that name a wrongly annotated item (`enum Mode`, `fn chat`), for the error span.
fn item_head(item: &Item) -> TokenStream {
    fn head(keyword: &impl ToTokens, name: &impl ToTokens) -> TokenStream {
        quote!(#keyword #name)
    }
    match item {
        Item::Enum(e) => head(&e.enum_token, &e.ident),
        Item::Fn(f) => head(&f.sig.fn_token, &f.sig.ident),
        Item::Impl(i) => head(&i.impl_token, &i.self_ty),
        Item::Trait(t) => head(&t.trait_token, &t.ident),
        Item::Union(u) => head(&u.union_token, &u.ident),
        Item::Mod(m) => head(&m.mod_token, &m.ident),
        other => quote!(#other),
    }
}

/// A correct use of each macro, for hints.
fn struct_example(macro_name: &str) -> &'static str {
    match macro_name {
        "#[websocket]" => {
            "`#[websocket(path = \"/chat\")] struct Chat;` plus `impl WebSocketService for Chat { .. }`"
        }
        "#[middleware]" => "`#[middleware] struct Auth;` plus `impl Middleware for Auth { .. }`",
        _ => "`#[service] struct UserService { #[inject] repo: Arc<Repo> }`",
    }
}

/// What a macro emits when its input has a mistake, next to the `compile_error!`: the struct
/// (without `#[inject]`), a `Component` impl, and whatever `extra` adds (a socket's `Channel`),
/// so the user's own `impl WebSocketService`, `Arc<T>` fields and middleware lists still
/// type-check and rustc reports only the mistake. The impls never run: the crate does not
/// compile. A generic struct, or an item that is not a struct, comes back as it was written.
pub(crate) fn stand_in(
    args: TokenStream,
    item: TokenStream,
    accepts: Accepts,
    extra: impl FnOnce(&Args, &syn::Ident) -> TokenStream,
) -> TokenStream {
    let Ok(Item::Struct(mut item)) = syn::parse2::<Item>(item.clone()) else {
        return item;
    };
    for field in item.fields.iter_mut() {
        field.attrs.retain(|a| !a.path().is_ident("inject"));
    }
    if !item.generics.params.is_empty() {
        return quote!(#item);
    }
    let args = parse_args(args, accepts).unwrap_or_default();
    let rt = runtime_path(&args);
    let ident = &item.ident;
    let extra = extra(&args, ident);
    quote! {
        #item

        #[doc(hidden)]
        const _: () = {
            use #rt::__private as __asena;

            impl __asena::Component for #ident {
                fn record() -> &'static __asena::ComponentRecord {
                    ::core::unreachable!()
                }
                fn construct(
                    _: &__asena::Resolver<'_>,
                ) -> ::core::result::Result<Self, __asena::DiError> {
                    ::core::unreachable!()
                }
            }

            #extra
        };
    }
}

/// The parts that differ between the three component kinds.
pub(crate) struct Expansion {
    pub(crate) rt: TokenStream,
    pub(crate) name: Option<LitStr>,
    /// An expression of type `__private::ComponentKind` (may name `__asena`).
    pub(crate) kind: TokenStream,
    /// Extra dependency expressions of type `__private::Dependency` (middlewares of a socket).
    pub(crate) extra_deps: Vec<TokenStream>,
    /// Extra items placed inside the `const _` block (trait checks).
    pub(crate) extra_items: TokenStream,
}

pub(crate) fn expand(component: ComponentStruct, parts: Expansion) -> TokenStream {
    let ComponentStruct { item, fields } = component;
    let ident = &item.ident;
    let rt = &parts.rt;
    let name = match &parts.name {
        Some(name) => name.value(),
        None => ident.to_string(),
    };
    let record = format_ident!("__ASENA_RECORD_{}", ident);
    let deps = fields.iter().filter(|f| f.inject).map(|f| {
        let ty = &f.ty;
        quote_spanned!(ty.span()=> <#ty as __asena::Injectable>::DEPENDENCY)
    });
    let extra_deps = &parts.extra_deps;
    let inits = fields.iter().map(|f| {
        let member = &f.member;
        let ty = &f.ty;
        let field_name = match member {
            syn::Member::Named(i) => i.to_string(),
            syn::Member::Unnamed(i) => i.index.to_string(),
        };
        if f.inject {
            quote_spanned!(ty.span()=> #member: <#ty as __asena::Injectable>::resolve(__resolver, #field_name)?)
        } else {
            quote_spanned!(ty.span()=> #member: <#ty as __AsenaDefaultField>::__asena_default())
        }
    });
    // Fields without `#[inject]` go through this trait so a missing `Default` explains the
    // choice between `Default` and `#[inject]` on the field's own span.
    let default_check = fields.iter().any(|f| !f.inject).then(|| {
        quote! {
            #[diagnostic::on_unimplemented(
                message = "`{Self}` does not implement `Default`, so a field of this type needs `#[inject]` or a `Default` impl",
                label = "fields without `#[inject]` are built with `Default::default()`",
                note = "derive or implement `Default` for `{Self}`",
                note = "or let the container fill the field: `#[inject]` accepts `Arc<T>` or `Option<Arc<T>>` for a component `T`, `Ulak<N>` and `UlakBroker`"
            )]
            trait __AsenaDefaultField: ::core::marker::Sized {
                fn __asena_default() -> Self;
            }
            impl<T: ::core::default::Default> __AsenaDefaultField for T {
                fn __asena_default() -> Self {
                    <T as ::core::default::Default>::default()
                }
            }
        }
    });
    // A warning (through a deprecated probe method) for `Arc<T>` fields of a component `T`
    // that lack `#[inject]`: they would silently get a second, private instance.
    let field_probes: Vec<TokenStream> = fields
        .iter()
        .filter(|f| !f.inject)
        .map(|f| {
            let ty = &f.ty;
            quote_spanned!(ty.span()=> (&__asena::FieldProbe::<#ty>::new()).__asena_check_field();)
        })
        .collect();
    let field_checks = (!field_probes.is_empty()).then(|| {
        quote! {
            #[allow(dead_code)]
            fn __asena_field_checks() {
                #[allow(unused_imports)]
                use __asena::{ProbePlainField as _, ProbeUninjectedComponent as _};
                #(#field_probes)*
            }
        }
    });
    let kind = &parts.kind;
    let extra_items = &parts.extra_items;
    quote! {
        #item

        #[doc(hidden)]
        #[allow(non_upper_case_globals, clippy::all)]
        const _: () = {
            use #rt::__private as __asena;

            static #record: __asena::ComponentRecord = __asena::ComponentRecord {
                name: #name,
                type_name: ::core::any::type_name::<#ident>,
                type_id: ::core::any::TypeId::of::<#ident>,
                module_path: ::core::module_path!(),
                deps: &[#(#deps,)* #(#extra_deps,)*],
                construct: __asena::construct_erased::<#ident>,
                hooks: __asena_hooks,
                kind: #kind,
            };

            fn __asena_hooks() -> __asena::Hooks {
                #[allow(unused_imports)]
                use __asena::{ProbeDefault as _, ProbeLifecycle as _};
                (&__asena::HookProbe::<#ident>::new()).hooks()
            }

            impl __asena::Component for #ident {
                fn record() -> &'static __asena::ComponentRecord {
                    &#record
                }
                fn construct(
                    __resolver: &__asena::Resolver<'_>,
                ) -> ::core::result::Result<Self, __asena::DiError> {
                    ::core::result::Result::Ok(Self { #(#inits,)* })
                }
            }

            __asena::inventory::submit! { __asena::Registration(&#record) }

            #default_check
            #extra_items
            #field_checks
        };
    }
}

/// An expansion read back as syntax, so the tests of every component macro check its structure
/// rather than how `proc_macro2` prints tokens.
#[cfg(test)]
pub(crate) mod parsed {
    use proc_macro2::{TokenStream, TokenTree};
    use syn::{Expr, ImplItem, Item, Macro, Stmt, parse_quote};

    /// The parsed expansion: the statements of its `const _: () = { .. };` block, plus the raw
    /// tokens for [`Expanded::mentions`].
    pub(crate) struct Expanded {
        tokens: TokenStream,
        block: Vec<Stmt>,
    }

    impl Expanded {
        /// Parses a macro's output; panics unless it is a list of items with a `const _` block.
        pub(crate) fn parse(tokens: TokenStream) -> Self {
            let file: syn::File =
                syn::parse2(tokens.clone()).expect("the expansion parses as a list of items");
            let block = file
                .items
                .into_iter()
                .find_map(|item| match item {
                    Item::Const(c) if c.ident == "_" => match *c.expr {
                        Expr::Block(b) => Some(b.block.stmts),
                        _ => None,
                    },
                    _ => None,
                })
                .expect("the expansion has a `const _: () = { .. };` block");
            Self { tokens, block }
        }

        fn items(&self) -> impl Iterator<Item = &Item> {
            self.block.iter().filter_map(|stmt| match stmt {
                Stmt::Item(item) => Some(item),
                _ => None,
            })
        }

        /// The value of `field` in the `static __ASENA_RECORD_<Type>: ComponentRecord`.
        pub(crate) fn record_field(&self, field: &str) -> &Expr {
            let record = self
                .items()
                .find_map(|item| match item {
                    Item::Static(s) if s.ident.to_string().starts_with("__ASENA_RECORD_") => {
                        Some(&*s.expr)
                    }
                    _ => None,
                })
                .expect("the block declares the record static");
            struct_field(record, field)
        }

        /// The initialiser of `member` in the `Self { .. }` that `Component::construct` returns.
        pub(crate) fn construct_field(&self, member: &str) -> &Expr {
            let construct = self
                .items()
                .find_map(|item| match item {
                    Item::Impl(i)
                        if i.trait_.as_ref().is_some_and(|(_, path, _)| {
                            path.segments.last().is_some_and(|s| s.ident == "Component")
                        }) =>
                    {
                        i.items.iter().find_map(|item| match item {
                            ImplItem::Fn(f) if f.sig.ident == "construct" => Some(f),
                            _ => None,
                        })
                    }
                    _ => None,
                })
                .expect("the block implements `Component::construct`");
            let Some(Stmt::Expr(returned, None)) = construct.block.stmts.last() else {
                panic!("`construct` ends in an expression");
            };
            let value = only_arg(returned, &parse_quote!(::core::result::Result::Ok));
            struct_field(value, member)
        }

        /// The body of the function `name` declared in the block.
        pub(crate) fn fn_body(&self, name: &str) -> &[Stmt] {
            self.items()
                .find_map(|item| match item {
                    Item::Fn(f) if f.sig.ident == name => Some(&f.block.stmts[..]),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("the block declares `fn {name}`"))
        }

        /// The `impl <trait_path> for ..` item in the block, whose trait path ends in `name`.
        pub(crate) fn impl_of(&self, name: &str) -> &syn::ItemImpl {
            self.items()
                .find_map(|item| match item {
                    Item::Impl(i)
                        if i.trait_.as_ref().is_some_and(|(_, path, _)| {
                            path.segments.last().is_some_and(|s| s.ident == name)
                        }) =>
                    {
                        Some(i)
                    }
                    _ => None,
                })
                .unwrap_or_else(|| panic!("the block implements `{name}`"))
        }

        /// Whether the block declares a trait named `name`.
        pub(crate) fn declares_trait(&self, name: &str) -> bool {
            self.items()
                .any(|item| matches!(item, Item::Trait(t) if t.ident == name))
        }

        /// The `inventory::submit! { .. }` call in the block.
        pub(crate) fn submit(&self) -> &Macro {
            self.block
                .iter()
                .find_map(|stmt| match stmt {
                    Stmt::Macro(m)
                        if m.mac
                            .path
                            .segments
                            .last()
                            .is_some_and(|s| s.ident == "submit") =>
                    {
                        Some(&m.mac)
                    }
                    _ => None,
                })
                .expect("the block calls `inventory::submit!`")
        }

        /// Whether any identifier in the expansion is `name`, macro arguments included.
        pub(crate) fn mentions(&self, name: &str) -> bool {
            fn walk(tokens: TokenStream, name: &str) -> bool {
                tokens.into_iter().any(|tree| match tree {
                    TokenTree::Ident(ident) => ident == name,
                    TokenTree::Group(group) => walk(group.stream(), name),
                    _ => false,
                })
            }
            walk(self.tokens.clone(), name)
        }
    }

    /// The value of `field` in a struct literal `Path { field: value, .. }`.
    pub(crate) fn struct_field<'a>(expr: &'a Expr, field: &str) -> &'a Expr {
        let Expr::Struct(literal) = expr else {
            panic!("expected a struct literal, found {expr:?}");
        };
        literal
            .fields
            .iter()
            .find(|f| matches!(&f.member, syn::Member::Named(i) if i == field))
            .map(|f| &f.expr)
            .unwrap_or_else(|| panic!("the struct literal has no field `{field}`"))
    }

    /// The single argument of a call `func(arg)`, checking what is called.
    pub(crate) fn only_arg<'a>(expr: &'a Expr, func: &Expr) -> &'a Expr {
        let Expr::Call(call) = expr else {
            panic!("expected a call, found {expr:?}");
        };
        assert_eq!(*call.func, *func);
        let [arg] = call.args.iter().collect::<Vec<_>>()[..] else {
            panic!("expected one argument, found {}", call.args.len());
        };
        arg
    }

    /// The elements of a slice expression `&[a, b, ..]`.
    pub(crate) fn slice_elems(expr: &Expr) -> Vec<&Expr> {
        match expr {
            Expr::Reference(r) => match &*r.expr {
                Expr::Array(array) => array.elems.iter().collect(),
                other => panic!("expected `&[..]`, found {other:?}"),
            },
            other => panic!("expected `&[..]`, found {other:?}"),
        }
    }

    /// The value of a string literal expression.
    pub(crate) fn str_value(expr: &Expr) -> String {
        match expr {
            Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => s.value(),
            other => panic!("expected a string literal, found {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parsed::{Expanded, slice_elems, str_value};
    use super::*;
    use syn::{Expr, parse_quote};

    /// The expansion of a plain `#[service]`, parsed.
    fn expand_service(parsed: ComponentStruct) -> Expanded {
        Expanded::parse(expand(
            parsed,
            Expansion {
                rt: quote!(::asena_runtime),
                name: None,
                kind: quote!(__asena::ComponentKind::Service),
                extra_deps: Vec::new(),
                extra_items: TokenStream::new(),
            },
        ))
    }

    /// The message of the error `macro_name` reports for `tokens`.
    fn error_of(tokens: TokenStream, macro_name: &str) -> String {
        match parse_struct(tokens, macro_name) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    /// The message of the error `#[service]` reports for `tokens`.
    fn err(tokens: TokenStream) -> String {
        error_of(tokens, "#[service]")
    }

    /// `tokens` parsed as a valid `#[service]` struct.
    fn parsed(tokens: TokenStream) -> ComponentStruct {
        parse_struct(tokens, "#[service]").expect("valid struct")
    }

    #[test]
    fn rejections_name_the_problem_and_give_a_hint() {
        for (item, problem) in [
            (
                quote!(
                    enum A {
                        X,
                    }
                ),
                "#[service] can only be applied to a struct, not an enum",
            ),
            (
                quote!(
                    struct A<T> {
                        x: T,
                    }
                ),
                "#[service] does not support generic structs",
            ),
            (
                quote!(
                    struct A {
                        #[inject(name = "x")]
                        b: Arc<B>,
                    }
                ),
                "`#[inject]` takes no arguments",
            ),
        ] {
            let msg = err(item.clone());
            assert!(msg.starts_with(problem), "{item}: {msg}");
            assert!(msg.contains("hint:"), "{item}: {msg}");
        }
    }

    #[test]
    fn websocket_hint_shows_a_path() {
        let msg = error_of(
            quote!(
                fn chat() {}
            ),
            "#[websocket]",
        );
        assert!(msg.starts_with("#[websocket] can only be applied to a struct, not a function"));
        assert!(
            msg.contains("#[websocket(path = \"/chat\")] struct Chat;"),
            "{msg}"
        );
    }

    #[test]
    fn expansion_without_plain_fields_has_no_default_check() {
        let parsed = parsed(quote!(
            struct A {
                #[inject]
                b: Arc<B>,
            }
        ));
        let out = expand_service(parsed);
        assert_eq!(
            *out.construct_field("b"),
            parse_quote!(<Arc<B> as __asena::Injectable>::resolve(__resolver, "b")?)
        );
        assert!(!out.declares_trait("__AsenaDefaultField"));
        assert!(!out.mentions("__AsenaDefaultField"));
    }

    #[test]
    fn strips_inject_and_keeps_other_attributes() {
        let parsed = parsed(quote!(
            struct A {
                #[inject]
                #[allow(dead_code)]
                b: Arc<B>,
                c: u32,
            }
        ));
        let field = parsed.item.fields.iter().next().expect("one field");
        assert_eq!(field.attrs.len(), 1);
        assert!(field.attrs[0].path().is_ident("allow"));
        assert!(parsed.fields[0].inject);
        assert!(!parsed.fields[1].inject);
    }

    #[test]
    fn expansion_registers_record_and_resolves_fields() {
        let parsed = parsed(quote!(
            struct A {
                #[inject]
                b: Arc<B>,
                c: u32,
            }
        ));
        let out = expand_service(parsed);
        let submit = out.submit();
        assert_eq!(submit.path, parse_quote!(__asena::inventory::submit));
        assert_eq!(
            submit.parse_body::<Expr>().expect("an expression"),
            parse_quote!(__asena::Registration(&__ASENA_RECORD_A))
        );
        assert_eq!(
            *out.construct_field("b"),
            parse_quote!(<Arc<B> as __asena::Injectable>::resolve(__resolver, "b")?)
        );
        assert_eq!(
            *out.construct_field("c"),
            parse_quote!(<u32 as __AsenaDefaultField>::__asena_default())
        );
        let deps: [Expr; 1] = [parse_quote!(<Arc<B> as __asena::Injectable>::DEPENDENCY)];
        assert_eq!(
            slice_elems(out.record_field("deps")),
            deps.iter().collect::<Vec<_>>()
        );
        assert!(out.declares_trait("__AsenaDefaultField"));
        assert!(out.mentions("__AsenaDefaultField"));
        assert_eq!(str_value(out.record_field("name")), "A");
    }
}
