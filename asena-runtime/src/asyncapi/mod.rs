//! The [AsyncAPI 3.0](https://www.asyncapi.com/docs/reference/specification/v3.0.0) document
//! of an app's websocket services: one channel per service, its path parameters, and the
//! messages it receives and sends, with the JSON Schemas of its typed messages.
//!
//! The module only builds the document (a [`serde_json::Value`]); it does no I/O. Describe
//! each service with a [`ChannelSpec`] whose schemas come from [`generator`], then call
//! [`document`]:
//!
//! ```
//! use asena_runtime::asyncapi::{self, ChannelSpec, Info, ServerSpec};
//! use asena_runtime::prelude::*;
//!
//! #[derive(Deserialize, JsonSchema)]
//! #[serde(tag = "type", rename_all = "snake_case")]
//! enum ChatIn {
//!     Message { message: String },
//!     Ping,
//! }
//!
//! let mut generator = asyncapi::generator();
//! let chat = ChannelSpec {
//!     name: "ChatSocket".into(),
//!     path: "/chat".into(),
//!     params: None,
//!     receives: Some(generator.subschema_for::<ChatIn>()),
//!     sends: None,
//!     protocols: vec![],
//!     ..ChannelSpec::default()
//! };
//! let server = ServerSpec::new("local", "127.0.0.1:3000", "ws");
//! let doc = asyncapi::document(&Info::default(), &[server], &[chat], generator);
//! assert_eq!(doc["channels"]["ChatSocket"]["address"], "/chat");
//! // one message per variant of the internally tagged enum
//! assert_eq!(doc["components"]["messages"]["ChatSocket.receive.ping"]["name"], "ping");
//! ```
//!
//! Operations are the server's: `<channel>.receive` lists what clients send to the service,
//! `<channel>.send` what the service sends them. A payload whose schema is a `oneOf` of
//! objects sharing a constant string property (an internally or adjacently tagged serde
//! enum, `#[serde(tag = "type")]`) becomes one message per variant, named by that constant;
//! any other typed payload is one message; an untyped (raw) direction is one message with
//! an unconstrained payload.

mod formats;

use schemars::generate::SchemaSettings;
use schemars::transform::RecursiveTransform;
use schemars::{Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use crate::channel::DecodeErrorKind;
use crate::codec::close_code;

/// Where [`generator`] puts the schemas that others refer to, as a JSON pointer into the
/// document.
const SCHEMAS: &str = "/components/schemas";

/// The close codes the framework sends, and why.
const CLOSE_CODES: [(u16, &str); 7] = [
    (close_code::NORMAL, "normal closure"),
    (
        close_code::GOING_AWAY,
        "going away: server shutdown, idle timeout, unanswered pings",
    ),
    (close_code::PROTOCOL, "protocol error"),
    (
        close_code::INVALID_PAYLOAD,
        "invalid UTF-8 in a text message",
    ),
    (
        close_code::POLICY,
        "policy violation: slow consumer, connection limit",
    ),
    (
        close_code::TOO_BIG,
        "message too big (the size limit is counted after decompression)",
    ),
    (
        close_code::INTERNAL,
        "a handler failed (after an `error` message)",
    ),
];

/// One websocket service as the document describes it.
#[derive(Debug, Clone, Default)]
pub struct ChannelSpec {
    /// The service's name, e.g. `ChatSocket`; the channel's key is made from it.
    pub name: String,
    /// The path it is served at, e.g. `/chat` or `/user/events/{user_id}`.
    pub path: String,
    /// The schema of the path-parameter type; `None` when the service declares none (`()`).
    pub params: Option<Schema>,
    /// What clients send to the service; `None` for any message (raw).
    pub receives: Option<Schema>,
    /// What the service sends; `None` for any message (raw).
    pub sends: Option<Schema>,
    /// The subprotocols (`Sec-WebSocket-Protocol`) the service speaks.
    pub protocols: Vec<String>,
    /// The query parameters of the upgrade request its middlewares read
    /// (`bindings.ws.query`).
    pub query: Vec<QueryParam>,
    /// Requests and their answers, by message name (`("ping", "pong")`): each request gets an
    /// operation of its own whose `reply` is the answer.
    pub replies: Vec<(String, String)>,
    /// What the service's protocol adds: its own messages, replies and close codes.
    pub protocol: ProtocolSpec,
}

/// A query parameter of the upgrade request, declared by the middleware that reads it
/// ([`Middleware::QUERY`](crate::middleware::Middleware::QUERY)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryParam {
    /// The parameter's name, e.g. `username`.
    pub name: &'static str,
    /// What it is and what happens without it.
    pub description: &'static str,
    /// Whether the upgrade is refused without it.
    pub required: bool,
}

/// What a protocol adds to every channel that speaks it.
#[derive(Debug, Clone, Default)]
pub struct ProtocolSpec {
    /// Messages clients may send beside the service's own (the managed `authenticate`).
    pub receives: Vec<ProtocolMessage>,
    /// Messages the protocol sends beside the service's own (the `error` frame).
    pub sends: Vec<ProtocolMessage>,
    /// The protocol's requests and their answers, by message name (`("join", "join")`).
    pub replies: Vec<(String, String)>,
    /// Close codes beside the framework's, with their meaning.
    pub close_codes: Vec<(u16, String)>,
}

/// A message of a protocol, the same on every channel that speaks it.
#[derive(Debug, Clone)]
pub struct ProtocolMessage {
    /// Its key in `components.messages`, shared by those channels, e.g. `asena.error`.
    pub key: String,
    /// Its name: the value of the property that tells the messages apart, e.g. `error`.
    pub name: String,
    /// The Message Object: `name`, `title`, `description`, `contentType`, `payload`,
    /// `examples`.
    pub message: Value,
}

impl ProtocolMessage {
    /// A JSON message named `name` under the key `key`, with `payload` (a JSON Schema) and
    /// one `example`.
    pub fn new(key: &str, name: &str, description: &str, payload: Value, example: Value) -> Self {
        ProtocolMessage {
            key: key.to_owned(),
            name: name.to_owned(),
            message: json!({
                "name": name,
                "title": title(name),
                "description": description,
                "contentType": "application/json",
                "payload": payload,
                "examples": [{ "name": name, "payload": example }],
            }),
        }
    }
}

/// The document's `info`: the app's title, version and description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The app's name.
    pub title: String,
    /// The app's version (not AsyncAPI's).
    pub version: String,
    /// What the app does (Markdown); the document adds the close codes to it.
    pub description: Option<String>,
}

impl Default for Info {
    /// Title `Asena app`, version `1.0.0`, no description.
    fn default() -> Self {
        Info {
            title: "Asena app".to_owned(),
            version: "1.0.0".to_owned(),
            description: None,
        }
    }
}

/// A server the services are reachable on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// Its key in the document's `servers`, e.g. `local` or `production`.
    pub name: String,
    /// Host and port, e.g. `127.0.0.1:3000`.
    pub host: String,
    /// `ws` or `wss`.
    pub protocol: String,
}

impl ServerSpec {
    /// A server named `name` at `host` (`127.0.0.1:3000`) speaking `protocol` (`ws`, `wss`).
    pub fn new(
        name: impl Into<String>,
        host: impl Into<String>,
        protocol: impl Into<String>,
    ) -> Self {
        ServerSpec {
            name: name.into(),
            host: host.into(),
            protocol: protocol.into(),
        }
    }
}

/// The schema generator the specs' schemas must be made with: JSON Schema draft-07 (what
/// AsyncAPI's default schema format is based on), with referenced schemas under
/// `#/components/schemas/` and only the formats JSON Schema defines (Rust's integer formats
/// such as `uint8` become `minimum` / `maximum`).
pub fn generator() -> SchemaGenerator {
    SchemaSettings::draft07()
        .with(|s| {
            s.definitions_path = SCHEMAS.into();
            s.meta_schema = None;
        })
        .with_transform(RecursiveTransform(formats::standard_formats))
        .into_generator()
}

/// The AsyncAPI 3.0.0 document of `channels` served on `servers`.
///
/// `generator` is the one the specs' schemas were made with ([`generator`]); its definitions
/// become `components.schemas`. Channels with the same (sanitised) name get distinct keys.
pub fn document(
    info: &Info,
    servers: &[ServerSpec],
    channels: &[ChannelSpec],
    mut generator: SchemaGenerator,
) -> Value {
    let mut transform = |schema: &Option<Schema>| {
        schema.clone().map(|mut schema| {
            for t in generator.transforms_mut() {
                t.transform(&mut schema);
            }
            schema.to_value()
        })
    };
    let specs: Vec<_> = channels
        .iter()
        .map(|spec| {
            (
                spec,
                transform(&spec.params),
                transform(&spec.receives),
                transform(&spec.sends),
            )
        })
        .collect();
    let schemas = generator.take_definitions(true);

    let mut doc_channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();
    for (spec, params, receives, sends) in specs {
        let key = unique(&doc_channels, component_key(&spec.name, "channel"));
        let mut channel = Map::new();
        let names = path_params(&spec.path);
        channel.insert("address".into(), address(&spec.path).into());
        channel.insert("title".into(), spec.name.clone().into());
        channel.insert("description".into(), channel_description(spec).into());
        if !names.is_empty() {
            let parameters = names
                .iter()
                .map(|name| (name.clone(), parameter(name, params.as_ref(), &schemas)))
                .collect::<Map<_, _>>();
            channel.insert("parameters".into(), parameters.into());
        }

        let mut channel_messages = Map::new();
        // `direction.name` → the message's key in the channel, for the replies
        let mut local_of = std::collections::HashMap::new();
        let mut refs = |direction: &str, payload: Option<Value>, extra: &[ProtocolMessage]| {
            let mut found: Vec<Found<'_>> = payload_messages(payload, &schemas);
            // One message per name: a service's own message of a protocol message's name
            // stands for both, and says so.
            for pm in extra {
                let own = found.iter_mut().find_map(|f| match f {
                    Found::Message(m) if m.name == pm.name => Some(m),
                    _ => None,
                });
                match own {
                    Some(own) => own.description = Some(shared(own.description.take(), pm)),
                    None => found.push(Found::Protocol(pm)),
                }
            }
            let mut list = Vec::new();
            for found in found {
                let (name, message) = match found {
                    Found::Message(m) => {
                        let component = unique(
                            &messages,
                            format!("{key}.{direction}.{}", component_key(&m.name, "message")),
                        );
                        messages.insert(component.clone(), m.to_value(&schemas));
                        (m.name, component)
                    }
                    Found::Protocol(pm) => {
                        messages
                            .entry(pm.key.clone())
                            .or_insert_with(|| pm.message.clone());
                        (pm.name.clone(), pm.key.clone())
                    }
                };
                let local = unique(
                    &channel_messages,
                    format!("{direction}.{}", component_key(&name, "message")),
                );
                channel_messages.insert(
                    local.clone(),
                    json!({ "$ref": format!("#/components/messages/{message}") }),
                );
                local_of.insert(format!("{direction}.{name}"), local.clone());
                list.push(json!({ "$ref": format!("#/channels/{key}/messages/{local}") }));
            }
            list
        };
        let received = refs("receive", receives, &spec.protocol.receives);
        let sent = refs("send", sends, &spec.protocol.sends);
        channel.insert("messages".into(), channel_messages.into());
        if let Some(bindings) = ws_binding(&spec.protocols, &spec.query) {
            channel.insert("bindings".into(), bindings);
        }

        let operation = |action: &str, summary: String, list: Vec<Value>| {
            json!({
                "action": action,
                "channel": { "$ref": format!("#/channels/{key}") },
                "summary": summary,
                "messages": list,
            })
        };
        operations.insert(
            format!("{key}.receive"),
            operation(
                "receive",
                format!("Messages clients send to {}", spec.name),
                received,
            ),
        );
        operations.insert(
            format!("{key}.send"),
            operation(
                "send",
                format!("Messages {} sends to its clients", spec.name),
                sent,
            ),
        );
        for (request, answer) in spec.protocol.replies.iter().chain(&spec.replies) {
            let (Some(asked), Some(answered)) = (
                local_of.get(&format!("receive.{request}")),
                local_of.get(&format!("send.{answer}")),
            ) else {
                tracing::warn!(
                    target: "asena::asyncapi",
                    channel = %spec.name,
                    %request,
                    %answer,
                    "a reply names a message the channel does not have; not described"
                );
                continue;
            };
            let mut op = operation(
                "receive",
                format!("`{request}`, answered with `{answer}`"),
                vec![json!({ "$ref": format!("#/channels/{key}/messages/{asked}") })],
            );
            op["reply"] = json!({
                "channel": { "$ref": format!("#/channels/{key}") },
                "messages": [{ "$ref": format!("#/channels/{key}/messages/{answered}") }],
            });
            operations.insert(
                unique(
                    &operations,
                    format!("{key}.{}", component_key(request, "request")),
                ),
                op,
            );
        }
        doc_channels.insert(key, channel.into());
    }

    let servers = servers
        .iter()
        .map(|s| {
            let server = json!({ "host": s.host, "protocol": s.protocol });
            (component_key(&s.name, "server"), server)
        })
        .collect::<Map<_, _>>();
    let mut components = Map::new();
    if !schemas.is_empty() {
        components.insert("schemas".into(), schemas.into());
    }
    if !messages.is_empty() {
        components.insert("messages".into(), messages.into());
    }
    let mut doc = Map::new();
    doc.insert("asyncapi".into(), "3.0.0".into());
    doc.insert(
        "info".into(),
        json!({
            "title": info.title,
            "version": info.version,
            "description": info_description(info.description.as_deref()),
        }),
    );
    if !servers.is_empty() {
        doc.insert("servers".into(), servers.into());
    }
    doc.insert("channels".into(), doc_channels.into());
    doc.insert("operations".into(), operations.into());
    if !components.is_empty() {
        doc.insert("components".into(), components.into());
    }
    doc.into()
}

/// A message of a channel.
enum Found<'a> {
    /// A message of the service's own types, or the raw one.
    Message(Msg),
    /// A message of the channel's protocol.
    Protocol(&'a ProtocolMessage),
}

/// A message object, before it goes into `components.messages`.
struct Msg {
    name: String,
    description: Option<String>,
    payload: Value,
    json: bool,
}

impl Msg {
    /// The Message Object: name, title, description, content type, payload and, where one
    /// can be made from the payload's schema (`schemas` resolves its references), an example.
    fn to_value(&self, schemas: &Map<String, Value>) -> Value {
        let mut m = Map::new();
        m.insert("name".into(), self.name.clone().into());
        m.insert("title".into(), title(&self.name).into());
        if let Some(description) = &self.description {
            m.insert("description".into(), description.clone().into());
        }
        if self.json {
            m.insert("contentType".into(), "application/json".into());
        }
        m.insert("payload".into(), self.payload.clone());
        if self.json
            && let Some(payload) =
                asena_protocol::example::example(&self.payload, &|s| resolve(s, schemas))
        {
            m.insert(
                "examples".into(),
                json!([{ "name": self.name, "payload": payload }]),
            );
        }
        m.into()
    }
}

/// A message's title from its name: `user_joined` → `User joined`.
fn title(name: &str) -> String {
    let words = name.replace(['_', '-', '.'], " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => words,
    }
}

/// The description of a service's own message that also stands for its protocol's message of
/// the same name (a service's `error` and the framework's error frames).
fn shared(own: Option<String>, protocol: &ProtocolMessage) -> String {
    let mut text = own
        .map(|d| format!("{}\n\n", d.trim_end()))
        .unwrap_or_default();
    text.push_str("The protocol sends this message too");
    match protocol.message["description"].as_str() {
        Some(theirs) => text.push_str(&format!(": {theirs}")),
        None => text.push('.'),
    }
    text
}

/// The messages of one direction: one per variant of a tagged enum, one for any other typed
/// payload, one unconstrained message for a raw one.
fn payload_messages(payload: Option<Value>, schemas: &Map<String, Value>) -> Vec<Found<'static>> {
    let Some(payload) = payload else {
        return vec![Found::Message(Msg {
            name: "message".to_owned(),
            description: Some(
                "Untyped: any text or binary message (the service declares no message type)."
                    .to_owned(),
            ),
            payload: json!({}),
            json: false,
        })];
    };
    let resolved = resolve(&payload, schemas);
    if let Some(variants) = tagged_variants(resolved, schemas) {
        return variants
            .into_iter()
            .map(|(name, variant)| {
                Found::Message(Msg {
                    name,
                    description: description_of(variant),
                    payload: variant.clone(),
                    json: true,
                })
            })
            .collect();
    }
    let name = ref_name(&payload).unwrap_or("message").to_owned();
    vec![Found::Message(Msg {
        name,
        description: description_of(resolved),
        payload,
        json: true,
    })]
}

/// The variants of an internally (or adjacently) tagged enum's schema with their tag values:
/// a `oneOf` (or `anyOf`) of objects that all have one property holding a constant string.
fn tagged_variants<'a>(
    schema: &'a Value,
    schemas: &'a Map<String, Value>,
) -> Option<Vec<(String, &'a Value)>> {
    let variants = schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))?
        .as_array()?;
    let first = resolve(variants.first()?, schemas)
        .get("properties")?
        .as_object()?;
    first.keys().find_map(|tag| {
        let tagged = variants
            .iter()
            .map(|v| {
                let v = resolve(v, schemas);
                let value = v.get("properties")?.get(tag)?;
                let value = value
                    .get("const")
                    .or_else(|| match value.get("enum")?.as_array()?.as_slice() {
                        [one] => Some(one),
                        _ => None,
                    })?
                    .as_str()?;
                Some((value.to_owned(), v))
            })
            .collect::<Option<Vec<_>>>()?;
        let mut names: Vec<_> = tagged.iter().map(|(n, _)| n).collect();
        names.sort();
        names.dedup();
        (names.len() == tagged.len()).then_some(tagged)
    })
}

/// The schema a `$ref` to `#/components/schemas/<name>` points at (following chains and
/// the `{"allOf": [{"$ref": ..}], "default": ..}` wrappers draft-07 needs for annotated
/// references), or the schema itself.
fn resolve<'a>(mut schema: &'a Value, schemas: &'a Map<String, Value>) -> &'a Value {
    const ANNOTATIONS: [&str; 7] = [
        "allOf",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
    ];
    for _ in 0..16 {
        if let Some([only]) = schema
            .get("allOf")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            && only.get("$ref").is_some()
            && schema
                .as_object()
                .is_some_and(|o| o.keys().all(|k| ANNOTATIONS.contains(&k.as_str())))
        {
            schema = only;
        }
        match ref_name(schema).and_then(|name| schemas.get(name)) {
            Some(target) => schema = target,
            None => break,
        }
    }
    schema
}

/// `Name` for a schema that is `{"$ref": "#/components/schemas/Name"}`.
fn ref_name(schema: &Value) -> Option<&str> {
    schema
        .get("$ref")?
        .as_str()?
        .strip_prefix('#')?
        .strip_prefix(SCHEMAS)?
        .strip_prefix('/')
}

fn description_of(schema: &Value) -> Option<String> {
    schema
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The framework's `error` message, which every typed service of the Asena protocol sends:
/// before a handler failure closes the socket with 1011, and, by default, in answer to a
/// message that does not decode or validate.
pub fn error_message() -> ProtocolMessage {
    let codes: Vec<_> = [
        DecodeErrorKind::Syntax,
        DecodeErrorKind::UnknownVariant {
            value: String::new(),
        },
        DecodeErrorKind::MissingField {
            field: String::new(),
        },
        DecodeErrorKind::InvalidValue,
        DecodeErrorKind::UnknownField {
            field: String::new(),
        },
        DecodeErrorKind::Constraint,
        DecodeErrorKind::TooManyContainers,
    ]
    .iter()
    .map(DecodeErrorKind::code)
    .collect();
    let message = json!({
        "name": "error",
        "title": "Error",
        "description": "Sent by the framework: `{\"type\":\"error\",\"message\":\"Server error occurred\"}` \
            before a handler failure closes the socket with 1011, and (unless the service \
            overrides `on_invalid`) `{\"type\":\"error\",\"code\":..,\"message\":..,\"path\":..}` \
            in answer to a message that does not decode or validate; the socket then stays open.",
        "contentType": "application/json",
        "examples": [
            {
                "name": "invalid",
                "payload": {
                    "type": "error",
                    "code": "missing_field",
                    "message": "missing field `message`",
                    "path": ".",
                },
            },
            {
                "name": "handler_failed",
                "payload": { "type": "error", "message": "Server error occurred" },
            },
        ],
        "payload": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {
                "type": { "type": "string", "const": "error" },
                "code": {
                    "type": "string",
                    "enum": codes,
                    "description": "What was wrong with the message (absent after a handler failure).",
                },
                "message": { "type": "string", "description": "What happened." },
                "path": {
                    "type": "string",
                    "description": "The field at fault (`items[2].name`), `.` for the message itself.",
                },
            },
        },
    });
    ProtocolMessage {
        key: "asena.error".to_owned(),
        name: "error".to_owned(),
        message,
    }
}

/// The info description: the app's own, then the close codes.
fn info_description(own: Option<&str>) -> String {
    let mut text = String::new();
    if let Some(own) = own {
        text.push_str(own.trim_end());
        text.push_str("\n\n");
    }
    text.push_str("WebSocket close codes the server uses:\n\n");
    for (code, meaning) in CLOSE_CODES {
        text.push_str(&format!("- `{code}`: {meaning}\n"));
    }
    text
}

fn channel_description(spec: &ChannelSpec) -> String {
    let mut text = format!(
        "The `{}` websocket service, served at `{}`.",
        spec.name, spec.path
    );
    if !spec.protocols.is_empty() {
        let list: Vec<_> = spec.protocols.iter().map(|p| format!("`{p}`")).collect();
        text.push_str(&format!(
            " Subprotocols (`Sec-WebSocket-Protocol`): {}.",
            list.join(", ")
        ));
    }
    if !spec.protocol.close_codes.is_empty() {
        text.push_str("\n\nClose codes of its protocol, beside the server's:\n\n");
        for (code, meaning) in &spec.protocol.close_codes {
            text.push_str(&format!("- `{code}`: {meaning}\n"));
        }
    }
    text
}

/// The WebSocket channel binding: the upgrade is a GET whose `Sec-WebSocket-Protocol`
/// header offers the service's subprotocols and whose query holds what its middlewares
/// read; `None` when there is neither.
fn ws_binding(protocols: &[String], query: &[QueryParam]) -> Option<Value> {
    if protocols.is_empty() && query.is_empty() {
        return None;
    }
    let mut ws = Map::new();
    ws.insert("method".into(), "GET".into());
    if !protocols.is_empty() {
        ws.insert(
            "headers".into(),
            json!({
                "type": "object",
                "properties": {
                    "Sec-WebSocket-Protocol": {
                        "type": "string",
                        "description": format!(
                            "The subprotocols the client offers, comma-separated; the service speaks {}.",
                            protocols.join(", ")
                        ),
                    },
                },
            }),
        );
    }
    if !query.is_empty() {
        let properties: Map<_, _> = query
            .iter()
            .map(|q| {
                let schema = json!({ "type": "string", "description": q.description });
                (q.name.to_owned(), schema)
            })
            .collect();
        let required: Vec<_> = query
            .iter()
            .filter(|q| q.required)
            .map(|q| q.name)
            .collect();
        let mut schema = json!({ "type": "object", "properties": properties });
        if !required.is_empty() {
            schema["required"] = json!(required);
        }
        ws.insert("query".into(), schema);
    }
    ws.insert("bindingVersion".into(), "0.1.0".into());
    Some(json!({ "ws": ws }))
}

/// The names of a path's `{param}`s (and `{*rest}`s), in order.
fn path_params(path: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            break;
        };
        let name = after[..close].trim_start_matches('*');
        if !name.is_empty() && !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
        rest = &after[close + 1..];
    }
    names
}

/// The channel address: the path, with axum's `{*rest}` written `{rest}`.
fn address(path: &str) -> String {
    path.replace("{*", "{")
}

/// A Parameter Object (it has no schema): the field's type and constraints in words, its
/// `enum` and `default` when the schema has them.
fn parameter(name: &str, params: Option<&Value>, schemas: &Map<String, Value>) -> Value {
    let outer = params
        .map(|p| resolve(p, schemas))
        .and_then(|p| p.get("properties")?.get(name));
    let Some(outer) = outer else {
        return json!({ "description": "A path segment (string)." });
    };
    let field = resolve(outer, schemas);
    // what the field itself says (`#[serde(default)]`, its doc) wins over its type's
    let get = |key: &str| outer.get(key).or_else(|| field.get(key));
    let mut p = Map::new();
    let words = describe(field);
    let description = match get("description").and_then(Value::as_str) {
        Some(own) => format!("{}: {words}", own.trim_end_matches('.')),
        None => words,
    };
    p.insert("description".into(), description.into());
    if let Some(values) = field.get("enum").and_then(Value::as_array) {
        let values: Vec<Value> = values.iter().filter_map(as_text).map(Value::from).collect();
        if !values.is_empty() {
            p.insert("enum".into(), values.into());
        }
    }
    if let Some(default) = get("default").and_then(as_text) {
        p.insert("default".into(), default.into());
    }
    p.into()
}

/// A scalar as the text it is in a path.
fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A schema's type and constraints in words: `integer (uint64), minimum 0`.
fn describe(schema: &Value) -> String {
    let types = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ => Vec::new(),
    };
    let mut text = if types.is_empty() {
        "string".to_owned()
    } else {
        types.join(" or ")
    };
    if let Some(format) = schema.get("format").and_then(Value::as_str) {
        text.push_str(&format!(" ({format})"));
    }
    let words = [
        ("minimum", "minimum ", ""),
        ("maximum", "maximum ", ""),
        ("exclusiveMinimum", "greater than ", ""),
        ("exclusiveMaximum", "less than ", ""),
        ("minLength", "at least ", " characters"),
        ("maxLength", "at most ", " characters"),
        ("pattern", "matching ", ""),
        ("const", "exactly ", ""),
    ];
    for (key, before, after) in words {
        if let Some(value) = schema.get(key) {
            text.push_str(&format!(", {before}{value}{after}"));
        }
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let values: Vec<_> = values.iter().map(Value::to_string).collect();
        text.push_str(&format!(", one of {}", values.join(", ")));
    }
    text
}

/// `name` as a component key (`^[a-zA-Z0-9.\-_]+$`): other characters become `_`; `fallback`
/// when nothing is left.
fn component_key(name: &str, fallback: &str) -> String {
    let key: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if key.is_empty() {
        fallback.to_owned()
    } else {
        key
    }
}

/// `key`, or `key_2`, `key_3`, ... when `map` already has it.
fn unique(map: &Map<String, Value>, key: String) -> String {
    if !map.contains_key(&key) {
        return key;
    }
    (2..)
        .map(|i| format!("{key}_{i}"))
        .find(|k| !map.contains_key(k))
        .expect("invariant: some suffix is free")
}

#[cfg(test)]
mod tests {
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    use super::*;

    /// Something sent to the chat.
    #[derive(Deserialize, JsonSchema, garde::Validate)]
    #[serde(tag = "type", rename_all = "snake_case")]
    #[garde(allow_unvalidated)]
    #[allow(dead_code)]
    enum ChatIn {
        /// A chat message to the room.
        Message {
            #[garde(length(chars, min = 1, max = 500))]
            message: String,
        },
        /// The user is typing.
        Typing,
        Ping,
        Move(Point),
    }

    #[derive(Serialize, Deserialize, JsonSchema)]
    struct Point {
        x: u8,
        y: u8,
    }

    #[derive(Serialize, JsonSchema)]
    #[serde(tag = "type", rename_all = "snake_case")]
    #[allow(dead_code)]
    enum ChatOut {
        Message { from: String, message: String },
        Pong,
        Moved { to: Point },
    }

    #[derive(Serialize, JsonSchema)]
    struct Notice {
        text: String,
    }

    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct EventParams {
        /// The user whose events these are.
        user_id: u64,
        #[serde(default = "default_kind")]
        kind: Kind,
    }

    fn default_kind() -> Kind {
        Kind::All
    }

    #[derive(Serialize, Deserialize, JsonSchema)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        All,
        Alerts,
    }

    /// A channel named `name` at `path` that describes nothing else.
    fn channel(name: &str, path: &str) -> ChannelSpec {
        ChannelSpec {
            name: name.into(),
            path: path.into(),
            ..ChannelSpec::default()
        }
    }

    fn doc() -> Value {
        let mut generator = generator();
        let chat = ChannelSpec {
            protocol: ProtocolSpec {
                sends: vec![error_message()],
                ..ProtocolSpec::default()
            },
            replies: vec![("ping".into(), "pong".into())],
            query: vec![QueryParam {
                name: "token",
                description: "Who connects.",
                required: true,
            }],
            receives: Some(generator.subschema_for::<ChatIn>()),
            sends: Some(generator.subschema_for::<ChatOut>()),
            protocols: vec!["chat.v1".into(), "chat.v2".into()],
            ..channel("ChatSocket", "/chat/{room}")
        };
        let events = ChannelSpec {
            params: Some(generator.subschema_for::<EventParams>()),
            sends: Some(generator.subschema_for::<Notice>()),
            ..channel("User Events", "/user/events/{user_id}/{kind}")
        };
        let echo = channel("Echo", "/echo");
        let info = Info {
            description: Some("A test app.".into()),
            ..Info::default()
        };
        let servers = [ServerSpec::new("local", "127.0.0.1:3000", "ws")];
        document(&info, &servers, &[chat, events, echo], generator)
    }

    /// An object's keys in order (whether or not serde_json preserves insertion order).
    fn sorted_keys(object: &Value) -> Vec<&str> {
        let mut keys: Vec<_> = object
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        keys
    }

    /// The string `value` holds.
    fn text(value: &Value) -> &str {
        value
            .as_str()
            .unwrap_or_else(|| panic!("not a string: {value}"))
    }

    /// Every `$ref` in `value`, with where it is.
    fn refs<'a>(value: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("$ref", Value::String(r)) => out.push((at.clone(), r)),
                        _ => refs(v, format!("{at}/{k}"), out),
                    }
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    refs(v, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn every_ref_resolves() {
        let doc = doc();
        let mut found = Vec::new();
        refs(&doc, String::new(), &mut found);
        assert!(found.len() > 20, "{found:?}");
        for (at, r) in found {
            let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("{at}: {r}"));
            assert!(doc.pointer(pointer).is_some(), "{at}: {r} points nowhere");
        }
    }

    #[test]
    fn one_message_per_variant() {
        let doc = doc();
        let chat = &doc["channels"]["ChatSocket"];
        assert_eq!(chat["address"], "/chat/{room}");
        let keys = sorted_keys(&chat["messages"]);
        assert_eq!(
            keys,
            [
                "receive.message",
                "receive.move",
                "receive.ping",
                "receive.typing",
                "send.error",
                "send.message",
                "send.moved",
                "send.pong",
            ]
        );
        let message = &doc["components"]["messages"]["ChatSocket.receive.message"];
        assert_eq!(message["name"], "message");
        assert_eq!(message["description"], "A chat message to the room.");
        assert_eq!(message["contentType"], "application/json");
        let payload = &message["payload"];
        assert_eq!(payload["properties"]["type"]["const"], "message");
        assert_eq!(payload["properties"]["message"]["maxLength"], 500);
        // a newtype variant keeps its reference (draft-07: in an allOf)
        let moved =
            serde_json::to_string(&doc["components"]["messages"]["ChatSocket.receive.move"])
                .expect("json");
        assert!(moved.contains("#/components/schemas/Point"), "{moved}");
        assert!(doc["components"]["schemas"]["Point"].is_object());

        let receive = &doc["operations"]["ChatSocket.receive"];
        assert_eq!(receive["action"], "receive");
        assert_eq!(receive["channel"]["$ref"], "#/channels/ChatSocket");
        assert_eq!(receive["messages"].as_array().map(Vec::len), Some(4));
        let send = &doc["operations"]["ChatSocket.send"];
        assert_eq!(send["action"], "send");
        assert_eq!(
            send["messages"][3]["$ref"],
            "#/channels/ChatSocket/messages/send.error"
        );
        assert_eq!(
            chat["messages"]["send.error"]["$ref"],
            "#/components/messages/asena.error"
        );
        let protocols = &chat["bindings"]["ws"]["headers"]["properties"]["Sec-WebSocket-Protocol"];
        assert!(text(&protocols["description"]).contains("chat.v2"));
    }

    #[test]
    fn parameters_describe_their_type() {
        let doc = doc();
        let events = &doc["channels"]["User_Events"];
        assert_eq!(events["address"], "/user/events/{user_id}/{kind}");
        let user_id = &events["parameters"]["user_id"];
        assert_eq!(
            user_id["description"],
            "The user whose events these are: integer, minimum 0"
        );
        assert!(user_id.get("schema").is_none());
        let kind = &events["parameters"]["kind"];
        assert_eq!(kind["enum"], json!(["all", "alerts"]));
        assert_eq!(kind["default"], "all");
        // untyped parameters are still declared
        assert_eq!(
            doc["channels"]["ChatSocket"]["parameters"]["room"]["description"],
            "A path segment (string)."
        );
        // a typed payload that is not a tagged enum is one message, named after its type
        let notice = &doc["components"]["messages"]["User_Events.send.Notice"];
        assert_eq!(notice["payload"]["$ref"], "#/components/schemas/Notice");
    }

    #[test]
    fn raw_services_take_anything() {
        let doc = doc();
        let echo = &doc["channels"]["Echo"];
        assert!(echo.get("parameters").is_none());
        let keys = sorted_keys(&echo["messages"]);
        assert_eq!(keys, ["receive.message", "send.message"]);
        let raw = &doc["components"]["messages"]["Echo.receive.message"];
        assert_eq!(raw["payload"], json!({}));
        assert!(raw.get("contentType").is_none());
        assert!(text(&raw["description"]).contains("Untyped"));
    }

    #[test]
    fn the_info_lists_the_close_codes() {
        let doc = doc();
        assert_eq!(doc["asyncapi"], "3.0.0");
        assert_eq!(doc["info"]["title"], "Asena app");
        let description = text(&doc["info"]["description"]);
        assert!(description.starts_with("A test app.\n\n"), "{description}");
        for code in [1000, 1001, 1002, 1007, 1008, 1009, 1011] {
            assert!(description.contains(&format!("`{code}`")), "{code}");
        }
        assert_eq!(
            doc["servers"]["local"],
            json!({ "host": "127.0.0.1:3000", "protocol": "ws" })
        );
    }

    #[test]
    fn keys_are_valid_and_distinct() {
        let mut generator = generator();
        let mut spec = |name: &str| ChannelSpec {
            sends: Some(generator.subschema_for::<String>()),
            ..channel(name, "/files/{*rest}")
        };
        let specs = [spec("a/b"), spec("a:b")];
        let doc = document(&Info::default(), &[], &specs, generator);
        let channels = doc["channels"].as_object().expect("channels");
        assert_eq!(sorted_keys(&doc["channels"]), ["a_b", "a_b_2"]);
        assert_eq!(channels["a_b"]["address"], "/files/{rest}");
        assert!(channels["a_b"]["parameters"]["rest"].is_object());
        assert_eq!(
            channels["a_b_2"]["messages"]["send.message"]["$ref"],
            "#/components/messages/a_b_2.send.message"
        );
        let message = &doc["components"]["messages"]["a_b_2.send.message"];
        assert_eq!(message["payload"], json!({ "type": "string" }));
        assert!(doc["components"].get("schemas").is_none());
    }

    /// Every schema in `value` with a `format`, and the format.
    fn formats(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(f)) = map.get("format") {
                    out.push(f.clone());
                }
                map.values().for_each(|v| formats(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| formats(v, out)),
            _ => {}
        }
    }

    #[test]
    fn only_standard_formats() {
        #[derive(Serialize, JsonSchema)]
        struct Numbers {
            a: u8,
            b: u32,
            c: usize,
            d: i64,
            e: f64,
            when: String,
        }
        let mut generator = generator();
        let spec = ChannelSpec {
            sends: Some(generator.subschema_for::<Numbers>()),
            ..channel("Numbers", "/n")
        };
        let doc = document(&Info::default(), &[], &[spec], generator);
        let mut found = Vec::new();
        formats(&doc, &mut found);
        assert_eq!(found, Vec::<String>::new());
        let numbers = &doc["components"]["schemas"]["Numbers"]["properties"];
        assert_eq!(
            numbers["a"],
            json!({"type": "integer", "minimum": 0, "maximum": 255})
        );
        assert_eq!(numbers["b"]["maximum"], u32::MAX);
        assert_eq!(numbers["c"], json!({"type": "integer", "minimum": 0}));
        assert_eq!(numbers["d"], json!({"type": "integer"}));
    }

    #[test]
    fn every_message_has_a_title_and_an_example() {
        let doc = doc();
        let messages = doc["components"]["messages"].as_object().expect("messages");
        for (key, message) in messages {
            assert!(message["title"].is_string(), "{key} has no title");
            let typed = message.get("contentType").is_some();
            let examples = message.get("examples").and_then(Value::as_array);
            assert_eq!(examples.is_some(), typed, "{key}: examples {examples:?}");
        }
        let moved = &messages["ChatSocket.receive.move"];
        assert_eq!(moved["title"], "Move");
        assert_eq!(
            moved["examples"][0]["payload"],
            json!({"type": "move", "x": 0, "y": 0})
        );
        let typing = &messages["ChatSocket.receive.typing"];
        assert_eq!(typing["examples"][0]["payload"], json!({"type": "typing"}));
    }

    #[test]
    fn an_own_error_message_stands_for_the_frameworks() {
        #[derive(Serialize, JsonSchema)]
        #[serde(tag = "type", rename_all = "snake_case")]
        #[allow(dead_code)]
        enum Out {
            /// Something went wrong.
            Error {
                message: String,
            },
            Done,
        }
        let mut generator = generator();
        let spec = ChannelSpec {
            protocol: ProtocolSpec {
                sends: vec![error_message()],
                ..ProtocolSpec::default()
            },
            sends: Some(generator.subschema_for::<Out>()),
            ..channel("Jobs", "/jobs")
        };
        let doc = document(&Info::default(), &[], &[spec], generator);
        let send = doc["operations"]["Jobs.send"]["messages"]
            .as_array()
            .expect("messages");
        assert_eq!(send.len(), 2, "{send:?}");
        assert!(doc["components"]["messages"].get("asena.error").is_none());
        let error = &doc["components"]["messages"]["Jobs.send.error"];
        let description = error["description"].as_str().expect("description");
        assert!(
            description.starts_with("Something went wrong.\n\n"),
            "{description}"
        );
        assert!(
            description.contains("The protocol sends this message too: Sent by the framework"),
            "{description}"
        );
    }

    #[test]
    fn replies_get_operations_of_their_own() {
        let doc = doc();
        let ping = &doc["operations"]["ChatSocket.ping"];
        assert_eq!(ping["action"], "receive");
        assert_eq!(
            ping["messages"],
            json!([{ "$ref": "#/channels/ChatSocket/messages/receive.ping" }])
        );
        assert_eq!(
            ping["reply"],
            json!({
                "channel": { "$ref": "#/channels/ChatSocket" },
                "messages": [{ "$ref": "#/channels/ChatSocket/messages/send.pong" }],
            })
        );
        // the request stays among everything the channel receives
        let receive = doc["operations"]["ChatSocket.receive"]["messages"].to_string();
        assert!(receive.contains("receive.ping"), "{receive}");
    }

    #[test]
    fn a_reply_to_an_unknown_message_is_left_out() {
        let spec = ChannelSpec {
            replies: vec![("nope".into(), "message".into())],
            ..channel("Echo", "/echo")
        };
        let doc = document(&Info::default(), &[], &[spec], generator());
        assert_eq!(
            sorted_keys(&doc["operations"]),
            ["Echo.receive", "Echo.send"]
        );
    }

    #[test]
    fn query_parameters_are_in_the_ws_binding() {
        let doc = doc();
        let ws = &doc["channels"]["ChatSocket"]["bindings"]["ws"];
        assert_eq!(ws["method"], "GET");
        assert_eq!(
            ws["query"],
            json!({
                "type": "object",
                "properties": { "token": { "type": "string", "description": "Who connects." } },
                "required": ["token"],
            })
        );
        assert!(ws["headers"]["properties"]["Sec-WebSocket-Protocol"].is_object());
        // a channel without subprotocols or query parameters has no binding
        assert!(doc["channels"]["Echo"].get("bindings").is_none());
    }
}
