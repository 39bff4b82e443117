//! JSON Schema to Rust types: one definition per object, union or string enum of the
//! document, named after its component or its place, with serde, schemars and garde
//! attributes from the schema's keywords.
//!
//! | schema | Rust |
//! |---|---|
//! | `type: object` with `properties` | a struct; optional properties are `Option`s; `additionalProperties: false` denies unknown fields, a schema collects them into a flattened map |
//! | `type: object` with only `additionalProperties` | `BTreeMap<String, T>` |
//! | `allOf` of objects | one struct with all their properties |
//! | `oneOf` / `anyOf` | an enum: internally tagged by `discriminator` or by a `const` property every variant has (the tag is left out of the variants' structs); otherwise untagged, tried in order |
//! | `enum` / `const` of strings | a unit enum with serde renames |
//! | `type: [T, "null"]`, a `null` branch of a `oneOf` | `Option<T>` |
//! | `string`, `integer` (`u64` when `minimum >= 0`, else `i64`), `number`, `boolean`, `array` | `String`, `u64`/`i64`, `f64`, `bool`, `Vec<T>` |
//! | `{}` | `serde_json::Value` |
//!
//! Constraints become garde rules: `minLength`/`maxLength` (in characters), `pattern`,
//! `minimum`/`maximum` (exclusive ones too), `multipleOf`, `minItems`/`maxItems`, formats
//! `email`, `uri`, `date-time` and `uuid` (other formats are annotations, as JSON Schema
//! has them by default). Keywords that change what is valid but have no rule here (`not`,
//! `if`, `patternProperties`, `uniqueItems`, ...) are errors naming their pointer.

use std::collections::{HashMap, HashSet};

use heck::{ToSnakeCase, ToUpperCamelCase};
use serde_json::Value;

use crate::Error;
use crate::source::{Loc, Sources};

/// The most type definitions one document may produce.
pub const MAX_DEFS: usize = 10_000;
/// The most nested schemas followed from one message.
pub const MAX_DEPTH: usize = 64;

const UNSUPPORTED: &[&str] = &[
    "not",
    "if",
    "then",
    "else",
    "patternProperties",
    "dependentSchemas",
    "dependentRequired",
    "prefixItems",
    "contains",
    "unevaluatedProperties",
    "unevaluatedItems",
    "propertyNames",
    "uniqueItems",
    "minProperties",
    "maxProperties",
];

/// A Rust type.
#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    Str,
    Bool,
    /// `i64` when signed, else `u64`.
    Int {
        signed: bool,
    },
    Float,
    Value,
    Unit,
    Option(Box<Ty>),
    Vec(Box<Ty>),
    Map(Box<Ty>),
    Boxed(Box<Ty>),
    /// A definition, by index.
    Named(usize),
}

/// A number in a rule, typed as its field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    Int(i64),
    Uint(u64),
    Float(f64),
}

/// One garde rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// A string's length in characters.
    Chars {
        min: Option<u64>,
        max: Option<u64>,
    },
    /// A list's number of items.
    Items {
        min: Option<u64>,
        max: Option<u64>,
    },
    Range {
        min: Option<Num>,
        max: Option<Num>,
    },
    Above(f64),
    Below(f64),
    MultipleOf(f64),
    Pattern(String),
    Email,
    Url,
    DateTime,
    Uuid,
    /// Rules for each item of a list or value of a map.
    Inner(Box<Rules>),
    /// A number `enum`.
    OneOf(Vec<f64>),
}

/// The rules of one position, and whether garde dives into it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    pub list: Vec<Rule>,
    pub dive: bool,
}

impl Rules {
    fn dive() -> Rules {
        Rules {
            list: Vec::new(),
            dive: true,
        }
    }
}

/// A named type.
#[derive(Debug)]
pub struct Def {
    pub name: String,
    pub doc: Option<String>,
    pub body: Body,
}

#[derive(Debug)]
pub enum Body {
    /// Being built (a reference back to it is a cycle, boxed).
    Pending,
    Struct {
        fields: Vec<Field>,
        deny_unknown: bool,
        /// `additionalProperties: <schema>` beside properties: a flattened map.
        rest: Option<(Ty, Rules)>,
    },
    /// A string enum: (variant, value).
    Values(Vec<(String, String)>),
    Union {
        tag: Option<String>,
        variants: Vec<Variant>,
    },
}

#[derive(Debug)]
pub struct Field {
    pub json: String,
    pub ident: String,
    pub ty: Ty,
    pub required: bool,
    pub doc: Option<String>,
    pub rules: Rules,
}

#[derive(Debug)]
pub struct Variant {
    pub name: String,
    /// The tag's value, for a tagged union.
    pub tag: Option<String>,
    pub ty: Ty,
    pub rules: Rules,
    pub doc: Option<String>,
}

/// Every definition made so far, and the names taken.
#[derive(Debug)]
pub struct TypeSpace<'s> {
    sources: &'s Sources,
    pub defs: Vec<Def>,
    by_loc: HashMap<(Loc, Option<String>), usize>,
    names: HashSet<String>,
    /// With validation skipped at generation, no rules are emitted (`dive`s stay).
    rules: bool,
}

impl<'s> TypeSpace<'s> {
    pub fn new(sources: &'s Sources, rules: bool) -> Self {
        TypeSpace {
            sources,
            defs: Vec::new(),
            by_loc: HashMap::new(),
            names: HashSet::new(),
            rules,
        }
    }

    /// A type name not taken yet, from `hint`.
    pub fn fresh_name(&mut self, hint: &str) -> String {
        unique(&mut self.names, type_name(hint), "")
    }

    fn err(&self, loc: &Loc, message: impl Into<String>) -> Error {
        self.sources.error(loc, message)
    }

    /// Whether garde dives into a value of `ty`.
    pub fn dives(&self, ty: &Ty) -> bool {
        match ty {
            Ty::Named(id) => !matches!(self.defs[*id].body, Body::Values(_)),
            Ty::Option(t) | Ty::Vec(t) | Ty::Map(t) | Ty::Boxed(t) => self.dives(t),
            _ => false,
        }
    }

    /// The type of the schema at `loc` (a `$ref` followed), and its rules.
    pub fn ty(&mut self, loc: &Loc, hint: &str, depth: usize) -> Result<(Ty, Rules), Error> {
        if depth > MAX_DEPTH {
            return Err(self.err(loc, format!("schemas nest deeper than {MAX_DEPTH}")));
        }
        let sources = self.sources;
        let written = sources.get(loc)?;
        let (loc, value) = sources.resolve(loc)?;
        let hint = if written.get("$ref").is_some() {
            loc.last()
        } else {
            hint.to_owned()
        };
        let value = match value {
            Value::Bool(true) => return Ok((Ty::Value, Rules::default())),
            Value::Bool(false) => return Err(self.err(&loc, "a `false` schema accepts nothing")),
            Value::Object(_) => value,
            _ => return Err(self.err(&loc, "expected a schema (an object)")),
        };
        for keyword in UNSUPPORTED {
            if value.get(*keyword).is_some() {
                return Err(self.err(
                    &loc.join(keyword),
                    format!("`{keyword}` is not supported by the generator"),
                ));
            }
        }
        // `oneOf: [T, {type: null}]` is an optional T.
        for key in ["oneOf", "anyOf"] {
            if let Some(Value::Array(branches)) = value.get(key)
                && value.get("properties").is_none()
            {
                let (nulls, others): (Vec<usize>, Vec<usize>) =
                    (0..branches.len()).partition(|&i| is_null_schema(&branches[i]));
                if !nulls.is_empty() && others.len() == 1 {
                    let (ty, rules) = self.ty(&loc.join(key).join(others[0]), &hint, depth + 1)?;
                    return Ok((Ty::Option(Box::new(ty)), rules));
                }
            }
        }
        // `allOf: [{$ref: X}, {description: ..}]`: X, annotated.
        if let Some(Value::Array(parts)) = value.get("allOf")
            && value.get("properties").is_none()
        {
            let typed: Vec<usize> = (0..parts.len())
                .filter(|&i| !annotation_only(&parts[i]))
                .collect();
            if let [one] = typed.as_slice()
                && !self.is_object_at(&loc.join("allOf").join(*one))
            {
                return self.ty(&loc.join("allOf").join(*one), &hint, depth + 1);
            }
        }
        if let Some(values) = string_values(value) {
            let nullable = values.iter().any(Option::is_none);
            let id = self.def(&loc, &hint, None, depth)?;
            let _ = values;
            let ty = Ty::Named(id);
            return Ok((
                if nullable {
                    Ty::Option(Box::new(ty))
                } else {
                    ty
                },
                Rules::default(),
            ));
        }
        if is_object_like(value) {
            let id = self.def(&loc, &hint, None, depth)?;
            return Ok((self.named(id), Rules::dive()));
        }
        self.primitive(&loc, value, &hint, depth)
    }

    /// Whether the schema at `loc` (a `$ref` followed) is an object or an `allOf` of them.
    fn is_object_at(&self, loc: &Loc) -> bool {
        self.sources.resolve(loc).is_ok_and(|(_, v)| {
            is_object_like(v) || v.get("type").and_then(Value::as_str) == Some("object")
        })
    }

    /// `Named(id)`, boxed when `id` is still being built (a recursive type).
    fn named(&self, id: usize) -> Ty {
        if matches!(self.defs[id].body, Body::Pending) {
            Ty::Boxed(Box::new(Ty::Named(id)))
        } else {
            Ty::Named(id)
        }
    }

    /// The definition of the object, union or string enum at `loc` (a `$ref` followed),
    /// without the property `omit` (a union's tag).
    pub fn def(
        &mut self,
        loc: &Loc,
        hint: &str,
        omit: Option<&str>,
        depth: usize,
    ) -> Result<usize, Error> {
        let sources = self.sources;
        let written_ref = sources.get(loc)?.get("$ref").is_some();
        let (loc, value) = sources.resolve(loc)?;
        let key = (loc.clone(), omit.map(str::to_owned));
        if let Some(&id) = self.by_loc.get(&key) {
            return Ok(id);
        }
        if self.defs.len() >= MAX_DEFS {
            return Err(self.err(
                &loc,
                format!("the document makes more than {MAX_DEFS} types"),
            ));
        }
        let hint = if written_ref {
            loc.last()
        } else {
            hint.to_owned()
        };
        let name = self.fresh_name(&hint);
        let id = self.defs.len();
        self.defs.push(Def {
            name: name.clone(),
            doc: doc_of(value),
            body: Body::Pending,
        });
        self.by_loc.insert(key, id);
        let body = self.body(&loc, value, &name, omit, depth + 1)?;
        self.defs[id].body = body;
        Ok(id)
    }

    fn body(
        &mut self,
        loc: &Loc,
        value: &Value,
        name: &str,
        omit: Option<&str>,
        depth: usize,
    ) -> Result<Body, Error> {
        if let Some(values) = string_values(value) {
            let mut taken = HashSet::new();
            let variants = values
                .into_iter()
                .flatten()
                .map(|v| {
                    let variant = unique(&mut taken, variant_name(&v, "Empty"), "");
                    (variant, v)
                })
                .collect();
            return Ok(Body::Values(variants));
        }
        let union = ["oneOf", "anyOf"]
            .into_iter()
            .find(|k| value.get(*k).is_some() && value.get("properties").is_none());
        if let Some(key) = union {
            let discriminator = match value.get("discriminator") {
                Some(Value::String(p)) => Some(p.clone()),
                Some(Value::Object(d)) => d
                    .get("propertyName")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                _ => None,
            };
            return self.union(&loc.join(key), discriminator, name, omit, depth);
        }
        if value.get("allOf").is_some() && value.get("properties").is_none() {
            let mut parts = Parts::default();
            self.collect(loc, &mut parts, depth)?;
            return self.object(loc, parts, name, omit, depth);
        }
        let mut parts = Parts::default();
        self.collect(loc, &mut parts, depth)?;
        self.object(loc, parts, name, omit, depth)
    }

    /// Gathers the properties of the object at `loc`, through `allOf` and `$ref`s.
    fn collect(&self, loc: &Loc, parts: &mut Parts, depth: usize) -> Result<(), Error> {
        if depth > MAX_DEPTH {
            return Err(self.err(loc, format!("schemas nest deeper than {MAX_DEPTH}")));
        }
        let (loc, value) = self.sources.resolve(loc)?;
        for keyword in UNSUPPORTED {
            if value.get(*keyword).is_some() {
                return Err(self.err(
                    &loc.join(keyword),
                    format!("`{keyword}` is not supported by the generator"),
                ));
            }
        }
        if ["oneOf", "anyOf"].iter().any(|k| value.get(*k).is_some()) {
            return Err(self.err(
                &loc,
                "a `oneOf`/`anyOf` inside an `allOf` or beside `properties` is not supported",
            ));
        }
        if let Some(t) = value.get("type").and_then(Value::as_str)
            && t != "object"
        {
            return Err(self.err(
                &loc.join("type"),
                format!("an `allOf` part must be an object, not `{t}`"),
            ));
        }
        if let Some(Value::Array(all)) = value.get("allOf") {
            for i in 0..all.len() {
                self.collect(&loc.join("allOf").join(i), parts, depth + 1)?;
            }
        }
        if let Some(Value::Object(props)) = value.get("properties") {
            for name in props.keys() {
                if !parts.props.iter().any(|(n, _)| n == name) {
                    parts
                        .props
                        .push((name.clone(), loc.join("properties").join(name)));
                } else {
                    // A later part restating a property keeps the first schema.
                }
            }
        }
        if let Some(Value::Array(required)) = value.get("required") {
            for r in required.iter().filter_map(Value::as_str) {
                parts.required.insert(r.to_owned());
            }
        }
        match value.get("additionalProperties") {
            Some(Value::Bool(false)) => parts.deny_unknown = true,
            Some(Value::Object(_)) => parts.rest = Some(loc.join("additionalProperties")),
            _ => {}
        }
        if parts.doc.is_none() {
            parts.doc = doc_of(value);
        }
        Ok(())
    }

    fn object(
        &mut self,
        loc: &Loc,
        parts: Parts,
        name: &str,
        omit: Option<&str>,
        depth: usize,
    ) -> Result<Body, Error> {
        let mut fields = Vec::new();
        let mut idents = HashSet::new();
        for (json, ploc) in &parts.props {
            if Some(json.as_str()) == omit {
                continue;
            }
            let hint = format!("{name}{}", type_name(json));
            let (ty, rules) = self.ty(ploc, &hint, depth + 1)?;
            let required = parts.required.contains(json);
            // The JSON name itself where it is a Rust identifier: garde names a violation's
            // path after the field, so the path is then the JSON one (`userId`).
            let ident = if is_identifier(json) {
                json.clone()
            } else {
                field_name(json)
            };
            let ident = unique(&mut idents, ident, "_");
            let doc = self.sources.resolve(ploc).ok().and_then(|(_, v)| doc_of(v));
            fields.push(Field {
                json: json.clone(),
                ident,
                ty,
                required,
                doc,
                rules: self.keep(rules),
            });
        }
        for r in &parts.required {
            if !parts.props.iter().any(|(n, _)| n == r) && Some(r.as_str()) != omit {
                return Err(self.err(
                    &loc.join("required"),
                    format!("`{r}` is required but not among the properties"),
                ));
            }
        }
        let rest = match &parts.rest {
            Some(rloc) => {
                let (ty, rules) = self.ty(rloc, &format!("{name}Value"), depth + 1)?;
                if parts.props.is_empty() {
                    // Handled as a map type by `ty`; an object with only extra properties.
                    let rules = self.keep(rules);
                    Some((ty, rules))
                } else {
                    let rules = self.keep(rules);
                    Some((ty, rules))
                }
            }
            None => None,
        };
        Ok(Body::Struct {
            fields,
            deny_unknown: parts.deny_unknown,
            rest,
        })
    }

    /// The enum of a `oneOf`/`anyOf` at `at`. `omit` is the tag of an enclosing enum, left
    /// out of every branch (they all have the same value for it).
    /// `discriminator` is the schema's own, if it names one.
    fn union(
        &mut self,
        at: &Loc,
        discriminator: Option<String>,
        name: &str,
        omit: Option<&str>,
        depth: usize,
    ) -> Result<Body, Error> {
        let Some(Value::Array(branches)) = self.sources.get(at).ok().cloned() else {
            return Err(self.err(at, "expected a list of schemas"));
        };
        let locs: Vec<Loc> = (0..branches.len()).map(|i| at.join(i)).collect();
        let tag = match discriminator {
            Some(p) => Some(p),
            None => self.common_tag(&locs),
        };
        let mut variants = Vec::new();
        let mut taken = HashSet::new();
        for (i, bloc) in locs.iter().enumerate() {
            let written = self.sources.get(bloc)?;
            let (rloc, resolved) = self.sources.resolve(bloc)?;
            let doc = doc_of(resolved);
            let label = if written.get("$ref").is_some() {
                rloc.last()
            } else if let Some(t) = resolved.get("title").and_then(Value::as_str) {
                t.to_owned()
            } else {
                format!("Variant{}", i + 1)
            };
            let (vname, tag_value, ty, rules) = match &tag {
                Some(tag) => {
                    let tag_value = self.tag_value(&rloc, tag)?.ok_or_else(|| {
                        self.err(
                            bloc,
                            format!("this branch has no `const` value for the tag `{tag}`"),
                        )
                    })?;
                    let id = self.def(
                        bloc,
                        &format!("{name}{}", type_name(&label)),
                        Some(tag),
                        depth + 1,
                    )?;
                    (
                        type_name(&tag_value),
                        Some(tag_value),
                        self.named(id),
                        Rules::dive(),
                    )
                }
                None if omit.is_some() && self.is_object_at(bloc) => {
                    let hint = format!("{name}{}", type_name(&label));
                    let id = self.def(bloc, &hint, omit, depth + 1)?;
                    (type_name(&label), None, self.named(id), Rules::dive())
                }
                None => {
                    let (ty, rules) =
                        self.ty(bloc, &format!("{name}{}", type_name(&label)), depth + 1)?;
                    (type_name(&label), None, ty, self.keep(rules))
                }
            };
            let vname = unique(
                &mut taken,
                variant_name(&vname, &format!("Variant{}", i + 1)),
                "",
            );
            variants.push(Variant {
                name: vname,
                tag: tag_value,
                ty,
                rules,
                doc,
            });
        }
        Ok(Body::Union { tag, variants })
    }

    /// The property every schema at `locs` has with a distinct constant string value, if
    /// one exists: the tag of an internally tagged enum. The tag is then required on the
    /// wire, also where a schema leaves the property optional.
    pub fn common_tag(&self, locs: &[Loc]) -> Option<String> {
        let mut candidates: Option<Vec<String>> = None;
        for loc in locs {
            let consts = self.const_props(loc, 0)?;
            candidates = Some(match candidates {
                None => consts,
                Some(c) => c.into_iter().filter(|n| consts.contains(n)).collect(),
            });
        }
        let candidates = candidates?;
        // Prefer the conventional names, then the first in order.
        let mut ordered: Vec<&String> = candidates.iter().collect();
        ordered.sort_by_key(|n| !matches!(n.as_str(), "type" | "event" | "kind" | "action" | "op"));
        for tag in ordered {
            let mut seen = HashSet::new();
            let distinct = locs.iter().all(|loc| {
                self.tag_value(loc, tag)
                    .ok()
                    .flatten()
                    .is_some_and(|v| seen.insert(v))
            });
            if distinct {
                return Some(tag.clone());
            }
        }
        None
    }

    /// The properties with one constant string value of the object at `loc`; of a union,
    /// those every branch has. `None` when it is neither.
    fn const_props(&self, loc: &Loc, depth: usize) -> Option<Vec<String>> {
        if depth > MAX_DEPTH {
            return None;
        }
        let (loc, value) = self.sources.resolve(loc).ok()?;
        if let Some((key, n)) = union_of(value) {
            let mut common: Option<Vec<String>> = None;
            for i in 0..n {
                let props = self.const_props(&loc.join(key).join(i), depth + 1)?;
                common = Some(match common {
                    None => props,
                    Some(c) => c.into_iter().filter(|p| props.contains(p)).collect(),
                });
            }
            return common;
        }
        let mut parts = Parts::default();
        self.collect(&loc, &mut parts, 0).ok()?;
        Some(
            parts
                .props
                .iter()
                .filter(|(_, ploc)| {
                    self.sources
                        .resolve(ploc)
                        .ok()
                        .and_then(|(_, v)| single_string(v))
                        .is_some()
                })
                .map(|(name, _)| name.clone())
                .collect(),
        )
    }

    /// The constant value of the property `tag` in the object at `loc` (through `allOf`);
    /// of a union, the one value all its branches have.
    pub fn tag_value(&self, loc: &Loc, tag: &str) -> Result<Option<String>, Error> {
        let (rloc, value) = self.sources.resolve(loc)?;
        if let Some((key, n)) = union_of(value) {
            let mut found: Option<String> = None;
            for i in 0..n {
                match (self.tag_value(&rloc.join(key).join(i), tag)?, &found) {
                    (None, _) => return Ok(None),
                    (Some(v), Some(f)) if v != *f => return Ok(None),
                    (Some(v), _) => found = Some(v),
                }
            }
            return Ok(found);
        }
        let mut parts = Parts::default();
        self.collect(&rloc, &mut parts, 0)?;
        Ok(parts
            .props
            .iter()
            .find(|(n, _)| n == tag)
            .and_then(|(_, ploc)| self.sources.resolve(ploc).ok())
            .and_then(|(_, v)| single_string(v)))
    }

    fn keep(&self, rules: Rules) -> Rules {
        if self.rules {
            rules
        } else {
            Rules {
                list: Vec::new(),
                dive: rules.dive,
            }
        }
    }

    fn primitive(
        &mut self,
        loc: &Loc,
        value: &Value,
        hint: &str,
        depth: usize,
    ) -> Result<(Ty, Rules), Error> {
        let types: Vec<&str> = match value.get("type") {
            None => Vec::new(),
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            Some(_) => {
                return Err(self.err(&loc.join("type"), "expected a type name or a list of them"));
            }
        };
        let nullable = types.contains(&"null");
        let others: Vec<&str> = types.iter().copied().filter(|t| *t != "null").collect();
        let (ty, rules) = match others.as_slice() {
            [] if nullable => (Ty::Unit, Rules::default()),
            [] => (Ty::Value, Rules::default()),
            [one] => self.typed(loc, value, one, hint, depth)?,
            _ => (Ty::Value, Rules::default()),
        };
        let ty = if nullable && ty != Ty::Unit && ty != Ty::Value {
            Ty::Option(Box::new(ty))
        } else {
            ty
        };
        Ok((ty, rules))
    }

    fn typed(
        &mut self,
        loc: &Loc,
        value: &Value,
        t: &str,
        hint: &str,
        depth: usize,
    ) -> Result<(Ty, Rules), Error> {
        let mut rules = Rules::default();
        let num = |key: &str| value.get(key).and_then(Value::as_f64);
        let uint = |key: &str| value.get(key).and_then(Value::as_u64);
        let ty = match t {
            "string" => {
                if uint("minLength").is_some() || uint("maxLength").is_some() {
                    rules.list.push(Rule::Chars {
                        min: uint("minLength"),
                        max: uint("maxLength"),
                    });
                }
                if let Some(pattern) = value.get("pattern").and_then(Value::as_str) {
                    let pattern = crate::pattern::translate(pattern)
                        .map_err(|m| self.err(&loc.join("pattern"), m))?;
                    rules.list.push(Rule::Pattern(pattern));
                }
                match value.get("format").and_then(Value::as_str) {
                    Some("email") => rules.list.push(Rule::Email),
                    Some("uri" | "url") => rules.list.push(Rule::Url),
                    Some("date-time") => rules.list.push(Rule::DateTime),
                    Some("uuid") => rules.list.push(Rule::Uuid),
                    _ => {}
                }
                Ty::Str
            }
            "integer" => {
                let min = num("minimum").or(num("exclusiveMinimum").map(|m| m.floor() + 1.0));
                let max = num("maximum").or(num("exclusiveMaximum").map(|m| m.ceil() - 1.0));
                let signed = !min.is_some_and(|m| m >= 0.0);
                let as_num = |v: f64| {
                    if signed {
                        Num::Int(v as i64)
                    } else {
                        Num::Uint(v as u64)
                    }
                };
                // `u64` already says `minimum: 0`, and each type its own largest and smallest
                // value (a bound past them would not even be a literal of the field's type).
                let (lowest, highest) = if signed {
                    (i64::MIN as f64, i64::MAX as f64)
                } else {
                    (0.0, u64::MAX as f64)
                };
                let min = min.filter(|m| *m > lowest);
                let max = max.filter(|m| *m < highest);
                if min.is_some() || max.is_some() {
                    rules.list.push(Rule::Range {
                        min: min.map(as_num),
                        max: max.map(as_num),
                    });
                }
                if let Some(m) = num("multipleOf") {
                    rules.list.push(Rule::MultipleOf(m));
                }
                if let Some(values) = number_values(value) {
                    rules.list.push(Rule::OneOf(values));
                }
                Ty::Int { signed }
            }
            "number" => {
                if num("minimum").is_some() || num("maximum").is_some() {
                    rules.list.push(Rule::Range {
                        min: num("minimum").map(Num::Float),
                        max: num("maximum").map(Num::Float),
                    });
                }
                if let Some(m) = num("exclusiveMinimum") {
                    rules.list.push(Rule::Above(m));
                }
                if let Some(m) = num("exclusiveMaximum") {
                    rules.list.push(Rule::Below(m));
                }
                if let Some(m) = num("multipleOf") {
                    rules.list.push(Rule::MultipleOf(m));
                }
                if let Some(values) = number_values(value) {
                    rules.list.push(Rule::OneOf(values));
                }
                Ty::Float
            }
            "boolean" => Ty::Bool,
            "null" => Ty::Unit,
            "array" => {
                if let Some(Value::Array(_)) = value.get("items") {
                    return Err(self.err(
                        &loc.join("items"),
                        "tuple `items` (a list of schemas) is not supported",
                    ));
                }
                let (item, item_rules) = match value.get("items") {
                    Some(_) => self.ty(&loc.join("items"), &format!("{hint}Item"), depth + 1)?,
                    None => (Ty::Value, Rules::default()),
                };
                if uint("minItems").is_some() || uint("maxItems").is_some() {
                    rules.list.push(Rule::Items {
                        min: uint("minItems"),
                        max: uint("maxItems"),
                    });
                }
                if !item_rules.list.is_empty() {
                    rules.list.push(Rule::Inner(Box::new(Rules {
                        list: item_rules.list,
                        dive: false,
                    })));
                }
                rules.dive = item_rules.dive;
                Ty::Vec(Box::new(item))
            }
            "object" => match value.get("additionalProperties") {
                Some(Value::Object(_)) => {
                    let (item, item_rules) = self.ty(
                        &loc.join("additionalProperties"),
                        &format!("{hint}Value"),
                        depth + 1,
                    )?;
                    rules.dive = item_rules.dive;
                    if !item_rules.list.is_empty() {
                        rules.list.push(Rule::Inner(Box::new(Rules {
                            list: item_rules.list,
                            dive: false,
                        })));
                    }
                    Ty::Map(Box::new(item))
                }
                _ => Ty::Map(Box::new(Ty::Value)),
            },
            other => return Err(self.err(&loc.join("type"), format!("unknown type `{other}`"))),
        };
        Ok((ty, rules))
    }
}

#[derive(Default)]
struct Parts {
    props: Vec<(String, Loc)>,
    required: HashSet<String>,
    deny_unknown: bool,
    rest: Option<Loc>,
    doc: Option<String>,
}

/// The key (`oneOf` or `anyOf`) and length of a union schema without properties of its own.
fn union_of(value: &Value) -> Option<(&'static str, usize)> {
    if value.get("properties").is_some() {
        return None;
    }
    ["oneOf", "anyOf"]
        .into_iter()
        .find_map(|k| value.get(k).and_then(Value::as_array).map(|a| (k, a.len())))
}

/// An object with properties, an `allOf`, or a union: a definition of its own.
fn is_object_like(value: &Value) -> bool {
    value.get("properties").is_some()
        || value.get("allOf").is_some()
        || value.get("oneOf").is_some()
        || value.get("anyOf").is_some()
}

/// A schema that only annotates (no type, no constraint).
fn annotation_only(value: &Value) -> bool {
    value.as_object().is_some_and(|map| {
        map.keys().all(|k| {
            matches!(
                k.as_str(),
                "description"
                    | "title"
                    | "examples"
                    | "example"
                    | "default"
                    | "deprecated"
                    | "readOnly"
                    | "writeOnly"
                    | "$comment"
            )
        })
    })
}

fn is_null_schema(value: &Value) -> bool {
    value.get("type").and_then(Value::as_str) == Some("null")
        || value.get("const").is_some_and(Value::is_null)
}

/// The values of a string `enum` or `const` (`None` for a `null` among them); `None` when
/// the schema is not one.
fn string_values(value: &Value) -> Option<Vec<Option<String>>> {
    let values: Vec<Value> = match (value.get("enum"), value.get("const")) {
        (Some(Value::Array(items)), _) => items.clone(),
        (None, Some(c)) => vec![c.clone()],
        _ => return None,
    };
    let strings: Vec<Option<String>> = values
        .iter()
        .map(|v| match v {
            Value::String(s) => Some(Some(s.clone())),
            Value::Null => Some(None),
            _ => None,
        })
        .collect::<Option<_>>()?;
    strings.iter().any(Option::is_some).then_some(strings)
}

/// The values of a number `enum` (or `const`).
fn number_values(value: &Value) -> Option<Vec<f64>> {
    match (value.get("enum"), value.get("const")) {
        (Some(Value::Array(items)), _) => items.iter().map(Value::as_f64).collect(),
        (None, Some(c)) => c.as_f64().map(|v| vec![v]),
        _ => None,
    }
}

/// The one string a schema allows (`const`, or an `enum` of one).
fn single_string(value: &Value) -> Option<String> {
    match string_values(value)?.as_slice() {
        [Some(one)] => Some(one.clone()),
        _ => None,
    }
}

fn doc_of(value: &Value) -> Option<String> {
    ["description", "title"]
        .iter()
        .find_map(|k| value.get(*k).and_then(Value::as_str))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// `name`, or when `taken` has it, `name` with the first free number after `separator`
/// (`Message2`, `user_id_2`); recorded as taken.
pub fn unique(taken: &mut HashSet<String>, name: String, separator: &str) -> String {
    let mut candidate = name.clone();
    let mut n = 2;
    while !taken.insert(candidate.clone()) {
        candidate = format!("{name}{separator}{n}");
        n += 1;
    }
    candidate
}

/// `text` with every character that is not an ASCII letter or digit made a word break.
fn words(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { ' ' })
        .collect()
}

/// A Rust type name (UpperCamelCase, starting with a letter) from any text.
pub fn type_name(text: &str) -> String {
    let name = words(text).to_upper_camel_case();
    match name.chars().next() {
        None => String::new(),
        Some(c) if c.is_ascii_digit() => format!("N{name}"),
        Some(_) if is_reserved_type(&name) => format!("{name}Type"),
        Some(_) => name,
    }
}

/// Whether `text` is a plain Rust identifier (not a keyword): a field of that name needs no
/// serde rename.
pub fn is_identifier(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && text != "_"
        && syn::parse_str::<syn::Ident>(text).is_ok()
}

/// A Rust enum variant name from `text`, `fallback` when it has no letter or digit.
pub fn variant_name(text: &str, fallback: &str) -> String {
    match type_name(text) {
        name if name.is_empty() => fallback.to_owned(),
        name => name,
    }
}

/// A Rust field or module name (snake_case) from any text; `r#` is added where it is a
/// keyword when it is printed.
pub fn field_name(text: &str) -> String {
    let name = match words(text).to_snake_case() {
        name if name.is_empty() => "field".to_owned(),
        name if name.starts_with(|c: char| c.is_ascii_digit()) => format!("n{name}"),
        name => name,
    };
    if matches!(name.as_str(), "self" | "super" | "crate" | "extern") {
        format!("{name}_")
    } else {
        name
    }
}

fn is_reserved_type(name: &str) -> bool {
    matches!(
        name,
        "Self"
            | "Option"
            | "Result"
            | "String"
            | "Vec"
            | "Box"
            | "Some"
            | "None"
            | "Ok"
            | "Err"
            | "Value"
            | "BTreeMap"
    )
}
