//! Ignis's Redis layout for managed services: the envelope's JSON shape and channels, two
//! [`IgnisBus`] servers on the real Redis (127.0.0.1:6379, started by `scripts/services.sh`),
//! the [`Emitter`]'s managed messages as a plain Redis subscriber sees them, and a bus
//! surviving a restart of a private `redis-server`.
//!
//! Tests run in parallel on the shared Redis and every bus hears every `ws:*` message, so each
//! test uses its own targets and event names and skips envelopes that are not its own.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use asena_runtime::transport::ignis::{
    BROADCAST_CHANNEL, EMITTER_SERVER_ID, IgnisBus, IgnisSink, ManagedEnvelope, TargetKind,
};
use asena_runtime::{Emitter, TransportError};
use asena_tests::WAIT;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

const REDIS: &str = "redis://127.0.0.1:6379";

/// Upper bound for anything that polls (a restart noticed, a reconnect).
const POLL_DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A name no other test (or run) uses.
fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A sink that forwards every envelope into a channel the test reads.
struct Forward(mpsc::UnboundedSender<ManagedEnvelope>);

impl IgnisSink for Forward {
    fn deliver(&self, envelope: ManagedEnvelope) {
        let _ = self.0.send(envelope);
    }
}

type Inbox = mpsc::UnboundedReceiver<ManagedEnvelope>;

/// A bus for a fresh server id, and what its sink receives.
async fn server(url: &str) -> anyhow::Result<(IgnisBus, Inbox)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let bus = IgnisBus::connect(url, unique("server"), Arc::new(Forward(tx))).await?;
    Ok((bus, rx))
}

/// The next envelope carrying `event`, skipping other tests' traffic.
async fn next_event(inbox: &mut Inbox, event: &str) -> anyhow::Result<ManagedEnvelope> {
    tokio::time::timeout(WAIT, async {
        loop {
            let envelope = inbox.recv().await.context("sink closed")?;
            if envelope.event == event {
                return Ok(envelope);
            }
        }
    })
    .await
    .with_context(|| format!("no envelope with event {event:?}"))?
}

/// Every envelope of this test (its events start with `prefix`) up to the one with `marker`.
async fn until_marker(
    inbox: &mut Inbox,
    prefix: &str,
    marker: &str,
) -> anyhow::Result<Vec<ManagedEnvelope>> {
    tokio::time::timeout(WAIT, async {
        let mut seen = Vec::new();
        loop {
            let envelope = inbox.recv().await.context("sink closed")?;
            if envelope.event == marker {
                return Ok(seen);
            }
            if envelope.event.starts_with(prefix) {
                seen.push(envelope);
            }
        }
    })
    .await
    .with_context(|| format!("no marker {marker:?}"))?
}

/// Polls `check` until it returns true; fails after [`POLL_DEADLINE`].
async fn poll_until(what: &str, mut check: impl FnMut() -> bool) -> anyhow::Result<()> {
    asena_tests::within(POLL_DEADLINE, what, async || check()).await
}

/// A plain Redis client subscribed to every `ws:*` channel, as a fleet's server would be.
struct Watcher {
    messages: std::pin::Pin<Box<dyn futures_util::Stream<Item = redis::Msg> + Send>>,
}

impl Watcher {
    async fn new() -> anyhow::Result<Watcher> {
        let client = redis::Client::open(REDIS)?;
        let mut pubsub = tokio::time::timeout(WAIT, client.get_async_pubsub()).await??;
        tokio::time::timeout(WAIT, pubsub.psubscribe("ws:*")).await??;
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
    assert_eq!(
        ManagedEnvelope::client("s", "uuid-of-client", "e", d.clone()).channel(),
        "ws:client:uuid-of-client"
    );
    assert_eq!(
        ManagedEnvelope::user("s", "user-456", "e", d.clone()).channel(),
        "ws:user:user-456"
    );
    assert_eq!(
        ManagedEnvelope::room("s", "dashboard-viewers", "e", d.clone(), &[]).channel(),
        "ws:room:dashboard-viewers"
    );
    assert_eq!(
        ManagedEnvelope::broadcast("s", "e", d).channel(),
        "ws:broadcast"
    );
    assert_eq!(BROADCAST_CHANNEL, "ws:broadcast");
    assert_eq!(EMITTER_SERVER_ID, "emitter");
}

// ---------------------------------------------------------------------------------------
// Two servers on the shared Redis
// ---------------------------------------------------------------------------------------

/// Every kind of envelope one server publishes reaches the other server's sink as it was
/// sent, and never its own (self-dedup).
#[tokio::test]
async fn servers_receive_each_others_envelopes_but_not_their_own() -> anyhow::Result<()> {
    asena_tests::init_tracing();
    let (a, mut a_in) = server(REDIS).await?;
    let (b, mut b_in) = server(REDIS).await?;
    let p = unique("kinds");
    let id = a.server_id().to_owned();
    let sent = [
        ManagedEnvelope::client(
            &id,
            format!("{p}-client"),
            format!("{p}:client"),
            json!({"k": 1}),
        ),
        ManagedEnvelope::user(&id, format!("{p}-user"), format!("{p}:user"), json!("two")),
        ManagedEnvelope::room(
            &id,
            format!("{p}-room"),
            format!("{p}:room"),
            json!([3]),
            &["c-x"],
        ),
        ManagedEnvelope::broadcast(&id, format!("{p}:broadcast"), json!(null)),
    ];
    for envelope in &sent {
        a.publish(envelope.clone());
    }
    for envelope in &sent {
        let got = next_event(&mut b_in, &envelope.event).await?;
        assert_eq!(&got, envelope);
    }

    // B publishes a marker once B has everything A sent: Redis handled A's PUBLISHes first,
    // so A would have heard its own envelopes before the marker.
    let marker = format!("{p}:marker");
    b.publish(ManagedEnvelope::broadcast(
        b.server_id(),
        &marker,
        json!(null),
    ));
    let before_marker = until_marker(&mut a_in, &p, &marker).await?;
    ensure!(
        before_marker.is_empty(),
        "A heard its own envelopes: {before_marker:?}"
    );
    let sa = a.stats();
    ensure!(sa.published == 4, "A published 4: {sa:?}");
    ensure!(b.stats().received >= 4, "B counted what it received");
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}

/// A message that is not an envelope is dropped and counted; the bus goes on.
#[tokio::test]
async fn malformed_messages_are_dropped_and_counted() -> anyhow::Result<()> {
    asena_tests::init_tracing();
    let (bus, mut inbox) = server(REDIS).await?;
    let room = unique("malformed");
    let errors_before = bus.stats().errors;
    raw_publish(&format!("ws:room:{room}"), "not json").await?;
    raw_publish(
        &format!("ws:room:{room}"),
        r#"{"serverId":"x","type":"room","event":"no target","data":1}"#,
    )
    .await?;
    let event = format!("{room}:after");
    raw_publish(
        &format!("ws:room:{room}"),
        &ManagedEnvelope::room("elsewhere", &room, &event, json!(1), &[]).encode(),
    )
    .await?;
    let got = next_event(&mut inbox, &event).await?;
    assert_eq!(got.target.as_deref(), Some(room.as_str()));
    // Other tests may publish garbage too; ours is at least two.
    let s = bus.stats();
    ensure!(s.errors >= errors_before + 2, "malformed counted: {s:?}");
    bus.shutdown().await;
    Ok(())
}

/// After `shutdown` nothing is received and publishing drops (counted).
#[tokio::test]
async fn shutdown_stops_the_bus() -> anyhow::Result<()> {
    let (bus, mut inbox) = server(REDIS).await?;
    let clone = bus.clone();
    bus.shutdown().await;
    clone.shutdown().await; // idempotent, from any clone
    clone.publish(ManagedEnvelope::broadcast(
        bus.server_id(),
        "x",
        json!(null),
    ));
    ensure!(bus.stats().dropped == 1, "dropped: {:?}", bus.stats());
    let closed = tokio::time::timeout(WAIT, async { while inbox.recv().await.is_some() {} }).await;
    ensure!(closed.is_ok(), "the sink was released on shutdown");
    Ok(())
}

#[tokio::test]
async fn connect_refuses_bad_server_ids_and_unreachable_redis() -> anyhow::Result<()> {
    let (tx, _rx) = mpsc::unbounded_channel();
    let sink: Arc<dyn IgnisSink> = Arc::new(Forward(tx));
    for id in ["", EMITTER_SERVER_ID] {
        let err = IgnisBus::connect(REDIS, id.to_owned(), sink.clone())
            .await
            .err()
            .context("accepted a bad server id")?;
        ensure!(err.to_string().contains("server id"), "{err}");
    }
    let err = IgnisBus::connect("nats://127.0.0.1:4222", unique("s"), sink.clone())
        .await
        .err()
        .context("accepted a NATS URL")?;
    ensure!(matches!(err, TransportError::InvalidUrl(_)), "{err:?}");
    // Bound but not listening: connections are refused.
    let reserved = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("redis://127.0.0.1:{}", reserved.local_addr()?.port());
    let err = IgnisBus::connect(&url, unique("s"), sink)
        .await
        .err()
        .context("connected to nothing")?;
    ensure!(matches!(err, TransportError::Connect { .. }), "{err:?}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The Emitter
// ---------------------------------------------------------------------------------------

/// `to_client`, `to_user`, `to_room_event` and `broadcast_event` publish Ignis envelopes with
/// serverId `emitter` on the right channels, and servers deliver them.
#[tokio::test]
async fn emitter_publishes_ignis_envelopes() -> anyhow::Result<()> {
    asena_tests::init_tracing();
    let mut watcher = Watcher::new().await?;
    let (bus, mut inbox) = server(REDIS).await?;
    let emitter = Emitter::connect(REDIS).await?;
    let p = unique("emit");
    let (client, user, room) = (
        format!("{p}-client"),
        format!("{p}-user"),
        format!("{p}-room"),
    );

    let event = format!("{p}:client");
    emitter
        .to_client(&client, &event, json!({"jobId": "123", "progress": 75}))
        .await?;
    let (channel, value) = watcher.next_event(&event).await?;
    assert_eq!(channel, format!("ws:client:{client}"));
    assert_eq!(
        value,
        json!({"serverId": "emitter", "type": "client", "target": client, "event": event, "data": {"jobId": "123", "progress": 75}})
    );

    let event = format!("{p}:user");
    emitter
        .to_user(&user, &event, json!({"message": "ready"}))
        .await?;
    let (channel, value) = watcher.next_event(&event).await?;
    assert_eq!(channel, format!("ws:user:{user}"));
    assert_eq!(
        value,
        json!({"serverId": "emitter", "type": "user", "target": user, "event": event, "data": {"message": "ready"}})
    );

    let event = format!("{p}:room");
    emitter
        .to_room_event(&room, &event, 42.5, &["c-skip"])
        .await?;
    let (channel, value) = watcher.next_event(&event).await?;
    assert_eq!(channel, format!("ws:room:{room}"));
    assert_eq!(
        value,
        json!({"serverId": "emitter", "type": "room", "target": room, "event": event, "data": 42.5, "exclude": ["c-skip"]})
    );
    let event = format!("{p}:room-all");
    emitter.to_room_event(&room, &event, "x", &[]).await?;
    let (_, value) = watcher.next_event(&event).await?;
    ensure!(value.get("exclude").is_none(), "no exclude key: {value}");

    let event = format!("{p}:broadcast");
    emitter
        .broadcast_event(&event, json!({"message": "maintenance"}))
        .await?;
    let (channel, value) = watcher.next_event(&event).await?;
    assert_eq!(channel, "ws:broadcast");
    assert_eq!(
        value,
        json!({"serverId": "emitter", "type": "broadcast", "event": event, "data": {"message": "maintenance"}})
    );

    // A server delivers the emitter's messages (no self-dedup on `emitter`).
    for suffix in ["client", "user", "room", "room-all", "broadcast"] {
        let got = next_event(&mut inbox, &format!("{p}:{suffix}")).await?;
        assert_eq!(got.server_id, EMITTER_SERVER_ID);
    }
    emitter.close().await;
    bus.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_nats_emitter_refuses_managed_messages() -> anyhow::Result<()> {
    let emitter = Emitter::connect("nats://127.0.0.1:4222").await?;
    let err = emitter
        .to_user("u", "e", json!(null))
        .await
        .err()
        .context("a NATS emitter sent a managed message")?;
    ensure!(
        err.to_string()
            .contains("Emitter::to_user needs a redis:// emitter"),
        "{err}"
    );
    emitter.close().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// A Redis restart
// ---------------------------------------------------------------------------------------

/// A private `redis-server` on a free port, killed on drop.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> anyhow::Result<PrivateRedis> {
        let mut redis = PrivateRedis {
            port: TcpListener::bind("127.0.0.1:0")?.local_addr()?.port(),
            child: None,
        };
        redis.spawn()?;
        Ok(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start redis-server (run scripts/services.sh)")?;
        self.child = Some(child);
        Ok(())
    }

    async fn ready(&self) -> anyhow::Result<()> {
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let what = format!("redis-server on {} accepting", self.port);
        asena_tests::within(POLL_DEADLINE, &what, async || {
            tokio::net::TcpStream::connect(addr).await.is_ok()
        })
        .await
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Kill Redis: publishing drops and counts; restart it on the same port: both servers
/// reconnect, subscribe again and exchange envelopes in both directions.
#[tokio::test]
async fn a_bus_survives_a_redis_restart() -> anyhow::Result<()> {
    asena_tests::init_tracing();
    let mut redis = PrivateRedis::start()?;
    redis.ready().await?;
    let url = redis.url();
    let (a, mut a_in) = server(&url).await?;
    let (b, mut b_in) = server(&url).await?;
    a.publish(ManagedEnvelope::user(
        a.server_id(),
        "u",
        "before",
        json!(1),
    ));
    next_event(&mut b_in, "before").await?;

    redis.kill();
    let errors_before = a.stats().errors;
    poll_until("the bus notices Redis is gone", || {
        a.stats().errors > errors_before
    })
    .await?;
    let dropped_before = a.stats().dropped;
    a.publish(ManagedEnvelope::user(
        a.server_id(),
        "u",
        "while down",
        json!(1),
    ));
    poll_until(
        "an envelope published while Redis is away is dropped",
        || a.stats().dropped > dropped_before,
    )
    .await?;

    redis.spawn()?;
    redis.ready().await?;
    // Publish until heard: the subscribers come back on their own schedule.
    for (from, to_in, event) in [(&a, &mut b_in, "a-probe"), (&b, &mut a_in, "b-probe")] {
        let deadline = tokio::time::Instant::now() + POLL_DEADLINE;
        loop {
            from.publish(ManagedEnvelope::broadcast(
                from.server_id(),
                event,
                json!(null),
            ));
            match tokio::time::timeout(Duration::from_millis(200), next_event(to_in, event)).await {
                Ok(Ok(_)) => break,
                _ if tokio::time::Instant::now() >= deadline => {
                    bail!("{event} never arrived after the restart")
                }
                _ => {}
            }
        }
    }
    let s = a.stats();
    ensure!(s.reconnects >= 1, "reconnects counted: {s:?}");
    ensure!(s.errors >= 1, "errors counted: {s:?}");
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}
