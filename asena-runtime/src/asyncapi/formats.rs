//! Only standard `format`s in the document's schemas, so that any JSON Schema validator takes
//! them (Ajv's strict mode refuses a format it does not know).
//!
//! schemars writes Rust's numeric types as formats no JSON Schema version defines (`uint8`,
//! `uint`, `int64`, `double`, ...) and `IpAddr` as `ip`. [`standard_formats`] drops those and
//! keeps what they meant as standard keywords: an unsigned integer has `minimum: 0`, a type
//! whose range fits exactly in a JSON Schema bound gets `minimum` and `maximum`.

use schemars::Schema;
use serde_json::{Map, Value};

/// The formats JSON Schema (draft-07 and 2020-12) defines; any other is dropped.
const STANDARD: [&str; 19] = [
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

/// The range a Rust integer format stands for, where its bounds are exact in JSON (`i64` and
/// wider have none: the bounds of a 64-bit integer are not exact as a double).
fn bounds(format: &str) -> Option<(i64, Option<i64>)> {
    Some(match format {
        "int8" => (i8::MIN.into(), Some(i8::MAX.into())),
        "int16" => (i16::MIN.into(), Some(i16::MAX.into())),
        "int32" => (i32::MIN.into(), Some(i32::MAX.into())),
        "uint8" => (0, Some(u8::MAX.into())),
        "uint16" => (0, Some(u16::MAX.into())),
        "uint32" => (0, Some(u32::MAX.into())),
        "uint64" | "uint128" | "uint" => (0, None),
        _ => return None,
    })
}

/// A schemars transform (apply it recursively): removes a non-standard `format`, writing an
/// integer format's range as `minimum` / `maximum` where the schema does not already bound it.
pub(super) fn standard_formats(schema: &mut Schema) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    standardise(object);
}

fn standardise(object: &mut Map<String, Value>) {
    let Some(format) = object.get("format").and_then(Value::as_str) else {
        return;
    };
    if STANDARD.contains(&format) {
        return;
    }
    if let Some((min, max)) = bounds(format) {
        object.entry("minimum").or_insert(min.into());
        if let Some(max) = max {
            object.entry("maximum").or_insert(max.into());
        }
    }
    object.remove("format");
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn standardised(value: Value) -> Value {
        let mut schema = Schema::try_from(value).expect("a schema");
        standard_formats(&mut schema);
        schema.to_value()
    }

    #[test]
    fn rust_integer_formats_become_bounds() {
        let cases = [
            (
                json!({"type": "integer", "format": "uint"}),
                json!({"type": "integer", "minimum": 0}),
            ),
            (
                json!({"type": "integer", "format": "uint32", "minimum": 0}),
                json!({"type": "integer", "minimum": 0, "maximum": 4294967295u32}),
            ),
            (
                json!({"type": "integer", "format": "int32"}),
                json!({"type": "integer", "minimum": -2147483648, "maximum": 2147483647}),
            ),
            (
                json!({"type": "integer", "format": "int64"}),
                json!({"type": "integer"}),
            ),
            (
                json!({"type": "number", "format": "double"}),
                json!({"type": "number"}),
            ),
            (
                json!({"type": "string", "format": "ip"}),
                json!({"type": "string"}),
            ),
            // a bound the schema states is kept
            (
                json!({"type": "integer", "format": "uint8", "minimum": 1, "maximum": 9}),
                json!({"type": "integer", "minimum": 1, "maximum": 9}),
            ),
        ];
        for (i, (input, want)) in cases.into_iter().enumerate() {
            assert_eq!(standardised(input), want, "case {i}");
        }
    }

    #[test]
    fn standard_formats_stay() {
        for format in STANDARD {
            let schema = json!({"type": "string", "format": format});
            assert_eq!(standardised(schema.clone()), schema, "{format}");
        }
    }
}
