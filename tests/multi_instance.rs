//! Many instances: several apps in one process, each with its own transport,
//! against a real Redis (127.0.0.1:6379) and a real NATS (127.0.0.1:4222), both started by
//! `scripts/services.sh`. Restart, startup-failure and leak tests run private broker
//! processes on free ports.
//!
//! Tests run in parallel on the shared brokers, so every test uses its own room names (and
//! broadcasts only in a namespace no other test uses on the same broker). Duplicates are ruled
//! out deterministically: after a message the sender emits a marker along the same path, and
//! the next message a receiver sees after the message must be that marker.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use asena_runtime::AsenaBuilder;
use asena_runtime::prelude::*;
use asena_runtime::transport::from_url;
use asena_runtime::transport::{Emitter, Transport, TransportError};
use asena_tests::broker::{Broker, Kind, NATS, REDIS, Typed, free_port};
use asena_tests::{Client, TestServer, isolated, start, stop_all, tungstenite, unique};

/// Upper bound for anything that polls (reconnects, connection counts).
const POLL_DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// The services under test
// ---------------------------------------------------------------------------------------

/// Joins `?room=` on open, says hello with its id, and runs commands:
/// `{"op":"publish","room":R,"msg":M}` (room minus sender), `{"op":"publish_bin",...}`
/// (the same, binary), `{"op":"to","room":R,"msg":M}` (room including sender),
/// `{"op":"ping"}` → `pong`.
#[websocket(path = "/mi")]
#[derive(Debug)]
struct Mi;

impl WebSocketService for Mi {
    type Data = ();

    async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
        if let Some(room) = ws.query("room") {
            let room = room.to_owned();
            ws.subscribe(&room)?;
        }
        ws.send_json(&json!({"type": "hello", "id": ws.id()}))?;
        Ok(())
    }

    async fn on_message(&self, ws: &Socket<Self>, msg: Message) -> Result<()> {
        let cmd: serde_json::Value = serde_json::from_str(msg.as_text().unwrap_or("{}"))?;
        let room = cmd["room"].as_str().unwrap_or_default();
        let text = cmd["msg"].as_str().unwrap_or_default().to_owned();
        match cmd["op"].as_str() {
            Some("publish") => {
                ws.publish(room, text)?;
            }
            Some("publish_bin") => {
                ws.publish(room, text.into_bytes())?;
            }
            Some("to") => {
                ws.namespace().to(room, text)?;
            }
            Some("ping") => ws.send("pong")?,
            _ => ws.send("unknown")?,
        }
        Ok(())
    }
}

// A namespace only the broadcast tests use (broadcasts reach every instance on a broker).
asena_tests::hall_service!(MiBroadcast, "/mi-broadcast");

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn builder() -> AsenaBuilder {
    isolated().websocket::<Mi>().websocket::<MiBroadcast>()
}

/// An app instance with a fresh transport to `url`.
async fn instance(url: &str) -> anyhow::Result<TestServer> {
    start(builder().transport_arc(from_url(url)?)).await
}

/// An app instance with the given transport (kept by the caller to read its stats).
async fn instance_with(t: Arc<dyn Transport>) -> anyhow::Result<TestServer> {
    start(builder().transport_arc(t)).await
}

/// Connects to `/mi` (joining `room` when given) and returns the client and its socket id.
async fn join(s: &TestServer, room: Option<&str>) -> anyhow::Result<(Client, String)> {
    let path = match room {
        Some(r) => format!("/mi?room={r}"),
        None => "/mi".to_owned(),
    };
    let mut c = s.connect(&path).await?;
    let hello = c.recv_json().await?;
    ensure!(hello["type"] == "hello", "expected hello, got {hello}");
    let id = hello["id"].as_str().context("hello without id")?.to_owned();
    // NATS routes by interest: the room's messages reach this instance once it subscribed.
    asena_tests::subscribed(s).await?;
    Ok((c, id))
}

async fn publish(c: &mut Client, room: &str, msg: &str) -> anyhow::Result<()> {
    c.send_json(&json!({"op": "publish", "room": room, "msg": msg}))
        .await
}

async fn expect_binary(c: &mut Client, want: &[u8]) -> anyhow::Result<()> {
    match c.recv().await? {
        tungstenite::Message::Binary(data) => {
            ensure!(&data[..] == want, "expected {want:?}, got {data:?}");
            Ok(())
        }
        other => bail!("expected binary, got {other:?}"),
    }
}

async fn expect_text(c: &mut Client, want: &str) -> anyhow::Result<()> {
    let got = c.recv_text().await?;
    ensure!(got == want, "expected {want:?}, got {got:?}");
    Ok(())
}

/// Polls `check` until it returns true; fails after [`POLL_DEADLINE`].
async fn poll_until<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    asena_tests::within(POLL_DEADLINE, what, async || check().await).await
}

/// Live client connections as `broker` sees them.
async fn connections(broker: &Broker) -> anyhow::Result<usize> {
    match broker.kind {
        Kind::Redis => redis_client_count(broker.port).await,
        Kind::Nats => nats_connection_count(broker.monitor_port).await,
    }
}

/// `CLIENT LIST` through the `redis` crate; counts other clients (not this one).
async fn redis_client_count(port: u16) -> anyhow::Result<usize> {
    tokio::time::timeout(asena_tests::WAIT, async {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut conn)
            .await?;
        list.lines()
            .filter(|l| !l.is_empty())
            .count()
            .checked_sub(1)
            .context("CLIENT LIST does not list this connection")
    })
    .await
    .context("CLIENT LIST timed out")?
}

/// `num_connections` from the NATS monitoring endpoint `/connz`.
async fn nats_connection_count(monitor_port: u16) -> anyhow::Result<usize> {
    let v = asena_tests::http_get(&format!("http://127.0.0.1:{monitor_port}/connz"))
        .await?
        .json()?;
    v["num_connections"]
        .as_u64()
        .map(|n| n as usize)
        .context("no num_connections")
}

// ---------------------------------------------------------------------------------------
// Scenarios, run against both brokers
// ---------------------------------------------------------------------------------------

/// Room messages reach members on every instance exactly once; `publish` excludes the
/// sender across instances; other rooms get nothing; binary survives the trip.
async fn rooms_exactly_once(url: &str) -> anyhow::Result<()> {
    let (a, b, c) = (
        instance(url).await?,
        instance(url).await?,
        instance(url).await?,
    );
    let room = unique("room");
    let other = unique("other");
    let (mut a1, _) = join(&a, Some(&room)).await?;
    let (mut a2, _) = join(&a, Some(&room)).await?;
    let (mut b1, _) = join(&b, Some(&room)).await?;
    let (mut c1, _) = join(&c, Some(&room)).await?;
    let (mut c2, _) = join(&c, Some(&other)).await?;

    publish(&mut a1, &room, "hello from a1").await?;
    publish(&mut a1, &room, "marker-1").await?;
    for rx in [&mut a2, &mut b1, &mut c1] {
        expect_text(rx, "hello from a1").await?;
        // Exactly once: the next message is the marker, not a duplicate.
        expect_text(rx, "marker-1").await?;
    }

    // The sender got neither message, not even back through the broker: the next thing
    // it sees is b1's later message, which the broker ordered after a1's two.
    publish(&mut b1, &room, "from b1").await?;
    expect_text(&mut a1, "from b1").await?;
    expect_text(&mut a2, "from b1").await?;
    expect_text(&mut c1, "from b1").await?;
    // b1 itself is excluded: its next message is the pong.
    b1.send_json(&json!({"op": "ping"})).await?;
    expect_text(&mut b1, "pong").await?;

    // The other room saw none of it: its next message is one sent to it afterwards.
    b.app.ulak::<Mi>().context("ulak")?.to(&other, "to other")?;
    expect_text(&mut c2, "to other").await?;

    // Binary across instances (sender excluded); `to` includes the sender.
    c1.send_json(&json!({"op": "publish_bin", "room": room, "msg": "bin"}))
        .await?;
    c1.send_json(&json!({"op": "to", "room": room, "msg": "to all"}))
        .await?;
    for rx in [&mut a1, &mut a2, &mut b1] {
        expect_binary(rx, b"bin").await?;
        expect_text(rx, "to all").await?;
    }
    expect_text(&mut c1, "to all").await?;
    for s in [a, b, c] {
        s.stop().await?;
    }
    Ok(())
}

/// `Ulak::to_socket` reaches a socket on another instance, once.
async fn to_socket_across(url: &str) -> anyhow::Result<()> {
    let (a, b) = (instance(url).await?, instance(url).await?);
    let (mut b1, b1_id) = join(&b, None).await?;
    let (mut b2, _) = join(&b, None).await?;
    let ulak = a.app.ulak::<Mi>().context("ulak")?;
    ensure!(
        a.app
            .namespace("/mi")
            .context("ns")?
            .socket(&b1_id)
            .is_none()
    );
    ulak.to_socket(&b1_id, "direct")?;
    ulak.to_socket(&b1_id, "marker")?;
    expect_text(&mut b1, "direct").await?;
    expect_text(&mut b1, "marker").await?;
    // b2 got nothing.
    b2.send_json(&json!({"op": "ping"})).await?;
    expect_text(&mut b2, "pong").await?;
    stop_all([a, b]).await
}

/// `Ulak::broadcast` and the emitter's broadcast reach every socket of the namespace on
/// every instance, once.
async fn broadcast_across(url: &str) -> anyhow::Result<()> {
    let (a, b) = (instance(url).await?, instance(url).await?);
    let mut clients = Vec::new();
    for s in [&a, &a, &b] {
        let mut c = s.connect("/mi-broadcast").await?;
        c.recv_type("ready").await?;
        clients.push(c);
    }
    let ulak = a.app.ulak::<MiBroadcast>().context("ulak")?;
    ensure!(ulak.broadcast("all")? == 2, "two local recipients");
    ulak.broadcast("marker")?;
    for c in &mut clients {
        expect_text(c, "all").await?;
        expect_text(c, "marker").await?;
    }
    // The emitter is another publisher: only its own messages are ordered among themselves.
    let emitter = Emitter::connect(url).await?;
    emitter.broadcast("/mi-broadcast", "emitted").await?;
    emitter.broadcast("mi-broadcast", "emitted-marker").await?;
    for c in &mut clients {
        expect_text(c, "emitted").await?;
        expect_text(c, "emitted-marker").await?;
    }
    emitter.close().await;
    stop_all([a, b]).await
}

/// The emitter (no server) reaches rooms and sockets on every instance, once.
async fn emitter_delivery(url: &str) -> anyhow::Result<()> {
    let (a, b) = (instance(url).await?, instance(url).await?);
    let room = unique("emit");
    let (mut a1, _) = join(&a, Some(&room)).await?;
    let (mut b1, b1_id) = join(&b, Some(&room)).await?;
    let emitter = Emitter::connect(url).await?;
    emitter
        .to_room("/mi", &room, r#"{"type":"announcement","message":"hi"}"#)
        .await?;
    emitter.to_room("/mi", &room, "marker").await?;
    for c in [&mut a1, &mut b1] {
        let v = c.recv_json().await?;
        ensure!(v == json!({"type": "announcement", "message": "hi"}), "{v}");
        expect_text(c, "marker").await?;
    }
    emitter.to_socket("/mi", &b1_id, "just b1").await?;
    emitter.to_socket("/mi", &b1_id, vec![1u8, 2, 3]).await?;
    emitter.to_room("/mi", &room, "after").await?;
    expect_text(&mut b1, "just b1").await?;
    expect_binary(&mut b1, &[1, 2, 3]).await?;
    expect_text(&mut b1, "after").await?;
    // a1 got nothing meant for b1.
    expect_text(&mut a1, "after").await?;
    emitter.close().await;
    stop_all([a, b]).await
}

/// Sends probes from `from` until `to` receives one; returns the last probe sent.
async fn until_delivered(
    from: &mut Client,
    to: &mut Client,
    room: &str,
    tag: &str,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + POLL_DEADLINE;
    let mut n = 0u32;
    loop {
        n += 1;
        publish(from, room, &format!("{tag}-{n}")).await?;
        match tokio::time::timeout(Duration::from_millis(200), to.recv_text()).await {
            Ok(Ok(t)) if t.starts_with(tag) => return Ok(()),
            // Both transports drop (and count) what is published while the broker is away;
            // local delivery had it. It must never arrive twice.
            Ok(Ok(t)) if t == "while down" => continue,
            Ok(Ok(t)) => bail!("unexpected message {t:?}"),
            Ok(Err(e)) => return Err(e),
            Err(_) if tokio::time::Instant::now() < deadline => continue,
            Err(_) => bail!("cross-instance delivery did not resume ({tag})"),
        }
    }
}

/// Skips messages until `want`; then the next one must be `next` (no duplicates).
async fn skip_to(c: &mut Client, want: &str, next: &str) -> anyhow::Result<()> {
    loop {
        let t = c.recv_text().await?;
        if t == want {
            break;
        }
    }
    expect_text(c, next).await
}

/// Kill the broker mid-test: local delivery goes on, failures are counted; restart it on
/// the same port: cross-instance delivery resumes in both directions, exactly once.
async fn broker_restart(kind: Kind) -> anyhow::Result<()> {
    let mut broker = Broker::start(kind)?;
    broker.ready(POLL_DEADLINE).await?;
    let url = broker.url();
    let ta = Typed::new(kind, &url);
    let a = instance_with(ta.as_dyn()).await?;
    let b = instance_with(Typed::new(kind, &url).as_dyn()).await?;
    let room = unique("restart");
    let (mut a1, _) = join(&a, Some(&room)).await?;
    let (mut a2, _) = join(&a, Some(&room)).await?;
    let (mut b1, _) = join(&b, Some(&room)).await?;
    publish(&mut a1, &room, "before").await?;
    expect_text(&mut a2, "before").await?;
    expect_text(&mut b1, "before").await?;

    broker.kill();
    let errors_before = ta.stats().errors;
    poll_until("transport notices the broker is gone", || {
        let ta = ta.clone();
        async move { ta.stats().errors > errors_before }
    })
    .await?;
    // Local delivery goes on while the broker is away.
    publish(&mut a1, &room, "while down").await?;
    expect_text(&mut a2, "while down").await?;
    b1.send_json(&json!({"op": "ping"})).await?;
    expect_text(&mut b1, "pong").await?;

    broker.spawn()?;
    broker.ready(POLL_DEADLINE).await?;
    until_delivered(&mut a1, &mut b1, &room, "a-probe").await?;
    until_delivered(&mut b1, &mut a1, &room, "b-probe").await?;
    // Exactly once after recovery.
    publish(&mut a1, &room, "final").await?;
    publish(&mut a1, &room, "final-marker").await?;
    skip_to(&mut b1, "final", "final-marker").await?;
    skip_to(&mut a2, "final", "final-marker").await?;
    let s = ta.stats();
    ensure!(s.reconnects >= 1, "reconnects counted: {s:?}");
    ensure!(s.errors >= 1, "errors counted: {s:?}");
    stop_all([a, b]).await
}

/// `destroy` on shutdown closes the broker connections: three start/stop cycles do not
/// leave any behind.
async fn no_leaks_across_cycles(kind: Kind) -> anyhow::Result<()> {
    let broker = Broker::start(kind)?;
    broker.ready(POLL_DEADLINE).await?;
    let url = broker.url();
    // A private broker has no clients but ours (the readiness probe may linger briefly).
    let baseline = 0;
    poll_until("no clients before the first cycle", || async {
        connections(&broker).await.ok() == Some(0)
    })
    .await?;
    for cycle in 0..3 {
        let (a, b) = (instance(&url).await?, instance(&url).await?);
        let room = unique("leak");
        let (mut a1, _) = join(&a, Some(&room)).await?;
        let (mut b1, _) = join(&b, Some(&room)).await?;
        publish(&mut a1, &room, "hi").await?;
        expect_text(&mut b1, "hi").await?;
        let during = connections(&broker).await?;
        ensure!(
            during > baseline,
            "cycle {cycle}: instances are connected ({during})"
        );
        a.stop().await?;
        b.stop().await?;
        let what = format!("cycle {cycle}: the broker back to {baseline} connections");
        asena_tests::until_some(POLL_DEADLINE, &what, async || {
            Ok((connections(&broker).await? == baseline).then_some(()))
        })
        .await?;
    }
    Ok(())
}

/// An unreachable broker fails `build()` with a clear error (no fallback to local).
async fn unreachable_at_startup(kind: Kind) -> anyhow::Result<()> {
    // Keep the port bound but not listening: connections are refused, and no other test can
    // start a broker on it meanwhile.
    let reserved = tokio::net::TcpSocket::new_v4()?;
    reserved.bind(([127, 0, 0, 1], 0).into())?;
    let port = reserved.local_addr()?.port();
    let url = kind.url(port);
    let t = from_url(&url)?;
    let err = match builder().transport_arc(t).build().await {
        Ok(app) => {
            app.shutdown().await;
            bail!("build() succeeded without a broker at {url}");
        }
        Err(e) => e,
    };
    let msg = format!("{err}");
    let chain = format!("{err:?}");
    ensure!(
        msg.contains(&url) || chain.contains(&url),
        "error names the broker: {msg} / {chain}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Each on Redis and on NATS
// ---------------------------------------------------------------------------------------

asena_tests::on_each_broker! {
    #[tokio::test]
    rooms_publish_excludes_sender_exactly_once => rooms_exactly_once;
    to_socket_across_instances => to_socket_across;
    broadcast_across_instances => broadcast_across;
    emitter_delivery => emitter_delivery;
    broker_restart_recovery => broker_restart(Kind);
    destroy_on_shutdown_no_leaks => no_leaks_across_cycles(Kind);
    unreachable_at_startup_is_an_error => unreachable_at_startup(Kind);
    chat_example_two_processes => chat_across_processes;
}

// ---------------------------------------------------------------------------------------
// Selection
// ---------------------------------------------------------------------------------------

#[test]
fn from_url_selects_the_transport() -> anyhow::Result<()> {
    assert_eq!(from_url(REDIS)?.name(), "redis");
    assert_eq!(from_url(NATS)?.name(), "nats");
    assert!(matches!(
        from_url("http://127.0.0.1:1"),
        Err(TransportError::InvalidUrl(_))
    ));
    Ok(())
}

/// `RedisTransport::with_client`: a client the app configured (here: a database number in
/// the URL) carries rooms between instances like a URL does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_redis_client_carries_rooms() -> anyhow::Result<()> {
    let transport = || -> anyhow::Result<Arc<dyn Transport>> {
        let client = redis::Client::open(format!("{REDIS}/3"))?;
        Ok(Arc::new(
            asena_runtime::transport::RedisTransport::with_client(client),
        ))
    };
    let (a, b) = (
        instance_with(transport()?).await?,
        instance_with(transport()?).await?,
    );
    let room = unique("client");
    let (mut a1, _) = join(&a, Some(&room)).await?;
    let (mut b1, _) = join(&b, Some(&room)).await?;
    publish(&mut a1, &room, "over a configured client").await?;
    expect_text(&mut b1, "over a configured client").await?;
    asena_tests::stop_all([a, b]).await
}

#[tokio::test]
async fn emitter_rejects_unknown_schemes() {
    assert!(matches!(
        Emitter::connect("amqp://127.0.0.1").await,
        Err(TransportError::InvalidUrl(_))
    ));
}

// ---------------------------------------------------------------------------------------
// The chat example as two OS processes
// ---------------------------------------------------------------------------------------

/// A child process killed on drop.
#[derive(Debug)]
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Builds the chat example with the cargo running this test and returns its path.
async fn chat_binary() -> anyhow::Result<std::path::PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_owned();
    let dir = root.clone();
    let build = tokio::task::spawn_blocking(move || {
        Command::new(cargo)
            .args(["build", "-p", "asena-examples", "--example", "chat"])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
    });
    // Building may compile the example from scratch.
    let status = tokio::time::timeout(Duration::from_secs(900), build)
        .await
        .context("building the chat example timed out")???;
    ensure!(status.success(), "cargo build --example chat failed");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let bin = target.join("debug").join("examples").join("chat");
    ensure!(bin.exists(), "no binary at {}", bin.display());
    Ok(bin)
}

/// Over NATS (interest-based routing), waits until the chat process on `port` is subscribed
/// to its one room, as its `/metrics` says; over Redis there is nothing to wait for.
async fn room_subscribed(url: &str, port: u16) -> anyhow::Result<()> {
    if !url.starts_with("nats://") {
        return Ok(());
    }
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let what = format!("the chat on {port} subscribed to its room");
    asena_tests::until_some(POLL_DEADLINE, &what, async || {
        let text = asena_tests::http_get(&metrics).await?.body;
        Ok(text
            .lines()
            .any(|l| l == "asena_transport_subscriptions 1")
            .then_some(()))
    })
    .await
}

/// Runs the chat example on a free port with `ASENA_TRANSPORT=url`; returns it and its port.
async fn chat_process(bin: &std::path::Path, url: &str) -> anyhow::Result<(Proc, u16)> {
    let port = free_port()?;
    let child = Command::new(bin)
        .env("ASENA_TRANSPORT", url)
        .env("PORT", port.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let proc = Proc(child);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    poll_until("chat process listening", || async move {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await?;
    Ok((proc, port))
}

async fn chat_across_processes(url: &str) -> anyhow::Result<()> {
    let bin = chat_binary().await?;
    let (_p1, port1) = chat_process(&bin, url).await?;
    let (_p2, port2) = chat_process(&bin, url).await?;
    let room = unique("chat");
    let mut alice = Client::connect(&format!(
        "ws://127.0.0.1:{port1}/chat?username=alice&room={room}"
    ))
    .await?;
    ensure!(alice.recv_json().await?["type"] == "welcome");
    room_subscribed(url, port1).await?;
    let mut bob = Client::connect(&format!(
        "ws://127.0.0.1:{port2}/chat?username=bob&room={room}"
    ))
    .await?;
    ensure!(bob.recv_json().await?["type"] == "welcome");
    room_subscribed(url, port2).await?;
    // Bob's join reached alice on the other process.
    let joined = alice.recv_type("user_joined").await?;
    ensure!(
        joined["type"] == "user_joined" && joined["username"] == "bob",
        "{joined}"
    );

    alice
        .send_json(&json!({"type": "message", "message": "hi from 1"}))
        .await?;
    // (Alice's own join notice may reach bob too, if it was still in flight when he joined.)
    let m = bob.recv_type("message").await?;
    ensure!(
        m["type"] == "message" && m["username"] == "alice" && m["message"] == "hi from 1",
        "{m}"
    );
    bob.send_json(&json!({"type": "message", "message": "hi from 2"}))
        .await?;
    let m = alice.recv_type("message").await?;
    ensure!(
        m["type"] == "message" && m["username"] == "bob" && m["message"] == "hi from 2",
        "{m}"
    );

    // The emitter reaches both processes.
    let emitter = Emitter::connect(url).await?;
    emitter
        .to_room("/chat", &room, r#"{"type":"announcement","message":"hi"}"#)
        .await?;
    for c in [&mut alice, &mut bob] {
        let v = c.recv_type("announcement").await?;
        ensure!(v == json!({"type": "announcement", "message": "hi"}), "{v}");
    }
    emitter.close().await;
    Ok(())
}
