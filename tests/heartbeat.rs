//! Keeping connections honest, over real sockets: server pings keep a quiet but live client
//! connected past the idle timeout, the namespace's one liveness timer runs only while it has
//! sockets, a peer that stops answering is closed, a peer that pings
//! without reading cannot grow its queue, nothing buffered is dispatched once a close is
//! under way, and close codes that may not go on the wire never do.
#![allow(clippy::unwrap_used)]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use asena_runtime::AsenaBuilder;
use asena_runtime::prelude::*;
use asena_tests::{
    TestServer, WAIT, eventually, isolated, masked, raw_upgrade, read_frame, start, tungstenite,
};
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;

/// Records what it handles; `close:<code>` closes with that code, `echo:x` answers `x`.
#[websocket(path = "/hb")]
#[derive(Debug, Default)]
struct Beat {
    seen: Mutex<Vec<String>>,
    closed: Mutex<Vec<(u16, String)>>,
}

impl WebSocketService for Beat {
    type Data = ();
    async fn on_message(&self, ws: &Socket<Self>, msg: Message) -> Result<()> {
        let text = msg.as_text().unwrap_or_default().to_owned();
        self.seen.lock().unwrap().push(text.clone());
        if let Some(code) = text.strip_prefix("close:") {
            ws.close_with(code.parse()?, "asked to");
        } else if let Some(x) = text.strip_prefix("echo:") {
            ws.send(x)?;
        } else if text == "fail" {
            return Err("failing on purpose".into());
        }
        Ok(())
    }
    async fn on_close(&self, _ws: &Socket<Self>, code: u16, reason: &str) {
        self.closed.lock().unwrap().push((code, reason.to_owned()));
    }
}

fn app() -> AsenaBuilder {
    isolated().websocket::<Beat>()
}

fn beat(s: &TestServer) -> std::sync::Arc<Beat> {
    s.app.get::<Beat>().unwrap()
}

async fn raw(s: &TestServer) -> anyhow::Result<tokio::net::TcpStream> {
    Ok(raw_upgrade(s.addr, "/hb", "", None).await?.0)
}

/// The next frame from the server: (opcode, payload).
async fn frame(stream: &mut tokio::net::TcpStream) -> anyhow::Result<(u8, Vec<u8>)> {
    let (first, payload) = read_frame(stream).await?;
    Ok((first & 0x0f, payload))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_keep_a_quiet_live_client_past_the_idle_timeout() -> anyhow::Result<()> {
    let idle = Duration::from_millis(400);
    let s = start(
        app()
            .idle_timeout(Some(idle))
            .ping(Some(Duration::from_millis(100)), Duration::from_millis(300)),
    )
    .await?;
    let (mut ws, _) =
        tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(s.ws_url("/hb"))).await??;
    // The client only reads (tungstenite answers each ping by itself) until pings have kept
    // it open for longer than the idle timeout.
    let opened = Instant::now();
    let mut pings = 0;
    while opened.elapsed() < idle * 2 {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await?
            .expect("open")?;
        assert!(msg.is_ping(), "only pings while quiet: {msg:?}");
        pings += 1;
    }
    assert!(pings >= 4, "pinged every 100 ms: {pings}");
    ws.send(tungstenite::Message::text("echo:still open"))
        .await?;
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await?
            .expect("open")?;
        if msg.is_text() {
            assert_eq!(msg.into_text()?.as_str(), "still open");
            break;
        }
    }
    assert!(beat(&s).closed.lock().unwrap().is_empty());
    s.stop().await
}

/// One timer per namespace pings and closes quiet sockets: it stops once the namespace has no
/// sockets, and the next socket starts it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_liveness_sweep_stops_when_the_last_socket_leaves_and_starts_with_the_next()
-> anyhow::Result<()> {
    let s = start(
        app()
            .idle_timeout(None)
            .ping(Some(Duration::from_millis(100)), Duration::from_secs(5)),
    )
    .await?;
    let ns = s.app.namespace("/hb").unwrap();
    assert!(!ns.__liveness_sweep_running(), "no sockets, no timer");
    for round in 0..2 {
        let mut stream = raw(&s).await?;
        let (opcode, _) = frame(&mut stream).await?;
        assert!(ns.__liveness_sweep_running(), "round {round}: started");
        assert_eq!(opcode, 0x9, "round {round}: the quiet socket is pinged");
        drop(stream);
        eventually(|| ns.socket_count() == 0).await?;
        eventually(|| !ns.__liveness_sweep_running()).await?;
    }
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_answering_is_closed_with_1001() -> anyhow::Result<()> {
    let s = start(
        app()
            .idle_timeout(None)
            .ping(Some(Duration::from_millis(100)), Duration::from_millis(200)),
    )
    .await?;
    let mut stream = raw(&s).await?;
    // A raw peer that reads but never answers.
    let (opcode, _) = frame(&mut stream).await?;
    assert_eq!(opcode, 0x9, "a ping");
    let (opcode, payload) = frame(&mut stream).await?;
    assert_eq!(opcode, 0x8, "then the close");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1001);
    assert_eq!(&payload[2..], b"Ping timeout");
    eventually(|| !beat(&s).closed.lock().unwrap().is_empty()).await?;
    assert_eq!(
        beat(&s).closed.lock().unwrap()[0],
        (1001, "Ping timeout".to_owned())
    );
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_pings_without_reading_cannot_grow_the_queue() -> anyhow::Result<()> {
    let s = start(app().ping(None, Duration::from_secs(30))).await?;
    // A small receive buffer, so the server's writes back up.
    let (mut stream, _) = raw_upgrade(s.addr, "/hb", "", Some(4096)).await?;
    let ping = masked(0x9, &[b'p'; 125]);
    let burst: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 2000)
        .collect();
    for _ in 0..20 {
        stream.write_all(&burst).await?;
    }
    // 40,000 pings of 125 bytes (5 MB of pongs if each were queued); the server queued at
    // most one answer at a time.
    let ns = s.app.namespace("/hb").unwrap();
    let socket = ns.sockets().remove(0);
    assert!(
        socket.queued_bytes() < 1024,
        "queued: {}",
        socket.queued_bytes()
    );
    // Still served: read what is there, then an echo comes back.
    stream
        .write_all(&masked(0x1, b"echo:after the flood"))
        .await?;
    loop {
        let (opcode, payload) = frame(&mut stream).await?;
        if opcode == 0x1 {
            assert_eq!(payload, b"after the flood");
            break;
        }
        assert_eq!(opcode, 0xA, "only pongs before it");
    }
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_buffered_is_dispatched_after_a_close_or_a_failure() -> anyhow::Result<()> {
    let s = start(app()).await?;
    for (trigger, code) in [("close:4000", 4000u16), ("fail", 1011)] {
        let mut stream = raw(&s).await?;
        // Three messages in one write: the first closes or fails, the others are buffered.
        let mut bytes = masked(0x1, trigger.as_bytes());
        bytes.extend(masked(0x1, b"after-1"));
        bytes.extend(masked(0x1, b"after-2"));
        stream.write_all(&bytes).await?;
        loop {
            let (opcode, payload) = frame(&mut stream).await?;
            if opcode == 0x8 {
                assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), code);
                break;
            }
        }
        eventually(|| beat(&s).closed.lock().unwrap().len() == 1).await?;
        let seen = std::mem::take(&mut *beat(&s).seen.lock().unwrap());
        assert_eq!(seen, [trigger], "{trigger}: nothing after it was handled");
        beat(&s).closed.lock().unwrap().clear();
    }
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_codes_that_may_not_be_sent_become_1000() -> anyhow::Result<()> {
    let s = start(app()).await?;
    for reserved in [1005u16, 1006, 1015, 999, 2000] {
        let mut stream = raw(&s).await?;
        stream
            .write_all(&masked(0x1, format!("close:{reserved}").as_bytes()))
            .await?;
        let (opcode, payload) = frame(&mut stream).await?;
        assert_eq!(opcode, 0x8);
        assert_eq!(
            u16::from_be_bytes([payload[0], payload[1]]),
            1000,
            "{reserved}"
        );
    }
    let mut stream = raw(&s).await?;
    stream.write_all(&masked(0x1, b"close:4321")).await?;
    let (_, payload) = frame(&mut stream).await?;
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 4321);
    s.stop().await
}
