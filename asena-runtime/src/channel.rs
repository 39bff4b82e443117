//! Typed channels on the server: the contract ([`Channel`], [`Receives`], [`Sends`],
//! [`Raw`], [`DecodeError`], from `asena-protocol`, shared with the typed client) and what a
//! handle of a channel may send ([`Encode`]).
//!
//! `#[websocket(path = "/chat", receives = ChatIn, sends = ChatOut)]` implements [`Channel`]
//! for the service: `on_message` then gets a decoded, validated `ChatIn`, and the service's
//! [`Socket`](crate::Socket), [`Namespace`](crate::Namespace) and [`Ulak`](crate::Ulak)
//! accept only `ChatOut` (see [`Encode`]). Without `receives`/`sends` a service receives
//! [`Message`](crate::Message) and sends anything ([`Raw`]). The same declarations give the
//! service's AsyncAPI document its payload schemas ([`Asena::asyncapi`](crate::Asena::asyncapi)).
//!
//! A message that does not decode or validate never reaches `on_message`: the service's
//! [`on_invalid`](crate::WebSocketService::on_invalid) answers it (by default with
//! [`DecodeError::to_json`]), the namespace counts it
//! ([`NamespaceStats::invalid_messages`](crate::namespace::NamespaceStats)), and the socket stays open.

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

pub use asena_protocol::channel::{Channel, Raw, Receives, Sends, within_containers};
pub use asena_protocol::decode::{DecodeError, DecodeErrorKind};

use crate::codec::{Frame, IntoFrame};

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

    /// The typed message, for its delivery policy ([`Delivered`](asena_protocol::delivery::Delivered)); `None` for what an
    /// untyped handle sends.
    fn message(&self) -> Option<&(dyn std::any::Any + Send + Sync)> {
        None
    }
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

    fn message(&self) -> Option<&(dyn std::any::Any + Send + Sync)> {
        Some(*self)
    }
}

impl<O: Serialize + JsonSchema + Send + Sync + 'static> Encode<O> for O {
    fn encode(self) -> Result<Frame, serde_json::Error> {
        Frame::json(&self)
    }

    fn message(&self) -> Option<&(dyn std::any::Any + Send + Sync)> {
        Some(self)
    }
}

/// A message for managed clients: `(event, data)` for an untyped service, the service's
/// `sends` type (an enum with `#[serde(tag = "event", content = "data")]`) for a typed one.
#[diagnostic::on_unimplemented(
    message = "a managed service sending `{O}` cannot send `{Self}`",
    note = "untyped managed services send `(\"event\", data)`; typed ones their `sends` type"
)]
pub trait EventMessage<O> {
    /// The event name and its data.
    fn into_event(self) -> Result<(String, Value), serde_json::Error>;
}

impl<D: Serialize> EventMessage<Raw> for (&str, D) {
    fn into_event(self) -> Result<(String, Value), serde_json::Error> {
        Ok((self.0.to_owned(), serde_json::to_value(self.1)?))
    }
}

impl<O: Serialize + JsonSchema + Send + Sync + 'static> EventMessage<O> for &O {
    fn into_event(self) -> Result<(String, Value), serde_json::Error> {
        match serde_json::to_value(self)? {
            Value::Object(mut map) => match map.remove("event") {
                Some(Value::String(event)) => {
                    Ok((event, map.remove("data").unwrap_or(Value::Null)))
                }
                _ => Err(not_an_event()),
            },
            _ => Err(not_an_event()),
        }
    }
}

fn not_an_event() -> serde_json::Error {
    <serde_json::Error as serde::ser::Error>::custom(
        "a managed service's `sends` type must serialize as {\"event\": .., \"data\": ..} \
         (#[serde(tag = \"event\", content = \"data\")])",
    )
}
