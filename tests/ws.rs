//! WebSocket services over real sockets: lifecycle, the Socket and Namespace APIs, rooms,
//! failure handling, limits, slow consumers and graceful shutdown.
#![allow(clippy::unwrap_used)]

use std::sync::Mutex;
use std::time::Duration;

use asena_runtime::Lifecycle;
use asena_runtime::config::SlowConsumer;
use asena_runtime::prelude::*;
use asena_tests::{
    Client, TestServer, WAIT, in_order, isolated, masked, raw_upgrade, read_frame, start,
    tungstenite::Message as Ws,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

/// Records what the server saw, so tests can wait for it.
#[service]
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
    changed: Notify,
}

impl Recorder {
    fn push(&self, event: String) {
        self.events.lock().unwrap().push(event);
        self.changed.notify_waiters();
    }

    fn all(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    /// Waits (bounded) until an event satisfies `pred`.
    async fn wait_for(&self, pred: impl Fn(&str) -> bool) -> String {
        tokio::time::timeout(WAIT, async {
            loop {
                let notified = self.changed.notified();
                if let Some(e) = self.all().into_iter().find(|e| pred(e)) {
                    return e;
                }
                notified.await;
            }
        })
        .await
        .expect("event not recorded in time")
    }
}

impl Lifecycle for Recorder {
    async fn on_stop(&self) {
        self.push("stopped".into());
    }
}

#[websocket(path = "/t")]
struct TestSocket {
    #[inject]
    rec: Arc<Recorder>,
}

impl WebSocketService for TestSocket {
    type Data = ();

    async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
        if ws.query("slow_open").is_some() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.rec.push(format!("open:{}", ws.id()));
        if ws.query("fail_open").is_some() {
            return Err("open refused".into());
        }
        ws.send("opened")?;
        Ok(())
    }

    async fn on_message(&self, ws: &Socket<Self>, msg: Message) -> Result<()> {
        let Some(text) = msg.as_text() else {
            ws.send_binary(msg.as_bytes())?;
            return Ok(());
        };
        self.rec.push(format!("message:{}:{text}", ws.id()));
        let ns = ws.namespace();
        let mut parts = text.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("echo"), Some(x), rest) => {
                let x = match rest {
                    Some(r) => format!("{x}:{r}"),
                    None => x.to_owned(),
                };
                ws.send(x)?
            }
            (Some("sub"), Some(room), _) => {
                ws.subscribe(room)?;
                ws.send("ok")?
            }
            (Some("unsub"), Some(room), _) => {
                let left = ws.unsubscribe(room);
                ws.send(format!("left:{left}"))?
            }
            (Some("pub"), Some(room), Some(x)) => {
                let n = ws.publish(room, x)?;
                ws.send(format!("published:{n}"))?
            }
            (Some("to"), Some(room), Some(x)) => {
                ns.to(room, x)?;
            }
            (Some("bcast"), Some(x), _) => {
                ns.broadcast(x)?;
            }
            (Some("flood"), Some(room), Some(n)) => {
                let big = "x".repeat(64 * 1024);
                for _ in 0..n.parse::<usize>()? {
                    ns.to(room, big.as_str())?;
                }
                ws.send("flooded")?
            }
            (Some("seq"), Some(room), Some(n)) => {
                // Numbered frames, mostly small (copied into the queue), every 97th large
                // (queued by reference), so a partial write can stop in either kind.
                for i in 0..n.parse::<usize>()? {
                    let pad = if i % 97 == 0 { 2000 } else { 100 };
                    ns.to(room, format!("{i:07}:{}", "s".repeat(pad)))?;
                }
                ws.send("sequenced")?
            }
            (Some("fillme"), Some(n), _) => {
                let big = "f".repeat(64 * 1024);
                for _ in 0..n.parse::<usize>()? {
                    // Full queues drop (DropMessages policy); that is the point.
                    let _ = ws.send(big.as_str());
                }
            }
            (Some("close"), Some(code), _) => ws.close_with(code.parse()?, "bye"),
            (Some("close"), None, _) => ws.close(),
            (Some("fail"), _, _) => return Err("boom".into()),
            (Some("panic"), _, _) => panic!("secret panic text"),
            (Some("info"), _, _) => ws.send_json(&json!({
                "id": ws.id(),
                "dataId": ws.data().id,
                "path": ws.path(),
                "remote": ws.remote_addr().map(|a| a.ip().to_string()),
                "q": ws.query("q"),
                "header": ws.header("x-test"),
                "rooms": ws.rooms(),
            }))?,
            (Some("ns"), _, _) => {
                let rooms: Vec<Value> = ns
                    .rooms()
                    .into_iter()
                    .map(|r| json!([r.name, r.size]))
                    .collect();
                ws.send_json(&json!({
                    "count": ns.socket_count(),
                    "rooms": rooms,
                    "inA": ns.sockets_in("a").len(),
                    "me": ns.socket(ws.id()).map(|s| s.id().to_owned()),
                }))?
            }
            _ => ws.send(format!("unknown:{text}"))?,
        }
        Ok(())
    }

    async fn on_close(&self, ws: &Socket<Self>, code: u16, reason: &str) {
        self.rec.push(format!("close:{}:{code}:{reason}", ws.id()));
    }

    async fn on_drain(&self, ws: &Socket<Self>) {
        self.rec.push(format!("drain:{}", ws.id()));
        let _ = ws.send("drained");
    }
}

#[websocket(path = "/p/{room}")]
struct ParamSocket;

impl WebSocketService for ParamSocket {
    type Data = ();
    async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
        ws.send(format!("room={}", ws.param("room").unwrap_or("?")))?;
        Ok(())
    }
    async fn on_message(&self, _ws: &Socket<Self>, _msg: Message) -> Result<()> {
        Ok(())
    }
}

fn builder() -> asena_runtime::AsenaBuilder {
    isolated()
        .service::<Recorder>()
        .websocket::<TestSocket>()
        .websocket::<ParamSocket>()
}

async fn server() -> anyhow::Result<TestServer> {
    start(builder()).await
}

async fn client(s: &TestServer) -> anyhow::Result<(Client, String)> {
    let mut c = s.connect("/t").await?;
    assert_eq!(c.recv_text().await?, "opened");
    c.send_text("info").await?;
    let id = c.recv_json().await?["id"].as_str().unwrap().to_owned();
    Ok((c, id))
}

/// `N` [`client`]s, connected in order.
async fn clients<const N: usize>(s: &TestServer) -> anyhow::Result<[(Client, String); N]> {
    in_order([(); N], async |()| client(s).await).await
}

/// Has `c`'s socket join `room` (`sub:<room>`) and waits for its `ok`.
async fn join(c: &mut Client, room: &str) -> anyhow::Result<()> {
    c.send_text(&format!("sub:{room}")).await?;
    assert_eq!(c.recv_text().await?, "ok", "joining {room}");
    Ok(())
}

fn rec(s: &TestServer) -> Arc<Recorder> {
    s.app.get::<Recorder>().unwrap()
}

asena_tests::echo_service!(Short, "/short");

#[tokio::test]
async fn a_path_alone_declares_the_service() -> anyhow::Result<()> {
    // `#[websocket("/short")]`, as Asena's `@WebSocket('/short')`: served there, named after
    // the type.
    let s = asena_tests::start(asena_tests::isolated().websocket::<Short>()).await?;
    let mut c = s.connect("/short").await?;
    c.send_text("hi").await?;
    assert_eq!(c.recv_text().await?, "hi");
    assert_eq!(<Short as asena_runtime::Channel>::NAME, "Short");
    assert_eq!(<Short as asena_runtime::Channel>::PATH, "/short");
    s.stop().await
}

#[tokio::test]
async fn on_open_completes_before_first_message_and_order_is_kept() -> anyhow::Result<()> {
    let s = server().await?;
    let mut c = s.connect("/t?slow_open=1").await?;
    // Sent while on_open is still sleeping.
    for i in 0..50 {
        c.send_text(&format!("echo:{i}")).await?;
    }
    assert_eq!(c.recv_text().await?, "opened");
    for i in 0..50 {
        assert_eq!(c.recv_text().await?, i.to_string());
    }
    let events = rec(&s).all();
    let open = events.iter().position(|e| e.starts_with("open:")).unwrap();
    let first_msg = events
        .iter()
        .position(|e| e.starts_with("message:"))
        .unwrap();
    assert!(open < first_msg, "{events:?}");
    s.stop().await
}

#[tokio::test]
async fn socket_api_exposes_id_data_request_and_rooms() -> anyhow::Result<()> {
    let s = server().await?;
    let mut c =
        Client::connect_with_headers(&s.ws_url("/t?q=hello%20world"), &[("x-test", "yes")]).await?;
    assert_eq!(c.recv_text().await?, "opened");
    join(&mut c, "lobby").await?;
    c.send_text("info").await?;
    let info = c.recv_json().await?;
    let id = info["id"].as_str().unwrap();
    let uuid = uuid_version(id);
    assert_eq!(uuid, Some(7), "socket ids are UUID v7: {id}");
    assert_eq!(info["dataId"], info["id"]);
    assert_eq!(info["path"], "/t");
    assert_eq!(info["remote"], "127.0.0.1");
    assert_eq!(info["q"], "hello world");
    assert_eq!(info["header"], "yes");
    assert_eq!(info["rooms"], json!([id, "lobby"]));

    // Strings go out exactly as given, binary as binary.
    c.send_text("echo:\"quoted\"").await?;
    assert_eq!(c.recv_text().await?, "\"quoted\"");
    c.send_binary(vec![1, 2, 3]).await?;
    assert_eq!(c.recv().await?, Ws::binary(vec![1u8, 2, 3]));

    c.send_text("unsub:lobby").await?;
    assert_eq!(c.recv_text().await?, "left:true");
    c.send_text("unsub:lobby").await?;
    assert_eq!(c.recv_text().await?, "left:false");
    s.stop().await
}

fn uuid_version(id: &str) -> Option<u32> {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    (hex.len() == 32).then(|| hex[12..13].parse::<u32>().ok())?
}

#[tokio::test]
async fn publish_excludes_sender_while_to_and_broadcast_include_it() -> anyhow::Result<()> {
    let s = server().await?;
    let [(mut a, _), (mut b, _), (mut outsider, _)] = clients(&s).await?;
    for c in [&mut a, &mut b] {
        join(c, "room").await?;
    }

    a.send_text("pub:room:hi").await?;
    // The sender's next message is its own acknowledgement: it did not get "hi".
    assert_eq!(a.recv_text().await?, "published:1");
    assert_eq!(b.recv_text().await?, "hi");

    a.send_text("to:room:all").await?;
    assert_eq!(a.recv_text().await?, "all");
    assert_eq!(b.recv_text().await?, "all");

    a.send_text("bcast:everyone").await?;
    for c in [&mut a, &mut b, &mut outsider] {
        assert_eq!(c.recv_text().await?, "everyone");
    }
    // The outsider got nothing from the room: its next message answers its own request.
    outsider.send_text("echo:me").await?;
    assert_eq!(outsider.recv_text().await?, "me");
    s.stop().await
}

#[tokio::test]
async fn personal_room_and_namespace_queries() -> anyhow::Result<()> {
    let s = server().await?;
    let [(mut a, a_id), (mut b, b_id)] = clients(&s).await?;
    b.send_text(&format!("to:{a_id}:direct")).await?;
    assert_eq!(a.recv_text().await?, "direct");

    join(&mut a, "a").await?;
    join(&mut b, "a").await?;
    join(&mut b, "b").await?;
    b.send_text("ns").await?;
    let ns = b.recv_json().await?;
    assert_eq!(ns["count"], 2);
    assert_eq!(ns["rooms"], json!([["a", 2], ["b", 1]]));
    assert_eq!(ns["inA"], 2);
    assert_eq!(ns["me"], b_id.as_str());

    let namespace = s.app.namespace("/t").unwrap();
    assert_eq!(namespace.sockets().len(), 2);
    assert_eq!(namespace.sockets_in(&a_id).len(), 1);
    // Who is in which room (Asena's `this.rooms`).
    let members: Vec<(String, Vec<String>)> = namespace
        .room_members()
        .into_iter()
        .map(|(room, sockets)| {
            let mut ids: Vec<String> = sockets.iter().map(|s| s.id().to_owned()).collect();
            ids.sort();
            (room, ids)
        })
        .collect();
    let mut both = vec![a_id.clone(), b_id.clone()];
    both.sort();
    assert_eq!(
        members,
        [("a".to_owned(), both), ("b".to_owned(), vec![b_id.clone()])]
    );
    assert!(namespace.socket("missing").is_none());
    s.stop().await
}

#[tokio::test]
async fn close_cleans_up_rooms_and_runs_on_close() -> anyhow::Result<()> {
    let s = server().await?;
    let (mut a, a_id) = client(&s).await?;
    join(&mut a, "x").await?;
    let ns = s.app.namespace("/t").unwrap();
    assert_eq!(ns.room_count(), 1);
    a.close().await?;
    rec(&s)
        .wait_for(|e| e == format!("close:{a_id}:1005:"))
        .await;
    assert_eq!(ns.socket_count(), 0);
    assert_eq!(ns.room_count(), 0);

    // A peer that vanishes without a close frame gets the same cleanup, with 1006.
    let (b, b_id) = client(&s).await?;
    drop(b);
    rec(&s)
        .wait_for(|e| e == format!("close:{b_id}:1006:"))
        .await;
    // A socket leaves its namespace before its on_close runs.
    assert_eq!(ns.socket_count(), 0);
    s.stop().await
}

#[tokio::test]
async fn server_close_code_reaches_client_and_on_close() -> anyhow::Result<()> {
    let s = server().await?;
    let (mut a, a_id) = client(&s).await?;
    a.send_text("close:4000").await?;
    assert_eq!(a.recv_close().await?, (4000, "bye".to_owned()));
    rec(&s)
        .wait_for(|e| e == format!("close:{a_id}:4000:bye"))
        .await;
    // `close()` without arguments, as Asena's `ws.close()`: a normal closure.
    let (mut b, b_id) = client(&s).await?;
    b.send_text("close").await?;
    assert_eq!(b.recv_close().await?, (1000, String::new()));
    rec(&s)
        .wait_for(|e| e == format!("close:{b_id}:1000:"))
        .await;
    s.stop().await
}

#[tokio::test]
async fn no_leaks_after_10000_connect_disconnect_cycles() -> anyhow::Result<()> {
    let s = server().await?;
    let ns = s.app.namespace("/t").unwrap();
    let url = s.ws_url("/t");
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..50 {
        let url = url.clone();
        tasks.spawn(async move {
            for i in 0..200 {
                let mut c = Client::connect(&url).await?;
                assert_eq!(c.recv_text().await?, "opened");
                c.send_text(&format!("sub:room{}", (worker + i) % 7))
                    .await?;
                assert_eq!(c.recv_text().await?, "ok");
                c.close().await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    // Every on_close ran (each after its socket left the namespace and its rooms).
    let recorder = rec(&s);
    tokio::time::timeout(WAIT, async {
        loop {
            let changed = recorder.changed.notified();
            let closes = recorder
                .all()
                .iter()
                .filter(|e| e.starts_with("close:"))
                .count();
            if closes >= 10_000 {
                return;
            }
            changed.await;
        }
    })
    .await?;
    assert_eq!(ns.socket_count(), 0);
    assert_eq!(ns.room_count(), 0);
    let closes = recorder
        .all()
        .iter()
        .filter(|e| e.starts_with("close:"))
        .count();
    assert_eq!(closes, 10_000);
    s.stop().await
}

#[tokio::test]
async fn failing_or_panicking_handler_closes_only_that_socket() -> anyhow::Result<()> {
    let s = server().await?;
    let (mut healthy, _) = client(&s).await?;
    for cmd in ["fail", "panic"] {
        let (mut bad, bad_id) = client(&s).await?;
        bad.send_text(cmd).await?;
        let err = bad.recv_json().await?;
        assert_eq!(
            err,
            json!({"type": "error", "message": "Server error occurred"})
        );
        let (code, _) = bad.recv_close().await?;
        assert_eq!(code, 1011);
        rec(&s)
            .wait_for(|e| e.starts_with(&format!("close:{bad_id}:1011")))
            .await;
        healthy.send_text("echo:still here").await?;
        assert_eq!(healthy.recv_text().await?, "still here");
    }
    assert_eq!(s.app.namespace("/t").unwrap().stats().handler_errors(), 2);

    let mut c = s.connect("/t?fail_open=1").await?;
    assert_eq!(
        c.recv_json().await?,
        json!({"type": "error", "message": "Server error occurred"})
    );
    assert_eq!(c.recv_close().await?.0, 1011);
    s.stop().await
}

#[tokio::test]
async fn oversize_message_closes_with_1009() -> anyhow::Result<()> {
    let s = start(builder().max_message_size(1024)).await?;
    let (mut a, _) = client(&s).await?;
    a.send_text(&format!("echo:{}", "y".repeat(1000))).await?;
    assert_eq!(a.recv_text().await?.len(), 1000);
    a.send_text(&"z".repeat(2000)).await?;
    assert_eq!(a.recv_close().await?.0, 1009);
    let (mut b, _) = client(&s).await?;
    b.send_text("echo:ok").await?;
    assert_eq!(b.recv_text().await?, "ok");
    s.stop().await
}

/// Opens a raw connection (handshake by hand) to send frames a proper client would not.
async fn raw_socket(s: &TestServer) -> anyhow::Result<tokio::net::TcpStream> {
    Ok(raw_upgrade(s.addr, "/t", "", None).await?.0)
}

/// Reads server frames until a close frame; returns its code.
async fn raw_close_code(stream: &mut tokio::net::TcpStream) -> anyhow::Result<u16> {
    loop {
        let (first, payload) = read_frame(stream).await?;
        if first & 0x0f == 0x8 {
            return Ok(u16::from_be_bytes([payload[0], payload[1]]));
        }
    }
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007_and_protocol_errors_with_1002() -> anyhow::Result<()> {
    let s = server().await?;
    let mut raw = raw_socket(&s).await?;
    raw.write_all(&masked(0x1, &[0xff, 0xfe, 0xfd])).await?;
    assert_eq!(raw_close_code(&mut raw).await?, 1007);

    let mut raw = raw_socket(&s).await?;
    // An unmasked client frame breaks the protocol.
    raw.write_all(&[0x81, 0x02, b'h', b'i']).await?;
    assert_eq!(raw_close_code(&mut raw).await?, 1002);
    assert_eq!(s.app.namespace("/t").unwrap().stats().protocol_errors(), 2);
    s.stop().await
}

#[tokio::test]
async fn slow_consumer_is_closed_without_stalling_others() -> anyhow::Result<()> {
    let s = start(builder().max_queued_bytes(256 * 1024)).await?;
    let [(mut slow, slow_id), (mut fast, _)] = clients(&s).await?;
    join(&mut slow, "slow").await?;
    // `slow` stops reading. 400 x 64 KiB is far beyond its queue and socket buffers.
    fast.send_text("flood:slow:400").await?;
    assert_eq!(fast.recv_text().await?, "flooded");
    fast.send_text("echo:responsive").await?;
    assert_eq!(fast.recv_text().await?, "responsive");
    let ns = s.app.namespace("/t").unwrap();
    assert!(ns.stats().slow_consumers() >= 1);
    // Once it reads again it finds the policy close after what was queued.
    assert_eq!(slow.recv_close().await?.0, 1008);
    rec(&s)
        .wait_for(|e| e.starts_with(&format!("close:{slow_id}:1008:Slow consumer")))
        .await;
    s.stop().await
}

#[tokio::test]
async fn fan_out_keeps_frame_order_through_a_full_socket_buffer() -> anyhow::Result<()> {
    let s = start(builder().max_queued_bytes(64 << 20)).await?;
    let [(mut reader, _), (mut sender, _)] = clients(&s).await?;
    join(&mut reader, "seq").await?;
    // About 9 MB while `reader` is not reading: far beyond the socket buffers, so the
    // write stops part-way and the rest follows once the client reads again.
    const N: usize = 80_000;
    sender.send_text(&format!("seq:seq:{N}")).await?;
    assert_eq!(sender.recv_text().await?, "sequenced");
    for i in 0..N {
        let t = reader.recv_text().await?;
        let pad = if i % 97 == 0 { 2000 } else { 100 };
        assert_eq!(t.len(), 8 + pad, "frame {i} is whole");
        assert_eq!(&t[..8], format!("{i:07}:"), "frame {i} arrives in order");
    }
    reader.send_text("echo:done").await?;
    assert_eq!(reader.recv_text().await?, "done");
    assert_eq!(s.app.namespace("/t").unwrap().stats().slow_consumers(), 0);
    s.stop().await
}

#[test]
fn an_app_built_on_another_runtime_still_delivers() -> anyhow::Result<()> {
    // Building on a short-lived runtime and serving on another must not leave fan-out
    // writes scheduled on the first one.
    let build = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let app = build.block_on(builder().build())?;
    drop(build);
    let serve = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    serve.block_on(async {
        let s = asena_tests::serve(app).await?;
        let [(mut a, _), (mut b, _)] = clients(&s).await?;
        join(&mut a, "r").await?;
        b.send_text("to:r:hello").await?;
        assert_eq!(a.recv_text().await?, "hello");
        s.stop().await
    })
}

#[tokio::test]
async fn drop_policy_keeps_slow_consumer_open() -> anyhow::Result<()> {
    let s = start(
        builder()
            .max_queued_bytes(256 * 1024)
            .slow_consumer(SlowConsumer::DropMessages),
    )
    .await?;
    let [(mut slow, _), (mut fast, _)] = clients(&s).await?;
    join(&mut slow, "slow").await?;
    fast.send_text("flood:slow:400").await?;
    assert_eq!(fast.recv_text().await?, "flooded");
    assert!(s.app.namespace("/t").unwrap().stats().slow_consumers() >= 1);
    // Drain what was kept, then the socket still answers.
    slow.send_text("echo:alive").await?;
    loop {
        let t = slow.recv_text().await?;
        if t == "alive" {
            break;
        }
        assert!(t == "drained" || t.len() == 64 * 1024);
    }
    s.stop().await
}

#[tokio::test]
async fn connection_limit_closes_with_1008() -> anyhow::Result<()> {
    let s = start(builder().max_connections(1)).await?;
    let (_a, _) = client(&s).await?;
    let mut b = s.connect("/t").await?;
    assert_eq!(
        b.recv_close().await?,
        (1008, "Connection limit reached".to_owned())
    );
    assert_eq!(s.app.namespace("/t").unwrap().socket_count(), 1);
    s.stop().await
}

#[tokio::test]
async fn idle_sockets_are_closed() -> anyhow::Result<()> {
    let s = start(builder().idle_timeout(Some(Duration::from_millis(300)))).await?;
    let (mut a, _) = client(&s).await?;
    assert_eq!(a.recv_close().await?, (1001, "Idle timeout".to_owned()));
    s.stop().await
}

#[tokio::test]
async fn path_parameters_reach_the_socket() -> anyhow::Result<()> {
    let s = server().await?;
    let mut c = s.connect("/p/kitchen").await?;
    assert_eq!(c.recv_text().await?, "room=kitchen");
    s.stop().await
}

#[tokio::test]
async fn plain_http_requests_are_answered_clearly() -> anyhow::Result<()> {
    let s = server().await?;
    // An upgrade to an unknown namespace says so.
    let resp = s.upgrade_answered("/nope", 404).await?;
    assert_eq!(
        asena_tests::body_of(&resp),
        r#"{"error":"No WebSocket service at /nope"}"#
    );
    // A plain GET on a socket path asks for an upgrade.
    let mut stream = tokio::net::TcpStream::connect(s.addr).await?;
    stream
        .write_all(b"GET /t HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut resp = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut resp)).await??;
    assert!(resp.starts_with("HTTP/1.1 426"), "{resp}");
    assert!(resp.contains("only accepts WebSocket connections"));
    s.stop().await
}

#[tokio::test]
async fn shutdown_closes_every_socket_with_1001_and_runs_hooks() -> anyhow::Result<()> {
    let s = server().await?;
    let [(mut a, a_id), (mut b, b_id)] = clients(&s).await?;
    let app = s.app.clone();
    let addr = s.addr;
    let recorder = rec(&s);
    let stopping = tokio::spawn(async move { s.stop().await });
    assert_eq!(a.recv_close().await?.0, 1001);
    assert_eq!(b.recv_close().await?.0, 1001);
    stopping.await??;
    let events = recorder.all();
    for id in [a_id, b_id] {
        assert!(
            events
                .iter()
                .any(|e| e.starts_with(&format!("close:{id}:1001")))
        );
    }
    assert_eq!(events.last().map(String::as_str), Some("stopped"));
    assert!(app.is_shutting_down());
    // New connections are refused.
    assert!(Client::connect(&format!("ws://{addr}/t")).await.is_err());
    Ok(())
}

#[tokio::test]
async fn on_drain_fires_when_a_pressured_queue_empties() -> anyhow::Result<()> {
    let s = start(
        builder()
            .max_queued_bytes(4 << 20)
            .slow_consumer(SlowConsumer::DropMessages),
    )
    .await?;
    let (mut a, a_id) = client(&s).await?;
    // 25 MiB for a reader that is not reading: far more than socket buffers, so the queue
    // passes half of its 4 MiB limit (the rest is dropped by the policy).
    a.send_text("fillme:400").await?;
    let mut frames = 0;
    loop {
        let t = a.recv_text().await?;
        if t == "drained" {
            break;
        }
        assert_eq!(t.len(), 64 * 1024);
        frames += 1;
    }
    assert!(frames > 0);
    rec(&s).wait_for(|e| e == format!("drain:{a_id}")).await;
    s.stop().await
}

#[tokio::test]
async fn limits_can_differ_per_service() -> anyhow::Result<()> {
    let limited = asena_runtime::config::Limits {
        max_connections: Some(1),
        ..Default::default()
    };
    let s = start(builder().limits_for("/p/{room}", limited)).await?;
    // /t keeps the app-wide limits: many sockets are fine.
    let [(_a, _), (_b, _)] = clients(&s).await?;
    let mut first = s.connect("/p/x").await?;
    assert_eq!(first.recv_text().await?, "room=x");
    let mut second = s.connect("/p/y").await?;
    assert_eq!(
        second.recv_close().await?,
        (1008, "Connection limit reached".to_owned())
    );
    s.stop().await
}

// ---------------------------------------------------------------------------------------
// Origin policy

/// The status of an upgrade request to `/t` with these `Host` and `Origin` header values
/// (raw bytes: a test can send what no browser would), and the response for messages.
async fn upgrade_with(
    s: &TestServer,
    host: Option<&[u8]>,
    origins: &[&[u8]],
) -> anyhow::Result<(u16, String)> {
    use asena_tests::tungstenite::http::HeaderValue;
    let mut req = hyper::Request::get(format!("http://{}/t", s.addr))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    if let Some(host) = host {
        req = req.header("host", HeaderValue::from_bytes(host)?);
    }
    for origin in origins {
        req = req.header("origin", HeaderValue::from_bytes(origin)?);
    }
    let resp = asena_tests::http_request(req.body(Default::default())?).await?;
    Ok((resp.status, resp.to_string()))
}

#[tokio::test]
async fn a_cross_origin_upgrade_is_refused_by_default() -> anyhow::Result<()> {
    let s = server().await?;
    let here = s.addr.to_string();
    let port = s.addr.port();
    let same = format!("http://{here}");
    let other_port = format!("http://127.0.0.1:{}", port.wrapping_add(1).max(1));
    let other_host = format!("http://localhost:{port}");
    // (Host, Origin values, expected status)
    type Case<'a> = (Option<&'a [u8]>, &'a [&'a [u8]], u16);
    let cases: &[Case<'_>] = &[
        // Non-browser clients send no Origin: allowed.
        (None, &[], 101),
        (None, &[same.as_bytes()], 101),
        // The Origin's host and port compare with the Host header's, case-insensitively,
        // default ports included.
        (Some(b"App.Example"), &[b"https://app.example"], 101),
        (Some(b"app.example:443"), &[b"https://APP.example"], 101),
        (Some(b"app.example"), &[b"http://app.example:80"], 101),
        (Some(b"[::1]:8080"), &[b"http://[::1]:8080"], 101),
        // Another host, another port, another default port: refused.
        (None, &[other_host.as_bytes()], 403),
        (None, &[other_port.as_bytes()], 403),
        (None, &[b"https://evil.example"], 403),
        (Some(b"app.example"), &[b"https://app.example:8443"], 403),
        (Some(b"app.example:80"), &[b"https://app.example"], 403),
        (
            Some(b"app.example.evil.example"),
            &[b"https://app.example"],
            403,
        ),
        // What is not an origin, or not one: refused, never treated as absent.
        (None, &[b"\xff\xfe"], 403),
        (None, &[b"http://127.0.0.1\xff"], 403),
        (None, &[b"null"], 403),
        (None, &[b""], 403),
        (None, &[b"not a url"], 403),
        (Some(b"app.example"), &[b"https://user@app.example"], 403),
        (Some(b"app.example/x"), &[b"https://app.example"], 403),
        // Two Origin headers are ambiguous.
        (None, &[same.as_bytes(), same.as_bytes()], 403),
    ];
    for (host, origins, expected) in cases {
        let (status, resp) = upgrade_with(&s, *host, origins).await?;
        let shown: Vec<String> = origins
            .iter()
            .map(|o| String::from_utf8_lossy(o).into_owned())
            .collect();
        assert_eq!(status, *expected, "Host {host:?}, Origin {shown:?}: {resp}");
        if *expected == 403 {
            assert!(resp.contains("Origin not allowed"), "{resp}");
        }
    }
    s.stop().await
}

#[tokio::test]
async fn allow_any_origin_turns_the_check_off() -> anyhow::Result<()> {
    let s = start(builder().allow_any_origin()).await?;
    for origin in [&b"https://evil.example"[..], b"null", b"\xff"] {
        let (status, resp) = upgrade_with(&s, None, &[origin]).await?;
        assert_eq!(status, 101, "{resp}");
    }
    s.stop().await
}

#[tokio::test]
async fn an_allow_list_refuses_an_origin_that_is_not_utf8() -> anyhow::Result<()> {
    let s = start(builder().allowed_origins(["https://good.example"])).await?;
    let cases: &[(&[u8], u16)] = &[
        (b"https://good.example", 101),
        (b"https://GOOD.example", 101),
        (b"https://evil.example", 403),
        (b"https://good.example\xff", 403),
        (b"\xff", 403),
    ];
    for (origin, expected) in cases {
        let (status, resp) = upgrade_with(&s, None, &[origin]).await?;
        assert_eq!(
            status,
            *expected,
            "{:?}: {resp}",
            String::from_utf8_lossy(origin)
        );
    }
    let (status, resp) = upgrade_with(&s, None, &[]).await?;
    assert_eq!(status, 101, "no Origin: {resp}");
    // Per service, the opt-out applies to that path only.
    s.stop().await?;
    let s = start(builder().allow_any_origin_for("/t")).await?;
    let (status, resp) = upgrade_with(&s, None, &[b"https://evil.example"]).await?;
    assert_eq!(status, 101, "{resp}");
    s.stop().await
}
