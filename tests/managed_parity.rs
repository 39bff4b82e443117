//! What a port of an Ignis app expects of the managed protocol, over real sockets: the
//! client's times and backpressure with the drain hook, a server-initiated `disconnect`, a
//! service's own handshake, the service-wide outbound transformer, the heartbeat check
//! interval, Ignis's default rooms, request ids echoed on answers, the local `sendToUser`,
//! and the emitter's managed view.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use asena_runtime::config::SlowConsumer;
use asena_runtime::managed::{
    Authenticated, HandshakeOutcome, ManagedOptions, ManagedService, OutboundTransform,
};
use asena_runtime::prelude::*;
use asena_runtime::transport::{Emitter, RedisTransport};
use asena_tests::broker::REDIS;
use asena_tests::managed::{connected_id, raw_sender};
use asena_tests::{
    Captured, event, eventually, isolated, managed_login, managed_login_closed, managed_service,
    start, start_service, start_service_with, stop_all, unique,
};
use serde_json::{Value, json};

/// Lines the services below record, by client id.
fn journal() -> &'static Mutex<HashMap<String, Vec<String>>> {
    static JOURNAL: OnceLock<Mutex<HashMap<String, Vec<String>>>> = OnceLock::new();
    JOURNAL.get_or_init(Default::default)
}

fn record(id: &str, line: String) {
    journal()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(id.to_owned())
        .or_default()
        .push(line);
}

fn recorded(id: &str, line: &str) -> bool {
    journal()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(id)
        .is_some_and(|lines| lines.iter().any(|l| l == line))
}

fn millis(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()
}

// ---------------------------------------------------------------------------------------
// The client's times, backpressure and the drain hook
// ---------------------------------------------------------------------------------------

/// `times` answers the client's `connected_at` and `last_activity` (ms since the epoch);
/// `flood` queues 25 MiB for it and records whether it is backpressured then; the drain hook
/// records it again and answers `drained`.
#[websocket(path = "/pressure", managed)]
#[derive(Debug)]
pub struct Pressure;

impl ManagedService for Pressure {
    async fn authenticate(
        &self,
        _ws: &Socket<Self>,
        credentials: Value,
    ) -> Result<Option<Authenticated>> {
        Ok(credentials["user"].as_str().map(Authenticated::user))
    }

    async fn on_event(&self, ws: &Socket<Self>, event: Message) -> Result<()> {
        let envelope: Value = event.json()?;
        let client = &ws.data().values;
        let managed = ws.managed();
        match envelope["event"].as_str() {
            Some("times") => {
                let times = json!({
                    "connectedAt": millis(client.connected_at()) as u64,
                    "lastActivity": millis(client.last_activity()) as u64,
                });
                managed.to_client(ws.id(), ("times", times))?;
            }
            Some("flood") => {
                let big = "f".repeat(64 * 1024);
                for _ in 0..400 {
                    // Past the queue limit the app's policy drops; that is the point.
                    let _ = managed.to_client(ws.id(), ("fill", big.as_str()));
                }
                record(
                    ws.id(),
                    format!("flooded backpressured={}", client.is_backpressured()),
                );
            }
            _ => {}
        }
        Ok(())
    }

    async fn on_drain(&self, ws: &Socket<Self>) {
        let backpressured = ws.data().values.is_backpressured();
        record(ws.id(), format!("drained backpressured={backpressured}"));
        let _ = ws.managed().to_client(
            ws.id(),
            ("drained", json!({"backpressured": backpressured})),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_client_is_backpressured_until_its_queue_drains_and_the_drain_hook_runs()
-> anyhow::Result<()> {
    let s = start(
        isolated()
            .websocket::<Pressure>()
            .max_queued_bytes(4 << 20)
            .slow_consumer(SlowConsumer::DropMessages),
    )
    .await?;
    let (mut client, connected) = managed_login(&s, "/pressure", json!({"user": "u"})).await?;
    let id = connected_id(&connected)?;
    // 25 MiB for a client that is not reading: far more than the socket buffers, so the
    // queue passes half of its 4 MiB limit.
    client.send_json(&event("flood", Value::Null)).await?;
    eventually(|| recorded(&id, "flooded backpressured=true")).await?;
    let mut fills = 0;
    let drained = loop {
        let message = client.recv_json().await?;
        match message["event"].as_str() {
            Some("fill") => fills += 1,
            Some("drained") => break message,
            _ => anyhow::bail!("unexpected {message}"),
        }
    };
    assert!(fills > 0);
    assert_eq!(drained["data"], json!({"backpressured": false}));
    assert!(recorded(&id, "drained backpressured=false"));
    s.stop().await
}

#[tokio::test]
async fn a_client_knows_when_it_connected_and_was_last_heard_from() -> anyhow::Result<()> {
    let s = start_service::<Pressure>().await?;
    let before_connect = millis(SystemTime::now());
    let (mut client, _) = managed_login(&s, "/pressure", json!({"user": "u"})).await?;
    let before_ask = millis(SystemTime::now());
    let times = client.ask(&event("times", Value::Null)).await?;
    let connected_at = times["data"]["connectedAt"].as_u64().unwrap_or_default() as u128;
    let last_activity = times["data"]["lastActivity"].as_u64().unwrap_or_default() as u128;
    // One millisecond of slack: the client's times are measured on the monotonic clock
    // from the wall-clock time it connected.
    assert!(
        (before_connect..=before_ask + 1).contains(&connected_at),
        "{times}"
    );
    assert!(last_activity + 1 >= before_ask, "{times}");
    assert!(last_activity >= connected_at, "{times}");
    s.stop().await
}

// ---------------------------------------------------------------------------------------
// disconnect, the heartbeat check interval, Ignis's default rooms, request ids
// ---------------------------------------------------------------------------------------

managed_service!(Plain, "/plain");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_tells_a_client_to_go_then_closes_it() -> anyhow::Result<()> {
    let s = start_service::<Plain>().await?;
    let (mut client, connected) = managed_login(&s, "/plain", json!({"user": "u"})).await?;
    let id = connected_id(&connected)?;
    let managed = raw_sender::<Plain>(&s)?;
    assert!(!managed.disconnect("no-such-client", "kicked"));
    assert!(managed.disconnect(&id, "kicked"));
    assert_eq!(
        client.recv_json().await?,
        event("disconnect", json!({"reason": "kicked"}))
    );
    assert_eq!(client.recv_close().await?, (1000, "kicked".to_owned()));
    eventually(|| {
        s.app
            .namespace("/plain")
            .is_some_and(|ns| ns.socket_count() == 0)
    })
    .await?;
    s.stop().await
}

#[websocket(path = "/ticking", managed)]
#[derive(Debug)]
pub struct Ticking;

asena_tests::impl_token_service!(
    Ticking,
    ManagedOptions::default()
        .auth_timeout(Duration::from_millis(200))
        .heartbeat_timeout(Some(Duration::from_millis(100)))
        .heartbeat_interval(Some(Duration::from_millis(1500))),
    on_event = |_service, _ws, _event| async { Ok(()) }
);

/// With a heartbeat interval a silent client is closed on the next check (1.5 s after it
/// connected), not at its deadline (100 ms after it authenticated, once the 200 ms
/// authentication deadline has passed).
#[tokio::test]
async fn heartbeat_timeouts_are_checked_on_the_interval() -> anyhow::Result<()> {
    let s = start_service::<Ticking>().await?;
    let (mut client, _) = managed_login(&s, "/ticking", json!({"token": "u-token"})).await?;
    let silent_since = Instant::now();
    assert_eq!(client.recv_close().await?.0, 4002);
    let waited = silent_since.elapsed();
    assert!(waited >= Duration::from_millis(1300), "{waited:?}");
    s.stop().await
}

#[websocket(path = "/quick-heartbeat", managed)]
#[derive(Debug)]
pub struct QuickHeartbeat;

asena_tests::impl_token_service!(
    QuickHeartbeat,
    ManagedOptions::default()
        .auth_timeout(Duration::from_secs(5))
        .heartbeat_timeout(Some(Duration::from_millis(200))),
    on_event = |_service, _ws, _event| async { Ok(()) }
);

/// A heartbeat timeout shorter than the authentication timeout holds from the moment the
/// client authenticated, not from the end of its authentication window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_heartbeat_timeout_holds_right_after_authenticating() -> anyhow::Result<()> {
    let s = start_service::<QuickHeartbeat>().await?;
    let (mut client, _) =
        managed_login(&s, "/quick-heartbeat", json!({"token": "u-token"})).await?;
    let silent_since = Instant::now();
    let (code, _) = tokio::time::timeout(Duration::from_secs(3), client.recv_close())
        .await
        .map_err(|_| {
            anyhow::anyhow!("not closed within 3 s of going silent (the 5 s authentication window)")
        })??;
    assert_eq!(code, 4002);
    let waited = silent_since.elapsed();
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
    s.stop().await
}

#[websocket(path = "/scoped", managed)]
#[derive(Debug)]
pub struct Scoped;

asena_tests::impl_token_service!(
    Scoped,
    ManagedOptions::default()
        .identifier("parity-scope")
        .auth_timeout(Duration::from_millis(200))
        .heartbeat_timeout(Some(Duration::from_millis(100))),
    on_event = |_service, _ws, _event| async { Ok(()) }
);

/// The identifier scopes the service's start line and its clients' timeout lines. (A
/// current-thread runtime: the subscriber set for this thread sees every task.)
#[tokio::test]
async fn the_identifier_scopes_the_service_s_log_lines() -> anyhow::Result<()> {
    let captured = Captured::default();
    let _scope = tracing::subscriber::set_default(captured.subscriber("asena::managed=info"));
    let s = start_service::<Scoped>().await?;
    let (mut client, _) = managed_login(&s, "/scoped", json!({"token": "u-token"})).await?;
    assert_eq!(client.recv_close().await?.0, 4002);
    s.stop().await?;
    let text = captured.text();
    let started = text
        .lines()
        .find(|l| l.contains("managed service started"))
        .unwrap_or_default();
    assert!(started.contains("identifier=parity-scope"), "{text}");
    let closing = text
        .lines()
        .find(|l| l.contains("closing") && l.contains("4002"))
        .unwrap_or_default();
    assert!(
        closing.contains("managed{identifier=parity-scope}"),
        "{text}"
    );
    Ok(())
}

#[websocket(path = "/ignis-rooms", managed)]
#[derive(Debug)]
pub struct IgnisRooms;

asena_tests::impl_token_service!(
    IgnisRooms,
    ManagedOptions::ignis(),
    on_event = |_service, _ws, _event| async { Ok(()) }
);

#[tokio::test]
async fn ignis_options_put_clients_in_ignis_default_rooms() -> anyhow::Result<()> {
    let s = start_service::<IgnisRooms>().await?;
    let (mut client, _) = managed_login(&s, "/ignis-rooms", json!({"token": "u-token"})).await?;
    let managed = raw_sender::<IgnisRooms>(&s)?;
    assert_eq!(
        asena_runtime::managed::IGNIS_DEFAULT_ROOMS,
        ["ws-default", "ws-notification"]
    );
    for room in asena_runtime::managed::IGNIS_DEFAULT_ROOMS {
        assert_eq!(managed.to_room(room, ("note", room), &[])?, 1, "{room}");
        assert_eq!(client.recv_json().await?, event("note", json!(room)));
    }
    s.stop().await
}

#[tokio::test]
async fn a_request_id_is_echoed_on_the_answer() -> anyhow::Result<()> {
    let s = start_service::<Plain>().await?;
    let mut client = s.connect("/plain").await?;
    let mut ask = async |request: Value| -> anyhow::Result<Value> {
        client.send_json(&request).await?;
        client.recv_json().await
    };
    let refused = ask(json!({"event": "join", "data": {"rooms": ["a"]}, "id": "r-0"})).await?;
    assert_eq!(refused["data"]["message"], "Not authenticated");
    assert_eq!(refused["id"], "r-0");
    let connected =
        ask(json!({"event": "authenticate", "data": {"user": "u"}, "id": "r-1"})).await?;
    assert_eq!(
        (&connected["event"], &connected["id"]),
        (&json!("connected"), &json!("r-1"))
    );
    let joined = ask(json!({"event": "join", "data": {"rooms": ["a"]}, "id": "r-2"})).await?;
    assert_eq!(
        joined,
        json!({"event": "join", "data": {"rooms": ["a"], "denied": []}, "id": "r-2"})
    );
    let left = ask(json!({"event": "leave", "data": {"rooms": ["a"]}, "id": "r-3"})).await?;
    assert_eq!(
        left,
        json!({"event": "leave", "data": {"rooms": ["a"]}, "id": "r-3"})
    );
    let reserved = ask(json!({"event": "connected", "id": "r-4"})).await?;
    assert_eq!(
        (&reserved["event"], &reserved["id"]),
        (&json!("error"), &json!("r-4"))
    );
    // Without an id (or with one that is not a string) the answer has none.
    let joined = ask(json!({"event": "join", "data": {"rooms": ["b"]}, "id": 5})).await?;
    assert_eq!(
        joined,
        json!({"event": "join", "data": {"rooms": ["b"], "denied": []}})
    );
    s.stop().await
}

/// The worst id a client can send: one as large as a message may be. It comes back once, on
/// the answer to its request (the answer no larger than the request and the id), and the
/// socket keeps being served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_as_large_as_a_message_comes_back_once() -> anyhow::Result<()> {
    let s = start_service::<Plain>().await?;
    let mut client = s.connect("/plain").await?;
    let id = "i".repeat(1_000_000);
    let request = json!({"event": "join", "data": {"rooms": ["a"]}, "id": id});
    client.send_json(&request).await?;
    let refused = client.recv_json().await?;
    assert_eq!(refused["data"]["message"], "Not authenticated");
    assert_eq!(refused["id"].as_str().map(str::len), Some(id.len()));
    assert!(refused.to_string().len() <= request.to_string().len() + 64);
    client
        .send_json(&json!({"event": "authenticate", "data": {"user": "u"}, "id": "small"}))
        .await?;
    let connected = client.recv_json().await?;
    assert_eq!(
        (&connected["event"], &connected["id"]),
        (&json!("connected"), &json!("small"))
    );
    s.stop().await
}

// ---------------------------------------------------------------------------------------
// The handshake and the service-wide outbound transformer
// ---------------------------------------------------------------------------------------

/// Prefixes every frame with `T:`.
#[derive(Debug)]
struct Tagged;

impl OutboundTransform for Tagged {
    fn transform(&self, plaintext: &[u8]) -> std::result::Result<String, asena_runtime::BoxError> {
        Ok(format!("T:{}", std::str::from_utf8(plaintext)?))
    }
}

/// Requires encryption and agrees its own: a client that names the `tag` scheme gets the
/// [`Tagged`] transform and `scheme` in `connected`; any other is declined.
#[websocket(path = "/handshake", managed)]
#[derive(Debug)]
pub struct OwnHandshake;

impl ManagedService for OwnHandshake {
    fn options(&self) -> ManagedOptions {
        ManagedOptions::default()
            .require_encryption(true)
            .ignis_key_exchange(true)
    }

    async fn authenticate(
        &self,
        _ws: &Socket<Self>,
        credentials: Value,
    ) -> Result<Option<Authenticated>> {
        Ok(credentials["user"].as_str().map(Authenticated::user))
    }

    async fn handshake(&self, ws: &Socket<Self>, credentials: &Value) -> Result<HandshakeOutcome> {
        if credentials["scheme"] != "tag" {
            return Ok(HandshakeOutcome::Declined);
        }
        ws.data().values.set_outbound(Arc::new(Tagged));
        let mut fields = serde_json::Map::new();
        fields.insert("scheme".into(), json!("tag"));
        // The protocol's own fields stay the protocol's.
        fields.insert("userId".into(), json!("someone-else"));
        Ok(HandshakeOutcome::Agreed(fields))
    }

    async fn on_event(&self, _ws: &Socket<Self>, _event: Message) -> Result<()> {
        Ok(())
    }
}

/// The `T:` payload of a tagged frame, as JSON.
fn untagged(text: &str) -> anyhow::Result<Value> {
    let json = text
        .strip_prefix("T:")
        .ok_or_else(|| anyhow::anyhow!("not tagged: {text}"))?;
    Ok(serde_json::from_str(json)?)
}

#[tokio::test]
async fn a_service_agrees_its_own_handshake_or_closes_with_4004() -> anyhow::Result<()> {
    let s = start_service::<OwnHandshake>().await?;
    let mut client = s.connect("/handshake").await?;
    client
        .send_json(&event(
            "authenticate",
            json!({"user": "u", "scheme": "tag"}),
        ))
        .await?;
    let connected = untagged(&client.recv_text().await?)?;
    assert_eq!(connected["event"], "connected");
    assert_eq!(connected["data"]["scheme"], "tag");
    assert_eq!(connected["data"]["userId"], "u");
    let id = connected_id(&connected)?;
    raw_sender::<OwnHandshake>(&s)?.to_client(&id, ("hi", 1))?;
    assert_eq!(untagged(&client.recv_text().await?)?, event("hi", json!(1)));

    // Declined while encryption is required: 4004, as Ignis's `handshakeFn` returning nothing.
    assert_eq!(
        managed_login_closed(&s, "/handshake", json!({"user": "u"}))
            .await?
            .0,
        4004
    );
    s.stop().await
}

#[websocket(path = "/transformed", managed)]
#[derive(Debug)]
pub struct Transformed;

asena_tests::impl_token_service!(
    Transformed,
    ManagedOptions::default().outbound_transform(Arc::new(Tagged)),
    on_event = |_service, _ws, _event| async { Ok(()) }
);

#[tokio::test]
async fn the_service_wide_transformer_rewrites_every_client_s_messages() -> anyhow::Result<()> {
    let s = start_service::<Transformed>().await?;
    let mut clients = Vec::new();
    for user in ["a", "b"] {
        let mut client = s.connect("/transformed").await?;
        client
            .send_json(&event(
                "authenticate",
                json!({"token": format!("{user}-token")}),
            ))
            .await?;
        let connected = untagged(&client.recv_text().await?)?;
        assert_eq!(connected["data"]["userId"], user);
        clients.push(client);
    }
    assert_eq!(
        raw_sender::<Transformed>(&s)?.broadcast(("all", 2), &[])?,
        2
    );
    for client in &mut clients {
        assert_eq!(
            untagged(&client.recv_text().await?)?,
            event("all", json!(2))
        );
    }
    s.stop().await
}

#[websocket(path = "/no-ticks", managed)]
#[derive(Debug)]
pub struct NoTicks;

asena_tests::impl_token_service!(
    NoTicks,
    ManagedOptions::default().heartbeat_interval(Some(Duration::ZERO)),
    on_event = |_service, _ws, _event| async { Ok(()) }
);

#[tokio::test]
async fn a_zero_heartbeat_interval_is_refused_at_start() -> anyhow::Result<()> {
    let error = start_service::<NoTicks>()
        .await
        .expect_err("an interval of 0 is refused");
    assert!(
        format!("{error:#}").contains("heartbeat_interval"),
        "{error:#}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Across instances: the local sendToUser, the emitter's managed view
// ---------------------------------------------------------------------------------------

fn fleet_prefix() -> &'static str {
    static PREFIX: OnceLock<String> = OnceLock::new();
    PREFIX.get_or_init(|| unique("parity"))
}

managed_service!(ParityFleet, "/parity-fleet", fleet_prefix());

/// `to_local_user` reaches the user's sessions on this instance only, `to_user` on every
/// one; the emitter's managed view sends with the same verbs, `exclude` on a broadcast too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_local_user_stays_here_and_the_emitter_speaks_the_same_verbs() -> anyhow::Result<()> {
    let a = start_service_with::<ParityFleet>(RedisTransport::new(REDIS)).await?;
    let b = start_service_with::<ParityFleet>(RedisTransport::new(REDIS)).await?;
    let (mut on_a, _) = managed_login(&a, "/parity-fleet", json!({"user": "alice"})).await?;
    let (mut on_b, connected_b) =
        managed_login(&b, "/parity-fleet", json!({"user": "alice"})).await?;
    let managed_a = raw_sender::<ParityFleet>(&a)?;
    assert_eq!(managed_a.to_local_user("alice", ("local", 1))?, 1);
    assert_eq!(on_a.recv_json().await?, event("local", json!(1)));
    assert_eq!(managed_a.to_user("alice", ("fleet", 2))?, 1);
    assert_eq!(on_a.recv_json().await?, event("fleet", json!(2)));
    // B's session missed the local send: the fleet-wide one is the first it gets.
    assert_eq!(on_b.recv_json().await?, event("fleet", json!(2)));

    let emitter = Emitter::connect(REDIS).await?.identifier("parity-worker");
    let managed = emitter.managed(fleet_prefix());
    assert_eq!(managed.prefix(), fleet_prefix());
    managed
        .broadcast(("all-but-b", 3), &[connected_id(&connected_b)?.as_str()])
        .await?;
    managed.to_user("alice", ("emitted", 4)).await?;
    assert_eq!(on_a.recv_json().await?, event("all-but-b", json!(3)));
    assert_eq!(on_a.recv_json().await?, event("emitted", json!(4)));
    assert_eq!(on_b.recv_json().await?, event("emitted", json!(4)));
    emitter.close().await;
    stop_all([a, b]).await
}
