//! Ignis's layout of channels for managed services: the envelope's JSON shape and channels;
//! managed instances sharing users, rooms and broadcasts over the app's transport — the
//! real Redis (127.0.0.1:6379) and the real NATS (127.0.0.1:4222), both started by
//! `scripts/services.sh`; the [`Emitter`]'s managed messages as a plain Redis subscriber
//! sees them and as clients receive them, over Redis and NATS; malformed messages; and
//! deliveries resuming after a restart of a private `redis-server`.
//!
//! Tests run in parallel on the shared brokers, so each one uses a service under a channel
//! prefix of its own.

use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use asena_runtime::managed::envelope::{
    BROADCAST_CHANNEL, EMITTER_SERVER_ID, ManagedEnvelope, TargetKind,
};
use asena_runtime::transport::{Emitter, NatsTransport, RedisTransport};
use asena_tests::broker::{Broker, Kind, NATS, REDIS, Typed};
use asena_tests::managed::{connected_id, next_event, raw_sender};
use asena_tests::{
    Client, TestServer, WAIT, isolated, managed_login, managed_service, start, start_service_with,
    stop_all,
};
use futures_util::StreamExt;
use serde_json::{Value, json};

/// Upper bound for anything that polls (a restart noticed, a reconnect).
const POLL_DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

managed_service!(Users, "/users", "ignis-users");
managed_service!(Malformed, "/malformed", "ignis-malformed");
managed_service!(Emitted, "/emitted", "ignis-emitted");
managed_service!(EmittedNats, "/emitted-nats", "ignis-emitted-nats");
managed_service!(Restarted, "/restarted", "ignis-restarted");

/// Joins `room` and waits for the answer.
async fn join(client: &mut Client, room: &str) -> anyhow::Result<()> {
    client
        .send_json(&json!({"event": "join", "data": {"rooms": [room]}}))
        .await?;
    let answer = next_event(client, "join").await?;
    ensure!(answer["data"]["rooms"] == json!([room]), "{answer}");
    Ok(())
}

/// Logs in to the managed service at `path` as `user` and joins `room`; returns the client
/// and its socket id.
async fn member(
    s: &TestServer,
    path: &str,
    user: &str,
    room: &str,
) -> anyhow::Result<(Client, String)> {
    let (mut client, connected) = managed_login(s, path, json!({"user": user})).await?;
    join(&mut client, room).await?;
    Ok((client, connected_id(&connected)?))
}

/// A plain Redis client subscribed to every channel under `prefix`, as a fleet's server
/// would be.
struct Watcher {
    messages: std::pin::Pin<Box<dyn futures_util::Stream<Item = redis::Msg> + Send>>,
}

impl Watcher {
    async fn new(prefix: &str) -> anyhow::Result<Watcher> {
        let client = redis::Client::open(REDIS)?;
        let mut pubsub = tokio::time::timeout(WAIT, client.get_async_pubsub()).await??;
        tokio::time::timeout(WAIT, pubsub.psubscribe(format!("{prefix}:*"))).await??;
        Ok(Watcher {
            messages: Box::pin(pubsub.into_on_message()),
        })
    }

    /// The channel and JSON of the next message whose `event` is `event`.
    async fn next_event(&mut self, event: &str) -> anyhow::Result<(String, Value)> {
        tokio::time::timeout(WAIT, async {
            loop {
                let msg = self.messages.next().await.context("subscription closed")?;
                let Ok(value) = serde_json::from_slice::<Value>(msg.get_payload_bytes()) else {
                    continue;
                };
                if value["event"] == event {
                    return Ok((msg.get_channel_name().to_owned(), value));
                }
            }
        })
        .await
        .with_context(|| format!("no message with event {event:?}"))?
    }
}

/// `PUBLISH` through a plain connection.
async fn raw_publish(channel: &str, payload: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(REDIS)?;
    let mut conn = tokio::time::timeout(WAIT, client.get_multiplexed_async_connection()).await??;
    let _: i64 = tokio::time::timeout(
        WAIT,
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut conn),
    )
    .await??;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The envelope
// ---------------------------------------------------------------------------------------

fn json_of(envelope: &ManagedEnvelope) -> anyhow::Result<Value> {
    Ok(serde_json::from_str(&envelope.encode())?)
}

#[test]
fn the_envelope_has_ignis_keys_and_omits_absent_optionals() -> anyhow::Result<()> {
    let data = json!({"text": "hi", "n": [1, 2]});
    assert_eq!(
        json_of(&ManagedEnvelope::client(
            "s1",
            "c-1",
            "job:progress",
            data.clone()
        ))?,
        json!({"serverId": "s1", "type": "client", "target": "c-1", "event": "job:progress", "data": data}),
    );
    assert_eq!(
        json_of(&ManagedEnvelope::user(
            "s1",
            "u-1",
            "notification",
            json!("x")
        ))?,
        json!({"serverId": "s1", "type": "user", "target": "u-1", "event": "notification", "data": "x"}),
    );
    assert_eq!(
        json_of(&ManagedEnvelope::room(
            "s1",
            "lobby",
            "data:update",
            json!(42.5),
            &["c-2", "c-3"],
        ))?,
        json!({"serverId": "s1", "type": "room", "target": "lobby", "event": "data:update", "data": 42.5, "exclude": ["c-2", "c-3"]}),
    );
    assert_eq!(
        json_of(&ManagedEnvelope::room("s1", "lobby", "e", json!(null), &[]))?,
        json!({"serverId": "s1", "type": "room", "target": "lobby", "event": "e", "data": null}),
    );
    assert_eq!(
        json_of(&ManagedEnvelope::broadcast(
            EMITTER_SERVER_ID,
            "system:maintenance",
            json!({})
        ))?,
        json!({"serverId": "emitter", "type": "broadcast", "event": "system:maintenance", "data": {}}),
    );
    Ok(())
}

#[test]
fn envelopes_as_ignis_writes_them_decode() -> anyhow::Result<()> {
    // What JSON.stringify makes of an IRedisSocketMessage (undefined optionals vanish).
    let room = ManagedEnvelope::decode(
        br#"{"serverId":"6f1c","type":"room","target":"dashboard","event":"data:update","data":{"metric":"cpu"},"exclude":["a"]}"#,
    )?;
    assert_eq!(
        room,
        ManagedEnvelope::room(
            "6f1c",
            "dashboard",
            "data:update",
            json!({"metric": "cpu"}),
            &["a"]
        )
    );
    let broadcast = ManagedEnvelope::decode(
        br#"{"serverId":"emitter","type":"broadcast","event":"system:maintenance","data":{"m":1}}"#,
    )?;
    assert_eq!(broadcast.kind, TargetKind::Broadcast);
    assert_eq!(broadcast.target, None);
    assert_eq!(broadcast.exclude, None);
    assert_eq!(
        ManagedEnvelope::decode(
            ManagedEnvelope::user("s", "u", "e", json!([true]))
                .encode()
                .as_bytes()
        )?,
        ManagedEnvelope::user("s", "u", "e", json!([true]))
    );
    Ok(())
}

#[test]
fn channel_names_are_ignis_channels() {
    let d = json!(null);
    for (envelope, channel) in [
        (
            ManagedEnvelope::client("s", "uuid-of-client", "e", d.clone()),
            "ws:client:uuid-of-client",
        ),
        (
            ManagedEnvelope::user("s", "user-456", "e", d.clone()),
            "ws:user:user-456",
        ),
        (
            ManagedEnvelope::room("s", "dashboard-viewers", "e", d.clone(), &[]),
            "ws:room:dashboard-viewers",
        ),
        (ManagedEnvelope::broadcast("s", "e", d), "ws:broadcast"),
    ] {
        assert_eq!(envelope.channel(), channel);
    }
    assert_eq!(BROADCAST_CHANNEL, "ws:broadcast");
    assert_eq!(EMITTER_SERVER_ID, "emitter");
}

// ---------------------------------------------------------------------------------------
// Instances sharing users, rooms and broadcasts over one transport
// ---------------------------------------------------------------------------------------

asena_tests::on_each_broker! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    managed_instances_share_users => instances_share_users(Kind);
}

/// A user with a session on each of two instances on the shared broker of `kind`: every
/// kind of delivery from A reaches B's session once, and A's own session once (no echo back
/// from the broker).
async fn instances_share_users(kind: Kind) -> anyhow::Result<()> {
    asena_tests::init_tracing();
    let url = match kind {
        Kind::Redis => REDIS,
        Kind::Nats => NATS,
    };
    let transport = || Typed::new(kind, url).as_dyn();
    let a = start(isolated().websocket::<Users>().transport_arc(transport())).await?;
    let b = start(isolated().websocket::<Users>().transport_arc(transport())).await?;
    let path = "/users";
    let (mut on_a, _) = member(&a, path, "alice", "lobby").await?;
    let (mut on_b, b_client) = member(&b, path, "alice", "lobby").await?;
    let managed = raw_sender::<Users>(&a)?;

    // Sent until B hears it: the instances subscribed when they started, but a first
    // message may race the broker's own bookkeeping on a loaded machine.
    asena_tests::until_some(
        WAIT,
        "a user delivery reaches the other instance",
        async || {
            managed.to_user("alice", ("hello", 1))?;
            tokio::time::timeout(Duration::from_millis(200), next_event(&mut on_b, "hello"))
                .await
                .ok()
                .transpose()
        },
    )
    .await?;

    ensure!(
        managed.to_user("alice", ("user", 2))? == 1,
        "one local session"
    );
    ensure!(
        managed.to_room("lobby", ("room", 3), &[])? == 1,
        "one local member"
    );
    ensure!(
        managed.broadcast(("everyone", 4), &[])? == 1,
        "one local client"
    );
    ensure!(
        managed.to_client(&b_client, ("client", 5))? == 0,
        "B's client is not here"
    );
    for (event, data) in [("user", 2), ("room", 3), ("everyone", 4), ("client", 5)] {
        let got = next_event(&mut on_b, event).await?;
        assert_eq!(got["data"], data, "{got}");
    }
    // A's own session got each message once: the one after them is the marker.
    for event in ["user", "room", "everyone"] {
        next_event(&mut on_a, event).await?;
    }
    managed.to_client(
        a.app
            .namespace(path)
            .and_then(|ns| ns.sockets().into_iter().next())
            .context("A's socket")?
            .id(),
        ("marker", 0),
    )?;
    let next = on_a.recv_json().await?;
    ensure!(next["event"] == "marker", "A heard a message twice: {next}");

    // A publish is counted when the broker confirms it, which may come after B delivered it.
    asena_tests::within(
        Duration::from_secs(5),
        "A's publishes counted",
        async || a.app.transport_stats().is_some_and(|s| s.published >= 5),
    )
    .await?;
    let stats = b.app.transport_stats().context("a broker transport")?;
    ensure!(stats.received >= 4, "received counted: {stats:?}");
    stop_all([a, b]).await
}

/// A message that is not an envelope, or not for the channel it came on, is dropped and
/// counted; deliveries go on.
#[tokio::test]
async fn malformed_messages_are_dropped_and_counted() -> anyhow::Result<()> {
    asena_tests::init_tracing();
    let s = start_service_with::<Malformed>(RedisTransport::new(REDIS)).await?;
    let (mut client, id) = member(&s, "/malformed", "m", "lobby").await?;
    let errors_before = s.app.transport_stats().context("stats")?.errors;
    raw_publish("ignis-malformed:room:lobby", "not json").await?;
    raw_publish(
        "ignis-malformed:room:lobby",
        r#"{"serverId":"x","type":"room","event":"no target","data":1}"#,
    )
    .await?;
    // A message for one client, published on a room's channel, is not delivered to it.
    raw_publish(
        "ignis-malformed:room:lobby",
        &ManagedEnvelope::client("elsewhere", &id, "misrouted", json!(1)).encode(),
    )
    .await?;
    let after = ManagedEnvelope::room("elsewhere", "lobby", "after", json!(1), &[]);
    raw_publish("ignis-malformed:room:lobby", &after.encode()).await?;
    let got = client.recv_json().await?;
    assert_eq!(got, json!({"event": "after", "data": 1}));
    let stats = s.app.transport_stats().context("stats")?;
    ensure!(
        stats.errors == errors_before + 3,
        "malformed counted: {stats:?}"
    );
    s.stop().await
}

/// An instance with a managed service refuses a channel prefix no transport can carry.
#[tokio::test]
async fn a_channel_prefix_must_be_a_plain_token() -> anyhow::Result<()> {
    managed_service!(Dotted, "/dotted", "ws.room");
    let err = isolated()
        .websocket::<Dotted>()
        .transport(RedisTransport::new(REDIS))
        .build()
        .await
        .err()
        .context("a dotted prefix was accepted")?;
    ensure!(
        err.to_string().contains("1 to 64 ASCII letters, digits"),
        "{err}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The Emitter
// ---------------------------------------------------------------------------------------

/// The emitter's managed view (`to_client`, `to_user`, `to_room`, `broadcast`) publishes
/// Ignis envelopes with serverId `emitter` on the right channels, and servers deliver them.
#[tokio::test]
async fn emitter_publishes_ignis_envelopes() -> anyhow::Result<()> {
    asena_tests::init_tracing();
    let prefix = "ignis-emitted";
    let mut watcher = Watcher::new(prefix).await?;
    let s = start_service_with::<Emitted>(RedisTransport::new(REDIS)).await?;
    let (mut client, id) = member(&s, "/emitted", "u-7", "room-7").await?;
    let connection = Emitter::connect(REDIS).await?;
    let emitter = connection.managed(prefix);

    emitter
        .to_client(&id, ("job", json!({"jobId": "123", "progress": 75})))
        .await?;
    let (channel, value) = watcher.next_event("job").await?;
    assert_eq!(channel, format!("{prefix}:client:{id}"));
    assert_eq!(
        value,
        json!({"serverId": "emitter", "type": "client", "target": id, "event": "job", "data": {"jobId": "123", "progress": 75}})
    );

    emitter.to_user("u-7", ("ready", json!({"m": 1}))).await?;
    let (channel, value) = watcher.next_event("ready").await?;
    assert_eq!(channel, format!("{prefix}:user:u-7"));
    assert_eq!(
        value,
        json!({"serverId": "emitter", "type": "user", "target": "u-7", "event": "ready", "data": {"m": 1}})
    );

    emitter
        .to_room("room-7", ("update", 42.5), &["c-skip"])
        .await?;
    let (channel, value) = watcher.next_event("update").await?;
    assert_eq!(channel, format!("{prefix}:room:room-7"));
    assert_eq!(
        value,
        json!({"serverId": "emitter", "type": "room", "target": "room-7", "event": "update", "data": 42.5, "exclude": ["c-skip"]})
    );
    emitter.to_room("room-7", ("all", "x"), &[]).await?;
    let (_, value) = watcher.next_event("all").await?;
    ensure!(value.get("exclude").is_none(), "no exclude key: {value}");

    emitter
        .broadcast(("maintenance", json!({"m": 2})), &[])
        .await?;
    let (channel, value) = watcher.next_event("maintenance").await?;
    assert_eq!(channel, format!("{prefix}:broadcast"));
    assert_eq!(
        value,
        json!({"serverId": "emitter", "type": "broadcast", "event": "maintenance", "data": {"m": 2}})
    );

    // The server delivers the emitter's messages (no self-dedup on `emitter`), in order.
    for (event, data) in [
        ("job", json!({"jobId": "123", "progress": 75})),
        ("ready", json!({"m": 1})),
        ("update", json!(42.5)),
        ("all", json!("x")),
        ("maintenance", json!({"m": 2})),
    ] {
        assert_eq!(
            client.recv_json().await?,
            json!({"event": event, "data": data})
        );
    }
    connection.close().await;
    s.stop().await
}

/// Over NATS the emitter reaches managed clients the same way.
#[tokio::test]
async fn a_nats_emitter_reaches_managed_clients() -> anyhow::Result<()> {
    asena_tests::init_tracing();
    let s = start_service_with::<EmittedNats>(NatsTransport::new(NATS)).await?;
    let (mut client, _) = managed_login(&s, "/emitted-nats", json!({"user": "n-1"})).await?;
    let emitter = Emitter::connect(NATS).await?;
    emitter
        .managed("ignis-emitted-nats")
        .to_user("n-1", ("hello", json!({"over": "nats"})))
        .await?;
    assert_eq!(
        client.recv_json().await?,
        json!({"event": "hello", "data": {"over": "nats"}})
    );
    emitter.close().await;
    s.stop().await
}

// ---------------------------------------------------------------------------------------
// A Redis restart
// ---------------------------------------------------------------------------------------

/// Kill Redis: publishing drops and counts; restart it on the same port: both instances
/// reconnect, subscribe again and deliver to each other's users in both directions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_deliveries_survive_a_redis_restart() -> anyhow::Result<()> {
    asena_tests::init_tracing();
    let mut redis = Broker::start(Kind::Redis)?;
    redis.ready(POLL_DEADLINE).await?;
    let url = redis.url();
    let a = start_service_with::<Restarted>(RedisTransport::new(&url)).await?;
    let b = start_service_with::<Restarted>(RedisTransport::new(&url)).await?;
    let (mut on_a, _) = managed_login(&a, "/restarted", json!({"user": "on-a"})).await?;
    let (mut on_b, _) = managed_login(&b, "/restarted", json!({"user": "on-b"})).await?;
    let from_a = raw_sender::<Restarted>(&a)?;
    let from_b = raw_sender::<Restarted>(&b)?;
    from_a.to_user("on-b", ("before", 1))?;
    next_event(&mut on_b, "before").await?;

    redis.kill();
    let stats = || a.app.transport_stats().unwrap_or_default();
    let errors_before = stats().errors;
    asena_tests::within(POLL_DEADLINE, "A notices Redis is gone", async || {
        stats().errors > errors_before
    })
    .await?;

    redis.spawn()?;
    redis.ready(POLL_DEADLINE).await?;
    // Sent until heard: the subscribers come back on their own schedule.
    for (from, to, client) in [(&from_a, "on-b", &mut on_b), (&from_b, "on-a", &mut on_a)] {
        let deadline = tokio::time::Instant::now() + POLL_DEADLINE;
        loop {
            from.to_user(to, ("probe", 2))?;
            match tokio::time::timeout(Duration::from_millis(200), next_event(client, "probe"))
                .await
            {
                Ok(Ok(_)) => break,
                _ if tokio::time::Instant::now() >= deadline => {
                    bail!("no delivery to {to} after the restart")
                }
                _ => {}
            }
        }
    }
    let s = stats();
    ensure!(s.reconnects >= 1, "reconnects counted: {s:?}");
    stop_all([a, b]).await
}
