//! The managed protocol in the AsyncAPI document: its system events beside the service's own
//! (each `{"event": .., "data": .., "id"?: ..}`, the answer to a request echoing its `id`),
//! the requests they answer, and close codes 4001–4005.

use serde_json::{Value, json};

use crate::asyncapi::{ChannelSpec, ProtocolMessage};

use super::close;

/// The events only the protocol may use; an application event of another name is the
/// service's.
const SYSTEM_EVENTS: [&str; 9] = [
    "encrypt",
    "encrypted",
    "authenticate",
    "connected",
    "heartbeat",
    "join",
    "leave",
    "error",
    "disconnect",
];

/// Adds the protocol's events, replies and close codes to `spec`; a raw direction becomes any
/// application event (an envelope whose `event` is not a system event's).
pub(super) fn describe(spec: &mut ChannelSpec) {
    spec.receives.get_or_insert_with(application_event);
    spec.sends.get_or_insert_with(application_event);
    let rooms = json!({ "type": "array", "items": { "type": "string" } });
    // `{"rooms": [..]}`, what join and leave carry both ways
    let in_rooms =
        json!({ "type": "object", "required": ["rooms"], "properties": { "rooms": rooms } });
    spec.protocol.receives = vec![
        event(
            "receive",
            "encrypt",
            "Asks for encryption; must be the client's first message. `publicKey`: the client's P-256 public key, base64 of its uncompressed SEC1 form.",
            json!({ "type": "object", "required": ["publicKey"], "properties": { "publicKey": { "type": "string" } } }),
            json!({ "publicKey": "BASE64" }),
        ),
        event(
            "receive",
            "authenticate",
            "The client's credentials, handed to the service's authenticator; answered with `connected`, or closed with 4003.",
            json!({ "type": "object" }),
            json!({ "token": "secret" }),
        ),
        event(
            "receive",
            "heartbeat",
            "Keeps the connection alive (no answer); without any message within the heartbeat timeout the server closes with 4002.",
            json!({}),
            Value::Null,
        ),
        event(
            "receive",
            "join",
            "Asks to join rooms; the service validates each. Answered with `join`.",
            in_rooms.clone(),
            json!({ "rooms": ["lobby"] }),
        ),
        event(
            "receive",
            "leave",
            "Leaves rooms. Answered with `leave`.",
            in_rooms.clone(),
            json!({ "rooms": ["lobby"] }),
        ),
        event(
            "receive",
            "disconnect",
            "Asks the server to close the connection (1000).",
            json!({}),
            Value::Null,
        ),
    ];
    spec.protocol.sends = vec![
        event(
            "send",
            "encrypted",
            "The answer to `encrypt` (`serverPublicKey`, `salt`), then every message both ways once a key is agreed (`iv`, `payload`: AES-256-GCM).",
            json!({
                "oneOf": [
                    { "type": "object", "required": ["serverPublicKey", "salt"], "properties": { "serverPublicKey": { "type": "string" }, "salt": { "type": "string" } } },
                    { "type": "object", "required": ["iv", "payload"], "properties": { "iv": { "type": "string" }, "payload": { "type": "string" } } },
                ],
            }),
            json!({ "serverPublicKey": "BASE64", "salt": "BASE64" }),
        ),
        event(
            "send",
            "connected",
            "The answer to a successful `authenticate`: the connection's id, the user's id and the server's time.",
            json!({ "type": "object", "required": ["id", "userId", "time"], "properties": { "id": { "type": "string" }, "userId": { "type": "string" }, "time": { "type": "string" } } }),
            json!({ "id": "d2c7…", "userId": "u-42", "time": "2026-01-01T12:00:00.000Z" }),
        ),
        event(
            "send",
            "join",
            "The answer to `join`: the rooms joined, and those the service refused.",
            json!({ "type": "object", "required": ["rooms"], "properties": { "rooms": rooms, "denied": rooms } }),
            json!({ "rooms": ["lobby"], "denied": [] }),
        ),
        event(
            "send",
            "leave",
            "The answer to `leave`: the rooms left.",
            in_rooms.clone(),
            json!({ "rooms": ["lobby"] }),
        ),
        event(
            "send",
            "disconnect",
            "The server tells the client to go (`reason`), then closes the connection with 1000 and that reason.",
            json!({ "type": "object", "properties": { "reason": { "type": "string" } } }),
            json!({ "reason": "Signed out elsewhere" }),
        ),
        event(
            "send",
            "error",
            "What went wrong with the client's last message (`Not authenticated`, a refused event with its `code` and `event`, an invalid message).",
            json!({ "type": "object", "required": ["message"], "properties": { "message": { "type": "string" }, "code": { "type": "string" }, "event": { "type": "string" } } }),
            json!({ "message": "Not authenticated" }),
        ),
    ];
    spec.protocol.replies = [
        ("encrypt", "encrypted"),
        ("authenticate", "connected"),
        ("join", "join"),
        ("leave", "leave"),
    ]
    .iter()
    .map(|(request, answer)| ((*request).to_owned(), (*answer).to_owned()))
    .collect();
    spec.protocol.close_codes = [
        (
            close::AUTH_TIMEOUT,
            "no `authenticate` within the authentication timeout",
        ),
        (
            close::HEARTBEAT_TIMEOUT,
            "no message within the heartbeat timeout",
        ),
        (close::AUTH_FAILED, "authentication refused or failed"),
        (
            close::ENCRYPTION_REQUIRED,
            "encryption required: the first message was not a valid `encrypt`",
        ),
        (
            close::DECRYPTION_FAILED,
            "a message from an encrypting client that is not the next sealed one",
        ),
    ]
    .iter()
    .map(|(code, meaning)| (*code, (*meaning).to_owned()))
    .collect();
}

/// A system event: the envelope `{"event": name, "data": data}`.
fn event(
    direction: &str,
    name: &str,
    description: &str,
    data: Value,
    example: Value,
) -> ProtocolMessage {
    let payload = json!({
        "type": "object",
        "required": ["event"],
        "properties": {
            "event": { "type": "string", "const": name },
            "data": data,
            "id": {
                "type": "string",
                "description": "The client's id for a request; the server's answer to that request carries the same.",
            },
        },
    });
    let example = json!({ "event": name, "data": example });
    ProtocolMessage::new(
        &format!("managed.{direction}.{name}"),
        name,
        description,
        payload,
        example,
    )
}

/// Any application event: the envelope with an `event` that is not a system event's.
fn application_event() -> schemars::Schema {
    let schema = json!({
        "type": "object",
        "title": "event",
        "description": "An application event of the service: `data` is whatever the event carries.",
        "required": ["event"],
        "properties": {
            "event": { "type": "string", "not": { "enum": SYSTEM_EVENTS } },
            "data": {},
            "id": { "type": "string" },
        },
        "examples": [{ "event": "chat:message", "data": { "text": "hi" } }],
    });
    schemars::Schema::try_from(schema).expect("invariant: an object is a schema")
}

#[cfg(test)]
mod tests {
    use crate::asyncapi::{Info, document, generator};

    use super::*;

    fn doc() -> Value {
        let mut spec = ChannelSpec {
            name: "Realtime".into(),
            path: "/ws".into(),
            ..ChannelSpec::default()
        };
        describe(&mut spec);
        document(&Info::default(), &[], &[spec], generator())
    }

    #[test]
    fn system_events_replies_and_close_codes() {
        let doc = doc();
        let channel = &doc["channels"]["Realtime"];
        let mut keys: Vec<_> = channel["messages"]
            .as_object()
            .expect("messages")
            .keys()
            .cloned()
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "receive.authenticate",
                "receive.disconnect",
                "receive.encrypt",
                "receive.heartbeat",
                "receive.join",
                "receive.leave",
                "receive.message",
                "send.connected",
                "send.disconnect",
                "send.encrypted",
                "send.error",
                "send.join",
                "send.leave",
                "send.message",
            ]
        );
        let description = channel["description"].as_str().expect("description");
        for code in 4001..=4005 {
            assert!(
                description.contains(&format!("`{code}`")),
                "{code}: {description}"
            );
        }
        let authenticate = &doc["operations"]["Realtime.authenticate"];
        assert_eq!(
            authenticate["reply"]["messages"][0]["$ref"],
            "#/channels/Realtime/messages/send.connected"
        );
        let join = &doc["components"]["messages"]["managed.send.join"];
        assert_eq!(join["payload"]["properties"]["event"]["const"], "join");
        assert_eq!(join["examples"][0]["payload"]["event"], "join");
    }

    #[test]
    fn application_events_exclude_the_system_events() {
        let doc = doc();
        let event = &doc["components"]["messages"]["Realtime.receive.message"];
        let excluded = &event["payload"]["properties"]["event"]["not"]["enum"];
        assert_eq!(excluded.as_array().map(Vec::len), Some(SYSTEM_EVENTS.len()));
        assert_eq!(event["examples"][0]["payload"]["event"], "chat:message");
    }
}
