//! The write path under real parallelism: on a four-worker runtime, eight publishers fan out
//! to the same rooms at once while some members read at full speed, some read through a tiny
//! receive buffer (their sockets fill, so flushers hand them to their writer tasks and back),
//! some never read (closed as slow consumers in the middle of the fan-out) and some close
//! themselves half-way. Every reading member must get every message exactly once, in each
//! publisher's order.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use asena_runtime::AsenaBuilder;
use asena_runtime::config::{Limits, SlowConsumer};
use asena_runtime::prelude::*;
use asena_tests::{TestServer, WAIT, eventually, isolated, raw_upgrade, start, start_service};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PUBLISHERS: usize = 8;
const PER_PUBLISHER: usize = 1500;

/// Two services that differ only in path (and so in limits): each socket joins "room" and
/// says "joined".
macro_rules! room_service {
    ($name:ident, $path:literal) => {
        #[websocket(path = $path)]
        #[derive(Debug)]
        struct $name;

        impl WebSocketService for $name {
            type Data = ();
            async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
                ws.subscribe("room")?;
                ws.send("joined")?;
                Ok(())
            }
            async fn on_message(&self, _ws: &Socket<Self>, _msg: Message) -> Result<()> {
                Ok(())
            }
        }
    };
}

room_service!(Fast, "/fast");
room_service!(Slow, "/slow");

/// A raw client: handshake by hand, then frames straight off the socket.
async fn raw(
    s: &TestServer,
    path: &str,
    recv_buffer: Option<u32>,
) -> anyhow::Result<tokio::net::TcpStream> {
    Ok(raw_upgrade(s.addr, path, "", recv_buffer).await?.0)
}

fn app() -> AsenaBuilder {
    isolated()
        .websocket::<Fast>()
        .websocket::<Slow>()
        .ping(None, Duration::from_secs(30))
        .limits_for(
            "/slow",
            Limits {
                max_queued_bytes: 32 * 1024,
                slow_consumer: SlowConsumer::Close,
                ping_interval: None,
                ..Limits::default()
            },
        )
}

/// Reads text frames (a few bytes at a time) until `count` messages after "joined" arrived.
async fn read_all(mut stream: tokio::net::TcpStream, count: usize) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::with_capacity(count);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 37];
    let mut joined = false;
    while out.len() < count {
        // Parse whole frames from what arrived.
        while buf.len() >= 2 {
            let len = (buf[1] & 0x7f) as usize;
            anyhow::ensure!(len < 126, "short frames only");
            if buf.len() < 2 + len {
                break;
            }
            anyhow::ensure!(buf[0] == 0x81, "text frames only: {:x}", buf[0]);
            let text = String::from_utf8(buf[2..2 + len].to_vec())?;
            buf.drain(..2 + len);
            if joined {
                out.push(text);
            } else {
                anyhow::ensure!(text == "joined");
                joined = true;
            }
        }
        if out.len() >= count {
            break;
        }
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "stalled after {} messages ({} bytes buffered)",
                    out.len(),
                    buf.len()
                )
            })??;
        anyhow::ensure!(n > 0, "closed after {} messages", out.len());
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(out)
}

/// Every publisher's messages, each exactly once and in order.
fn check_order(who: &str, got: &[String]) {
    let mut next: HashMap<usize, usize> = HashMap::new();
    for m in got {
        let (p, i) = m.split_once(':').unwrap();
        let (p, i): (usize, usize) = (p.parse().unwrap(), i.parse().unwrap());
        let want = next.entry(p).or_default();
        assert_eq!(i, *want, "{who}: publisher {p} out of order or duplicated");
        *want += 1;
    }
    for p in 0..PUBLISHERS {
        assert_eq!(
            next.get(&p),
            Some(&PER_PUBLISHER),
            "{who}: publisher {p} incomplete"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_fan_out_through_full_sockets_slow_consumers_and_early_closes()
-> anyhow::Result<()> {
    let s = start(app()).await?;
    let fast = s.app.namespace("/fast").unwrap();
    let slow = s.app.namespace("/slow").unwrap();
    let total = PUBLISHERS * PER_PUBLISHER;

    // Readers: tungstenite clients at full speed, raw clients through a 4 KiB buffer.
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (mut ws, _) =
            tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(s.ws_url("/fast")))
                .await??;
        readers.push(tokio::spawn(async move {
            let mut got = Vec::with_capacity(total);
            while got.len() < total + 1 {
                let msg = tokio::time::timeout(WAIT, ws.next()).await?.unwrap()?;
                if msg.is_text() {
                    got.push(msg.into_text()?.to_string());
                }
            }
            got.remove(0);
            anyhow::Ok(got)
        }));
    }
    for _ in 0..3 {
        let stream = raw(&s, "/fast", Some(4096)).await?;
        readers.push(tokio::spawn(read_all(stream, total)));
    }
    // Members that close half-way, and members that never read.
    let mut quitters = Vec::new();
    for _ in 0..2 {
        let stream = raw(&s, "/fast", None).await?;
        quitters.push(tokio::spawn(async move {
            let mut stream = stream;
            let mut seen = 0usize;
            let mut chunk = [0u8; 4096];
            while seen < 64 * 1024 {
                let n = tokio::time::timeout(WAIT, stream.read(&mut chunk)).await??;
                anyhow::ensure!(n > 0);
                seen += n;
            }
            // A masked close frame, then gone.
            stream
                .write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8])
                .await?;
            anyhow::Ok(())
        }));
    }
    let mut sleepers = Vec::new();
    for _ in 0..4 {
        sleepers.push(raw(&s, "/slow", Some(4096)).await?);
    }
    eventually(|| fast.socket_count() == 8 && slow.socket_count() == 4).await?;

    // Eight publishers on the four workers, to both rooms at once.
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let (fast, slow) = (fast.clone(), slow.clone());
        publishers.push(tokio::spawn(async move {
            for i in 0..PER_PUBLISHER {
                let msg = format!("{p}:{i}");
                fast.to("room", msg.as_str()).unwrap();
                let _ = slow.to("room", msg.as_str());
                if i % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for p in publishers {
        p.await?;
    }

    for (i, reader) in readers.into_iter().enumerate() {
        let got = tokio::time::timeout(WAIT * 6, reader).await???;
        assert_eq!(got.len(), total);
        check_order(&format!("reader {i}"), &got);
    }
    for q in quitters {
        q.await??;
    }
    // Every non-reading member hit the slow-consumer policy in the middle of the fan-out;
    // once they hang up, they are gone.
    assert!(slow.stats().slow_consumers() >= 1, "{:?}", slow.stats());
    // A member whose kernel buffers absorbed the whole burst has not hit the policy yet;
    // more traffic must get it there (each send is bounded; the wait is too).
    let filler = "x".repeat(16 * 1024);
    let all_closed = tokio::time::timeout(WAIT, async {
        while slow.sockets().iter().any(|s| s.is_open()) {
            let _ = slow.to("room", filler.as_str());
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(all_closed.is_ok(), "{:?}", slow.stats());
    assert_eq!(slow.stats().slow_sockets(), 4, "{:?}", slow.stats());
    drop(sleepers);
    eventually(|| slow.socket_count() == 0).await?;
    // Readers and quitters are gone too; nothing is left in the room index.
    eventually(|| fast.socket_count() == 0).await?;
    assert_eq!(fast.room_count() + slow.room_count(), 0);
    assert_eq!(
        fast.stats().slow_consumers(),
        0,
        "readers never fell behind the limit"
    );
    s.stop().await
}

/// Messages `Burst` sends when asked (every other one over the outbox's inline limit, so
/// they are queued by reference).
const BURST: usize = 8000;

/// Answers any message with [`BURST`] numbered messages, then closes with 4001.
#[websocket(path = "/burst")]
#[derive(Debug)]
struct Burst;

impl WebSocketService for Burst {
    type Data = ();
    async fn on_message(&self, ws: &Socket<Self>, _msg: Message) -> Result<()> {
        for i in 0..BURST {
            let pad = if i % 2 == 0 { 90 } else { 990 };
            ws.send(format!("{i}:{}", "x".repeat(pad)))?;
        }
        ws.close_with(4001, "done");
        Ok(())
    }
}

/// A connection's writer task is spawned only when its send buffer first fills (flushers
/// write the rest). A burst far larger than the socket buffers, to a client that reads late
/// through a small receive buffer, must still arrive whole and in order, followed by the
/// close the handler asked for behind it, and the connection must end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_send_buffer_gets_a_writer_that_delivers_everything_then_the_close()
-> anyhow::Result<()> {
    let s = start_service::<Burst>().await?;
    let mut stream = raw(&s, "/burst", Some(4096)).await?;
    // "go", masked with a zero key.
    stream
        .write_all(&[0x81, 0x82, 0, 0, 0, 0, b'g', b'o'])
        .await?;
    // Let the burst fill the socket before reading any of it.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut next = 0;
    let close = loop {
        // Whole frames: text (7-bit or 16-bit length) or the close.
        if buf.len() >= 2 {
            let (len, at) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                126 => (usize::MAX, 0),
                n => (n as usize, 2),
            };
            if len != usize::MAX && buf.len() >= at + len {
                let payload = buf[at..at + len].to_vec();
                let opcode = buf[0];
                buf.drain(..at + len);
                if opcode == 0x88 {
                    break payload;
                }
                anyhow::ensure!(opcode == 0x81, "unexpected frame {opcode:x}");
                let text = String::from_utf8(payload)?;
                let (i, _) = text.split_once(':').expect("numbered");
                anyhow::ensure!(
                    i.parse::<usize>()? == next,
                    "message {i} where {next} was due"
                );
                next += 1;
                continue;
            }
        }
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .map_err(|_| anyhow::anyhow!("stalled after {next} messages"))??;
        anyhow::ensure!(n > 0, "closed after {next} messages without a close frame");
        buf.extend_from_slice(&chunk[..n]);
    };
    assert_eq!(next, BURST, "every message before the close");
    assert_eq!(&close[..2], &4001u16.to_be_bytes());
    assert_eq!(&close[2..], b"done");
    // Answer the close; the server ends the connection.
    stream
        .write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x0f, 0xa1])
        .await?;
    let n = tokio::time::timeout(WAIT, stream.read(&mut chunk)).await??;
    assert_eq!(
        n, 0,
        "the server closes the TCP connection after the handshake"
    );
    let ns = s.app.namespace("/burst").expect("namespace");
    eventually(|| ns.socket_count() == 0).await?;
    Ok(())
}
