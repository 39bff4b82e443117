//! Every example app's AsyncAPI document (`app.asyncapi()`, what `--asyncapi` prints) passes
//! the official parser, says what the app's services receive and send, and is served by the
//! opt-in route. And spec first, the round trip: each document, kept in
//! `fixtures/asyncapi/` (checked here to be what the app prints), is turned into Rust by
//! `asena-codegen` at build time (`build.rs`), and the generated client holds a conversation
//! with the running app over real sockets.
//!
//! `ASENA_BLESS=1 cargo test -p asena-tests --test examples_asyncapi` rewrites the fixtures
//! after an app's document changed on purpose.
#![allow(
    clippy::duplicate_mod,
    reason = "the chat and the realtime apps each load the examples' shared script module"
)]

#[path = "../examples/chat/app.rs"]
#[allow(dead_code)]
mod chat;

#[path = "../examples/auth/app.rs"]
#[allow(dead_code)]
mod auth;

#[path = "../examples/notifications/app.rs"]
#[allow(dead_code)]
mod notifications;

#[path = "../examples/echo/main.rs"]
#[allow(dead_code)]
mod echo;

#[path = "../examples/realtime/app.rs"]
#[allow(dead_code)]
mod realtime;

#[path = "../examples/bench_server/main.rs"]
#[allow(dead_code)]
mod bench_server;

use std::time::Duration;

use asena_client::{Channel, Client, Event, MessageOptions};
use asena_runtime::AsenaBuilder;
use asena_tests::{TestServer, serve, start, stop_all, validate_asyncapi};
use generated::chat_app::chat_socket;
use serde_json::{Value, json};

async fn document(builder: AsenaBuilder) -> anyhow::Result<Value> {
    let app = builder.without_auto_registration().build().await?;
    let doc = app.asyncapi();
    app.shutdown().await;
    Ok(doc)
}

/// Every example app's document, by app.
async fn documents() -> anyhow::Result<Vec<(&'static str, Value)>> {
    Ok(vec![
        ("chat", document(chat::builder_with_presence()).await?),
        ("auth", document(auth::builder()).await?),
        ("notifications", document(notifications::builder()).await?),
        ("echo", document(echo::builder()).await?),
        ("bench_server", document(bench_server::builder()).await?),
        ("realtime", document(realtime::builder()).await?),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_document_passes_the_official_parser() -> anyhow::Result<()> {
    let docs = documents().await?;
    validate_asyncapi(&docs)?;
    for (name, doc) in &docs {
        feeds_other_generators(name, doc);
    }
    Ok(())
}

/// What other generators need of a document: only the formats JSON Schema defines, one
/// message per name in each operation, every message named and titled, and an example for
/// every JSON message.
fn feeds_other_generators(app: &str, doc: &Value) {
    const STANDARD: [&str; 11] = [
        "date-time",
        "date",
        "time",
        "duration",
        "email",
        "hostname",
        "ipv4",
        "ipv6",
        "uri",
        "uri-reference",
        "uuid",
    ];
    fn formats<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(f)) = map.get("format") {
                    out.push(f);
                }
                map.values().for_each(|v| formats(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| formats(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    formats(doc, &mut found);
    found.retain(|f| !STANDARD.contains(f));
    assert!(found.is_empty(), "{app}: non-standard formats {found:?}");

    let message = |reference: &Value| -> &Value {
        let pointer = reference["$ref"]
            .as_str()
            .expect("a $ref")
            .trim_start_matches('#');
        let target = doc.pointer(pointer).expect("the $ref resolves");
        match target.get("$ref") {
            Some(_) => doc
                .pointer(
                    target["$ref"]
                        .as_str()
                        .expect("a $ref")
                        .trim_start_matches('#'),
                )
                .expect("the $ref resolves"),
            None => target,
        }
    };
    for (key, operation) in doc["operations"].as_object().expect("operations") {
        let mut names: Vec<&str> = operation["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| message(m)["name"].as_str().expect("a named message"))
            .collect();
        let listed = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(
            names.len(),
            listed,
            "{app}: {key} lists a name twice: {names:?}"
        );
    }
    for (key, message) in doc["components"]["messages"]
        .as_object()
        .into_iter()
        .flatten()
    {
        assert!(message["title"].is_string(), "{app}: {key} has no title");
        if message.get("contentType").is_some() {
            assert!(
                message["examples"][0]["payload"].is_object(),
                "{app}: {key} has no example"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_query_parameters_and_the_managed_protocol_are_described() -> anyhow::Result<()> {
    let chat = document(chat::builder_with_presence()).await?;
    for (request, answer) in [("ping", "pong"), ("room_info", "room_info")] {
        let operation = &chat["operations"][format!("ChatSocket.{request}")];
        assert_eq!(
            operation["reply"]["messages"][0]["$ref"],
            format!("#/channels/ChatSocket/messages/send.{answer}")
        );
    }
    let query = &chat["channels"]["ChatSocket"]["bindings"]["ws"]["query"]["properties"];
    assert!(query["username"]["description"].is_string(), "{query}");
    assert!(query["room"]["description"].is_string(), "{query}");

    let realtime = document(realtime::builder()).await?;
    let (key, channel) = realtime["channels"]
        .as_object()
        .and_then(|c| c.iter().next())
        .expect("the realtime channel");
    for event in [
        "receive.authenticate",
        "receive.join",
        "receive.heartbeat",
        "send.connected",
        "send.error",
    ] {
        assert!(
            channel["messages"].get(event).is_some(),
            "{key}: no {event}"
        );
    }
    let description = channel["description"].as_str().expect("a description");
    for code in 4001..=4004 {
        assert!(
            description.contains(&format!("`{code}`")),
            "{code}: {description}"
        );
    }
    assert!(realtime["operations"][format!("{key}.authenticate")]["reply"].is_object());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_document_is_its_protocol() -> anyhow::Result<()> {
    let doc = document(chat::builder_with_presence()).await?;
    let channel = &doc["channels"]["ChatSocket"];
    assert_eq!(channel["address"], "/chat");
    let mut messages: Vec<&str> = channel["messages"]
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    messages.sort_unstable();
    for expected in [
        "receive.message",
        "receive.ping",
        "receive.private",
        "receive.room_info",
        "receive.typing",
        "send.pong",
        "send.private_message",
        "send.room_info",
        "send.user_joined",
        "send.user_left",
        "send.welcome",
    ] {
        assert!(
            messages.contains(&expected),
            "{expected} not in {messages:?}"
        );
    }
    // `totalUsers` keeps its wire name in the schema.
    let text = doc.to_string();
    assert!(text.contains("\"totalUsers\""), "{text}");
    assert_eq!(doc["operations"]["ChatSocket.receive"]["action"], "receive");
    assert_eq!(doc["operations"]["ChatSocket.send"]["action"], "send");
    assert_eq!(doc["info"]["title"], "Asena chat");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_serves_the_document_with_the_host_asked() -> anyhow::Result<()> {
    let s = start(chat::builder().without_auto_registration()).await?;
    let response = s.get("/asyncapi.json").await?;
    assert_eq!(response.status, 200);
    let served = response.json()?;
    assert_eq!(served["asyncapi"], "3.0.0");
    assert_eq!(served["servers"]["default"]["host"], s.addr.to_string());
    assert_eq!(served["servers"]["default"]["protocol"], "ws");
    assert_eq!(served["channels"], s.app.asyncapi()["channels"]);
    validate_asyncapi(&[("chat-served", served)])?;

    // Opt-in: an app that does not ask for the route does not have it.
    let plain = start(echo::builder()).await?;
    let response = plain.get("/asyncapi.json").await?;
    assert_eq!(response.status, 404);
    stop_all([plain, s]).await
}

/// The code generated from the example apps' documents.
#[allow(dead_code)]
mod generated {
    asena_tests::generated!(
        chat_app => "codegen_chat.rs",
        auth_app => "codegen_auth.rs",
        notifications_app => "codegen_notifications.rs",
        echo_app => "codegen_echo.rs",
        realtime_app => "codegen_realtime.rs",
        bench_server_app => "codegen_bench_server.rs",
    );
}

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fixtures_are_what_the_apps_print() -> anyhow::Result<()> {
    let apps = documents().await?;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/asyncapi");
    let bless = std::env::var_os("ASENA_BLESS").is_some();
    for (name, doc) in apps {
        let path = dir.join(format!("{name}.json"));
        let printed = serde_json::to_string_pretty(&doc)? + "\n";
        if bless {
            std::fs::write(&path, &printed)?;
            continue;
        }
        let kept = std::fs::read_to_string(&path)?;
        assert!(
            kept == printed,
            "{} is not what the {name} app prints; if its document changed on purpose, run \
             `ASENA_BLESS=1 cargo test -p asena-tests --test examples_asyncapi`",
            path.display()
        );
    }
    Ok(())
}

/// The next message `client` decodes (connection events skipped), within [`WAIT`].
async fn next<C: Channel>(client: &mut Client<C>) -> anyhow::Result<C::Out> {
    tokio::time::timeout(WAIT, async {
        loop {
            match client.next().await {
                Some(Event::Message(message)) => return Ok(message),
                Some(Event::Undecodable { text, error }) => {
                    anyhow::bail!("the generated types refuse {text}: {error}")
                }
                Some(_) => {}
                None => anyhow::bail!("the connection ended"),
            }
        }
    })
    .await?
}

/// Connects `builder` with `query`, without reconnecting.
async fn open<C: Channel>(
    builder: asena_client::ClientBuilder<C>,
    query: &[(&str, &str)],
) -> Result<Client<C>, asena_client::ClientError>
where
    C::Out: serde::de::DeserializeOwned,
{
    let builder = query
        .iter()
        .fold(builder, |b, (k, v)| b.query(*k, *v))
        .without_reconnect();
    builder.connect().await
}

async fn chat_user(
    server: &TestServer,
    name: &str,
    room: &str,
) -> anyhow::Result<Client<chat_socket::ChatSocket>> {
    Ok(open(
        chat_socket::client(&server.ws_url("")),
        &[("username", name), ("room", room)],
    )
    .await?)
}

#[tokio::test]
async fn the_generated_chat_client_talks_to_the_chat() -> anyhow::Result<()> {
    use chat_socket::{ClientMessage as In, ServerMessage as Out};
    use generated::chat_app::*;
    let server = start(chat::builder().without_auto_registration()).await?;
    let options = MessageOptions::default();
    let mut ana = chat_user(&server, "ana", "codegen").await?;
    let Out::Welcome(_) = next(&mut ana).await? else {
        anyhow::bail!("the first message is not a welcome")
    };
    let mut bo = chat_user(&server, "bo", "codegen").await?;
    let Out::Welcome(bo_welcome) = next(&mut bo).await? else {
        anyhow::bail!("the first message is not a welcome")
    };
    let Out::UserJoined(joined) = next(&mut ana).await? else {
        anyhow::bail!("ana was not told bo joined")
    };
    assert_eq!(joined.username, "bo");

    let line = In::Message(ChatSocketReceiveMessage {
        message: Some("hello from generated code".into()),
    });
    chat_socket::publish(&ana, &line, options).await?;
    let Out::Message(heard) = next(&mut bo).await? else {
        anyhow::bail!("bo did not hear ana")
    };
    assert_eq!(heard.message, "hello from generated code");

    let private = In::Private(ChatSocketReceivePrivate {
        to: bo_welcome.id.clone(),
        message: "psst".into(),
    });
    chat_socket::publish(&ana, &private, options).await?;
    let Out::PrivateMessage(whisper) = next(&mut bo).await? else {
        anyhow::bail!("bo did not get the private message")
    };
    assert_eq!(
        (whisper.message.as_str(), whisper.from.as_str()),
        ("psst", "ana")
    );

    chat_socket::publish(&ana, &In::RoomInfo(ChatSocketReceiveRoomInfo {}), options).await?;
    // Ana's own chat line may come back first.
    let info = loop {
        match next(&mut ana).await? {
            Out::RoomInfo(info) => break info,
            Out::Message(_) => continue,
            other => anyhow::bail!("expected room_info, got {other:?}"),
        }
    };
    assert_eq!((info.room.as_str(), info.totalUsers), ("codegen", 2));

    chat_socket::publish(&ana, &In::Ping(ChatSocketReceivePing {}), options).await?;
    assert!(matches!(next(&mut ana).await?, Out::Pong(_)));

    let nobody = In::Private(ChatSocketReceivePrivate {
        to: "nobody".into(),
        message: "?".into(),
    });
    chat_socket::publish(&ana, &nobody, options).await?;
    let Out::Error(error) = next(&mut ana).await? else {
        anyhow::bail!("no error reply")
    };
    assert_eq!(error.message, "No such user");

    ana.close().await?;
    let Out::UserLeft(left) = next(&mut bo).await? else {
        anyhow::bail!("bo was not told ana left")
    };
    assert_eq!(left.username, "ana");
    Ok(())
}

#[tokio::test]
async fn the_generated_echo_client_gets_its_message_back() -> anyhow::Result<()> {
    use generated::echo_app::echo::{ClientMessage, Echo, ServerMessage, client, publish};
    let server = start(echo::builder()).await?;
    let mut c: Client<Echo> = open(client(&server.ws_url("")), &[]).await?;
    publish(
        &c,
        &ClientMessage::Message(json!({"n": 1})),
        MessageOptions::default(),
    )
    .await?;
    assert_eq!(next(&mut c).await?, ServerMessage::Message(json!({"n": 1})));
    Ok(())
}

#[tokio::test]
async fn the_generated_notifications_client_is_greeted_and_answered() -> anyhow::Result<()> {
    use generated::notifications_app::notification_socket::{
        ClientMessage, ServerMessage, client, publish,
    };
    let server = start(notifications::builder().without_auto_registration()).await?;
    let mut c = open(client(&server.ws_url("")), &[("userId", "u1")]).await?;
    let ServerMessage::Message(greeting) = next(&mut c).await?;
    assert_eq!(greeting["type"], "connected");
    publish(
        &c,
        &ClientMessage::Message(json!({"type": "ping"})),
        MessageOptions::default(),
    )
    .await?;
    let ServerMessage::Message(pong) = next(&mut c).await?;
    assert_eq!(pong, json!({"type": "pong"}));
    Ok(())
}

#[tokio::test]
async fn the_generated_auth_client_passes_the_middleware() -> anyhow::Result<()> {
    use generated::auth_app::private_socket::{ServerMessage, client};
    let server = start(auth::builder().without_auto_registration()).await?;
    let refused = open(client(&server.ws_url("")), &[]).await;
    assert!(
        matches!(refused, Err(asena_client::ClientError::Refused { .. })),
        "{refused:?}"
    );
    let mut c = open(client(&server.ws_url("")), &[("token", "valid-token")]).await?;
    let ServerMessage::Message(hello) = next(&mut c).await?;
    assert_eq!(hello["type"], "authenticated");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_realtime_client_speaks_the_managed_protocol() -> anyhow::Result<()> {
    use generated::realtime_app::realtime::{ClientMessage, ServerMessage, client, publish};
    let app = realtime::build(
        realtime::builder().without_auto_registration(),
        realtime::Options::default(),
    )
    .await?;
    let server = serve(app).await?;
    let mut c = open(client(&server.ws_url("")), &[]).await?;
    let options = MessageOptions::default();
    let authenticate: ClientMessage = serde_json::from_value(
        json!({"event": "authenticate", "data": {"type": "token", "token": "alice-token"}}),
    )?;
    publish(&c, &authenticate, options).await?;
    let ServerMessage::Connected(connected) = next(&mut c).await? else {
        anyhow::bail!("not connected")
    };
    assert!(connected.data.is_some());
    let join: ClientMessage =
        serde_json::from_value(json!({"event": "join", "data": {"rooms": ["lobby"]}}))?;
    publish(&c, &join, options).await?;
    let joined = loop {
        match next(&mut c).await? {
            ServerMessage::PresenceState(_) | ServerMessage::PresenceDiff(_) => continue,
            other => break other,
        }
    };
    assert!(matches!(joined, ServerMessage::Join(_)), "{joined:?}");
    Ok(())
}

#[tokio::test]
async fn the_generated_bench_clients_get_their_broadcasts() -> anyhow::Result<()> {
    use generated::bench_server_app::{room_bench_socket, typed_bench_socket};
    let server = start(bench_server::builder()).await?;
    let options = MessageOptions::default();

    let mut typed = open(typed_bench_socket::client(&server.ws_url("")), &[]).await?;
    let hello: typed_bench_socket::ClientMessage =
        serde_json::from_value(json!({"text": "hi", "sent": "0000000000000007"}))?;
    typed_bench_socket::publish(&typed, &hello, options).await?;
    let echoed = serde_json::to_value(next(&mut typed).await?)?;
    assert_eq!(echoed, json!({"text": "hi", "sent": "0000000000000007"}));
    // The document's `sent` is 16 characters: the generated client does not send a shorter one.
    let short: typed_bench_socket::ClientMessage =
        serde_json::from_value(json!({"text": "hi", "sent": "7"}))?;
    let refused = typed_bench_socket::publish(&typed, &short, options).await;
    assert!(
        matches!(refused, Err(asena_client::ClientError::Invalid(_))),
        "{refused:?}"
    );

    let params = room_bench_socket::Params { room: "r1".into() };
    let mut room = open(room_bench_socket::client(&server.ws_url(""), &params), &[]).await?;
    assert!(room.url().ends_with("/bench/rooms/r1"), "{}", room.url());
    let line = room_bench_socket::ClientMessage::Message(json!({"n": 1}));
    room_bench_socket::publish(&room, &line, options).await?;
    assert_eq!(
        next(&mut room).await?,
        room_bench_socket::ServerMessage::Message(json!({"n": 1}))
    );
    Ok(())
}
