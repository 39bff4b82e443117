//! History and recovery across instances: apps in one process sharing the real Redis (the
//! history, and the bus on one side) and NATS (the bus on the other), each with its own
//! transport; clients are real WebSocket connections that read `$history` and numbered frames
//! and come back with `recover=<epoch>:<offset>:<room>`.
//!
//! "Exactly once" is checked by order: after what a client should receive, a marker message
//! is sent; the next frame must be the marker, so a duplicate or a stray message fails.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use anyhow::ensure;
use asena_runtime::history::HistoryOptions;
use asena_runtime::prelude::*;
use asena_runtime::transport::{NatsTransport, RedisTransport, Transport};
use asena_tests::broker::{Kind, NATS, REDIS};
use asena_tests::{Client, TestServer, isolated, start, unique};
use serde_json::Value;

/// Joins the rooms of `?rooms=a,b` on open.
#[websocket(path = "/history")]
#[derive(Debug)]
struct Rooms;

impl WebSocketService for Rooms {
    type Data = ();

    async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
        Ok(asena_tests::join_query_rooms(ws, "rooms")?)
    }

    /// `{"room": r, "n": n}` goes to the room `r`, the sender excepted.
    async fn on_message(&self, ws: &Socket<Self>, msg: Message) -> Result<()> {
        let said: Value = serde_json::from_str(msg.as_text().unwrap_or("{}"))?;
        let room = said["room"].as_str().unwrap_or_default();
        ws.publish(room, json!({ "n": said["n"] }).to_string())?;
        Ok(())
    }
}

async fn instance(kind: Kind, options: HistoryOptions) -> anyhow::Result<TestServer> {
    let transport: Arc<dyn Transport> = match kind {
        Kind::Redis => Arc::new(RedisTransport::new(REDIS)),
        Kind::Nats => Arc::new(NatsTransport::new(NATS)),
    };
    start(
        isolated()
            .websocket::<Rooms>()
            .transport_arc(transport)
            .history(options),
    )
    .await
}

/// Sends `{"n": n}` to `room` from `server`.
fn say(server: &TestServer, room: &str, n: u64) {
    let ulak = server.app.ulak::<Rooms>().unwrap();
    ulak.to(room, json!({ "n": n }).to_string()).unwrap();
}

/// A client in `room`, with its position from the `$history` frame the join sends.
struct Member {
    client: Client,
    room: String,
    epoch: String,
    offset: u64,
}

impl Member {
    async fn join(
        server: &TestServer,
        room: &str,
        recover: Option<(&str, u64)>,
    ) -> anyhow::Result<(Member, Value)> {
        Member::join_at(server, "/history", room, recover).await
    }

    /// [`join`](Self::join) to the service at `path`.
    async fn join_at(
        server: &TestServer,
        path: &str,
        room: &str,
        recover: Option<(&str, u64)>,
    ) -> anyhow::Result<(Member, Value)> {
        let mut path = format!("{path}?rooms={room}");
        if let Some((epoch, offset)) = recover {
            path.push_str(&format!("&recover={epoch}:{offset}:{room}"));
        }
        let mut member = Member {
            client: server.connect(&path).await?,
            room: room.to_owned(),
            epoch: String::new(),
            offset: recover.map_or(0, |(_, offset)| offset),
        };
        let mut replayed = Vec::new();
        loop {
            let frame = member.client.recv_json().await?;
            if let Some(position) = frame.get("$history") {
                member.epoch = position["epoch"].as_str().unwrap().to_owned();
                member.offset = position["offset"].as_u64().unwrap();
                return Ok((
                    member,
                    json!({ "position": position, "replayed": replayed }),
                ));
            }
            replayed.push(member.numbered(&frame)?);
        }
    }

    /// The `n` of a numbered frame, checking it is the next offset of this member's room.
    fn numbered(&mut self, frame: &Value) -> anyhow::Result<u64> {
        ensure!(
            frame["$room"] == self.room,
            "a frame of another room: {frame}"
        );
        let offset = frame["$offset"].as_u64().unwrap_or_default();
        ensure!(
            offset == self.offset + 1,
            "offset {offset} after {}: {frame}",
            self.offset
        );
        self.offset = offset;
        Ok(frame["data"]["n"].as_u64().unwrap_or(u64::MAX))
    }

    /// The next `count` messages' `n`s, each the next offset (no `$history` frame between).
    async fn next(&mut self, count: usize) -> anyhow::Result<Vec<u64>> {
        let mut out = Vec::new();
        while out.len() < count {
            let frame = self.client.recv_json().await?;
            ensure!(
                frame.get("$history").is_none(),
                "a position mid-stream: {frame}"
            );
            out.push(self.numbered(&frame)?);
        }
        Ok(out)
    }
}

fn history(size: u64) -> HistoryOptions {
    HistoryOptions::redis(REDIS).size(size)
}

/// Three instances; a member on the first stays, a member on the second leaves and comes
/// back on the third. Messages come from all three, interleaved.
async fn recovers_on_another_instance(kind: Kind) -> anyhow::Result<()> {
    let (a, b, c) = (
        instance(kind, history(100)).await?,
        instance(kind, history(100)).await?,
        instance(kind, history(100)).await?,
    );
    let room = unique("history");
    let (mut stays, _) = Member::join(&a, &room, None).await?;
    let (mut leaves, joined) = Member::join(&b, &room, None).await?;
    assert_eq!(
        joined["position"]["offset"], 0,
        "a new room starts at 0: {joined}"
    );
    assert!(joined["position"].get("recovered").is_none(), "{joined}");
    // Both joined before anything was sent: each instance's feed has its member.
    for (n, server) in [(1, &a), (2, &b), (3, &c)] {
        say(server, &room, n);
        // One at a time: the order of sends from different instances is the order Redis
        // gave, which is what the members must agree on.
        assert_eq!(stays.next(1).await?, [n]);
    }
    assert_eq!(leaves.next(3).await?, [1, 2, 3]);
    let (epoch, offset) = (leaves.epoch.clone(), leaves.offset);
    assert_eq!(offset, 3);
    leaves.client.close().await?;

    for n in 4..=10 {
        say([&a, &b, &c][(n % 3) as usize], &room, n);
    }
    let seen = stays.next(7).await?;
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (4..=10).collect::<Vec<_>>(),
        "every message once: {seen:?}"
    );

    let (mut back, joined) = Member::join(&c, &room, Some((&epoch, offset))).await?;
    assert_eq!(joined["position"]["recovered"], true, "{joined}");
    assert_eq!(joined["position"]["epoch"], epoch.as_str());
    assert_eq!(joined["position"]["offset"], 10);
    assert_eq!(
        joined["replayed"],
        json!(seen),
        "what it missed, in the order the others saw"
    );

    say(&a, &room, 11);
    assert_eq!(back.next(1).await?, [11], "then the live ones, once");
    assert_eq!(stays.next(1).await?, [11]);
    for s in [a, b, c] {
        s.stop().await?;
    }
    Ok(())
}

asena_tests::on_redis_and_nats!(recovers_on_another_instance => a_client_recovers_on_another_instance_over_redis, a_client_recovers_on_another_instance_over_nats);

/// An instance without a bus appends but tells no one: the instance that hears the next
/// message sees the gap and reads the missing one from Redis, in order, within the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_bus_lost_is_read_from_redis_in_order() -> anyhow::Result<()> {
    let silent = start(isolated().websocket::<Rooms>().history(history(100))).await?;
    let heard = instance(Kind::Redis, history(100)).await?;
    let room = unique("history-gap");
    let (mut member, _) = Member::join(&heard, &room, None).await?;
    let (mut beside_silent, _) = Member::join(&silent, &room, None).await?;
    say(&silent, &room, 1);
    // Appended (its member has it) and never published.
    assert_eq!(beside_silent.next(1).await?, [1]);
    say(&heard, &room, 2);
    assert_eq!(member.next(2).await?, [1, 2]);
    say(&heard, &room, 3);
    assert_eq!(member.next(1).await?, [3]);
    silent.stop().await?;
    heard.stop().await
}

#[tokio::test]
async fn a_position_too_old_or_of_another_epoch_is_told_to_resync() -> anyhow::Result<()> {
    let server = instance(Kind::Redis, history(5)).await?;
    let room = unique("history-old");
    let (mut first, _) = Member::join(&server, &room, None).await?;
    for n in 1..=12 {
        say(&server, &room, n);
    }
    assert_eq!(first.next(12).await?, (1..=12).collect::<Vec<_>>());
    let epoch = first.epoch.clone();

    // Kept: 8..=12. From 7 on is still whole; from 6 on is not.
    let (_, joined) = Member::join(&server, &room, Some((&epoch, 7))).await?;
    assert_eq!(joined["replayed"], json!([8, 9, 10, 11, 12]));
    assert_eq!(joined["position"]["recovered"], true);

    let (mut old, joined) = Member::join(&server, &room, Some((&epoch, 6))).await?;
    assert_eq!(joined["replayed"], json!([]), "nothing replayed: {joined}");
    assert_eq!(joined["position"]["recovered"], false);
    assert_eq!(
        joined["position"]["offset"], 12,
        "its new position: {joined}"
    );

    let (_, joined) = Member::join(&server, &room, Some(("ffff", 12))).await?;
    assert_eq!(
        joined["position"]["recovered"], false,
        "another epoch: {joined}"
    );

    let (_, joined) = Member::join(&server, &room, Some((&epoch, 99))).await?;
    assert_eq!(
        joined["position"]["recovered"], false,
        "a position from the future: {joined}"
    );

    // Those told to resync go on with the live messages.
    say(&server, &room, 13);
    assert_eq!(old.next(1).await?, [13]);
    server.stop().await
}

/// A socket's own messages (`ws.publish`, the sender excepted) move its position without
/// reaching it, so coming back never replays them to it.
#[tokio::test]
async fn a_sender_gets_its_position_not_its_message_and_no_replay_of_it() -> anyhow::Result<()> {
    let server = instance(Kind::Redis, history(100)).await?;
    let room = unique("history-own");
    let (mut sender, _) = Member::join(&server, &room, None).await?;
    let (mut other, _) = Member::join(&server, &room, None).await?;
    sender
        .client
        .send_json(&json!({"room": room, "n": 1}))
        .await?;
    assert_eq!(other.next(1).await?, [1]);
    let moved = sender.client.recv_json().await?;
    assert_eq!(
        moved["$history"]["offset"], 1,
        "its position, not its message: {moved}"
    );
    let epoch = sender.epoch.clone();
    sender.client.close().await?;
    let (mut back, joined) = Member::join(&server, &room, Some((&epoch, 1))).await?;
    assert_eq!(
        joined["replayed"],
        json!([]),
        "its own message is not replayed: {joined}"
    );
    assert_eq!(joined["position"]["recovered"], true);
    say(&server, &room, 2);
    assert_eq!(back.next(1).await?, [2]);
    server.stop().await
}

#[tokio::test]
async fn rooms_the_rule_leaves_out_and_binary_messages_stay_plain() -> anyhow::Result<()> {
    let server = instance(
        Kind::Redis,
        history(10).rooms(|_path, room| room.starts_with("kept-")),
    )
    .await?;
    let plain = unique("plain");
    let mut client = server.connect(&format!("/history?rooms={plain}")).await?;
    say(&server, &plain, 1);
    assert_eq!(
        client.recv_json().await?,
        json!({"n": 1}),
        "no offset, no $history"
    );
    let ulak = server.app.ulak::<Rooms>().unwrap();
    let kept = format!("kept-{}", unique("r"));
    let (mut member, _) = Member::join(&server, &kept, None).await?;
    ulak.raw()
        .to(&kept, asena_runtime::Frame::binary(b"\x01\x02"))
        .unwrap();
    let frame = member.client.recv().await?;
    assert!(frame.is_binary(), "binary goes as it is: {frame:?}");
    say(&server, &kept, 2);
    assert_eq!(member.next(1).await?, [2]);
    server.stop().await
}

#[tokio::test]
async fn without_redis_messages_still_reach_the_room_without_offsets() -> anyhow::Result<()> {
    let port = asena_tests::broker::free_port()?;
    let server = start(
        isolated()
            .websocket::<Rooms>()
            .history(HistoryOptions::redis(format!("redis://127.0.0.1:{port}"))),
    )
    .await?;
    let room = unique("history-down");
    let mut client = server.connect(&format!("/history?rooms={room}")).await?;
    say(&server, &room, 1);
    // The join could not be positioned (no `$history`), and the message is delivered plain.
    assert_eq!(client.recv_json().await?, json!({"n": 1}));
    server.stop().await
}

#[tokio::test]
async fn hostile_positions_are_ignored() -> anyhow::Result<()> {
    let server = instance(Kind::Redis, history(10)).await?;
    let room = unique("history-hostile");
    let long = "a".repeat(4000);
    for recover in [
        format!("{long}:1:{room}"),
        format!("ABC:1:{room}"),
        format!("ab:-1:{room}"),
        format!("ab:99999999999999999999999:{room}"),
        "ab:1:".to_owned(),
    ] {
        let mut client = server
            .connect(&format!("/history?rooms={room}&recover={recover}"))
            .await?;
        let frame = client.recv_json().await?;
        assert!(
            frame["$history"].get("recovered").is_none(),
            "{recover:.40}: read as no position, got {frame}"
        );
    }
    server.stop().await
}

/// The next event: a message's `n`, `resync <room>`, `disconnected` or `reconnected`.
async fn next_note(client: &mut asena_client::Client<Lines>) -> anyhow::Result<String> {
    let event = tokio::time::timeout(asena_tests::WAIT, client.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("the client's stream ended"))?;
    Ok(match event {
        asena_client::Event::Message(Said::Line { n } | Said::Typing { n }) => n.to_string(),
        asena_client::Event::Resync { room } => format!("resync {room}"),
        asena_client::Event::Disconnected { .. } => "disconnected".to_owned(),
        asena_client::Event::Reconnected => "reconnected".to_owned(),
        other => anyhow::bail!("unexpected {other:?}"),
    })
}

/// `asena-client` keeps its positions and presents them when it reconnects: what was sent
/// while it was away arrives first, in order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asena_client_recovers_by_itself_after_a_reconnect() -> anyhow::Result<()> {
    let server = start(isolated().websocket::<Lines>().history(history(100))).await?;
    let room = unique("history-client");
    let mut client = asena_client::Client::<Lines>::builder(format!("ws://{}", server.addr))
        .query("rooms", &room)
        .reconnect(asena_client::Backoff::exponential(
            std::time::Duration::from_millis(300),
            std::time::Duration::from_millis(300),
        ))
        .connect()
        .await?;
    let ulak = server.app.ulak::<Lines>().unwrap();
    // Its position first (no event), then the messages.
    joined(&ulak, &room).await?;
    for n in [1, 2] {
        ulak.to(&room, Said::Line { n }).unwrap();
    }
    assert_eq!(next_note(&mut client).await?, "1");
    assert_eq!(next_note(&mut client).await?, "2");
    for socket in ulak.sockets() {
        socket.close_with(1012, "restart");
    }
    assert_eq!(next_note(&mut client).await?, "disconnected");
    // Sent while it is away (it waits 300 ms before reconnecting).
    for n in [3, 4] {
        ulak.to(&room, Said::Line { n }).unwrap();
    }
    assert_eq!(next_note(&mut client).await?, "reconnected");
    assert_eq!(next_note(&mut client).await?, "3");
    assert_eq!(next_note(&mut client).await?, "4");
    ulak.to(&room, Said::Line { n: 5 }).unwrap();
    assert_eq!(
        next_note(&mut client).await?,
        "5",
        "then the live ones, nothing twice"
    );
    client.close().await?;
    server.stop().await
}

/// A chat's messages, each choosing how it is delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Validate)]
#[serde(tag = "type", rename_all = "snake_case")]
#[garde(allow_unvalidated)]
enum Said {
    Line { n: u64 },
    Typing { n: u64 },
}

impl asena_runtime::Delivered for Said {
    fn delivery(&self) -> asena_runtime::Delivery {
        match self {
            Said::Line { .. } => asena_runtime::Delivery::Recoverable,
            Said::Typing { .. } => asena_runtime::Delivery::AtMostOnce,
        }
    }
}

/// Joins the room `?rooms=` names; sends [`Said`]. What `asena-client` talks to.
#[websocket(path = "/history-said", receives = Said, sends = Said)]
#[derive(Debug)]
struct Lines;

impl WebSocketService for Lines {
    type Data = ();

    async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
        Ok(asena_tests::join_query_rooms(ws, "rooms")?)
    }

    async fn on_message(&self, _ws: &Socket<Self>, _msg: Said) -> Result<()> {
        Ok(())
    }
}

/// Waits until a socket is in `room`.
async fn joined(ulak: &asena_runtime::Ulak<Lines>, room: &str) -> anyhow::Result<()> {
    tokio::time::timeout(asena_tests::WAIT, async {
        while ulak.sockets_in(room).is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await?;
    Ok(())
}

/// The policy a message type declares wins over the history's rule, both ways: a line is
/// numbered in a room the rule leaves out, a typing notice is plain in a room it keeps.
#[tokio::test]
async fn a_message_type_chooses_its_delivery_over_the_rooms_rule() -> anyhow::Result<()> {
    let server = start(
        isolated()
            .websocket::<Lines>()
            .history(history(10).rooms(|_path, room| room.starts_with("kept-"))),
    )
    .await?;
    let ulak = server.app.ulak::<Lines>().unwrap();
    for room in [
        format!("kept-{}", unique("r")),
        format!("free-{}", unique("r")),
    ] {
        let mut client = server
            .connect(&format!("/history-said?rooms={room}"))
            .await?;
        joined(&ulak, &room).await?;
        ulak.to(&room, Said::Typing { n: 1 }).unwrap();
        ulak.to(&room, Said::Line { n: 2 }).unwrap();
        let (mut frames, mut epoch) = (Vec::new(), String::new());
        while frames.len() < 2 {
            let frame = client.recv_json().await?;
            match frame["$history"]["epoch"].as_str() {
                Some(e) => epoch = e.to_owned(),
                None => frames.push(frame),
            }
        }
        assert_eq!(
            frames[0],
            json!({"type": "typing", "n": 1}),
            "{room}: typing is plain"
        );
        assert_eq!(
            frames[1]["$offset"], 1,
            "{room}: a line is numbered: {}",
            frames[1]
        );
        assert_eq!(frames[1]["data"], json!({"type": "line", "n": 2}));
        // Whatever the rule says, a client that got numbered lines there recovers them.
        client.close().await?;
        ulak.to(&room, Said::Line { n: 3 }).unwrap();
        let (_, joined) =
            Member::join_at(&server, "/history-said", &room, Some((&epoch, 1))).await?;
        assert_eq!(joined["position"]["recovered"], true, "{room}: {joined}");
        assert_eq!(joined["replayed"], json!([3]), "{room}: {joined}");
    }
    server.stop().await
}
