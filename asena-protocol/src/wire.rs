//! The wire format between instances: topics, the JSON envelope, and the default channel
//! names. Every transport of the runtime and its `Emitter` use this module and nothing else
//! to speak to a fleet.
//!
//! # Topics
//! A namespace's topic prefix is its path without the leading `/` (`/chat` → `chat`,
//! `/ws/notifications` → `ws/notifications`). A room message goes out as
//! `"<namespace>.<room>"`; a socket's personal room is its id, so a message to one socket is
//! `"<namespace>.<socket id>"`. A broadcast to the whole namespace is
//! `"<namespace>.__"`: Asena puts every socket in the room [`BROADCAST_ROOM`] (`__`), and
//! this is how it publishes a broadcast, so mixed fleets deliver each other's broadcasts. On
//! receipt, `"<namespace>.__"` and the bare `"<namespace>"` (what older versions of this
//! crate sent) both reach every local socket of the namespace.
//!
//! # Envelope
//! One JSON object per message, Asena's Redis transport format:
//!
//! ```json
//! {"d": "<text, or base64 when b is 1>", "t": "chat.general", "o": "<pod id>", "b": 1}
//! ```
//!
//! `t` is the topic, `o` the pod id of the publisher (receivers drop their own messages), and
//! `b` is present (as `1`) only when `d` carries base64-encoded binary data. From other
//! publishers `d` may be any JSON value; it is then delivered as its JSON text. A message
//! sent within a trace also carries `"tp"`, its W3C `traceparent` ([`trace`]);
//! Asena ignores the field, and a value that is not a valid `traceparent` is no context.
//!
//! ```
//! use asena_protocol::wire::{self, Envelope, Target};
//!
//! let raw = Envelope::encode(&wire::room_topic("chat", "general"), b"hi", false, "pod-1", None);
//! let envelope = Envelope::decode(&raw).unwrap();
//! assert_eq!(envelope.topic, "chat.general");
//! assert_eq!(wire::target(&envelope.topic, "chat"), Some(Target::Room("general")));
//! assert_eq!(wire::target(&wire::broadcast_topic("chat"), "chat"), Some(Target::Broadcast));
//! ```

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use crate::trace::{self, TraceParent};

/// The Redis pub/sub channel every instance publishes to and listens on by default (Asena's
/// default channel).
pub const REDIS_CHANNEL: &str = "asena:ws:transport";

/// The NATS subject every instance publishes to and listens on by default.
pub const NATS_SUBJECT: &str = "asena.ws.transport";

/// The room every socket is in, as far as the wire is concerned: a message to it is a
/// broadcast to the namespace. Sockets cannot join it by name.
pub const BROADCAST_ROOM: &str = "__";

/// The topic instances announce themselves and their counts on, for the inspector's fleet
/// view (`AsenaBuilder::inspector`). No namespace's topics can collide with it: they come
/// from request paths, which cannot hold `#`.
pub const FLEET_TOPIC: &str = "#asena.fleet";

/// Whether `path` can name a namespace on the wire: it holds no `.`, so the first `.` of a
/// topic ends the namespace and `(namespace, room) → topic` is one-to-one (`/a` room `b.x`
/// and `/a.b` room `x` would otherwise share `a.b.x`). `#[websocket]` refuses such a path
/// at compile time, the app at build time, the `Emitter` when it sends.
pub fn is_namespace_path(path: &str) -> bool {
    !path.contains('.')
}

/// The topic prefix of the namespace at `path`: the path without its leading `/`.
pub fn namespace_topic(path: &str) -> &str {
    path.strip_prefix('/').unwrap_or(path)
}

/// The topic of `room` in the namespace with topic prefix `namespace`.
pub fn room_topic(namespace: &str, room: &str) -> String {
    let mut topic = String::with_capacity(namespace.len() + 1 + room.len());
    topic.push_str(namespace);
    topic.push('.');
    topic.push_str(room);
    topic
}

/// The topic of a broadcast to the namespace with topic prefix `namespace`.
pub fn broadcast_topic(namespace: &str) -> String {
    room_topic(namespace, BROADCAST_ROOM)
}

/// Whether a message to `room` goes only to the instances with a member in it, on a transport
/// that routes by interest (one NATS subject per room; see [`nats_room_subject`]). Not for
/// the broadcast room, which every instance serving the namespace receives, nor for a room
/// named like a socket id (any UUID): a socket's personal room is never joined, so a message
/// to it, or to a room whose name merely looks like one, takes the shared channel that every
/// instance receives. Both sides use this rule, so they always agree.
///
/// ```
/// use asena_protocol::wire;
/// assert!(wire::routes_by_interest("general"));
/// assert!(!wire::routes_by_interest(wire::BROADCAST_ROOM));
/// assert!(!wire::routes_by_interest("01a22cf0-f014-7193-8c9a-49e643189811"));
/// ```
pub fn routes_by_interest(room: &str) -> bool {
    room != BROADCAST_ROOM && uuid::Uuid::try_parse(room).is_err()
}

/// Longest per-room NATS subject used; a room whose subject would be longer takes the shared
/// subject (NATS limits a protocol line to 4 KiB).
const MAX_ROOM_SUBJECT: usize = 1024;

/// The bytes a NATS subject token made by this module keeps as they are: ASCII letters,
/// digits, `-`, `_` and `/`. Every other byte is written `%XX`, so a token never holds the
/// subject separator `.`, the wildcards `*` and `>`, or white space.
const NATS_TOKEN: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'/');

/// The NATS subject of `topic` (a room topic) under the fleet's `base` subject:
/// `<base>.r.<topic>` with the topic as one subject token, bytes other than ASCII letters,
/// digits, `-`, `_` and `/` written as `%XX` (`chat.general` → `asena.ws.transport.r.chat%2Egeneral`).
/// `None` when it would be longer than 1 KiB: that room then takes the shared subject.
///
/// ```
/// use asena_protocol::wire;
/// assert_eq!(
///     wire::nats_room_subject("asena.ws.transport", "chat.general").as_deref(),
///     Some("asena.ws.transport.r.chat%2Egeneral")
/// );
/// assert_eq!(
///     wire::nats_room_subject("s", "ws/news.a b*>é").as_deref(),
///     Some("s.r.ws/news%2Ea%20b%2A%3E%C3%A9")
/// );
/// ```
pub fn nats_room_subject(base: &str, topic: &str) -> Option<String> {
    // Each byte takes at most three: a topic that long is refused before it is encoded.
    if base.len() + 3 + topic.len() > MAX_ROOM_SUBJECT {
        return None;
    }
    let subject = format!("{base}.r.{}", utf8_percent_encode(topic, NATS_TOKEN));
    (subject.len() <= MAX_ROOM_SUBJECT).then_some(subject)
}

/// The NATS subject of the named channel `<prefix>:<rest>` (a protocol's own layout, such
/// as the managed protocol's `ws:room:lobby`) under the fleet's `base` subject:
/// `<base>.c.<prefix>.<rest>`, the rest one token written as room names are
/// ([`nats_room_subject`]). `None` for a channel without a prefix, and for one whose subject
/// would be longer than 1 KiB (NATS refuses a protocol line over 4 KiB by closing the
/// connection); the channel of any valid room name fits.
///
/// ```
/// use asena_protocol::wire;
/// let subject = wire::nats_channel_subject("asena.ws.transport", "ws:room:a.b").unwrap();
/// assert_eq!(subject, "asena.ws.transport.c.ws.room%3Aa%2Eb");
/// assert_eq!(
///     wire::nats_subject_channel("asena.ws.transport", &subject).as_deref(),
///     Some("ws:room:a.b")
/// );
/// ```
pub fn nats_channel_subject(base: &str, channel: &str) -> Option<String> {
    let (prefix, rest) = channel.split_once(':')?;
    // Each byte takes at most three: a channel that long is refused before it is encoded.
    if base.len() + 4 + channel.len() > MAX_ROOM_SUBJECT {
        return None;
    }
    let subject = format!(
        "{base}.c.{prefix}.{}",
        utf8_percent_encode(rest, NATS_TOKEN)
    );
    (subject.len() <= MAX_ROOM_SUBJECT).then_some(subject)
}

/// The subject that matches every named channel of `prefix` under `base`:
/// `<base>.c.<prefix>.>`.
pub fn nats_channel_wildcard(base: &str, prefix: &str) -> String {
    format!("{base}.c.{prefix}.>")
}

/// The named channel a NATS subject carries, the inverse of [`nats_channel_subject`]. `None`
/// for the fleet's and the rooms' subjects, and for any subject that function would not have
/// written (an invalid or needless escape).
pub fn nats_subject_channel(base: &str, subject: &str) -> Option<String> {
    let tail = subject.strip_prefix(base)?.strip_prefix(".c.")?;
    let (prefix, rest) = tail.split_once('.')?;
    let rest = percent_decode_str(rest).decode_utf8().ok()?;
    let channel = format!("{prefix}:{rest}");
    (nats_channel_subject(base, &channel).as_deref() == Some(subject)).then_some(channel)
}

/// The Redis channel of `topic` (a room topic) under the fleet's `channel`, for a
/// `RedisTransport` that routes by interest: `<channel>:r:<topic>`.
///
/// ```
/// use asena_protocol::wire;
/// assert_eq!(
///     wire::redis_room_channel("asena:ws:transport", "chat.general"),
///     "asena:ws:transport:r:chat.general"
/// );
/// ```
pub fn redis_room_channel(channel: &str, topic: &str) -> String {
    let mut out = String::with_capacity(channel.len() + 3 + topic.len());
    out.push_str(channel);
    out.push_str(":r:");
    out.push_str(topic);
    out
}

/// Who a topic addresses within one namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// Every socket of the namespace.
    Broadcast,
    /// The members of a room (or the socket whose id this is).
    Room(&'a str),
}

/// What `topic` addresses in the namespace with topic prefix `namespace`, or `None` when it
/// belongs to another namespace.
pub fn target<'a>(topic: &'a str, namespace: &str) -> Option<Target<'a>> {
    let rest = topic.strip_prefix(namespace)?;
    if rest.is_empty() {
        return Some(Target::Broadcast);
    }
    match rest.strip_prefix('.')? {
        BROADCAST_ROOM => Some(Target::Broadcast),
        room => Some(Target::Room(room)),
    }
}

/// A message between instances, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The topic (see the module docs).
    pub topic: String,
    /// The pod id of the publisher.
    pub origin: String,
    /// The message bytes (UTF-8 for text).
    pub payload: Vec<u8>,
    /// Whether the message is binary.
    pub binary: bool,
    /// The trace the message was sent in (`tp`), when it was.
    pub trace: Option<TraceParent>,
}

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    d: &'a str,
    t: &'a str,
    o: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    b: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tp: Option<TraceParent>,
}

#[derive(Deserialize)]
struct EnvelopeIn {
    d: serde_json::Value,
    t: String,
    o: String,
    #[serde(default)]
    b: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "trace::lenient")]
    tp: Option<TraceParent>,
}

/// An envelope that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed envelope: {0}")]
pub struct EnvelopeError(String);

impl Envelope {
    /// Encodes a message as the JSON envelope, with `trace` as its `tp` when there is one.
    pub fn encode(
        topic: &str,
        payload: &[u8],
        binary: bool,
        origin: &str,
        trace: Option<TraceParent>,
    ) -> Vec<u8> {
        let (data, b) = if binary {
            (Cow::Owned(BASE64.encode(payload)), Some(1))
        } else {
            // Text frames always hold UTF-8; lossy conversion is only a safety net.
            (String::from_utf8_lossy(payload), None)
        };
        let envelope = EnvelopeOut {
            d: &data,
            t: topic,
            o: origin,
            b,
            tp: trace,
        };
        // Serialising strings into a Vec cannot fail.
        serde_json::to_vec(&envelope).unwrap_or_default()
    }

    /// Decodes a JSON envelope. `d` may be a string (text, or base64 when `b` is truthy) or,
    /// from other publishers, any JSON value, which is delivered as its JSON text.
    pub fn decode(raw: &[u8]) -> Result<Envelope, EnvelopeError> {
        let env: EnvelopeIn =
            serde_json::from_slice(raw).map_err(|e| EnvelopeError(e.to_string()))?;
        let binary = match &env.b {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::Number(n)) => n.as_u64() != Some(0),
            Some(other) => return Err(EnvelopeError(format!("unexpected b = {other}"))),
        };
        let payload = match (env.d, binary) {
            (serde_json::Value::String(s), true) => BASE64
                .decode(s.as_bytes())
                .map_err(|e| EnvelopeError(format!("bad base64 in d: {e}")))?,
            (serde_json::Value::String(s), false) => s.into_bytes(),
            (_, true) => return Err(EnvelopeError("binary d is not a string".into())),
            (other, false) => other.to_string().into_bytes(),
        };
        Ok(Envelope {
            topic: env.t,
            origin: env.o,
            payload,
            binary,
            trace: env.tp,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn named_channels_round_trip_through_nats_subjects() {
        let base = NATS_SUBJECT;
        for channel in [
            "ws:room:lobby",
            "ws:user:u-42",
            "ws:broadcast",
            "ws:room:a.b c*>%é",
            "app_2:client:0190a0b0-0000-7000-8000-000000000000",
        ] {
            let subject = nats_channel_subject(base, channel).expect("a prefix");
            let tail = &subject[base.len() + 1..];
            assert_eq!(tail.split('.').count(), 3, "{subject}: one token per part");
            assert!(!tail.contains([' ', '*', '>']), "{subject}");
            assert_eq!(
                nats_subject_channel(base, &subject).as_deref(),
                Some(channel)
            );
        }
        assert_eq!(nats_channel_subject(base, "no-prefix"), None);
        // The fleet's and the rooms' subjects carry no named channel.
        assert_eq!(nats_subject_channel(base, base), None);
        let room = nats_room_subject(base, "chat.lobby").expect("short");
        assert_eq!(nats_subject_channel(base, &room), None);
        // Only what nats_channel_subject writes: no broken, needless or lower-case escapes.
        for subject in ["c.ws.%4", "c.ws.a%2", "c.ws.%61", "c.ws.a%2eb", "c.ws.a.b"] {
            assert_eq!(
                nats_subject_channel(base, &format!("{base}.{subject}")),
                None,
                "{subject}"
            );
        }
    }

    #[test]
    fn a_channel_subject_longer_than_the_limit_is_none() {
        // The longest room name, every byte escaped, still has a subject.
        let room = "é".repeat(128);
        let subject = nats_channel_subject(NATS_SUBJECT, &format!("ws:room:{room}"));
        assert!(subject.is_some_and(|s| s.len() <= MAX_ROOM_SUBJECT));
        // A user id of 4 KiB (chosen by the service, perhaps from what a client sent) has none.
        let user = "u".repeat(4096);
        assert_eq!(
            nats_channel_subject(NATS_SUBJECT, &format!("ws:user:{user}")),
            None
        );
        assert_eq!(
            nats_channel_subject(NATS_SUBJECT, &format!("ws:user:{}", &"é".repeat(200))),
            None
        );
    }

    #[test]
    fn a_room_subject_longer_than_the_limit_is_none() {
        let long = "é".repeat(200);
        assert!(nats_room_subject(NATS_SUBJECT, &long[..300]).is_some());
        assert_eq!(nats_room_subject(NATS_SUBJECT, &long), None);
        assert_eq!(nats_room_subject(NATS_SUBJECT, &"a".repeat(2000)), None);
    }

    #[test]
    fn text_round_trip() {
        let raw = Envelope::encode("chat.general", b"{\"a\":1}", false, "pod-1", None);
        let v: serde_json::Value = serde_json::from_slice(&raw).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"d": "{\"a\":1}", "t": "chat.general", "o": "pod-1"})
        );
        let d = Envelope::decode(&raw).expect("decode");
        assert_eq!(d.topic, "chat.general");
        assert_eq!(d.origin, "pod-1");
        assert_eq!(d.payload, b"{\"a\":1}");
        assert!(!d.binary);
    }

    #[test]
    fn binary_round_trip() {
        let raw = Envelope::encode("chat.__", &[0, 255, 7], true, "p", None);
        let v: serde_json::Value = serde_json::from_slice(&raw).expect("json");
        assert_eq!(v["b"], 1);
        assert_eq!(v["d"], "AP8H");
        let d = Envelope::decode(&raw).expect("decode");
        assert_eq!(d.payload, vec![0, 255, 7]);
        assert!(d.binary);
    }

    #[test]
    fn the_trace_travels_as_tp_and_a_bad_one_is_no_context() {
        let trace = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let raw = Envelope::encode("chat.general", b"hi", false, "pod-1", trace);
        let v: serde_json::Value = serde_json::from_slice(&raw).expect("json");
        assert_eq!(
            v["tp"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(Envelope::decode(&raw).expect("decode").trace, trace);
        // A hostile `tp` (huge, malformed, another type) does not cost the message.
        let huge = "0".repeat(1 << 20);
        for tp in [
            serde_json::json!(huge),
            serde_json::json!("00-zz"),
            serde_json::json!({"a": [1, 2]}),
        ] {
            let raw =
                serde_json::to_vec(&serde_json::json!({"d": "hi", "t": "c.r", "o": "x", "tp": tp}))
                    .expect("json");
            let envelope = Envelope::decode(&raw).expect("delivered");
            assert_eq!(
                (envelope.payload.as_slice(), envelope.trace),
                (&b"hi"[..], None)
            );
        }
    }

    #[test]
    fn foreign_json_data_is_delivered_as_json_text() {
        let d = Envelope::decode(br#"{"d":{"x":1},"t":"chat.r","o":"ts-pod"}"#).expect("decode");
        assert_eq!(d.payload, br#"{"x":1}"#);
        assert!(Envelope::decode(b"not json").is_err());
        assert!(Envelope::decode(br#"{"d":"!!","t":"x","o":"p","b":1}"#).is_err());
    }

    #[test]
    fn topics_follow_asena() {
        assert_eq!(namespace_topic("/chat"), "chat");
        assert_eq!(namespace_topic("/ws/notifications"), "ws/notifications");
        assert_eq!(room_topic("chat", "general"), "chat.general");
        assert_eq!(broadcast_topic("chat"), "chat.__");
    }

    #[test]
    fn targets() {
        assert_eq!(target("chat.__", "chat"), Some(Target::Broadcast));
        assert_eq!(target("chat", "chat"), Some(Target::Broadcast));
        assert_eq!(
            target("chat.general", "chat"),
            Some(Target::Room("general"))
        );
        assert_eq!(target("chat.a.b", "chat"), Some(Target::Room("a.b")));
        assert_eq!(target("chat.", "chat"), Some(Target::Room("")));
        assert_eq!(target("chatter.x", "chat"), None);
        assert_eq!(target("other.x", "chat"), None);
    }

    /// Any JSON value, nested a little.
    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            "[A-Za-z0-9+/=]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..4).prop_map(Value::Array),
                vec(("[a-z]{0,3}", inner), 0..4)
                    .prop_map(|fields| Value::Object(fields.into_iter().collect())),
            ]
        })
    }

    /// What a message can address in one namespace.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Address {
        Broadcast,
        Room(String),
    }

    /// The topic of an address, as a namespace publishes it.
    fn topic_of(namespace_path: &str, address: &Address) -> String {
        let ns = namespace_topic(namespace_path);
        match address {
            Address::Broadcast => broadcast_topic(ns),
            Address::Room(room) => room_topic(ns, room),
        }
    }

    /// Namespace paths as `#[websocket]` accepts them (no `.`), with parameters and unicode.
    fn namespace_path() -> impl Strategy<Value = String> {
        "(/[a-z{}é_-]{0,6}){1,3}"
    }

    /// Room names a send may name: client rooms (dots included), socket ids, concrete paths.
    fn address() -> impl Strategy<Value = Address> {
        prop_oneof![
            Just(Address::Broadcast),
            // What the runtime's send-side room check admits, of these characters: any
            // name but those starting with the reserved `__`.
            "[a-z._:/é-]{1,12}"
                .prop_filter("a name a send may name", |r| !r.starts_with("__"))
                .prop_map(Address::Room),
            any::<u128>().prop_map(|n| Address::Room(uuid::Uuid::from_u128(n).to_string())),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// `(namespace, room) → topic` is one-to-one: two different pairs never share a
        /// topic, so never a Redis channel or NATS subject either (both are one-to-one
        /// functions of the topic).
        #[test]
        fn distinct_addresses_have_distinct_channels(
            a in (namespace_path(), address()),
            b in (namespace_path(), address()),
        ) {
            let (topic_a, topic_b) = (topic_of(&a.0, &a.1), topic_of(&b.0, &b.1));
            let same_namespace = namespace_topic(&a.0) == namespace_topic(&b.0);
            if !(same_namespace && a.1 == b.1) {
                prop_assert_ne!(&topic_a, &topic_b);
                prop_assert_ne!(
                    redis_room_channel(REDIS_CHANNEL, &topic_a),
                    redis_room_channel(REDIS_CHANNEL, &topic_b)
                );
                prop_assert_ne!(
                    nats_room_subject(NATS_SUBJECT, &topic_a),
                    nats_room_subject(NATS_SUBJECT, &topic_b)
                );
            }
            // And the receiving side reads back exactly what was sent.
            let expected = match &a.1 {
                Address::Broadcast => Target::Broadcast,
                Address::Room(room) => Target::Room(room),
            };
            prop_assert_eq!(target(&topic_a, namespace_topic(&a.0)), Some(expected));
        }

        /// What `encode` makes, `decode` gives back, for any topic, origin and payload.
        #[test]
        fn any_envelope_round_trips(
            topic in any::<String>(),
            origin in any::<String>(),
            text in any::<String>(),
            data in vec(any::<u8>(), 0..300),
            binary in any::<bool>(),
            ids in proptest::option::of(any::<([u8; 16], [u8; 8], u8)>()),
        ) {
            let payload = if binary { data } else { text.into_bytes() };
            let trace = ids.and_then(|(trace, span, flags)| TraceParent::new(trace, span, flags));
            let raw = Envelope::encode(&topic, &payload, binary, &origin, trace);
            prop_assert_eq!(
                Envelope::decode(&raw),
                Ok(Envelope { topic, origin, payload, binary, trace })
            );
        }

        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn arbitrary_bytes_never_panic(raw in vec(any::<u8>(), 0..512)) {
            let _ = Envelope::decode(&raw);
        }

        /// Envelopes from other publishers, with any `d` and `b` (or none), possibly cut
        /// short: no panic, and a string `d` without a truthy `b` is delivered as it is.
        #[test]
        fn foreign_envelopes_never_panic(
            d in json_value(),
            b in proptest::option::of(json_value()),
            topic in any::<String>(),
            cut in any::<proptest::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            let mut object = serde_json::json!({"d": d, "t": topic, "o": "other"});
            if let Some(b) = &b {
                object["b"] = b.clone();
            }
            let mut raw = serde_json::to_vec(&object).expect("serialises");
            if truncate {
                raw.truncate(cut.index(raw.len() + 1));
            }
            let decoded = Envelope::decode(&raw);
            let plain = matches!(
                b,
                None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(false))
            );
            if let (false, serde_json::Value::String(s), true) = (truncate, &d, plain) {
                prop_assert_eq!(
                    decoded,
                    Ok(Envelope {
                        topic,
                        origin: "other".into(),
                        payload: s.clone().into_bytes(),
                        binary: false,
                        trace: None,
                    })
                );
            }
        }
    }
}
