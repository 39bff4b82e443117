//! An example value made from a JSON Schema: what a server's AsyncAPI document shows for a
//! message whose type gives no example, and what generated code tests a message type with.
//!
//! [`example`] takes the schema's own `examples` or `default` first; otherwise it builds the
//! smallest value the schema accepts: the `const` or first `enum` value, every required
//! property of an object, `minItems` items of an array, a string of the format it declares
//! (`date-time`, `uuid`, `email`, `uri`, ...) or of its `minLength`, a number at its
//! `minimum`. A schema it cannot satisfy for sure (a `pattern`, `not`, a bound it cannot
//! meet) gives no example rather than a wrong one.

use serde_json::{Map, Value, json};

/// How deep [`example`] follows nested schemas (a recursive type ends there).
const DEPTH: usize = 16;

/// Follows a schema's reference (`$ref`) to the schema it names; gives a schema without one
/// back as it is.
pub type Resolve<'a> = dyn Fn(&'a Value) -> &'a Value + 'a;

/// An example value of `schema` (its references followed by `resolve`), or `None` when the
/// schema asks for something this cannot be sure to meet.
///
/// ```
/// use serde_json::json;
/// let schema = json!({"type": "object", "required": ["n"], "properties": {"n": {"type": "integer", "minimum": 1}}});
/// assert_eq!(asena_protocol::example::example(&schema, &|s| s), Some(json!({"n": 1})));
/// ```
pub fn example<'a>(schema: &'a Value, resolve: &Resolve<'a>) -> Option<Value> {
    build(schema, resolve, DEPTH)
}

fn build<'a>(schema: &'a Value, schemas: &Resolve<'a>, depth: usize) -> Option<Value> {
    let depth = depth.checked_sub(1)?;
    let schema = schemas(schema);
    let schema = match schema {
        Value::Bool(true) => return Some(json!({})),
        Value::Object(object) => object,
        _ => return None,
    };
    if schema.contains_key("not") || schema.contains_key("pattern") {
        return None;
    }
    // what the schema says itself, in this order
    let first = |key: &str| schema.get(key)?.as_array()?.first();
    if let Some(given) = first("examples")
        .or_else(|| schema.get("const"))
        .or_else(|| schema.get("default"))
        .or_else(|| first("enum"))
    {
        return Some(given.clone());
    }
    if let Some(variant) = first("oneOf").or_else(|| first("anyOf")) {
        return build(variant, schemas, depth);
    }
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        let mut merged = Map::new();
        for part in parts {
            match build(part, schemas, depth)? {
                Value::Object(fields) => merged.extend(fields),
                other if parts.len() == 1 => return Some(other),
                _ => return None,
            }
        }
        let own = object(schema, schemas, depth)?;
        merged.extend(own);
        return Some(merged.into());
    }
    match type_of(schema) {
        Some("object") => object(schema, schemas, depth).map(Value::Object),
        None if schema.contains_key("properties") => {
            object(schema, schemas, depth).map(Value::Object)
        }
        Some("array") => array(schema, schemas, depth),
        Some("string") => string(schema),
        Some("integer") => number(schema, true),
        Some("number") => number(schema, false),
        Some("boolean") => Some(false.into()),
        Some("null") => Some(Value::Null),
        _ => None,
    }
}

/// The first non-null type a schema allows.
fn type_of(schema: &Map<String, Value>) -> Option<&str> {
    match schema.get("type")? {
        Value::String(t) => Some(t),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .or(Some("null")),
        _ => None,
    }
}

/// Every required property, each with its example.
fn object<'a>(
    schema: &'a Map<String, Value>,
    schemas: &Resolve<'a>,
    depth: usize,
) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    let properties = schema.get("properties").and_then(Value::as_object);
    let required = schema.get("required").and_then(Value::as_array);
    for name in required.into_iter().flatten().filter_map(Value::as_str) {
        let property = properties.and_then(|p| p.get(name))?;
        out.insert(name.to_owned(), build(property, schemas, depth)?);
    }
    let min = schema
        .get("minProperties")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    (out.len() as u64 >= min).then_some(out)
}

fn array<'a>(schema: &'a Map<String, Value>, schemas: &Resolve<'a>, depth: usize) -> Option<Value> {
    let min = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0);
    if min == 0 {
        return Some(json!([]));
    }
    if min > 16 || schema.get("uniqueItems") == Some(&Value::Bool(true)) {
        return None;
    }
    let item = build(schema.get("items")?, schemas, depth)?;
    Some(vec![item; min as usize].into())
}

fn string(schema: &Map<String, Value>) -> Option<Value> {
    let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0);
    let max = schema
        .get("maxLength")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    let Some(format) = schema.get("format").and_then(Value::as_str) else {
        // "text", cut or repeated to fit the length bounds
        let len = 4.clamp(min, max.max(min));
        return (len <= max && len <= 4096).then(|| {
            "text"
                .chars()
                .cycle()
                .take(len as usize)
                .collect::<String>()
                .into()
        });
    };
    let text = match format {
        "date-time" => "2026-01-01T12:00:00Z",
        "date" => "2026-01-01",
        "time" => "12:00:00Z",
        "duration" => "PT1M",
        "email" | "idn-email" => "user@example.com",
        "hostname" | "idn-hostname" => "example.com",
        "ipv4" => "192.0.2.1",
        "ipv6" => "2001:db8::1",
        "uri" | "iri" => "https://example.com/",
        "uri-reference" | "iri-reference" => "/example",
        "uuid" => "00000000-0000-4000-8000-000000000000",
        _ => return None,
    };
    let chars = text.chars().count() as u64;
    (min..=max).contains(&chars).then(|| text.into())
}

fn number(schema: &Map<String, Value>, integer: bool) -> Option<Value> {
    let get = |key: &str| schema.get(key).and_then(Value::as_f64);
    let mut value = get("minimum")
        .unwrap_or(0.0)
        .max(get("exclusiveMinimum").map_or(f64::MIN, |m| m + 1.0));
    if let Some(max) = get("maximum") {
        value = value.min(max);
    }
    if let Some(max) = get("exclusiveMaximum") {
        value = value.min(max - 1.0);
    }
    if integer {
        value = value.ceil();
    }
    let fits = get("minimum").is_none_or(|m| value >= m)
        && get("exclusiveMinimum").is_none_or(|m| value > m)
        && get("maximum").is_none_or(|m| value <= m)
        && get("exclusiveMaximum").is_none_or(|m| value < m)
        && !schema.contains_key("multipleOf")
        && value.abs() < 9e15;
    match (fits, integer) {
        (false, _) => None,
        (true, true) => Some(json!(value as i64)),
        (true, false) => Some(json!(value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(schema: Value) -> Option<Value> {
        example(&schema, &|s| s)
    }

    #[test]
    fn the_smallest_value_the_schema_accepts() {
        let cases = [
            (json!({"type": "string"}), Some(json!("text"))),
            (
                json!({"type": "string", "minLength": 6}),
                Some(json!("textte")),
            ),
            (json!({"type": "string", "maxLength": 2}), Some(json!("te"))),
            (
                json!({"type": "string", "format": "uuid"}),
                Some(json!("00000000-0000-4000-8000-000000000000")),
            ),
            (
                json!({"type": "string", "format": "date-time"}),
                Some(json!("2026-01-01T12:00:00Z")),
            ),
            (json!({"type": "integer", "minimum": 3}), Some(json!(3))),
            (json!({"type": "integer", "maximum": -2}), Some(json!(-2))),
            (
                json!({"type": "integer", "exclusiveMinimum": 0}),
                Some(json!(1)),
            ),
            (json!({"type": "number"}), Some(json!(0.0))),
            (json!({"type": ["string", "null"]}), Some(json!("text"))),
            (json!({"type": "null"}), Some(Value::Null)),
            (json!({"type": "boolean"}), Some(json!(false))),
            (json!({"const": "error"}), Some(json!("error"))),
            (json!({"enum": ["a", "b"]}), Some(json!("a"))),
            (
                json!({"type": "array", "items": {"type": "integer"}}),
                Some(json!([])),
            ),
            (
                json!({"type": "array", "items": {"type": "integer"}, "minItems": 2}),
                Some(json!([0, 0])),
            ),
            (
                json!({
                    "type": "object",
                    "required": ["type", "n"],
                    "properties": {
                        "type": {"type": "string", "const": "move"},
                        "n": {"type": "integer", "minimum": 1},
                        "optional": {"type": "string"},
                    },
                }),
                Some(json!({"type": "move", "n": 1})),
            ),
            (
                json!({"examples": [{"a": 1}], "type": "object"}),
                Some(json!({"a": 1})),
            ),
            // what it cannot be sure to satisfy gives nothing
            (json!({"type": "string", "pattern": "^[a-z]+$"}), None),
            (
                json!({"type": "string", "format": "uuid", "maxLength": 4}),
                None,
            ),
            (json!({"type": "integer", "minimum": 5, "maximum": 4}), None),
            (json!({"type": "integer", "multipleOf": 7}), None),
            (json!({"type": "object", "required": ["x"]}), None),
        ];
        for (i, (schema, want)) in cases.into_iter().enumerate() {
            assert_eq!(of(schema.clone()), want, "case {i}: {schema}");
        }
    }

    #[test]
    fn references_are_followed_and_recursion_ends() {
        let schemas: &'static Value = Box::leak(Box::new(json!({
            "Point": {"type": "object", "required": ["x"], "properties": {"x": {"type": "integer"}}},
            "Node": {"type": "object", "required": ["next"], "properties": {"next": {"$ref": "#/components/schemas/Node"}}},
        })));
        let resolve = |s: &'static Value| -> &'static Value {
            let name = s
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"));
            match name.and_then(|n| schemas.get(n)) {
                Some(target) => target,
                None => s,
            }
        };
        let point = json!({"$ref": "#/components/schemas/Point"});
        let point: &'static Value = Box::leak(Box::new(point));
        assert_eq!(example(point, &resolve), Some(json!({"x": 0})));
        let node: &'static Value =
            Box::leak(Box::new(json!({"$ref": "#/components/schemas/Node"})));
        assert_eq!(example(node, &resolve), None);
    }
}
