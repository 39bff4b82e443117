//! The wire between instances, read and written by a real broker client: an Asena instance
//! sharing our Redis channel (its broadcasts are topic `<namespace>.__`, its room messages
//! `<namespace>.<room>`), the configurable Redis channel and NATS subject, and the transport
//! counters as the app reports them. The Asena side is imitated: its Redis package
//! (`@asenajs/asena-redis`) and the HTTP adapters an Asena app runs on are not on the npm
//! registry this project installs from, where `tests/interop_ignis.rs` runs the real Ignis.
#![allow(clippy::unwrap_used)]

use anyhow::Context as _;
use asena_runtime::AsenaBuilder;
use asena_runtime::prelude::*;
use asena_runtime::transport::{Emitter, NatsTransport, RedisTransport};
use asena_runtime::wire::{self, Envelope};
use asena_tests::broker::{NATS, REDIS};
use asena_tests::{Client, TestServer, WAIT, isolated, start, stop_all, unique};
use futures_util::StreamExt;

// The sockets join the rooms of `?rooms=` and say they are ready once in.
asena_tests::hall_service!(Compat, "/compat");

fn builder() -> AsenaBuilder {
    isolated().websocket::<Compat>()
}

async fn redis_app(channel: &str) -> anyhow::Result<TestServer> {
    start(builder().transport(RedisTransport::new(REDIS).channel(channel))).await
}

async fn join(server: &TestServer, room: Option<&str>) -> anyhow::Result<Client> {
    let mut c = server
        .connect(&format!("/compat?rooms={}", room.unwrap_or_default()))
        .await?;
    c.recv_type("ready").await?;
    // Over NATS the room's messages reach this instance once it subscribed.
    asena_tests::subscribed(server).await?;
    Ok(c)
}

async fn redis_conn() -> anyhow::Result<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(REDIS)?;
    Ok(tokio::time::timeout(WAIT, client.get_multiplexed_async_connection()).await??)
}

/// Publishes a raw envelope the way an Asena instance does.
async fn asena_publish(channel: &str, topic: &str, data: &str) -> anyhow::Result<()> {
    let mut conn = redis_conn().await?;
    let body = serde_json::to_vec(&json!({"d": data, "t": topic, "o": "asena-bun-pod"}))?;
    let _: i64 = redis::cmd("PUBLISH")
        .arg(channel)
        .arg(body)
        .query_async(&mut conn)
        .await?;
    Ok(())
}

/// A raw subscriber on `channel`, ready once this returns.
async fn redis_subscriber(channel: &str) -> anyhow::Result<redis::aio::PubSub> {
    let client = redis::Client::open(REDIS)?;
    let mut pubsub = tokio::time::timeout(WAIT, client.get_async_pubsub()).await??;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

async fn next_envelope(pubsub: &mut redis::aio::PubSub) -> anyhow::Result<Envelope> {
    let msg = tokio::time::timeout(WAIT, pubsub.on_message().next())
        .await
        .context("no envelope on the channel")?
        .context("subscription ended")?;
    Ok(Envelope::decode(msg.get_payload_bytes())?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asena_broadcast_reaches_every_socket_and_a_room_message_only_the_room()
-> anyhow::Result<()> {
    let channel = unique("compat-in");
    let server = redis_app(&channel).await?;
    let mut in_room = join(&server, Some("lobby")).await?;
    let mut elsewhere = join(&server, None).await?;

    // Asena sends a namespace-wide broadcast to its room `__`.
    asena_publish(&channel, "compat.__", r#"{"type":"everyone"}"#).await?;
    assert_eq!(in_room.recv_text().await?, r#"{"type":"everyone"}"#);
    assert_eq!(elsewhere.recv_text().await?, r#"{"type":"everyone"}"#);

    // A room message reaches the room only: `elsewhere` sees the next broadcast first.
    asena_publish(&channel, "compat.lobby", "room only").await?;
    assert_eq!(in_room.recv_text().await?, "room only");
    asena_publish(&channel, "compat.__", "after").await?;
    assert_eq!(elsewhere.recv_text().await?, "after");
    assert_eq!(in_room.recv_text().await?, "after");

    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_broadcasts_and_room_messages_go_out_as_asena_topics() -> anyhow::Result<()> {
    let channel = unique("compat-out");
    let mut sub = redis_subscriber(&channel).await?;
    let server = redis_app(&channel).await?;
    let ns = server.app.namespace("/compat").context("namespace")?;

    ns.broadcast("to all")?;
    let env = next_envelope(&mut sub).await?;
    assert!(!env.origin.is_empty(), "every envelope names its pod");
    assert_eq!(env.topic, "compat.__");
    assert_eq!(env.topic, wire::broadcast_topic("compat"));
    assert_eq!(env.payload, b"to all");
    assert!(!env.binary);

    ns.to("lobby", vec![0u8, 159, 255])?;
    let env = next_envelope(&mut sub).await?;
    assert_eq!(env.topic, "compat.lobby");
    assert_eq!(env.payload, vec![0u8, 159, 255]);
    assert!(env.binary);

    // `__` is Asena's broadcast room on the wire, but no send may name it: a broadcast is
    // `broadcast`, and nothing is published for the refused send.
    assert!(ns.to(wire::BROADCAST_ROOM, "not to all").is_err());
    ns.broadcast("also to all")?;
    let env = next_envelope(&mut sub).await?;
    assert_eq!(
        (env.topic.as_str(), env.payload.as_slice()),
        ("compat.__", &b"also to all"[..])
    );

    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_cross_between_two_instances_and_an_emitter() -> anyhow::Result<()> {
    let channel = unique("compat-fleet");
    let a = redis_app(&channel).await?;
    let b = redis_app(&channel).await?;
    let mut on_a = join(&a, None).await?;
    let mut on_b = join(&b, None).await?;

    a.app.namespace("/compat").unwrap().broadcast("from a")?;
    assert_eq!(on_a.recv_text().await?, "from a");
    assert_eq!(on_b.recv_text().await?, "from a");

    let emitter = Emitter::connect(REDIS).await?.channel(channel.clone());
    emitter.broadcast("/compat", "from the emitter").await?;
    assert_eq!(on_a.recv_text().await?, "from the emitter");
    assert_eq!(on_b.recv_text().await?, "from the emitter");
    emitter.close().await;

    stop_all([a, b]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_channel_is_configurable_and_separates_fleets() -> anyhow::Result<()> {
    assert_eq!(
        RedisTransport::new(REDIS).channel_name(),
        "asena:ws:transport",
        "Asena's default channel"
    );
    let ours = unique("compat-ours");
    let theirs = unique("compat-theirs");
    let a = redis_app(&ours).await?;
    let b = redis_app(&theirs).await?;
    let c = redis_app(&ours).await?;
    let mut on_b = join(&b, None).await?;
    let mut on_c = join(&c, None).await?;

    a.app
        .namespace("/compat")
        .unwrap()
        .broadcast("fleet ours")?;
    assert_eq!(on_c.recv_text().await?, "fleet ours");
    // `a` published on `ours` before this reaches `theirs`: had `b` listened on `ours`, it
    // would see "fleet ours" first (one subscriber connection, delivered in order).
    asena_publish(&theirs, "compat.__", "fleet theirs").await?;
    assert_eq!(on_b.recv_text().await?, "fleet theirs");

    // `a` counts its publish when Redis confirms it, which may come after `c` delivered it.
    asena_tests::within(WAIT, "a's publish counted", async || {
        a.app
            .transport_stats()
            .is_some_and(|stats| stats.published >= 1)
    })
    .await?;
    let c_stats = c.app.transport_stats().context("redis keeps stats")?;
    assert!(c_stats.received >= 1, "{c_stats:?}");

    stop_all([a, b, c]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_subject_is_configurable() -> anyhow::Result<()> {
    assert_eq!(
        NatsTransport::new(NATS).subject_name(),
        "asena.ws.transport"
    );
    let subject = unique("compat.subject");
    let a = start(builder().transport(NatsTransport::new(NATS).subject(subject.clone()))).await?;
    let b = start(builder().transport(NatsTransport::new(NATS).subject(subject.clone()))).await?;
    let mut on_b = join(&b, Some("r")).await?;
    a.app.namespace("/compat").unwrap().to("r", "over nats")?;
    assert_eq!(on_b.recv_text().await?, "over nats");

    let emitter = Emitter::connect(NATS).await?.channel(subject.clone());
    emitter.to_room("/compat", "r", "nats emitter").await?;
    assert_eq!(on_b.recv_text().await?, "nats emitter");
    emitter.close().await;

    assert!(a.app.transport_stats().unwrap().published >= 1);
    stop_all([a, b]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_instance_has_no_transport_stats() -> anyhow::Result<()> {
    let server = start(builder()).await?;
    assert!(server.app.transport_stats().is_none());
    let mut c = join(&server, None).await?;
    server
        .app
        .namespace("/compat")
        .unwrap()
        .broadcast("local")?;
    assert_eq!(c.recv_text().await?, "local");
    // The broadcast room can be neither joined nor sent to by name: a broadcast is
    // `broadcast`.
    let ns = server.app.namespace("/compat").unwrap();
    let sock = ns.sockets().remove(0);
    assert_eq!(
        sock.subscribe(wire::BROADCAST_ROOM),
        Err(asena_runtime::namespace::RoomError::Reserved)
    );
    assert_eq!(sock.subscribe("named"), Ok(true));
    let refused = ns
        .to(wire::BROADCAST_ROOM, "all of us")
        .expect_err("refused");
    assert_eq!(
        refused.code,
        asena_runtime::namespace::SendErrorCode::InvalidRoom
    );
    assert_eq!(ns.to("named", "all of us")?, 1);
    assert_eq!(c.recv_text().await?, "all of us");
    server.stop().await
}
