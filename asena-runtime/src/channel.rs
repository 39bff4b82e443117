//! Typed channels: the messages a websocket service receives and sends, and its path
//! parameters, declared once on the service.
//!
//! `#[websocket(path = "/chat", receives = ChatIn, sends = ChatOut)]` implements [`Channel`]
//! for the service: `on_message` then gets a decoded, validated `ChatIn`, and the service's
//! [`Socket`](crate::Socket), [`Namespace`](crate::Namespace) and [`Ulak`](crate::Ulak)
//! accept only `ChatOut` (see [`Encode`]). Without `receives`/`sends` a service receives
//! [`Message`] and sends anything ([`Raw`]), as before. The same declarations give the
//! service's AsyncAPI document its payload schemas ([`Asena::asyncapi`](crate::Asena::asyncapi)).
//!
//! A message that does not decode or validate never reaches `on_message`: the service's
//! [`on_invalid`](crate::WebSocketService::on_invalid) answers it (by default with
//! [`DecodeError::to_json`]), the namespace counts it
//! ([`NamespaceStats::invalid_messages`](crate::NamespaceStats)), and the socket stays open.

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::frame::{Frame, IntoFrame, Message};

/// The wire contract of a websocket service: its path, its path parameters, and the
/// messages it receives and sends. Implemented by `#[websocket]`; not implemented by hand.
///
/// | attribute argument | associated type | without it |
/// |---|---|---|
/// | `params = P` | [`Params`](Self::Params) | `()`: parameters only as strings (`ws.param("id")`) |
/// | `receives = I` | [`In`](Self::In) | [`Message`]: the raw message |
/// | `sends = O` | [`Out`](Self::Out) | [`Raw`]: text, bytes or any JSON ([`IntoFrame`]) |
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a websocket service (no `#[websocket(path = \"..\")]` on it)",
    label = "not a websocket service"
)]
pub trait Channel: Send + Sync + 'static {
    /// The path the service is served at, e.g. `/user/events/{user_id}`.
    const PATH: &'static str;
    /// The service's name.
    const NAME: &'static str;
    /// The path parameters, deserialized from the concrete path before the upgrade (a value
    /// that does not deserialize is refused with 400). `()` when the service declares none.
    type Params: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static;
    /// What clients send.
    type In: Receives;
    /// What the service sends.
    type Out: Sends;
}

/// A type a service can receive: [`Message`] (raw) or any type that is `Deserialize`,
/// [`garde::Validate`] and [`JsonSchema`].
///
/// Typed messages are decoded from the JSON of a text or binary message, then validated;
/// field constraints are declared with garde's attributes, which `schemars` also writes into
/// the JSON Schema:
///
/// ```
/// use asena_runtime::prelude::*;
///
/// #[derive(Deserialize, JsonSchema, Validate)]
/// #[serde(tag = "type", rename_all = "snake_case")]
/// #[garde(allow_unvalidated)]
/// enum ChatIn {
///     Message {
///         #[garde(length(chars, min = 1, max = 500))]
///         message: String,
///     },
///     Ping,
/// }
/// ```
///
/// `#[garde(allow_unvalidated)]` lets fields without a rule through; nested structs are
/// validated when the field says `#[garde(dive)]`.
pub trait Receives: Sized + Send + 'static {
    /// Decodes and validates a message.
    fn decode(message: Message) -> Result<Self, DecodeError>;
    /// The JSON Schema of the payload; `None` for raw messages.
    fn schema(generator: &mut SchemaGenerator) -> Option<Schema>;
}

impl Receives for Message {
    fn decode(message: Message) -> Result<Self, DecodeError> {
        Ok(message)
    }
    fn schema(_: &mut SchemaGenerator) -> Option<Schema> {
        None
    }
}

impl<T> Receives for T
where
    T: DeserializeOwned + garde::Validate + JsonSchema + Send + 'static,
    T::Context: Default,
{
    fn decode(message: Message) -> Result<Self, DecodeError> {
        let bytes = message.as_bytes();
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let value: T = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| DecodeError::from_serde(e, bytes))?;
        de.end().map_err(|e| DecodeError::syntax(&e))?;
        value.validate().map_err(DecodeError::from_report)?;
        Ok(value)
    }
    fn schema(generator: &mut SchemaGenerator) -> Option<Schema> {
        Some(generator.subschema_for::<T>())
    }
}

/// A type a service can send: [`Raw`] (anything [`IntoFrame`]) or any type that is
/// `Serialize` and [`JsonSchema`].
pub trait Sends: Send + Sync + 'static {
    /// The JSON Schema of the payload; `None` for raw messages.
    fn schema(generator: &mut SchemaGenerator) -> Option<Schema>;
}

/// The `sends` of a service that declares none: it may send anything [`IntoFrame`] takes
/// (text, bytes, [`Json`](crate::Json) values). Also the type of the untyped handles
/// (`SocketRef`, `Namespace`) that `.raw()` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Raw {}

impl Sends for Raw {
    fn schema(_: &mut SchemaGenerator) -> Option<Schema> {
        None
    }
}

impl<T: Serialize + JsonSchema + Send + Sync + 'static> Sends for T {
    fn schema(generator: &mut SchemaGenerator) -> Option<Schema> {
        Some(generator.subschema_for::<T>())
    }
}

/// What a handle of a channel whose messages are `O` can send: for [`Raw`] anything
/// [`IntoFrame`], for a typed service only its `sends` type (by value or by reference),
/// serialized as JSON once per call, however many sockets receive it.
#[diagnostic::on_unimplemented(
    message = "this socket, namespace or Ulak sends `{O}`, not `{Self}`",
    label = "not a `{O}`",
    note = "a typed service sends only its `sends` type; `.raw()` gives the untyped handle for anything else"
)]
pub trait Encode<O> {
    /// Encodes the message; fails only for JSON that cannot be serialised.
    fn encode(self) -> Result<Frame, serde_json::Error>;
}

impl<M: IntoFrame> Encode<Raw> for M {
    fn encode(self) -> Result<Frame, serde_json::Error> {
        self.into_frame()
    }
}

impl<O: Serialize + JsonSchema + Send + Sync + 'static> Encode<O> for &O {
    fn encode(self) -> Result<Frame, serde_json::Error> {
        Frame::json(self)
    }
}

impl<O: Serialize + JsonSchema + Send + Sync + 'static> Encode<O> for O {
    fn encode(self) -> Result<Frame, serde_json::Error> {
        Frame::json(&self)
    }
}

/// What was wrong with a message that did not decode into a service's `receives` type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// Not JSON at all (or trailing characters after it).
    Syntax,
    /// The tag (`"type"` for `#[serde(tag = "type")]`) names no known message.
    UnknownVariant {
        /// The value that was sent.
        value: String,
    },
    /// A required field is absent (the tag included).
    MissingField {
        /// Its name.
        field: String,
    },
    /// A field has the wrong JSON type, or a value serde rejects for another reason.
    InvalidValue,
    /// A field is not allowed (`#[serde(deny_unknown_fields)]`).
    UnknownField {
        /// Its name.
        field: String,
    },
    /// The message decoded but breaks a declared constraint (garde).
    Constraint,
}

impl DecodeErrorKind {
    /// A short stable name: `syntax`, `unknown_variant`, `missing_field`, `invalid_value`,
    /// `unknown_field`, `constraint`.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeErrorKind::Syntax => "syntax",
            DecodeErrorKind::UnknownVariant { .. } => "unknown_variant",
            DecodeErrorKind::MissingField { .. } => "missing_field",
            DecodeErrorKind::InvalidValue => "invalid_value",
            DecodeErrorKind::UnknownField { .. } => "unknown_field",
            DecodeErrorKind::Constraint => "constraint",
        }
    }
}

/// A message that did not decode or validate: what is wrong, where, and serde's or garde's
/// own words for it.
///
/// The default answer to the client ([`to_json`](Self::to_json)) is
/// `{"type":"error","code":"missing_field","message":"missing field `message`","path":"."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    kind: DecodeErrorKind,
    path: String,
    message: String,
}

impl DecodeError {
    /// What kind of problem it is.
    pub fn kind(&self) -> &DecodeErrorKind {
        &self.kind
    }

    /// Where: a dotted path to the field (`message`, `items[2].name`), `.` for the message
    /// itself.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The description, without position information (e.g. ``unknown variant `dance`,
    /// expected one of `message`, `ping` ``, `length is greater than 500`).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The default error frame: `{"type":"error","code":..,"message":..,"path":..}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "error",
            "code": self.kind.code(),
            "message": self.message,
            "path": self.path,
        })
    }

    fn from_serde(error: serde_path_to_error::Error<serde_json::Error>, input: &[u8]) -> Self {
        let mut path = match error.path().to_string() {
            // serde_path_to_error's "unknown position" (a syntax error before any key).
            p if p == "?" => ".".to_owned(),
            p => p,
        };
        let inner = error.into_inner();
        let message = strip_position(&inner.to_string());
        let kind = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                DecodeErrorKind::Syntax
            }
            serde_json::error::Category::Io | serde_json::error::Category::Data => {
                classify(&message)
            }
        };
        if path == "." && matches!(kind, DecodeErrorKind::InvalidValue) {
            // Internally tagged enums decode a variant from buffered content, where serde
            // loses the path; find the field from the JSON itself.
            if let Some(found) = locate_mismatch(input, &message) {
                path = found;
            }
        }
        DecodeError {
            kind,
            path,
            message,
        }
    }

    fn syntax(error: &serde_json::Error) -> Self {
        DecodeError {
            kind: DecodeErrorKind::Syntax,
            path: ".".to_owned(),
            message: strip_position(&error.to_string()),
        }
    }

    fn from_report(report: garde::Report) -> Self {
        let mut path = String::new();
        let mut message = String::new();
        for (i, (p, e)) in report.iter().enumerate() {
            let p = p.to_string();
            if i == 0 {
                path = if p.is_empty() {
                    ".".to_owned()
                } else {
                    p.clone()
                };
            } else {
                message.push_str("; ");
            }
            if p.is_empty() {
                message.push_str(e.message());
            } else {
                message.push_str(&format!("{p}: {}", e.message()));
            }
        }
        DecodeError {
            kind: DecodeErrorKind::Constraint,
            path,
            message,
        }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path == "." || self.message.starts_with(&format!("{}: ", self.path)) {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for DecodeError {}

/// serde_json's message without its ` at line L column C` suffix.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) if message[i..].contains(" column ") => message[..i].to_owned(),
        _ => message.to_owned(),
    }
}

/// The kind of a data error, from serde's message (serde has no structured data errors).
fn classify(message: &str) -> DecodeErrorKind {
    let quoted = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    if let Some(value) = quoted("unknown variant `") {
        DecodeErrorKind::UnknownVariant { value }
    } else if let Some(field) = quoted("missing field `") {
        DecodeErrorKind::MissingField { field }
    } else if let Some(field) = quoted("unknown field `") {
        DecodeErrorKind::UnknownField { field }
    } else {
        DecodeErrorKind::InvalidValue
    }
}

/// For ``invalid type: integer `5`, expected a string`` with no path: the first field of the
/// top-level object whose JSON matches the "invalid type" part, if exactly one does.
fn locate_mismatch(input: &[u8], message: &str) -> Option<String> {
    let found = message
        .strip_prefix("invalid type: ")?
        .split(", expected")
        .next()?;
    let serde_json::Value::Object(map) = serde_json::from_slice(input).ok()? else {
        return None;
    };
    let mut hits = Vec::new();
    collect_matches(
        &serde_json::Value::Object(map),
        found,
        String::new(),
        &mut hits,
    );
    match hits.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

fn collect_matches(value: &serde_json::Value, found: &str, at: String, hits: &mut Vec<String>) {
    use serde_json::Value;
    let description = match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) if n.is_f64() => format!("floating point `{n}`"),
        Value::Number(n) => format!("integer `{n}`"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "sequence".to_owned(),
        Value::Object(_) => "map".to_owned(),
    };
    if !at.is_empty() && description == found {
        hits.push(at.clone());
    }
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let next = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                collect_matches(v, found, next, hits);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                collect_matches(v, found, format!("{at}[{i}]"), hits);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, JsonSchema, garde::Validate)]
    #[serde(tag = "type", rename_all = "snake_case")]
    #[garde(allow_unvalidated)]
    enum In {
        Say {
            #[garde(length(chars, min = 1, max = 5))]
            text: String,
        },
        Move {
            #[garde(dive)]
            to: Point,
        },
        Ping,
    }

    #[derive(Debug, Deserialize, JsonSchema, garde::Validate)]
    struct Point {
        #[garde(range(min = 0, max = 9))]
        x: i32,
        #[garde(range(min = 0, max = 9))]
        y: i32,
    }

    fn err(json: &str) -> DecodeError {
        match In::decode(Message::Text(json.to_owned())) {
            Ok(v) => panic!("{json} decoded to {v:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn decodes_and_validates() {
        assert!(matches!(
            In::decode(Message::Text(r#"{"type":"say","text":"hi"}"#.into())),
            Ok(In::Say { .. })
        ));
        assert!(matches!(
            In::decode(Message::Binary(r#"{"type":"ping"}"#.as_bytes().into())),
            Ok(In::Ping)
        ));
    }

    #[test]
    fn each_problem_is_named() {
        let e = err("{not json");
        assert_eq!(e.kind(), &DecodeErrorKind::Syntax);
        assert_eq!(e.message(), "key must be a string");

        let e = err(r#"{"type":"dance"}"#);
        assert_eq!(
            e.kind(),
            &DecodeErrorKind::UnknownVariant {
                value: "dance".into()
            }
        );
        assert_eq!(
            e.message(),
            "unknown variant `dance`, expected one of `say`, `move`, `ping`"
        );

        let e = err(r#"{"text":"hi"}"#);
        assert_eq!(
            e.kind(),
            &DecodeErrorKind::MissingField {
                field: "type".into()
            }
        );

        let e = err(r#"{"type":"say"}"#);
        assert_eq!(e.message(), "missing field `text`");

        let e = err(r#"{"type":"say","text":5}"#);
        assert_eq!(e.kind(), &DecodeErrorKind::InvalidValue);
        assert_eq!(e.path(), "text");
        assert_eq!(
            e.to_string(),
            "text: invalid type: integer `5`, expected a string"
        );

        let e = err(r#"{"type":"move","to":{"x":1,"y":"2"}}"#);
        assert_eq!(e.path(), "to.y");

        let e = err(r#"{"type":"say","text":"hi"} x"#);
        assert_eq!(e.kind(), &DecodeErrorKind::Syntax);
        assert_eq!(e.message(), "trailing characters");
    }

    #[test]
    fn constraints_name_the_field() {
        let e = err(r#"{"type":"say","text":"toolong"}"#);
        assert_eq!(e.kind(), &DecodeErrorKind::Constraint);
        assert_eq!(e.path(), "text");
        assert_eq!(e.to_string(), "text: length is greater than 5");

        let e = err(r#"{"type":"move","to":{"x":1,"y":12}}"#);
        assert_eq!(e.path(), "to.y");
        assert_eq!(
            e.to_json(),
            serde_json::json!({
                "type": "error",
                "code": "constraint",
                "message": "to.y: greater than 9",
                "path": "to.y",
            })
        );
    }

    #[test]
    fn the_schema_carries_the_constraints() {
        let mut generator = SchemaGenerator::default();
        let schema = In::schema(&mut generator).expect("typed");
        let text = serde_json::to_string(&schema).expect("json");
        let defs = serde_json::to_string(generator.definitions()).expect("json");
        assert!(
            text.contains("\"maxLength\":5") || defs.contains("\"maxLength\":5"),
            "{text} {defs}"
        );
        assert!(defs.contains("\"maximum\":9"), "{defs}");
        assert!(<Message as Receives>::schema(&mut generator).is_none());
    }
}
