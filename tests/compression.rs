//! The wire over real sockets, as a client that speaks permessage-deflate sees it (a small raw
//! client with flate2: tokio-tungstenite has no compression): negotiation, compressed
//! messages both ways, a room message compressed once for every compressing member, the
//! threshold, the inflated-size limit against compression bombs, compression turned off per
//! service, and text that turns invalid in the middle of a frame.
#![allow(clippy::unwrap_used)]

use anyhow::bail;
use asena_runtime::AsenaBuilder;
use asena_runtime::config::Compression;
use asena_runtime::prelude::*;
use asena_tests::{
    TestServer, echo_service, impl_message_service, isolated, masked_frame, raw_upgrade,
    read_frame, start,
};
use flate2::{Compress, Decompress, FlushCompress, FlushDecompress};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Joins `?room=`; echoes `echo:<x>` as `<x>`, sends `room:<x>` to the room (sender
/// included).
#[websocket(path = "/z")]
#[derive(Debug)]
struct Zipped;

impl_message_service!(
    Zipped,
    open = |ws| {
        let room = ws.query("room").unwrap_or("r").to_owned();
        ws.subscribe(&room)?;
        ws.send("ready")?;
        Ok(())
    },
    |ws, msg| {
        match &msg {
            Message::Text(t) if t.starts_with("room:") => {
                let room = ws.query("room").unwrap_or("r").to_owned();
                ws.namespace().to(&room, &t["room:".len()..])?;
            }
            Message::Text(t) if t.starts_with("echo:") => ws.send(&t["echo:".len()..])?,
            _ => ws.send(&msg)?,
        }
        Ok(())
    }
);

// An echo at another path, where compression is turned off.
echo_service!(Plain, "/plain");

fn app() -> AsenaBuilder {
    isolated()
        .websocket::<Zipped>()
        .websocket::<Plain>()
        .max_message_size(64 * 1024)
        .compression_for("/plain", Compression::disabled())
}

/// A frame as the server sent it.
#[derive(Debug)]
struct Received {
    rsv1: bool,
    opcode: u8,
    /// The frame's first byte (FIN, RSV1, opcode).
    first: u8,
    payload: Vec<u8>,
}

struct Raw {
    stream: TcpStream,
    response: String,
    inflate: Decompress,
}

impl Raw {
    async fn connect(s: &TestServer, path: &str, extensions: Option<&str>) -> anyhow::Result<Raw> {
        let ext = extensions
            .map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n"))
            .unwrap_or_default();
        let (stream, response) = raw_upgrade(s.addr, path, &ext, None).await?;
        Ok(Raw {
            stream,
            response,
            inflate: Decompress::new(false),
        })
    }

    fn extension(&self) -> Option<&str> {
        self.response
            .lines()
            .find_map(|l| l.strip_prefix("sec-websocket-extensions: "))
    }

    async fn send(
        &mut self,
        fin: bool,
        rsv1: bool,
        opcode: u8,
        payload: &[u8],
    ) -> anyhow::Result<()> {
        self.stream
            .write_all(&masked_frame(fin, rsv1, opcode, payload))
            .await?;
        Ok(())
    }

    async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.send(true, false, 0x1, text.as_bytes()).await
    }

    async fn send_compressed(&mut self, opcode: u8, payload: &[u8]) -> anyhow::Result<()> {
        self.send(true, true, opcode, &deflate(payload)).await
    }

    async fn recv(&mut self) -> anyhow::Result<Received> {
        let (first, payload) = read_frame(&mut self.stream).await?;
        Ok(Received {
            rsv1: first & 0x40 != 0,
            opcode: first & 0x0f,
            first,
            payload,
        })
    }

    /// The next message's text, inflating it when it is compressed.
    async fn recv_text(&mut self) -> anyhow::Result<(bool, String)> {
        let f = self.recv().await?;
        if f.opcode != 0x1 {
            bail!("expected text, got {f:?}");
        }
        let bytes = if f.rsv1 {
            inflate(&mut self.inflate, &f.payload)?
        } else {
            f.payload
        };
        Ok((f.rsv1, String::from_utf8(bytes)?))
    }

    async fn recv_close(&mut self) -> anyhow::Result<u16> {
        loop {
            let f = self.recv().await?;
            if f.opcode == 0x8 {
                return Ok(u16::from_be_bytes([f.payload[0], f.payload[1]]));
            }
        }
    }
}

/// Compresses a message as a permessage-deflate client does (sync flush, tail stripped).
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(flate2::Compression::best(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    while c.total_in() < data.len() as u64 || out.len() == out.capacity() {
        out.reserve(out.capacity().max(64));
        let done = c.total_in() as usize;
        c.compress_vec(&data[done..], &mut out, FlushCompress::Sync)
            .unwrap();
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(d: &mut Decompress, data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(data.len() * 4 + 64);
    let start = d.total_in();
    loop {
        let used = (d.total_in() - start) as usize;
        d.decompress_vec(&input[used..], &mut out, FlushDecompress::Sync)?;
        if (d.total_in() - start) as usize == input.len() && out.len() < out.capacity() {
            return Ok(out);
        }
        out.reserve(out.capacity());
    }
}

const OFFER: &str = "permessage-deflate; client_max_window_bits";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_is_negotiated_only_when_offered_and_enabled() -> anyhow::Result<()> {
    let s = start(app()).await?;
    let zipped = Raw::connect(&s, "/z", Some(OFFER)).await?;
    assert_eq!(
        zipped.extension(),
        Some("permessage-deflate; server_no_context_takeover")
    );
    let plain = Raw::connect(&s, "/z", None).await?;
    assert_eq!(plain.extension(), None);
    let off = Raw::connect(&s, "/plain", Some(OFFER)).await?;
    assert_eq!(off.extension(), None, "compression is off for /plain");
    let declined = Raw::connect(&s, "/z", Some("permessage-deflate; bogus=1")).await?;
    assert_eq!(declined.extension(), None, "an invalid offer is declined");
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_messages_both_ways() -> anyhow::Result<()> {
    let s = start(app()).await?;
    let mut c = Raw::connect(&s, "/z?room=echo", Some(OFFER)).await?;
    assert_eq!(
        c.recv_text().await?,
        (false, "ready".to_owned()),
        "short: raw"
    );

    let long = format!("echo:{}", "the quick brown fox ".repeat(40));
    c.send_compressed(0x1, long.as_bytes()).await?;
    let (compressed, text) = c.recv_text().await?;
    assert!(compressed, "long messages come back compressed");
    assert_eq!(text, long["echo:".len()..]);

    // Uncompressed messages are fine on a compressing connection; binary too.
    c.send_text("echo:short").await?;
    assert_eq!(c.recv_text().await?, (false, "short".to_owned()));
    let bin = vec![7u8; 5000];
    c.send_compressed(0x2, &bin).await?;
    let f = c.recv().await?;
    assert!(f.rsv1 && f.opcode == 0x2);
    assert_eq!(inflate(&mut c.inflate, &f.payload)?, bin);
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_message_is_compressed_once_for_every_compressing_member() -> anyhow::Result<()> {
    let s = start(app()).await?;
    let mut a = Raw::connect(&s, "/z?room=fan", Some(OFFER)).await?;
    let mut b = Raw::connect(&s, "/z?room=fan", Some(OFFER)).await?;
    let mut raw = Raw::connect(&s, "/z?room=fan", None).await?;
    for c in [&mut a, &mut b, &mut raw] {
        c.recv_text().await?;
    }
    let body = format!(
        r#"{{"type":"message","message":"{}"}}"#,
        "fan-out ".repeat(64)
    );
    a.send_text(&format!("room:{body}")).await?;

    let fa = a.recv().await?;
    let fb = b.recv().await?;
    let fr = raw.recv().await?;
    assert!(
        fa.rsv1 && fb.rsv1,
        "compressing members get the compressed frame"
    );
    assert_eq!(
        (fa.first, &fa.payload),
        (fb.first, &fb.payload),
        "byte for byte the same frame"
    );
    assert!(
        fa.payload.len() < fr.payload.len() / 4,
        "and it is much smaller"
    );
    assert!(!fr.rsv1);
    assert_eq!(String::from_utf8(fr.payload)?, body);
    assert_eq!(
        String::from_utf8(inflate(&mut b.inflate, &fb.payload)?)?,
        body
    );
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compression_bomb_closes_with_1009_and_others_are_served() -> anyhow::Result<()> {
    let s = start(app()).await?;
    let mut bomber = Raw::connect(&s, "/z", Some(OFFER)).await?;
    bomber.recv_text().await?;
    // 16 MiB of zeros in a few KiB; the limit is 64 KiB inflated.
    let bomb = deflate(&vec![0u8; 16 << 20]);
    assert!(bomb.len() < 64 * 1024);
    bomber.send(true, true, 0x2, &bomb).await?;
    assert_eq!(bomber.recv_close().await?, 1009);

    let mut other = Raw::connect(&s, "/z", Some(OFFER)).await?;
    other.recv_text().await?;
    other.send_compressed(0x1, b"echo:still here").await?;
    assert_eq!(other.recv_text().await?.1, "still here");
    assert_eq!(s.app.namespace("/z").unwrap().stats().protocol_errors(), 1);
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_that_turns_invalid_fails_before_the_frame_is_complete() -> anyhow::Result<()> {
    let s = start(app()).await?;
    let mut c = Raw::connect(&s, "/plain", None).await?;
    // A 1,000-byte text frame: valid start, then a byte no character can continue. Only the
    // first 100 bytes are sent; the server must not wait for the rest.
    let mut payload = "ok ".repeat(30).into_bytes();
    payload.push(0xff);
    payload.resize(1000, b'a');
    let frame = masked_frame(true, false, 0x1, &payload);
    c.stream.write_all(&frame[..100]).await?;
    assert_eq!(c.recv_close().await?, 1007);

    // Fragmented: the second fragment breaks it, the third never comes.
    let mut c = Raw::connect(&s, "/plain", None).await?;
    c.send(false, false, 0x1, "κόσμε".as_bytes()).await?;
    c.send(false, false, 0x0, &[0xed, 0xa0, 0x80]).await?;
    assert_eq!(c.recv_close().await?, 1007);
    s.stop().await
}
