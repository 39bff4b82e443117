//! The AsyncAPI documents Asena generates, checked by the official parser
//! (`@asyncapi/parser`, installed by `bash scripts/asyncapi.sh`).

use asena_runtime::asyncapi::{self, ChannelSpec, Info, ServerSpec};
use asena_tests::validate_asyncapi;
use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What chat clients send.
#[derive(Deserialize, JsonSchema, Validate)]
#[serde(tag = "type", rename_all = "snake_case")]
#[garde(allow_unvalidated)]
#[allow(dead_code)]
enum ChatIn {
    /// A message to the room.
    Message {
        #[garde(length(chars, min = 1, max = 500))]
        message: String,
    },
    /// Switch rooms.
    Join {
        #[garde(pattern(r"^[a-z0-9-]{1,32}$"))]
        room: String,
    },
    /// Show a dot on everyone else's screen.
    Typing,
    Ping,
    /// Rate the room (1 to 5).
    Rate(Rating),
}

#[derive(Serialize, Deserialize, JsonSchema, Validate)]
struct Rating {
    #[garde(range(min = 1, max = 5))]
    stars: u8,
}

/// What the chat sends.
#[derive(Serialize, JsonSchema)]
#[allow(dead_code)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ChatOut {
    Message {
        from: String,
        message: String,
        sent_at: Option<u64>,
    },
    Typing {
        from: String,
    },
    Pong,
}

/// The path parameters of the events service.
#[derive(Deserialize, JsonSchema, Validate)]
#[allow(dead_code)]
struct EventParams {
    /// The user whose events these are.
    #[garde(range(min = 1))]
    user_id: u64,
    #[garde(skip)]
    topic: Topic,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Topic {
    Orders,
    Alerts,
}

/// An event (not a tagged enum: one message).
#[derive(Serialize, JsonSchema)]
#[allow(dead_code)]
struct Event {
    id: String,
    payload: Value,
}

fn app_doc() -> Value {
    let mut generator = asyncapi::generator();
    let chat = ChannelSpec {
        name: "ChatSocket".into(),
        path: "/chat".into(),
        receives: Some(generator.subschema_for::<ChatIn>()),
        sends: Some(generator.subschema_for::<ChatOut>()),
        protocols: vec!["chat.v2".into(), "chat.v1".into()],
        ..ChannelSpec::default()
    };
    let events = ChannelSpec {
        name: "UserEvents".into(),
        path: "/user/events/{user_id}/{topic}".into(),
        params: Some(generator.subschema_for::<EventParams>()),
        sends: Some(generator.subschema_for::<Event>()),
        ..ChannelSpec::default()
    };
    let echo = ChannelSpec {
        name: "Echo".into(),
        path: "/echo/{*rest}".into(),
        ..ChannelSpec::default()
    };
    let info = Info {
        title: "Chat".into(),
        version: "2.1.0".into(),
        description: Some("Rooms, typing dots and user events.".into()),
    };
    let servers = [
        ServerSpec::new("local", "127.0.0.1:3000", "ws"),
        ServerSpec::new("production", "chat.example.com", "wss"),
    ];
    asyncapi::document(&info, &servers, &[chat, events, echo], generator)
}

#[test]
fn typed_raw_and_parameterised_services_are_valid() -> anyhow::Result<()> {
    let doc = app_doc();
    // what the parser is shown really has the constraints and the variants
    let text = doc.to_string();
    for needle in [
        "\"maxLength\":500",
        "\"pattern\":\"^[a-z0-9-]{1,32}$\"",
        "\"maximum\":5",
        "ChatSocket.receive.join",
        "ChatSocket.send.typing",
    ] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
    validate_asyncapi(&[("app", doc)])
}

#[test]
fn an_app_without_services_or_servers_is_valid() -> anyhow::Result<()> {
    let doc = asyncapi::document(&Info::default(), &[], &[], asyncapi::generator());
    validate_asyncapi(&[("empty", doc)])
}

#[test]
fn the_parser_rejects_a_broken_document() {
    let mut doc = app_doc();
    doc["operations"]["ChatSocket.receive"]["channel"] = json!({ "$ref": "#/channels/Nowhere" });
    let error = validate_asyncapi(&[("good", app_doc()), ("broken", doc)])
        .expect_err("an operation on a channel that does not exist");
    let text = format!("{error:#}");
    assert!(text.contains("#/channels/Nowhere"), "{text}");
    assert!(text.contains("broken.asyncapi.json"), "{text}");
}

#[test]
fn the_parser_rejects_a_parameter_with_a_schema() {
    // AsyncAPI 3.0 parameters have no `schema` (2.x had one): proves the 3.0 rules apply
    let mut doc = app_doc();
    doc["channels"]["UserEvents"]["parameters"]["user_id"]["schema"] = json!({ "type": "integer" });
    let error = validate_asyncapi(&[("v2-parameter", doc)]).expect_err("a 2.x parameter");
    let text = format!("{error:#}");
    assert!(text.contains("parameters.user_id.schema"), "{text}");
}
