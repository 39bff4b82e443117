//! What Asena's server, its typed client and tools made from a service's contract share:
//! the contract itself, the messages, the close codes and the formats on the wire. No async
//! runtime, HTTP stack or broker client: a client or a code generator depends on this crate
//! alone, and `asena-runtime` re-exports what its users name.
//!
//! | module | holds |
//! |---|---|
//! | [`ack`] | requests and replies (acknowledgements) on a connection, both ways: their wire format |
//! | [`channel`] | [`Channel`] (a service's path, params, `In`, `Out`), [`Receives`], [`Sends`], [`Raw`], [`Checked`] |
//! | [`decode`] | [`DecodeError`], [`DecodeErrorKind`]: a typed message that did not decode, bounded |
//! | [`example`] | an example value made from a JSON Schema (documents, generated code's tests) |
//! | [`message`] | [`Message`]: one text or binary message |
//! | [`rules`] | JSON Schema constraints garde has no rule for (formats, `multipleOf`), for generated message types |
//! | [`close_code`] | RFC 6455 close codes and the managed protocol's 4001–4005 |
//! | [`trace`] | W3C Trace Context between instances: [`TraceParent`](trace::TraceParent) |
//! | [`wire`] | Asena's format between instances: topics, the JSON envelope, channel names |
//! | `crypto` | the managed protocol's per-client encryption, both ends (feature `crypto`) |
//! | [`presence`] | who is in a room: the `presence_state` and `presence_diff` frames, and a client's view kept from them |
//! | [`managed`] | the managed protocol between servers (Ignis's layout): [`ManagedEnvelope`], [`TargetKind`], channel names |
//!
//! # Feature flags
//!
//! - `crypto` (off by default): the `crypto` module, the managed protocol's per-client
//!   encryption (P-256, HKDF-SHA256, AES-256-GCM), for the server and the typed client.
//!
//! Encoding and decoding WebSocket frames (RFC 6455 framing, permessage-deflate) is the
//! server's and the client library's business, not this crate's.
#![warn(missing_docs)]

pub mod ack;
pub mod channel;
pub mod close_code;
#[cfg(feature = "crypto")]
pub mod crypto;
pub mod decode;
pub mod delivery;
pub mod example;
pub mod managed;
pub mod message;
pub mod presence;
pub mod rules;
pub mod trace;
pub mod wire;

pub use channel::{Channel, Checked, Raw, Receives, Sends};
pub use decode::{DecodeError, DecodeErrorKind};
pub use managed::{ManagedEnvelope, TargetKind};
pub use message::Message;

/// Any error, boxed: what a handler or hook may return, and the source the client keeps of a
/// failed connection.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
