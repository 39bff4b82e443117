//! Every example app's AsyncAPI document (`app.asyncapi()`, what `--asyncapi` prints) passes
//! the official parser, says what the app's services receive and send, and is served by the
//! opt-in route.

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

use asena_runtime::AsenaBuilder;
use asena_tests::{start, stop_all, validate_asyncapi};
use serde_json::Value;

async fn document(builder: AsenaBuilder) -> anyhow::Result<Value> {
    let app = builder.without_auto_registration().build().await?;
    let doc = app.asyncapi();
    app.shutdown().await;
    Ok(doc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_document_passes_the_official_parser() -> anyhow::Result<()> {
    let docs = vec![
        ("chat", document(chat::builder()).await?),
        ("auth", document(auth::builder()).await?),
        ("notifications", document(notifications::builder()).await?),
        ("echo", document(echo::builder()).await?),
        ("bench_server", document(bench_server::builder()).await?),
        ("realtime", document(realtime::builder()).await?),
    ];
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
    let chat = document(chat::builder()).await?;
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
    let doc = document(chat::builder()).await?;
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
