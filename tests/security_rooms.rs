//! Addressing attacks, tried as a client would, over real sockets (and real Redis where the
//! attack crosses instances): a room named like another socket's id, the broadcast room `__`,
//! room lists that cost quadratic work, a dotted namespace, and managed services that share
//! one Redis.

use std::time::Duration;

#[path = "../examples/chat/app.rs"]
#[allow(dead_code)]
mod chat;

use asena_runtime::namespace::SendErrorCode;
use asena_runtime::prelude::*;
use asena_runtime::transport::{Emitter, RedisTransport};
use asena_tests::broker::REDIS;
use asena_tests::chat::{join, private, private_message};
use asena_tests::managed::connected_id;
use asena_tests::{
    Client, isolated, managed_service, start, start_service, stop_all, unique, upgrade_request,
};
use serde_json::{Value, json};

/// Joins the room in `?room=` (answering `refused:<code>` when the name is refused), says
/// `hello <id>`; a text `pub:<room>:<text>` publishes `<text>` to `<room>` (answering
/// `error:<code>` when refused).
#[websocket(path = "/rooms")]
#[derive(Debug)]
pub struct Rooms;

asena_tests::impl_message_service!(
    Rooms,
    open = |ws| {
        if let Some(room) = ws.query("room") {
            let room = room.to_owned();
            if let Err(e) = ws.subscribe(&room) {
                ws.send(format!("refused:{}", e.code()))?;
            }
        }
        ws.send(format!("hello {}", ws.id()))?;
        Ok(())
    },
    |ws, message| {
        let text = message.as_text().unwrap_or_default().to_owned();
        if let Some(rest) = text.strip_prefix("pub:")
            && let Some((room, body)) = rest.split_once(':')
            && let Err(e) = ws.publish(room, body.to_owned())
        {
            ws.send(format!("error:{}", e.code))?;
        }
        Ok(())
    }
);

async fn hello(c: &mut Client) -> anyhow::Result<String> {
    let text = c.recv_text().await?;
    text.strip_prefix("hello ")
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("expected hello, got {text}"))
}

/// The chat example: a client asking for the room named like another socket's id (which the
/// `welcome` of every socket carries) is refused before the upgrade, so alice's private
/// message to bob reaches bob alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_private_messages_cannot_be_hijacked_through_a_room() -> anyhow::Result<()> {
    let s = start(chat::builder().without_auto_registration()).await?;
    let (mut bob, welcome) = join(&s, "bob", "r1").await?;
    let bob_id = welcome["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(bob_id.len(), 36, "{welcome}");

    let (status, refusal) =
        upgrade_request(s.addr, &format!("/chat?username=eve&room={bob_id}"), &[]).await?;
    assert_eq!(status, 400, "{refusal}");
    assert_eq!(asena_tests::json_body(&refusal)["code"], "socket_id");

    let (mut alice, _) = join(&s, "alice", "r2").await?;
    let got = private(&mut alice, &mut bob, &bob_id, "psst").await?;
    assert_eq!(got, private_message("alice", "psst"));
    s.stop().await
}

/// The chat example: `?room=__` (the namespace's broadcast room) and the room of a concrete
/// path are refused, so nobody's chat line reaches every room.
#[tokio::test]
async fn chat_refuses_reserved_rooms() -> anyhow::Result<()> {
    let s = start(chat::builder().without_auto_registration()).await?;
    for (room, code) in [
        ("__", "reserved"),
        ("__x", "reserved"),
        ("%2Fchat", "reserved"),
    ] {
        let (status, refusal) =
            upgrade_request(s.addr, &format!("/chat?username=eve&room={room}"), &[]).await?;
        assert_eq!(status, 400, "{room}: {refusal}");
        assert_eq!(asena_tests::json_body(&refusal)["code"], code, "{room}");
    }
    s.stop().await
}

/// Across two instances on Redis: eve, on instance B, asks to join the room named like
/// victim's id (victim is on A) and is refused; B's private send to the victim reaches the
/// victim on A and nobody on B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_send_across_the_fleet_reaches_only_its_socket() -> anyhow::Result<()> {
    let channel = unique("sec-rooms");
    let instance = async || {
        start(
            isolated()
                .websocket::<Rooms>()
                .transport(RedisTransport::new(REDIS).channel(channel.clone())),
        )
        .await
    };
    let a = instance().await?;
    let b = instance().await?;
    let mut victim = a.connect("/rooms").await?;
    let victim_id = hello(&mut victim).await?;

    let mut eve = b.connect(&format!("/rooms?room={victim_id}")).await?;
    assert_eq!(eve.recv_text().await?, "refused:socket_id");
    hello(&mut eve).await?;
    let mut eve_upper = b
        .connect(&format!("/rooms?room={}", victim_id.to_uppercase()))
        .await?;
    assert_eq!(eve_upper.recv_text().await?, "refused:socket_id");
    hello(&mut eve_upper).await?;

    let ns = b.app.namespace("/rooms").expect("namespace");
    ns.to_socket(&victim_id, "private")?;
    assert_eq!(victim.recv_text().await?, "private");
    // Whatever eve gets next is the broadcast that follows the private send.
    ns.broadcast("after")?;
    assert_eq!(eve.recv_text().await?, "after");
    assert_eq!(eve_upper.recv_text().await?, "after");
    assert_eq!(victim.recv_text().await?, "after");

    // Not a socket id at all: no send anywhere.
    let refused = ns.to_socket("general", "x").expect_err("refused");
    assert_eq!(refused.code, SendErrorCode::SocketNotFound);
    stop_all([a, b]).await
}

/// A socket cannot reach the whole namespace through the broadcast room: publishing to `__`
/// fails with INVALID_ROOM and reaches nobody, and so does a server-side `to("__")`.
#[tokio::test]
async fn the_broadcast_room_cannot_be_named() -> anyhow::Result<()> {
    let s = start_service::<Rooms>().await?;
    let mut eve = s.connect("/rooms?room=__").await?;
    assert_eq!(eve.recv_text().await?, "refused:reserved");
    hello(&mut eve).await?;
    let mut other = s.connect("/rooms?room=elsewhere").await?;
    hello(&mut other).await?;

    eve.send_text("pub:__:to everyone").await?;
    assert_eq!(eve.recv_text().await?, "error:INVALID_ROOM");
    let ns = s.app.namespace("/rooms").expect("namespace");
    let refused = ns.to("__", "to everyone").expect_err("refused");
    assert_eq!(refused.code, SendErrorCode::InvalidRoom);
    // The next thing the other socket gets is this broadcast, not eve's line.
    ns.broadcast("marker")?;
    assert_eq!(other.recv_text().await?, "marker");
    s.stop().await
}

/// A socket publishing to another socket's id is refused: it may not name that room.
#[tokio::test]
async fn a_socket_cannot_publish_to_another_sockets_id() -> anyhow::Result<()> {
    let s = start_service::<Rooms>().await?;
    let mut victim = s.connect("/rooms").await?;
    let victim_id = hello(&mut victim).await?;
    let mut eve = s.connect("/rooms").await?;
    hello(&mut eve).await?;
    eve.send_text(&format!("pub:{victim_id}:spoofed")).await?;
    assert_eq!(eve.recv_text().await?, "error:INVALID_ROOM");
    s.app
        .namespace("/rooms")
        .expect("namespace")
        .broadcast("marker")?;
    assert_eq!(victim.recv_text().await?, "marker");
    s.stop().await
}

/// A path with a dot could make two namespaces' rooms one channel; the emitter refuses it.
#[tokio::test]
async fn dotted_namespaces_are_refused_by_the_emitter() -> anyhow::Result<()> {
    let emitter = Emitter::connect(REDIS).await?;
    let error = emitter
        .to_room("/a.b", "x", "hi")
        .await
        .expect_err("refused");
    assert!(error.to_string().contains("holds a `.`"), "{error}");
    let error = emitter
        .to_room("/a", "__", "hi")
        .await
        .expect_err("refused");
    assert!(error.to_string().contains("reserved"), "{error}");
    let error = emitter
        .to_socket("/a", "not-an-id", "hi")
        .await
        .expect_err("refused");
    assert!(error.to_string().contains("not a socket id"), "{error}");
    emitter.close().await;
    Ok(())
}

fn isolated_prefix() -> &'static str {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PREFIX.get_or_init(|| unique("iso"))
}

managed_service!(Open, "/open", "ws");
managed_service!(OpenToo, "/open-too", "ws");
managed_service!(Isolated, "/isolated", isolated_prefix());

/// A join naming more rooms than a request may is answered at once with an error that names
/// the limit, and joins nothing; duplicates, reserved names and socket ids are never joined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_joins_are_bounded_and_checked() -> anyhow::Result<()> {
    let s = start_service::<Open>().await?;
    let (mut victim, connected) =
        asena_tests::managed_login(&s, "/open", json!({"user": "victim"})).await?;
    let victim_id = connected_id(&connected)?;
    let (mut eve, _) = asena_tests::managed_login(&s, "/open", json!({"user": "eve"})).await?;

    let many: Vec<String> = (0..10_000).map(|i| format!("room-{i}")).collect();
    eve.send_json(&json!({"event": "join", "data": {"rooms": many}}))
        .await?;
    let answer = eve.recv_json().await?;
    assert_eq!(answer["event"], "error", "{answer}");
    assert_eq!(answer["data"]["code"], "too_many_rooms_in_request");
    let message = answer["data"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("max_rooms_per_request") && message.contains("10000"),
        "{message}"
    );

    let mut asked = vec!["same"; 50];
    asked.extend([victim_id.as_str(), "__", "ws:client:x", "/open", "fine"]);
    eve.send_json(&json!({"event": "join", "data": {"rooms": asked}}))
        .await?;
    let answer = eve.recv_json().await?;
    assert_eq!(answer["event"], "join", "{answer}");
    assert_eq!(answer["data"]["rooms"], json!(["same", "fine"]));

    // The victim's own room is still the victim's alone.
    let managed = s.app.ulak::<Open>().map(|u| u.managed()).expect("managed");
    managed.to_room(&victim_id, ("private", "for the victim"), &[])?;
    assert_eq!(victim.recv_json().await?["event"], "private");
    managed.broadcast(("marker", Value::Null), &[])?;
    assert_eq!(eve.recv_json().await?["event"], "marker");
    s.stop().await
}

/// A client may be in at most `max_rooms_per_client` rooms.
#[tokio::test]
async fn managed_clients_are_limited_in_rooms() -> anyhow::Result<()> {
    let s = start_service::<Open>().await?;
    let (mut eve, _) = asena_tests::managed_login(&s, "/open", json!({"user": "eve"})).await?;
    for batch in 0..10 {
        let rooms: Vec<String> = (0..100).map(|i| format!("r-{batch}-{i}")).collect();
        eve.send_json(&json!({"event": "join", "data": {"rooms": rooms}}))
            .await?;
        assert_eq!(eve.recv_json().await?["event"], "join");
    }
    eve.send_json(&json!({"event": "join", "data": {"rooms": ["one-more"]}}))
        .await?;
    let answer = eve.recv_json().await?;
    assert_eq!(
        answer["data"]["code"], "too_many_rooms_for_client",
        "{answer}"
    );
    s.stop().await
}

/// Two managed services under one prefix on one Redis would hear each other: the app
/// refuses to start and names both.
#[tokio::test]
async fn two_managed_services_under_one_prefix_do_not_start() -> anyhow::Result<()> {
    let error = isolated()
        .websocket::<Open>()
        .websocket::<OpenToo>()
        .transport(asena_runtime::transport::RedisTransport::new(REDIS))
        .build()
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        error.contains("Open") && error.contains("OpenToo") && error.contains("`ws`"),
        "{error}"
    );
    Ok(())
}

/// Managed services under different prefixes on one Redis hear only their own channels: a
/// broadcast under Ignis's `ws` does not reach the isolated service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_services_under_different_prefixes_are_isolated() -> anyhow::Result<()> {
    let s = start(
        isolated()
            .websocket::<Isolated>()
            .transport(asena_runtime::transport::RedisTransport::new(REDIS)),
    )
    .await?;
    let (mut client, _) = asena_tests::managed_login(&s, "/isolated", json!({"user": "u"})).await?;
    let emitter = Emitter::connect(REDIS).await?;
    emitter
        .managed("ws")
        .broadcast(("from-ws", json!({"n": 1})), &[])
        .await?;
    emitter
        .managed(isolated_prefix())
        .broadcast(("from-own-prefix", json!({"n": 2})), &[])
        .await?;
    let got = tokio::time::timeout(Duration::from_secs(10), client.recv_json()).await??;
    assert_eq!(got["event"], "from-own-prefix", "{got}");
    emitter.close().await;
    s.stop().await
}
