//! Typed channels: the messages a websocket service receives and sends, and its path
//! parameters, declared once on the service.
//!
//! `#[websocket(path = "/chat", receives = ChatIn, sends = ChatOut)]` (in `asena-runtime`)
//! implements [`Channel`] for the service: the server then hands `on_message` a decoded,
//! validated `ChatIn` and sends only `ChatOut`, and a typed client (`asena-client`) sends
//! only `ChatIn` and decodes `ChatOut`. Without `receives`/`sends` a service receives
//! [`Message`] and sends anything ([`Raw`]). The same declarations give the service's
//! AsyncAPI document its payload schemas ([`Receives::schema`], [`Sends::schema`]).
//!
//! Decoding a typed message ([`Receives::decode`]) fails with a [`DecodeError`] that says
//! what is wrong and where, bounded whatever the message holds (see [`crate::decode`]).

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::decode::DecodeError;
use crate::message::Message;

/// The wire contract of a websocket service: its path, its path parameters, and the
/// messages it receives and sends. Implemented by `#[websocket]`; not implemented by hand.
///
/// | attribute argument | associated type | without it |
/// |---|---|---|
/// | `params = P` | [`Params`](Self::Params) | `()`: parameters only as strings (`ws.param("id")`) |
/// | `receives = I` | [`In`](Self::In) | [`Message`]: the raw message |
/// | `sends = O` | [`Out`](Self::Out) | [`Raw`]: text, bytes or any JSON |
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

    /// How `message` is delivered when its type chooses
    /// ([`Delivered`](crate::delivery::Delivered)); `None` (the default): as the room's own
    /// rules say. `#[websocket(sends = T)]` asks `T`.
    fn delivery(message: &Self::Out) -> Option<crate::delivery::Delivery> {
        let _ = message;
        None
    }
}

/// A type a service can receive: [`Message`] (raw) or any type that is `Deserialize`,
/// [`garde::Validate`] and [`JsonSchema`].
///
/// Typed messages are decoded from the JSON of a text or binary message, then validated;
/// field constraints are declared with garde's attributes, which `schemars` also writes into
/// the JSON Schema:
///
/// ```
/// use asena_protocol::{Message, Receives};
/// use garde::Validate;
/// use schemars::JsonSchema;
/// use serde::Deserialize;
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
///
/// let ping = ChatIn::decode(Message::Text(r#"{"type":"ping"}"#.into()));
/// assert!(matches!(ping, Ok(ChatIn::Ping)));
/// let empty = ChatIn::decode(Message::Text(r#"{"type":"message","message":""}"#.into()));
/// assert_eq!(empty.err().map(|e| e.kind().code()), Some("constraint"));
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
        let value: T = decode_json(message.as_bytes())?;
        value.check()?;
        Ok(value)
    }
    fn schema(generator: &mut SchemaGenerator) -> Option<Schema> {
        Some(generator.subschema_for::<T>())
    }
}

/// Decodes the JSON in `bytes` into `T` as a typed message is decoded, without checking its
/// constraints ([`Checked::check`] does that): at most [`DecodeError::MAX_CONTAINERS`] arrays
/// and objects, and an error that names the failing field.
///
/// ```
/// let err = asena_protocol::channel::decode_json::<Vec<u8>>(b"[1, 300]").unwrap_err();
/// assert_eq!((err.path(), err.kind().code()), ("[1]", "invalid_value"));
/// ```
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    if !within_containers(bytes, DecodeError::MAX_CONTAINERS) {
        return Err(DecodeError::too_many_containers());
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T =
        serde_path_to_error::deserialize(&mut de).map_err(|e| DecodeError::from_serde(e, bytes))?;
    de.end().map_err(|e| DecodeError::syntax(&e))?;
    Ok(value)
}

/// A message whose declared constraints can be checked: any [`garde::Validate`] type whose
/// context has a default (every type `asena-codegen` generates, every typed `receives`).
/// A server checks what it receives; a typed client may check what it sends and receives.
pub trait Checked {
    /// The constraints the value breaks, as a [`DecodeError`] of kind `constraint` with the
    /// first violation's path.
    fn check(&self) -> Result<(), DecodeError>;
}

impl<T> Checked for T
where
    T: garde::Validate + ?Sized,
    T::Context: Default,
{
    fn check(&self) -> Result<(), DecodeError> {
        self.validate().map_err(DecodeError::from_report)
    }
}

/// Whether the JSON in `bytes` opens at most `max` arrays and objects, counted in one pass
/// that skips strings (escapes included). Malformed JSON is counted as far as it goes; serde
/// refuses it afterwards. Typed decoding applies it with [`DecodeError::MAX_CONTAINERS`]
/// before serde sees a message; a server applies it to its own envelopes the same way.
///
/// ```
/// assert!(asena_protocol::channel::within_containers(br#"{"a":[1,"[[["]}"#, 2));
/// assert!(!asena_protocol::channel::within_containers(b"[[[]]]", 2));
/// ```
pub fn within_containers(bytes: &[u8], max: usize) -> bool {
    let mut containers = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                containers += 1;
                if containers > max {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

/// A type a service can send: [`Raw`] (text, bytes or any JSON) or any type that is
/// `Serialize` and [`JsonSchema`].
pub trait Sends: Send + Sync + 'static {
    /// The JSON Schema of the payload; `None` for raw messages.
    fn schema(generator: &mut SchemaGenerator) -> Option<Schema>;
}

/// The `sends` of a service that declares none: it may send text, bytes or any JSON (what
/// the runtime's `IntoFrame` takes). Also the type of the server's untyped handles
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_are_counted_outside_strings_only() {
        assert!(within_containers(br#"{"a":[1,{"b":[]}]}"#, 4));
        assert!(!within_containers(br#"{"a":[1,{"b":[]}]}"#, 3));
        assert!(within_containers(br#"{"a":"[[[{{{\"[[["}"#, 1));
        assert!(within_containers(br#""\\""#, 0));
    }
}
