//! W3C Trace Context (`traceparent`) as it travels between instances: in Asena's envelope
//! (`"tp"`, see [`wire`](crate::wire)) and in the managed envelope (`"traceparent"`, see
//! [`managed`](crate::managed)). Receivers that do not know the field ignore it, so fleets
//! with Asena or Ignis servers keep working.
//!
//! A [`TraceParent`] is `00-<trace id: 32 hex>-<parent id: 16 hex>-<flags: 2 hex>`. Parsing
//! follows the W3C recommendation: lower-case hex only, neither id all zeros, version `ff`
//! refused, a later version read by its first four fields; anything else is no context
//! (`None`), never an error, and costs at most one pass over 55 bytes whatever the input's
//! length.
//!
//! ```
//! use asena_protocol::trace::TraceParent;
//!
//! let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
//! assert_eq!(parent.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
//! assert!(parent.sampled());
//! // The hop to another instance: same trace, a new parent id (the sending span's).
//! let hop = parent.child([1, 2, 3, 4, 5, 6, 7, 8]);
//! assert_eq!(hop.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01");
//! assert_eq!(TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), None);
//! ```

use std::fmt;

/// The length of a version-00 `traceparent`.
const LEN: usize = 55;

/// A trace's id: 16 bytes, written as 32 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 16]);

/// A span's id: 8 bytes, written as 16 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId([u8; 8]);

/// A W3C `traceparent`: the trace, the span that caused this hop, and the flags (see the
/// [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: TraceId,
    parent_id: SpanId,
    flags: u8,
}

impl TraceParent {
    /// A context with these ids and flags; `None` when either id is all zeros (invalid in
    /// W3C Trace Context).
    pub fn new(trace_id: [u8; 16], parent_id: [u8; 8], flags: u8) -> Option<TraceParent> {
        (trace_id != [0; 16] && parent_id != [0; 8]).then_some(TraceParent {
            trace_id: TraceId(trace_id),
            parent_id: SpanId(parent_id),
            flags,
        })
    }

    /// Reads a `traceparent` header value; `None` when it is not a valid one.
    pub fn parse(value: &str) -> Option<TraceParent> {
        let value = value.trim_matches([' ', '\t']).as_bytes();
        if value.len() < LEN {
            return None;
        }
        let version = hex::<1>(&value[0..2])?[0];
        // Version 00 is exactly 55 bytes; a later one may append fields after a `-`.
        let well_sized = match version {
            0xff => false,
            0x00 => value.len() == LEN,
            _ => value.len() == LEN || value[LEN] == b'-',
        };
        if !well_sized || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let flags = hex::<1>(&value[53..55])?[0];
        TraceParent::new(hex(&value[3..35])?, hex(&value[36..52])?, flags)
    }

    /// The trace this context belongs to.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The span that sent this hop.
    pub fn parent_id(&self) -> SpanId {
        self.parent_id
    }

    /// The trace flags (bit 0: sampled).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the caller sampled the trace (flag bit 0).
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The same trace with `span_id` as the parent: what a span with that id sends on.
    /// An all-zero `span_id` (invalid) keeps the current parent.
    pub fn child(&self, span_id: [u8; 8]) -> TraceParent {
        TraceParent::new(self.trace_id.0, span_id, self.flags).unwrap_or(*self)
    }
}

impl TraceId {
    /// The id's bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }
}

impl SpanId {
    /// The id's bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0
    }
}

/// `N` bytes from `2 * N` lower-case hex digits.
fn hex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    fn nibble(digit: u8) -> Option<u8> {
        match digit {
            b'0'..=b'9' => Some(digit - b'0'),
            b'a'..=b'f' => Some(digit - b'a' + 10),
            _ => None,
        }
    }
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
}

/// An id shows as its lower-case hex digits, and debugs as `Name(digits)`.
macro_rules! hex_display {
    ($($id:ident),+) => {$(
        impl fmt::Display for $id {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, &self.0)
            }
        }

        impl fmt::Debug for $id {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($id), "({})"), self)
            }
        }
    )+};
}

hex_display!(TraceId, SpanId);

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id, self.parent_id, self.flags
        )
    }
}

impl serde::Serialize for TraceParent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// For `#[serde(default, deserialize_with = "trace::lenient")]` on an
/// `Option<TraceParent>` field: a missing, `null`, non-string or invalid value is `None`, so
/// a message is never refused for its `traceparent`. A string is borrowed when it can be, so
/// an oversized one costs no copy.
pub fn lenient<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<TraceParent>, D::Error> {
    deserializer.deserialize_any(Lenient)
}

/// Reads a `traceparent` from a string, and no context from any other JSON value.
struct Lenient;

/// Visitor methods of scalars that are no context.
macro_rules! no_context {
    ($($method:ident($scalar:ty)),+) => {$(
        fn $method<E>(self, _: $scalar) -> Result<Self::Value, E> {
            Ok(None)
        }
    )+};
}

impl<'de> serde::de::Visitor<'de> for Lenient {
    type Value = Option<TraceParent>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a traceparent")
    }
    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok(TraceParent::parse(value))
    }
    no_context!(
        visit_bool(bool),
        visit_i64(i64),
        visit_u64(u64),
        visit_f64(f64)
    );
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_recommendations_examples() {
        let parent = TraceParent::parse(EXAMPLE).expect("valid");
        assert_eq!(parent.to_string(), EXAMPLE);
        assert_eq!(parent.parent_id().to_string(), "00f067aa0ba902b7");
        assert_eq!(parent.flags(), 1);
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(!TraceParent::parse(unsampled).expect("valid").sampled());
        // Surrounding blanks are allowed in a header value.
        assert!(TraceParent::parse(&format!(" {EXAMPLE}\t")).is_some());
    }

    #[test]
    fn invalid_values_are_no_context() {
        for value in [
            "",
            "00",
            &EXAMPLE.to_uppercase(),
            &EXAMPLE.replace("-01", "-1"),
            &format!("{EXAMPLE}-extra"),
            &EXAMPLE.replacen("00", "ff", 1),
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0z",
            "0é-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(value), None, "{value:?}");
        }
        // A later version may carry more fields after a `-`.
        let later = EXAMPLE.replacen("00", "01", 1);
        assert!(TraceParent::parse(&format!("{later}-whatever")).is_some());
        assert_eq!(TraceParent::parse(&format!("{later}whatever")), None);
    }

    #[test]
    fn envelopes_read_any_value_leniently() {
        #[derive(serde::Deserialize)]
        struct Field {
            #[serde(default, deserialize_with = "lenient")]
            tp: Option<TraceParent>,
        }
        let read = |json: &str| serde_json::from_str::<Field>(json).expect("json").tp;
        assert!(read(&format!(r#"{{"tp":"{EXAMPLE}"}}"#)).is_some());
        for json in [
            "{}",
            r#"{"tp":null}"#,
            r#"{"tp":7}"#,
            r#"{"tp":[1,{"a":2}]}"#,
            r#"{"tp":{"a":[3]}}"#,
            r#"{"tp":"nope"}"#,
        ] {
            assert_eq!(read(json), None, "{json}");
        }
    }

    proptest! {
        #[test]
        fn valid_contexts_round_trip(trace in any::<[u8; 16]>(), span in any::<[u8; 8]>(), flags in any::<u8>()) {
            if let Some(parent) = TraceParent::new(trace, span, flags) {
                let text = parent.to_string();
                prop_assert_eq!(text.len(), LEN);
                prop_assert_eq!(TraceParent::parse(&text), Some(parent));
            }
        }

        #[test]
        fn parsing_never_panics(value in "\\PC{0,80}") {
            let _ = TraceParent::parse(&value);
        }
    }
}
