//! Spec first, round trip: each example app's AsyncAPI document (kept in
//! `fixtures/asyncapi/`, and checked here to be what the app prints) is turned into Rust by
//! `asena-codegen` at build time (`build.rs`), and the generated client holds a conversation
//! with the running app over real sockets. (The bench server's document is generated and
//! its examples round-tripped in `codegen_corpus.rs`.)
//!
//! `ASENA_BLESS=1 cargo test -p asena-tests --test codegen` rewrites the fixtures after an
//! app's document changed on purpose.

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

/// The code generated from the example apps' documents.
#[allow(dead_code)]
mod generated {
    pub mod chat_app {
        include!(concat!(env!("OUT_DIR"), "/codegen_chat.rs"));
    }
    pub mod auth_app {
        include!(concat!(env!("OUT_DIR"), "/codegen_auth.rs"));
    }
    pub mod notifications_app {
        include!(concat!(env!("OUT_DIR"), "/codegen_notifications.rs"));
    }
    pub mod echo_app {
        include!(concat!(env!("OUT_DIR"), "/codegen_echo.rs"));
    }
    pub mod realtime_app {
        include!(concat!(env!("OUT_DIR"), "/codegen_realtime.rs"));
    }
}

use std::time::Duration;

use asena_client::{Channel, Client, Event, MessageOptions};
use asena_runtime::AsenaBuilder;
use asena_tests::{TestServer, serve, start};
use generated::chat_app::chat_socket;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);

async fn document(builder: AsenaBuilder) -> anyhow::Result<Value> {
    let app = builder.without_auto_registration().build().await?;
    let doc = app.asyncapi();
    app.shutdown().await;
    Ok(doc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fixtures_are_what_the_apps_print() -> anyhow::Result<()> {
    let apps = [
        ("chat", document(chat::builder()).await?),
        ("auth", document(auth::builder()).await?),
        ("notifications", document(notifications::builder()).await?),
        ("echo", document(echo::builder()).await?),
        ("realtime", document(realtime::builder()).await?),
        ("bench_server", document(bench_server::builder()).await?),
    ];
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
             `ASENA_BLESS=1 cargo test -p asena-tests --test codegen`",
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

async fn chat_user(
    server: &TestServer,
    name: &str,
    room: &str,
) -> anyhow::Result<Client<chat_socket::ChatSocket>> {
    Ok(chat_socket::client(&server.ws_url(""))
        .query("username", name)
        .query("room", room)
        .without_reconnect()
        .connect()
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
    assert_eq!((info.room.as_str(), info.total_users), ("codegen", 2));

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
    let mut c: Client<Echo> = client(&server.ws_url(""))
        .without_reconnect()
        .connect()
        .await?;
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
    let mut c = client(&server.ws_url(""))
        .query("userId", "u1")
        .without_reconnect()
        .connect()
        .await?;
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
    let refused = client(&server.ws_url(""))
        .without_reconnect()
        .connect()
        .await;
    assert!(
        matches!(refused, Err(asena_client::ClientError::Refused { .. })),
        "{refused:?}"
    );
    let mut c = client(&server.ws_url(""))
        .query("token", "valid-token")
        .without_reconnect()
        .connect()
        .await?;
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
    let mut c = client(&server.ws_url(""))
        .without_reconnect()
        .connect()
        .await?;
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
            ServerMessage::Presence(_) => continue,
            other => break other,
        }
    };
    assert!(matches!(joined, ServerMessage::Join(_)), "{joined:?}");
    Ok(())
}
