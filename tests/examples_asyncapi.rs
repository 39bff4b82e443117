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
use asena_tests::{start, validate_asyncapi};
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
    validate_asyncapi(&docs)
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
    plain.stop().await?;
    s.stop().await
}
