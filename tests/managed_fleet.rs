//! The managed protocol across two instances on a real Redis (127.0.0.1:6379, started by
//! `scripts/services.sh`): users with sessions on both, rooms, broadcasts and exclude, and
//! Ignis's envelope on Ignis's channels, read back with a plain Redis client.
//!
//! Ignis's layout has no namespace, so everything here runs in one test, with names no
//! other test uses.

use std::time::Duration;

use asena_runtime::managed::{Authenticated, ManagedService, ManagedSocket};
use asena_runtime::prelude::*;
use asena_tests::{Client, TestServer, start};
use futures_util::StreamExt;
use serde_json::{Value, json};

const REDIS: &str = "redis://127.0.0.1:6379";

#[websocket(path = "/fleet", managed)]
#[derive(Debug)]
pub struct Fleet;

impl ManagedService for Fleet {
    async fn authenticate(
        &self,
        _ws: &ManagedSocket<Raw>,
        c: Value,
    ) -> Result<Option<Authenticated>> {
        Ok(c["user"].as_str().map(Authenticated::user))
    }

    async fn validate_rooms(&self, _ws: &ManagedSocket<Raw>, rooms: Vec<String>) -> Vec<String> {
        rooms
    }

    /// `{"event":"poke","data":{"user":U}}` → every session of U; `{"event":"say",
    /// "data":{"room":R,"text":T}}` → the room, sender excluded.
    async fn on_event(&self, ws: &ManagedSocket<Raw>, event: Message) -> Result<()> {
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
}

async fn instance() -> anyhow::Result<TestServer> {
    start(
        Asena::builder()
            .without_auto_registration()
            .websocket::<Fleet>()
            .transport(asena_runtime::transport::RedisTransport::new(REDIS)),
    )
    .await
}

async fn login(s: &TestServer, user: &str) -> anyhow::Result<(Client, String)> {
    let (c, connected) = asena_tests::managed_login(s, "/fleet", json!({"user": user})).await?;
    let id = connected["data"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok((c, id))
}

fn event(name: &str, data: Value) -> Value {
    json!({"event": name, "data": data})
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
    let msg = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let m = seen.next().await?;
            if m.get_channel_name() == format!("ws:user:{alice}") {
                return Some(m);
            }
        }
    })
    .await?
    .expect("a message on ws:user:{alice}");
    let envelope: Value = serde_json::from_slice(msg.get_payload_bytes())?;
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
    let msg = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let m = seen.next().await?;
            if m.get_channel_name() == format!("ws:room:{room}") {
                return Some(m);
            }
        }
    })
    .await?
    .expect("a message on ws:room:{room}");
    let envelope: Value = serde_json::from_slice(msg.get_payload_bytes())?;
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
        .to_user(&alice, "notification", json!({"message": "hello"}))
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

    a.stop().await?;
    b.stop().await
}
