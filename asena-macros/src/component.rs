//! What every component macro shares: checking the item is a plain struct, collecting the
//! `#[inject]` fields, and expanding the registration record plus the `Component` impl.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Item, ItemStruct, LitStr};

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
            return Err(syn::Error::new(
                item_span(&other),
                format!(
                    "{macro_name} can only be applied to a struct, not {what}\n\
                     hint: declare a struct, e.g. `{macro_name} struct MyComponent {{ .. }}`"
                ),
            ));
        }
    };
    if !item.generics.params.is_empty() {
        return Err(syn::Error::new(
            item.generics.span(),
            format!(
                "{macro_name} does not support generic structs: the container builds exactly one \
                 instance of each registered type\n\
                 hint: register a concrete type, e.g. `type UserCache = Cache<User>;` wrapped in \
                 its own struct"
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
                if let Err(e) = attr.meta.require_path_only() {
                    let e = syn::Error::new(
                        e.span(),
                        "`#[inject]` takes no arguments\nhint: write `#[inject]` alone",
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

fn item_span(item: &Item) -> proc_macro2::Span {
    match item {
        Item::Enum(e) => e.enum_token.span(),
        Item::Fn(f) => f.sig.fn_token.span(),
        Item::Impl(i) => i.impl_token.span(),
        Item::Trait(t) => t.trait_token.span(),
        Item::Union(u) => u.union_token.span(),
        Item::Mod(m) => m.mod_token.span(),
        other => other.span(),
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
        quote_spanned!(ty.span()=> <#ty as __asena::Inject>::DEPENDENCY)
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
            quote_spanned!(ty.span()=> #member: <#ty as __asena::Inject>::resolve(__resolver, #field_name)?)
        } else {
            quote_spanned!(ty.span()=> #member: <#ty as ::core::default::Default>::default())
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

            #extra_items
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(tokens: TokenStream) -> String {
        match parse_struct(tokens, "#[service]") {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn rejects_enums_with_hint() {
        let msg = err(quote!(
            enum A {
                X,
            }
        ));
        assert!(msg.starts_with("#[service] can only be applied to a struct, not an enum"));
        assert!(msg.contains("hint:"));
    }

    #[test]
    fn rejects_generics() {
        let msg = err(quote!(
            struct A<T> {
                x: T,
            }
        ));
        assert!(msg.starts_with("#[service] does not support generic structs"));
    }

    #[test]
    fn strips_inject_and_keeps_other_attributes() {
        let parsed = parse_struct(
            quote!(struct A { #[inject] #[allow(dead_code)] b: Arc<B>, c: u32 }),
            "#[service]",
        )
        .expect("valid struct");
        let field = parsed.item.fields.iter().next().expect("one field");
        assert_eq!(field.attrs.len(), 1);
        assert!(field.attrs[0].path().is_ident("allow"));
        assert!(parsed.fields[0].inject);
        assert!(!parsed.fields[1].inject);
    }

    #[test]
    fn inject_with_arguments_is_an_error() {
        let msg = err(quote!(struct A { #[inject(name = "x")] b: Arc<B> }));
        assert!(msg.starts_with("`#[inject]` takes no arguments"));
    }

    #[test]
    fn expansion_registers_record_and_resolves_fields() {
        let parsed = parse_struct(
            quote!(struct A { #[inject] b: Arc<B>, c: u32 }),
            "#[service]",
        )
        .expect("valid struct");
        let out = expand(
            parsed,
            Expansion {
                rt: quote!(::asena_runtime),
                name: None,
                kind: quote!(__asena::ComponentKind::Service),
                extra_deps: Vec::new(),
                extra_items: TokenStream::new(),
            },
        )
        .to_string();
        assert!(out.contains("inventory :: submit !"));
        assert!(out.contains("< Arc < B > as __asena :: Inject > :: resolve (__resolver , \"b\")"));
        assert!(out.contains("< u32 as :: core :: default :: Default > :: default ()"));
        assert!(out.contains("name : \"A\""));
    }
}
