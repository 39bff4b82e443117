//! The managed protocol across two instances on a real Redis (127.0.0.1:6379, started by
//! `scripts/services.sh`): users with sessions on both, rooms, broadcasts and exclude, and
//! Ignis's envelope on Ignis's channels, read back with a plain Redis client.
//!
//! Ignis's layout has no namespace, so everything here runs in one test, with names no
//! other test uses.

use std::time::Duration;

use anyhow::Context as _;

use asena_runtime::prelude::*;
use asena_tests::broker::REDIS;
use asena_tests::{Client, TestServer, event, managed_service, start_service_with, stop_all};
use futures_util::StreamExt;
use serde_json::{Value, json};

managed_service!(Fleet, "/fleet", on_event = fleet_event);

/// `{"event":"poke","data":{"user":U}}` → every session of U; `{"event":"say",
/// "data":{"room":R,"text":T}}` → the room, sender excluded.
async fn fleet_event(ws: &Socket<Fleet>, event: Message) -> Result<()> {
    let envelope: Value = event.json()?;
    let managed = ws.managed();
    let data = &envelope["data"];
    match envelope["event"].as_str() {
        Some("poke") => {
            managed.to_user(
                data["user"].as_str().unwrap_or_default(),
                ("poked", ws.id()),
            )?;
        }
        Some("say") => {
            let room = data["room"].as_str().unwrap_or_default();
            managed.to_room(room, ("said", &data["text"]), &[ws.id()])?;
        }
        _ => {}
    }
    Ok(())
}

async fn instance() -> anyhow::Result<TestServer> {
    start_service_with::<Fleet>(asena_runtime::transport::RedisTransport::new(REDIS)).await
}

async fn login(s: &TestServer, user: &str) -> anyhow::Result<(Client, String)> {
    let (c, connected) = asena_tests::managed_login(s, "/fleet", json!({"user": user})).await?;
    let id = connected["data"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok((c, id))
}

/// The payload of the next message `seen` gets on `channel` (others skipped), within 10 s.
async fn next_on(
    seen: &mut (impl futures_util::Stream<Item = redis::Msg> + Unpin),
    channel: &str,
) -> anyhow::Result<Value> {
    let msg = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let m = seen.next().await?;
            if m.get_channel_name() == channel {
                return Some(m);
            }
        }
    })
    .await?
    .with_context(|| format!("no message on {channel}"))?;
    Ok(serde_json::from_slice(msg.get_payload_bytes())?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_rooms_and_broadcasts_span_instances_in_ignis_layout() -> anyhow::Result<()> {
    let tag = std::process::id();
    let (alice, bob, room) = (
        format!("alice-{tag}"),
        format!("bob-{tag}"),
        format!("room-{tag}"),
    );

    // A plain Redis client watching Ignis's channels.
    let redis = redis::Client::open(REDIS)?;
    let mut watch = redis.get_async_pubsub().await?;
    watch.psubscribe("ws:*").await?;
    watch.subscribe("ws:broadcast").await?;
    let mut seen = watch.into_on_message();

    let a = instance().await?;
    let b = instance().await?;
    let (mut alice_a, alice_a_id) = login(&a, &alice).await?;
    let (mut alice_b, _) = login(&b, &alice).await?;
    let (mut bob_b, _) = login(&b, &bob).await?;

    // bob (on B) pokes alice: both of her sessions get it, the one on A through Redis.
    bob_b
        .send_json(&event("poke", json!({"user": alice})))
        .await?;
    assert_eq!(alice_b.recv_json().await?["event"], "poked");
    assert_eq!(alice_a.recv_json().await?["event"], "poked");

    // On the wire: Ignis's envelope on ws:user:{id}, from B's server id.
    let server_b = b
        .app
        .ulak::<Fleet>()
        .map(|u| u.managed())
        .map(|m| m.server_id().to_owned())
        .expect("managed");
    let envelope = next_on(&mut seen, &format!("ws:user:{alice}")).await?;
    assert_eq!(envelope["serverId"], server_b.as_str());
    assert_eq!(envelope["type"], "user");
    assert_eq!(envelope["target"], alice.as_str());
    assert_eq!(envelope["event"], "poked");

    // A room with members on both instances; the sender (on A) is excluded everywhere.
    for c in [&mut alice_a, &mut alice_b, &mut bob_b] {
        c.send_json(&event("join", json!({"rooms": [room]})))
            .await?;
        assert_eq!(c.recv_json().await?["event"], "join");
    }
    alice_a
        .send_json(&event("say", json!({"room": room, "text": "hi"})))
        .await?;
    assert_eq!(alice_b.recv_json().await?, event("said", json!("hi")));
    assert_eq!(bob_b.recv_json().await?, event("said", json!("hi")));
    let envelope = next_on(&mut seen, &format!("ws:room:{room}")).await?;
    assert_eq!(envelope["type"], "room");
    assert_eq!(envelope["exclude"], json!([alice_a_id]));

    // A broadcast from A reaches B's clients, and A's own clients once (no echo from Redis).
    let managed_a = a.app.ulak::<Fleet>().map(|u| u.managed()).expect("managed");
    assert_eq!(managed_a.broadcast(("news", tag), &[])?, 1);
    let news = event("news", json!(tag));
    assert_eq!(alice_a.recv_json().await?, news);
    assert_eq!(alice_b.recv_json().await?, news);
    assert_eq!(bob_b.recv_json().await?, news);
    // alice_a got it exactly once: the next thing she sees is her own next poke.
    bob_b
        .send_json(&event("poke", json!({"user": alice})))
        .await?;
    assert_eq!(alice_a.recv_json().await?["event"], "poked");
    assert_eq!(alice_b.recv_json().await?["event"], "poked");

    // A process without a server (the `emit` CLI) reaches every session of alice.
    let emitter = asena_runtime::transport::Emitter::connect(REDIS).await?;
    emitter
        .managed("ws")
        .to_user(&alice, ("notification", json!({"message": "hello"})))
        .await?;
    let note = event("notification", json!({"message": "hello"}));
    assert_eq!(alice_a.recv_json().await?, note);
    assert_eq!(alice_b.recv_json().await?, note);
    emitter.close().await;

    // The user index entry goes with the last session: on B, alice is gone when her tab is.
    let managed_b = b.app.ulak::<Fleet>().map(|u| u.managed()).expect("managed");
    alice_b.close().await?;
    asena_tests::eventually(|| !managed_b.local_users().contains(&alice)).await?;
    assert!(managed_a.local_users().contains(&alice));

    stop_all([a, b]).await
}
