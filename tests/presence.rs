//! Presence across instances: apps in one process sharing the real Redis and NATS, each
//! with its own transport; clients are real WebSocket connections that keep the room's
//! presence the way a Phoenix client does (the `presence_state`, then each `presence_diff`);
//! and one instance as its own OS process (tests/bin/presence_instance.rs) killed with
//! SIGKILL, whose entries the survivor drops with leave diffs.
//! Every wait is a receive with a timeout: a diff that never comes fails the test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use asena_runtime::Ulak;
use asena_runtime::prelude::*;
use asena_runtime::presence::{PresenceDiff, PresenceOptions};
use asena_runtime::transport::{NatsTransport, RedisTransport, Transport};
use asena_tests::broker::{Kind, NATS, REDIS};
use asena_tests::managed::next_event;
use asena_tests::{
    Client, TestServer, WAIT, event, isolated, managed_login, managed_service, start, unique,
    validate_asyncapi,
};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};

mod presence_lobby;
use presence_lobby::Lobby;

/// One instance: the app and its transport, kept to cut it off the bus abruptly.
struct Instance {
    server: TestServer,
    transport: Arc<dyn Transport>,
}

impl Instance {
    async fn start(kind: Kind, prefix: &str, options: PresenceOptions) -> anyhow::Result<Instance> {
        let transport: Arc<dyn Transport> = match kind {
            Kind::Redis => Arc::new(RedisTransport::new(REDIS)),
            Kind::Nats => Arc::new(NatsTransport::new(NATS)),
        };
        let server = start(
            isolated()
                .websocket::<Lobby>()
                .transport_arc(transport.clone())
                .presence(options.channel_prefix(prefix)),
        )
        .await?;
        Ok(Instance { server, transport })
    }

    fn ulak(&self) -> Ulak<Lobby> {
        self.server.app.ulak::<Lobby>().unwrap()
    }

    async fn connect(&self, room: &str, key: &str) -> anyhow::Result<Watcher> {
        let client = self
            .server
            .connect(&format!("/presence?room={room}&key={key}"))
            .await?;
        Watcher::new(client).await
    }
}

/// Heartbeats short enough that a silent instance goes within a test's wait.
fn fast() -> PresenceOptions {
    PresenceOptions::default().heartbeat(Duration::from_millis(100))
}

/// A client's view of one room: key → refs, kept from `presence_state` and
/// `presence_diff` frames as Phoenix's client keeps it.
struct Watcher {
    client: Client,
    view: BTreeMap<String, Vec<String>>,
}

fn refs(list: &Value) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for (key, metas) in list.as_object().into_iter().flatten() {
        let refs = metas["metas"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["phx_ref"].as_str().map(str::to_owned))
            .collect();
        out.insert(key.clone(), refs);
    }
    out
}

impl Watcher {
    /// A client that tracked on open: its first frame is the room's state.
    async fn new(mut client: Client) -> anyhow::Result<Watcher> {
        let state = client.recv_type("presence_state").await?;
        Ok(Watcher {
            client,
            view: refs(&state["state"]),
        })
    }

    /// The next diff, applied to the view.
    async fn diff(&mut self) -> anyhow::Result<Value> {
        let diff = self.client.recv_type("presence_diff").await?;
        for (key, gone) in refs(&diff["leaves"]) {
            if let Some(held) = self.view.get_mut(&key) {
                held.retain(|r| !gone.contains(r));
                if held.is_empty() {
                    self.view.remove(&key);
                }
            }
        }
        for (key, joined) in refs(&diff["joins"]) {
            self.view.entry(key).or_default().extend(joined);
        }
        Ok(diff)
    }

    /// Applies diffs until the view's keys are `keys`.
    async fn until(&mut self, keys: &[&str]) -> anyhow::Result<()> {
        while self.keys() != keys {
            self.diff()
                .await
                .with_context(|| format!("waiting for {keys:?}, have {:?}", self.keys()))?;
        }
        Ok(())
    }

    fn keys(&self) -> Vec<&str> {
        self.view.keys().map(String::as_str).collect()
    }

    /// Sends `cmd` and expects an error whose message holds `error`.
    async fn refused(&mut self, cmd: Value, error: &str) -> anyhow::Result<()> {
        let answer = self.command(cmd).await?;
        let message = answer["message"].as_str().unwrap_or_default();
        if answer["type"] != "error" || !message.contains(error) {
            bail!("expected an error with {error:?}, got {answer}");
        }
        Ok(())
    }

    async fn command(&mut self, cmd: Value) -> anyhow::Result<Value> {
        self.client.send_json(&cmd).await?;
        loop {
            let v = self.client.recv_json().await?;
            if v["type"] == "ok" || v["type"] == "error" {
                return Ok(v);
            }
        }
    }
}

/// Waits on `ulak`'s diff stream until its list of `room` has `keys`.
async fn list_until(ulak: &Ulak<Lobby>, room: &str, keys: &[&str]) -> anyhow::Result<()> {
    let presence = ulak.presence();
    let mut diffs = presence.diffs().context("presence is on")?;
    loop {
        let list = presence.list(room);
        if list.keys().map(String::as_str).eq(keys.iter().copied()) {
            return Ok(());
        }
        let next: Result<PresenceDiff, _> = tokio::time::timeout(WAIT, diffs.recv())
            .await
            .with_context(|| format!("waiting for {keys:?} in the list, have {:?}", list.keys()))?;
        next?;
    }
}

/// A on the fleet tracks; B sees the join and lists A's entry; A's socket closes and B gets
/// the leave; a late C gets both in its state; then A is cut off the bus without a goodbye
/// and B and C drop its entries after three heartbeats, with leave diffs.
async fn fleet(kind: Kind) -> anyhow::Result<()> {
    let prefix = unique("presence");
    let room = unique("room");
    let a = Instance::start(kind, &prefix, fast()).await?;
    let b = Instance::start(kind, &prefix, fast()).await?;

    let mut on_b = b.connect(&room, "bob").await?;
    let on_a = a.connect(&room, "ada").await?;
    on_b.until(&["ada", "bob"]).await?;
    list_until(&b.ulak(), &room, &["ada", "bob"]).await?;
    let listed = b.ulak().presence().list(&room);
    ensure!(listed["ada"].metas[0].meta["name"] == "ada", "{listed:?}");

    // A's socket closes: B gets the leave.
    on_a.client.close().await?;
    on_b.until(&["bob"]).await?;

    // Two tabs of one user on A, then a late instance C.
    let mut tab1 = a.connect(&room, "ada").await?;
    let _tab2 = a.connect(&room, "ada").await?;
    on_b.until(&["ada", "bob"]).await?;
    while on_b.view["ada"].len() < 2 {
        on_b.diff().await?;
    }
    let c = Instance::start(kind, &prefix, fast()).await?;
    let mut on_c = c.connect(&room, "cy").await?;
    on_c.until(&["ada", "bob", "cy"]).await?;
    ensure!(on_c.view["ada"].len() == 2, "two tabs: {:?}", on_c.view);
    on_b.until(&["ada", "bob", "cy"]).await?;
    tab1.until(&["ada", "bob", "cy"]).await?;

    // A vanishes from the bus (its broker connection gone, no goodbye): B and C drop its
    // entries once it has been silent for three heartbeats.
    a.transport.destroy().await;
    on_b.until(&["bob", "cy"]).await?;
    on_c.until(&["bob", "cy"]).await?;
    list_until(&c.ulak(), &room, &["bob", "cy"]).await?;

    // C shuts down and says goodbye: B drops its entry.
    c.server.stop().await?;
    on_b.until(&["bob"]).await?;
    b.server.stop().await?;
    a.server.stop().await
}

asena_tests::on_redis_and_nats!(fleet => fleet_on_redis, fleet_on_nats);

/// One instance as its own OS process (tests/bin/presence_instance.rs), killed on drop.
struct Process {
    child: tokio::process::Child,
    port: u16,
}

impl Process {
    /// Starts it on the broker of `kind` and waits (bounded) for the port it listens on.
    async fn start(kind: Kind, prefix: &str, heartbeat: Duration) -> anyhow::Result<Process> {
        let url = match kind {
            Kind::Redis => REDIS,
            Kind::Nats => NATS,
        };
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_presence-instance"))
            .args([url, prefix, &heartbeat.as_millis().to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start presence-instance")?;
        let stdout = child.stdout.take().context("the child's stdout")?;
        let line = tokio::time::timeout(WAIT, BufReader::new(stdout).lines().next_line())
            .await
            .context("presence-instance did not say its port in time")??
            .context("presence-instance exited before listening")?;
        let port = line
            .strip_prefix("listening ")
            .and_then(|port| port.parse().ok())
            .with_context(|| format!("not `listening PORT`: {line:?}"))?;
        Ok(Process { child, port })
    }

    async fn connect(&self, room: &str, key: &str) -> anyhow::Result<Watcher> {
        let url = format!(
            "ws://127.0.0.1:{}/presence?room={room}&key={key}",
            self.port
        );
        Watcher::new(Client::connect(&url).await?).await
    }

    /// SIGKILL: the process says nothing more, no goodbye on the bus.
    async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

/// An instance in another process tracks three entries (two tabs of one key) beside the
/// survivor's own; it is killed with SIGKILL, and the survivor's subscriber gets leave diffs
/// for all three within three of the dead instance's heartbeats (plus one of the survivor's
/// sweeps and a grace for a loaded machine); the list and a late socket's state hold no ghost.
async fn killed_process(kind: Kind) -> anyhow::Result<()> {
    let heartbeat = Duration::from_millis(200);
    let prefix = unique("presence");
    let room = unique("room");
    let survivor = Instance::start(
        kind,
        &prefix,
        PresenceOptions::default().heartbeat(heartbeat),
    )
    .await?;
    let doomed = Process::start(kind, &prefix, heartbeat).await?;

    let mut on_survivor = survivor.connect(&room, "bob").await?;
    let mut tab1 = doomed.connect(&room, "ada").await?;
    let _tab2 = doomed.connect(&room, "ada").await?;
    let _eve = doomed.connect(&room, "eve").await?;
    on_survivor.until(&["ada", "bob", "eve"]).await?;
    while on_survivor.view["ada"].len() < 2 {
        on_survivor.diff().await?;
    }
    tab1.until(&["ada", "bob", "eve"]).await?;
    list_until(&survivor.ulak(), &room, &["ada", "bob", "eve"]).await?;

    doomed.kill().await?;
    let deadline = heartbeat * 4 + Duration::from_secs(2);
    tokio::time::timeout(deadline, on_survivor.until(&["bob"]))
        .await
        .with_context(|| format!("no leaves within {deadline:?} of the kill"))??;
    list_until(&survivor.ulak(), &room, &["bob"]).await?;
    let late = survivor.connect(&room, "cy").await?;
    ensure!(late.keys() == ["bob", "cy"], "ghosts: {:?}", late.view);
    survivor.server.stop().await
}

asena_tests::on_redis_and_nats!(killed_process => killed_process_on_redis, killed_process_on_nats);

/// Update is a leave of the old ref and a join of a new one; untrack and leaving the room
/// both untrack, everywhere.
#[tokio::test]
async fn update_untrack_and_leave() -> anyhow::Result<()> {
    let prefix = unique("presence");
    let room = unique("room");
    let a = Instance::start(Kind::Redis, &prefix, fast()).await?;
    let b = Instance::start(Kind::Redis, &prefix, fast()).await?;
    let mut on_b = b.connect(&room, "bob").await?;
    let mut on_a = a.connect(&room, "ada").await?;
    on_b.until(&["ada", "bob"]).await?;
    let old = on_b.view["ada"][0].clone();

    let answer = on_a
        .command(json!({"op":"update","room":room,"key":"ada","meta":{"typing":true}}))
        .await?;
    ensure!(answer["type"] == "ok", "{answer}");
    let diff = on_b.diff().await?;
    ensure!(
        diff["leaves"]["ada"]["metas"][0]["phx_ref"] == old.as_str(),
        "{diff}"
    );
    ensure!(diff["joins"]["ada"]["metas"][0]["typing"] == true, "{diff}");
    list_until(&a.ulak(), &room, &["ada", "bob"]).await?;

    // A second key for the same socket, then untracked.
    let answer = on_a
        .command(json!({"op":"track","room":room,"key":"ada-bot","meta":{}}))
        .await?;
    ensure!(answer["type"] == "ok", "{answer}");
    on_b.until(&["ada", "ada-bot", "bob"]).await?;
    let answer = on_a
        .command(json!({"op":"untrack","room":room,"key":"ada-bot"}))
        .await?;
    ensure!(answer["value"] == true, "{answer}");
    on_b.until(&["ada", "bob"]).await?;

    // Leaving the room untracks.
    let answer = on_a.command(json!({"op":"leave","room":room})).await?;
    ensure!(answer["value"] == true, "{answer}");
    on_b.until(&["bob"]).await?;
    let answer = on_a.command(json!({"op":"list","room":room})).await?;
    ensure!(
        answer["value"].as_object().is_some_and(|l| l.len() == 1),
        "{answer}"
    );
    b.server.stop().await?;
    a.server.stop().await
}

/// Metadata over the limit, a non-object, a bad key, a reserved room, a socket over its
/// entries, a room over its entries and a double track are each refused with their error,
/// and the socket goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounds_refused() -> anyhow::Result<()> {
    let options = PresenceOptions::default()
        .max_meta_bytes(64)
        .max_entries_per_socket(2)
        .max_entries_per_room(3);
    let server = start(isolated().websocket::<Lobby>().presence(options)).await?;
    let room = "lobby";
    let mut ws = Watcher::new(
        server
            .connect(&format!("/presence?room={room}&key=k0"))
            .await?,
    )
    .await?;
    let big = "x".repeat(10_000);
    let refusals = [
        (
            json!({"op":"track","room":room,"key":"k1","meta":{"name": big}}),
            "over the limit of 64",
        ),
        (
            json!({"op":"track","room":room,"key":"k1","meta":[1, 2]}),
            "JSON object",
        ),
        (
            json!({"op":"track","room":room,"key":"k".repeat(129),"meta":{}}),
            "1 to 128 bytes",
        ),
        (
            json!({"op":"track","room":room,"key":"","meta":{}}),
            "1 to 128 bytes",
        ),
        (
            json!({"op":"track","room":"__","key":"k1","meta":{}}),
            "invalid room",
        ),
        (
            json!({"op":"track","room":room,"key":"k0","meta":{}}),
            "already tracked",
        ),
        (
            json!({"op":"update","room":room,"key":"nobody","meta":{}}),
            "not tracked",
        ),
    ];
    for (cmd, error) in refusals {
        ws.refused(cmd, error).await?;
    }
    let answer = ws
        .command(json!({"op":"track","room":"other","key":"k1","meta":{}}))
        .await?;
    ensure!(answer["type"] == "ok", "{answer}");
    ws.refused(
        json!({"op":"track","room":room,"key":"k2","meta":{}}),
        "2 presence entries",
    )
    .await?;

    // Three sockets fill the room; the fourth is refused.
    let _two = server
        .connect(&format!("/presence?room={room}&key=k2"))
        .await?;
    let _three = server
        .connect(&format!("/presence?room={room}&key=k3"))
        .await?;
    ws.until(&["k0", "k2", "k3"]).await?;
    let mut four = server.connect("/presence").await?;
    four.send_json(&json!({"op":"track","room":room,"key":"k4","meta":{}}))
        .await?;
    let answer = four.recv_json().await?;
    ensure!(
        answer["type"] == "error"
            && answer["message"]
                .as_str()
                .unwrap()
                .contains("3 presence entries"),
        "{answer}"
    );
    server.stop().await
}

/// Hostile messages on the presence channel (over the size limit, malformed, a diff of an
/// instance nobody knows with a gap) are dropped at bounded cost, counted as transport
/// errors, and presence goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bus_messages_ignored() -> anyhow::Result<()> {
    let prefix = unique("presence");
    let room = unique("room");
    let b = Instance::start(Kind::Redis, &prefix, fast()).await?;
    let mut on_b = b.connect(&room, "bob").await?;

    let client = redis::Client::open(REDIS)?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let channel = format!("{prefix}:fleet");
    let dropped = |s: asena_runtime::transport::TransportStats| s.errors + s.oversize;
    let before = dropped(b.server.app.transport_stats().unwrap());
    let fake = json!({
        "v": 1, "from": "intruder", "kind": "diff", "seq": 42, "everyMs": 100,
        "entries": [{"ns": "/presence", "room": room, "key": "ghost", "ref": "g1", "meta": {}}]
    });
    let huge = format!(
        "{{\"v\":1,\"from\":\"x\",\"kind\":\"beat\",\"pad\":\"{}\"}}",
        "x".repeat(2 << 20)
    );
    for payload in [
        huge,
        "{not json".to_owned(),
        "[1,2,3]".to_owned(),
        fake.to_string(),
    ] {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(payload)
            .query_async(&mut con)
            .await?;
    }

    // A real instance joining afterwards is still heard, and the intruder's entry never
    // appears (its diff is out of sequence and nobody answers its state request).
    let a = Instance::start(Kind::Redis, &prefix, fast()).await?;
    let _on_a = a.connect(&room, "ada").await?;
    on_b.until(&["ada", "bob"]).await?;
    let stats = b.server.app.transport_stats().unwrap();
    ensure!(dropped(stats) >= before + 3, "{stats:?}");
    ensure!(!b.ulak().presence().list(&room).contains_key("ghost"));
    a.server.stop().await?;
    on_b.until(&["bob"]).await?;
    b.server.stop().await
}

managed_service!(Desk, "/desk", on_event = desk_event);

/// `{"event":"here","data":{"room":R,"name":N}}` tracks the client in R under N.
async fn desk_event(ws: &Socket<Desk>, event: Message) -> Result<()> {
    let envelope: Value = event.json()?;
    let data = &envelope["data"];
    if envelope["event"] == "here" {
        let room = data["room"].as_str().unwrap_or_default();
        let name = data["name"].as_str().unwrap_or_default();
        ws.presence().track_as(room, name, &json!({"name": name}))?;
    }
    Ok(())
}

/// A managed service's clients get presence as events: `presence_state` and
/// `presence_diff` with the same objects as `data`.
#[tokio::test]
async fn managed_clients_get_events() -> anyhow::Result<()> {
    let server = start(
        isolated()
            .websocket::<Desk>()
            .presence(PresenceOptions::default()),
    )
    .await?;
    let (mut ada, _) = managed_login(&server, "/desk", json!({"user": "ada"})).await?;
    let (mut bob, _) = managed_login(&server, "/desk", json!({"user": "bob"})).await?;
    ada.send_json(&event("here", json!({"room": "desk", "name": "ada"})))
        .await?;
    let state = next_event(&mut ada, "presence_state").await?;
    ensure!(state["data"]["room"] == "desk", "{state}");
    ensure!(
        state["data"]["state"]["ada"]["metas"][0]["name"] == "ada",
        "{state}"
    );
    bob.send_json(&event("here", json!({"room": "desk", "name": "bob"})))
        .await?;
    let state = next_event(&mut bob, "presence_state").await?;
    ensure!(
        state["data"]["state"].as_object().unwrap().len() == 2,
        "{state}"
    );
    let diff = next_event(&mut ada, "presence_diff").await?;
    ensure!(
        diff["data"]["joins"]["bob"]["metas"][0]["name"] == "bob",
        "{diff}"
    );
    bob.close().await?;
    let diff = next_event(&mut ada, "presence_diff").await?;
    ensure!(diff["data"]["leaves"]["bob"]["metas"].is_array(), "{diff}");
    server.stop().await
}

/// With presence, the AsyncAPI document lists `presence_state` and `presence_diff` among
/// what each service sends, in the form its sockets get them.
#[tokio::test]
async fn asyncapi_describes_presence() -> anyhow::Result<()> {
    let server = start(
        isolated()
            .websocket::<Lobby>()
            .websocket::<Desk>()
            .presence(PresenceOptions::default()),
    )
    .await?;
    let doc = server.app.asyncapi();
    validate_asyncapi(&[("presence", doc.clone())])?;
    let messages = &doc["components"]["messages"];
    for name in ["presence_state", "presence_diff"] {
        let plain = &messages[format!("asena.{name}")]["payload"]["properties"];
        ensure!(plain["type"]["const"] == name, "{plain}");
        let managed = &messages[format!("managed.send.{name}")]["payload"]["properties"];
        ensure!(managed["event"]["const"] == name, "{managed}");
        ensure!(managed["data"]["required"][0] == "room", "{managed}");
    }
    let without = start(isolated().websocket::<Lobby>()).await?;
    let doc = without.app.asyncapi();
    ensure!(doc["components"]["messages"]["asena.presence_diff"].is_null());
    without.stop().await?;
    server.stop().await
}
