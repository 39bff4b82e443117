//! The managed protocol's messages between servers, in Ignis's Redis layout: the
//! [`ManagedEnvelope`] and the channels it is published on.
//!
//! Ignis (Venizia's Bun framework) sends a managed message to one channel per target instead
//! of Asena's single channel with topic strings:
//!
//! | [`TargetKind`] | channel | reaches |
//! |---|---|---|
//! | `client` | `ws:client:{clientId}` | one connection, on whichever server holds it |
//! | `user` | `ws:user:{userId}` | every session of a user, on every server |
//! | `room` | `ws:room:{room}` | the room's members, on every server, minus `exclude` |
//! | `broadcast` | `ws:broadcast` | every authenticated connection, on every server |
//!
//! Every message is one JSON object:
//!
//! ```json
//! {"serverId":"<uuid or emitter>","type":"room","target":"lobby","event":"chat:message","data":{"text":"hi"},"exclude":["<client id>"]}
//! ```
//!
//! `target` is absent for a broadcast, `exclude` is absent unless some clients are skipped.
//! A message sent within a trace also carries `"traceparent"` (W3C Trace Context, see
//! [`trace`]); Ignis ignores keys it does not know, and an invalid value is no
//! context.
//! A server drops envelopes carrying its own `serverId` (it delivered them locally before
//! publishing); publishers without a server (an emitter) use [`EMITTER_SERVER_ID`], which no
//! server has, so every server delivers their messages.
//!
//! ```
//! use asena_protocol::managed::{ManagedEnvelope, TargetKind};
//!
//! let envelope = ManagedEnvelope::user("emitter", "u-42", "notification", serde_json::json!({"n": 1}));
//! assert_eq!(envelope.channel(), "ws:user:u-42");
//! assert_eq!(
//!     envelope.encode(),
//!     r#"{"serverId":"emitter","type":"user","target":"u-42","event":"notification","data":{"n":1}}"#,
//! );
//! let back = ManagedEnvelope::decode(envelope.encode().as_bytes()).unwrap();
//! assert_eq!(back.kind, TargetKind::User);
//! ```

use serde::{Deserialize, Serialize};

use crate::trace::{self, TraceParent};

/// The `serverId` of messages from publishers that run no server (an emitter):
/// no server has it, so every server delivers them.
pub const EMITTER_SERVER_ID: &str = "emitter";

/// The channel of broadcasts to every authenticated connection of the fleet.
pub const BROADCAST_CHANNEL: &str = "ws:broadcast";

/// The prefix of a client's channel, `ws:client:{clientId}`.
pub const CLIENT_PREFIX: &str = "ws:client:";

/// The prefix of a user's channel, `ws:user:{userId}`.
pub const USER_PREFIX: &str = "ws:user:";

/// The prefix of a room's channel, `ws:room:{room}`.
pub const ROOM_PREFIX: &str = "ws:room:";

/// The first part of every channel of Ignis's layout, `ws`. A managed service may choose
/// another (the runtime's `ManagedOptions::channel_prefix`): its channels are then `{prefix}:room:{room}`,
/// `{prefix}:client:{id}`, `{prefix}:user:{id}` and `{prefix}:broadcast`, and it hears
/// nothing of services under other prefixes.
pub const DEFAULT_PREFIX: &str = "ws";

/// What a managed message targets (Ignis's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// One connection, by client id.
    Client,
    /// Every session of a user, by user id.
    User,
    /// The members of a room.
    Room,
    /// Every authenticated connection.
    Broadcast,
}

/// A managed message between servers, in Ignis's layout (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedEnvelope {
    /// The publishing server (`serverId`), or [`EMITTER_SERVER_ID`].
    pub server_id: String,
    /// What the message targets (`type`).
    #[serde(rename = "type")]
    pub kind: TargetKind,
    /// The client id, user id or room; `None` for a broadcast.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The event delivered to clients.
    pub event: String,
    /// The event's payload; `null` when the publisher sent none.
    #[serde(default)]
    pub data: serde_json::Value,
    /// Client ids to skip (rooms and broadcasts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<Vec<String>>,
    /// The trace the message was sent in (`traceparent`), when it was.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "trace::lenient"
    )]
    pub traceparent: Option<TraceParent>,
}

/// Declares the constructors of messages to one target named by an id: `name(id) => kind`.
macro_rules! targeted_constructors {
    ($($(#[$doc:meta])* $name:ident($id:ident) => $kind:ident;)+) => {$(
        $(#[$doc])*
        pub fn $name(
            server_id: impl Into<String>,
            $id: impl Into<String>,
            event: impl Into<String>,
            data: serde_json::Value,
        ) -> ManagedEnvelope {
            Self::targeted(server_id, TargetKind::$kind, Some($id.into()), event, data)
        }
    )+};
}

impl ManagedEnvelope {
    targeted_constructors! {
        /// A message to one connection.
        client(client_id) => Client;
        /// A message to every session of a user.
        user(user_id) => User;
    }

    /// A message to the members of `room` except the clients in `exclude` (none when empty).
    pub fn room(
        server_id: impl Into<String>,
        room: impl Into<String>,
        event: impl Into<String>,
        data: serde_json::Value,
        exclude: &[&str],
    ) -> ManagedEnvelope {
        let mut envelope =
            Self::targeted(server_id, TargetKind::Room, Some(room.into()), event, data);
        envelope.exclude =
            (!exclude.is_empty()).then(|| exclude.iter().map(|&id| id.to_owned()).collect());
        envelope
    }

    /// A message to every authenticated connection.
    pub fn broadcast(
        server_id: impl Into<String>,
        event: impl Into<String>,
        data: serde_json::Value,
    ) -> ManagedEnvelope {
        Self::targeted(server_id, TargetKind::Broadcast, None, event, data)
    }

    fn targeted(
        server_id: impl Into<String>,
        kind: TargetKind,
        target: Option<String>,
        event: impl Into<String>,
        data: serde_json::Value,
    ) -> ManagedEnvelope {
        ManagedEnvelope {
            server_id: server_id.into(),
            kind,
            target,
            event: event.into(),
            data,
            exclude: None,
            traceparent: None,
        }
    }

    /// The channel this message is published on under Ignis's prefix: `ws:client:{id}`,
    /// `ws:user:{id}`, `ws:room:{room}` or [`BROADCAST_CHANNEL`]. A missing target reads as
    /// empty.
    pub fn channel(&self) -> String {
        self.channel_under(DEFAULT_PREFIX)
    }

    /// The channel this message is published on under `prefix` (see [`DEFAULT_PREFIX`]):
    /// `{prefix}:client:{id}`, `{prefix}:user:{id}`, `{prefix}:room:{room}` or
    /// `{prefix}:broadcast`.
    pub fn channel_under(&self, prefix: &str) -> String {
        let kind = match self.kind {
            TargetKind::Client => ":client:",
            TargetKind::User => ":user:",
            TargetKind::Room => ":room:",
            TargetKind::Broadcast => return format!("{prefix}:broadcast"),
        };
        let target = self.target.as_deref().unwrap_or_default();
        let mut channel = String::with_capacity(prefix.len() + kind.len() + target.len());
        channel.push_str(prefix);
        channel.push_str(kind);
        channel.push_str(target);
        channel
    }

    /// The JSON text of this message.
    pub fn encode(&self) -> String {
        serde_json::to_string(self)
            .expect("invariant: an envelope of strings and a JSON value serializes")
    }

    /// Parses a message as Ignis publishes it; unknown keys are ignored.
    pub fn decode(bytes: &[u8]) -> Result<ManagedEnvelope, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod trace_tests {
    use super::*;

    #[test]
    fn the_trace_travels_as_traceparent_and_a_bad_one_is_no_context() {
        let trace = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let envelope = ManagedEnvelope {
            traceparent: trace,
            ..ManagedEnvelope::broadcast("s", "e", serde_json::Value::Null)
        };
        let json: serde_json::Value = serde_json::from_str(&envelope.encode()).expect("json");
        assert_eq!(
            json["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(
            ManagedEnvelope::decode(envelope.encode().as_bytes()).expect("decodes"),
            envelope
        );
        // Without a trace the envelope is exactly Ignis's.
        assert!(
            !ManagedEnvelope::broadcast("s", "e", serde_json::Value::Null)
                .encode()
                .contains("traceparent")
        );
        let hostile =
            r#"{"serverId":"x","type":"broadcast","event":"e","traceparent":{"deep":[1,2,3]}}"#;
        assert_eq!(
            ManagedEnvelope::decode(hostile.as_bytes())
                .expect("decodes")
                .traceparent,
            None
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn envelopes_have_ignis_keys_and_omit_absent_optionals() {
        let room = ManagedEnvelope::room("s1", "lobby", "e", json!([1]), &["c1"]);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&room.encode()).expect("JSON"),
            json!({"serverId": "s1", "type": "room", "target": "lobby", "event": "e", "data": [1], "exclude": ["c1"]}),
        );
        assert_eq!(
            ManagedEnvelope::broadcast("s1", "e", json!(null)).encode(),
            r#"{"serverId":"s1","type":"broadcast","event":"e","data":null}"#,
        );
        assert_eq!(
            ManagedEnvelope::room("s", "r", "e", json!(1), &[]).exclude,
            None
        );
    }

    #[test]
    fn channels_follow_the_target() {
        let data = json!({});
        assert_eq!(
            ManagedEnvelope::client("s", "c-1", "e", data.clone()).channel(),
            "ws:client:c-1"
        );
        assert_eq!(
            ManagedEnvelope::user("s", "u:1", "e", data.clone()).channel(),
            "ws:user:u:1"
        );
        assert_eq!(
            ManagedEnvelope::room("s", "a b", "e", data.clone(), &[]).channel(),
            "ws:room:a b"
        );
        assert_eq!(
            ManagedEnvelope::broadcast("s", "e", data).channel(),
            BROADCAST_CHANNEL
        );
    }

    #[test]
    fn decoding_tolerates_what_javascript_omits_and_rejects_the_rest() {
        let e = ManagedEnvelope::decode(
            br#"{"serverId":"x","type":"user","target":"u","event":"e","extra":1}"#,
        )
        .expect("an envelope without data");
        assert_eq!(e.data, json!(null));
        for bad in [
            &br#"{"serverId":"x","type":"everyone","event":"e","data":1}"#[..],
            br#"{"type":"room","target":"r","event":"e","data":1}"#,
            br#"{"serverId":"x","type":"room","target":"r","data":1}"#,
            b"not json",
            b"",
        ] {
            assert!(
                ManagedEnvelope::decode(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
