//! A hostile client for `scripts/bench.sh adversarial`: sends one worst-case input of a
//! given kind and size to a server on 127.0.0.1 and reports how long the server took to
//! answer and what the input did to its memory.
//!
//! ```text
//! adversary KIND PORT SIZE [--pid PID] [--repeat N] [--timeout SECS]
//! ```
//!
//! | kind | server | the input (SIZE bytes on the wire, about) |
//! |---|---|---|
//! | `typed-matches` | chat `/chat` | invalid typed JSON: `message` is `5` where a string is expected, and a key of SIZE/2 bytes holds an array of SIZE/4 more `5`s (serde loses the path inside an internally tagged enum; a locator that walks them all finds every one) |
//! | `typed-deep` | chat `/chat` | invalid typed JSON: arrays 100 levels deep, over and over, each ending in a matching `5` |
//! | `typed-long-tag` | chat `/chat` | a `type` tag of SIZE bytes that names no message (the error quotes it) |
//! | `join-rooms` | realtime `/ws` | after authenticating (`alice-token`), a managed `join` of SIZE bytes of distinct room names |
//! | `deflate-bomb` | chat `/chat` | permessage-deflate: one message whose SIZE compressed bytes inflate to about 1,000 times as much |
//! | `fragments` | echo `/echo` | one text message in 1-byte fragments (7 wire bytes each) |
//! | `query` | chat `/chat` | an upgrade request whose query string is SIZE bytes |
//! | `header` | chat `/chat` | an upgrade request with one header of SIZE bytes |
//! | `headers-many` | chat `/chat` | an upgrade request with SIZE/16 small headers |
//!
//! Messages are 128 bytes under SIZE with their JSON, so a 1 MiB input fits the examples'
//! 1 MiB message limit. The time is from the first byte of the input handed to the kernel to the first byte of
//! the server's answer (the error reply, the close frame, the echo, the HTTP status, or the
//! connection closing), over fresh connections, N times (default 3); the line printed is
//! `RESULT kind=.. size=.. median_ms=.. max_ms=.. hwm_before_kb=.. hwm_after_kb=..
//! rss_before_kb=.. rss_after_kb=.. answer=".."`, memory read from `/proc/PID/status` just
//! before the first input and after the last answer.
//!
//! Bounds: the target is always 127.0.0.1; SIZE at most 16 MiB; N at most 20; every read
//! waits at most `--timeout` seconds (default 60); a run stops repeating once one answer
//! took over 5 s.

// A command-line tool: its report is its stdout.
#![allow(clippy::print_stdout)]

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const MAX_SIZE: usize = 16 << 20;
const MAX_REPEAT: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    TypedMatches,
    TypedDeep,
    TypedLongTag,
    JoinRooms,
    DeflateBomb,
    Fragments,
    Query,
    Header,
    HeadersMany,
}

impl Kind {
    fn parse(name: &str) -> anyhow::Result<Kind> {
        Ok(match name {
            "typed-matches" => Kind::TypedMatches,
            "typed-deep" => Kind::TypedDeep,
            "typed-long-tag" => Kind::TypedLongTag,
            "join-rooms" => Kind::JoinRooms,
            "deflate-bomb" => Kind::DeflateBomb,
            "fragments" => Kind::Fragments,
            "query" => Kind::Query,
            "header" => Kind::Header,
            "headers-many" => Kind::HeadersMany,
            other => bail!("unknown kind {other}"),
        })
    }
}

#[derive(Debug)]
struct Args {
    kind: Kind,
    kind_name: String,
    port: u16,
    size: usize,
    pid: Option<u32>,
    repeat: usize,
    timeout: Duration,
}

fn parse_args() -> anyhow::Result<Args> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let mut positional = Vec::new();
    let (mut pid, mut repeat, mut timeout) = (None, 3, 60);
    while let Some(arg) = p.next()? {
        match arg {
            Long("pid") => pid = Some(p.value()?.parse()?),
            Long("repeat") => repeat = p.value()?.parse()?,
            Long("timeout") => timeout = p.value()?.parse()?,
            Value(v) => positional.push(v.string()?),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let [kind, port, size] = positional.as_slice() else {
        bail!("usage: adversary KIND PORT SIZE [--pid PID] [--repeat N] [--timeout SECS]");
    };
    let size: usize = size.parse()?;
    anyhow::ensure!(
        (64..=MAX_SIZE).contains(&size),
        "SIZE must be 64..={MAX_SIZE}"
    );
    anyhow::ensure!(
        (1..=MAX_REPEAT).contains(&repeat),
        "--repeat must be 1..={MAX_REPEAT}"
    );
    Ok(Args {
        kind: Kind::parse(kind)?,
        kind_name: kind.clone(),
        port: port.parse()?,
        size,
        pid,
        repeat,
        timeout: Duration::from_secs(timeout),
    })
}

/// `VmHWM` and `VmRSS` of `pid`, in kB.
fn memory(pid: Option<u32>) -> (u64, u64) {
    let Some(pid) = pid else { return (0, 0) };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// A client frame: FIN as given, masked (with a fixed key: the server unmasks whatever it is).
fn frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    out.push(u8::from(fin) << 7 | u8::from(rsv1) << 6 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
}

fn text(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    frame(true, false, 1, payload, &mut out);
    out
}

/// The upgrade request for `target`, with `extra` header lines.
fn upgrade(target: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// An open WebSocket connection (after the 101) and what was read past the last frame.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(port: u16, target: &str, extra: &str, timeout: Duration) -> anyhow::Result<Conn> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        stream.write_all(&upgrade(target, extra))?;
        let mut buf = Vec::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                bail!("closed during the handshake");
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        anyhow::ensure!(head.starts_with("HTTP/1.1 101"), "no upgrade: {head}");
        buf.drain(..end);
        Ok(Conn { stream, buf })
    }

    /// The next whole frame: (opcode, payload). Server frames are not masked.
    fn read_frame(&mut self) -> anyhow::Result<(u8, Vec<u8>)> {
        loop {
            if let Some((header, len)) = frame_len(&self.buf)
                && self.buf.len() >= header + len
            {
                let opcode = self.buf[0] & 0x0f;
                let payload = self.buf[header..header + len].to_vec();
                self.buf.drain(..header + len);
                return Ok((opcode, payload));
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                bail!("connection closed");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads frames until a text frame containing `needle`.
    fn until_text(&mut self, needle: &str) -> anyhow::Result<()> {
        loop {
            let (opcode, payload) = self.read_frame()?;
            if opcode == 8 {
                bail!(
                    "closed while waiting for {needle}: {}",
                    describe_close(&payload)
                );
            }
            if opcode == 1 && String::from_utf8_lossy(&payload).contains(needle) {
                return Ok(());
            }
        }
    }
}

/// The header length and payload length of the frame at the start of `buf`, if known.
fn frame_len(buf: &[u8]) -> Option<(usize, usize)> {
    let b1 = *buf.get(1)?;
    match b1 & 0x7f {
        126 => Some((4, u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize)),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            Some((10, u64::from_be_bytes(bytes) as usize))
        }
        n => Some((2, n as usize)),
    }
}

fn describe_close(payload: &[u8]) -> String {
    match payload {
        [a, b, reason @ ..] => format!(
            "close {} {}",
            u16::from_be_bytes([*a, *b]),
            String::from_utf8_lossy(reason)
        ),
        _ => "close".to_owned(),
    }
}

/// What came back first, in a few words.
fn describe_answer(first: &[u8], conn: Option<&mut Conn>) -> String {
    if first.is_empty() {
        return "connection closed".to_owned();
    }
    if first.starts_with(b"HTTP/") {
        let line = first.split(|&b| b == b'\r').next().unwrap_or_default();
        return String::from_utf8_lossy(line).into_owned();
    }
    let Some(conn) = conn else {
        return format!("{} bytes", first.len());
    };
    conn.buf.splice(0..0, first.iter().copied());
    match conn.read_frame() {
        Ok((8, payload)) => describe_close(&payload),
        Ok((opcode, payload)) => {
            let shown: String = String::from_utf8_lossy(&payload).chars().take(60).collect();
            format!(
                "opcode {opcode}, {} bytes: {}",
                payload.len(),
                shown.replace('"', "'")
            )
        }
        Err(e) => format!("unreadable answer: {e}"),
    }
}

/// The hostile bytes for one try, and the connection they go on (none: a raw HTTP request).
fn prepare(args: &Args) -> anyhow::Result<(Option<Conn>, TcpStream, Vec<u8>)> {
    let size = args.size;
    // A message's JSON is a little under SIZE, so a 1 MiB input fits a 1 MiB message limit.
    let body = size - 128;
    let chat = "/chat?username=adversary&room=adversary";
    match args.kind {
        Kind::TypedMatches | Kind::TypedDeep | Kind::TypedLongTag => {
            let mut conn = Conn::open(args.port, chat, "", args.timeout)?;
            conn.stream.write_all(&text(br#"{"type":"ping"}"#))?;
            conn.until_text("pong")?;
            let json = match args.kind {
                Kind::TypedMatches => {
                    let key = "k".repeat(body / 2);
                    let fives = vec!["5"; body / 4].join(",");
                    format!(r#"{{"type":"message","message":5,"{key}":[{fives}]}}"#)
                }
                Kind::TypedDeep => {
                    let one = format!("{}5{}", "[".repeat(100), "]".repeat(100));
                    let many = vec![one.as_str(); body / 202].join(",");
                    format!(r#"{{"type":"message","message":5,"d":[{many}]}}"#)
                }
                _ => format!(r#"{{"type":"{}"}}"#, "t".repeat(body)),
            };
            let stream = conn.stream.try_clone()?;
            Ok((Some(conn), stream, text(json.as_bytes())))
        }
        Kind::JoinRooms => {
            let mut conn = Conn::open(args.port, "/ws", "", args.timeout)?;
            conn.stream.write_all(&text(
                br#"{"event":"authenticate","data":{"token":"alice-token"}}"#,
            ))?;
            conn.until_text("\"connected\"")?;
            let mut rooms = String::with_capacity(size + 16);
            let mut i = 0;
            while rooms.len() < body {
                if i > 0 {
                    rooms.push(',');
                }
                rooms.push_str(&format!("\"room-{i}\""));
                i += 1;
            }
            let json = format!(r#"{{"event":"join","data":{{"rooms":[{rooms}]}}}}"#);
            let stream = conn.stream.try_clone()?;
            Ok((Some(conn), stream, text(json.as_bytes())))
        }
        Kind::DeflateBomb => {
            let mut conn = Conn::open(
                args.port,
                chat,
                "Sec-WebSocket-Extensions: permessage-deflate\r\n",
                args.timeout,
            )?;
            conn.stream.write_all(&text(br#"{"type":"ping"}"#))?;
            conn.until_text("pong")?;
            let compressed = bomb(size)?;
            let mut out = Vec::with_capacity(compressed.len() + 14);
            frame(true, true, 1, &compressed, &mut out);
            let stream = conn.stream.try_clone()?;
            Ok((Some(conn), stream, out))
        }
        Kind::Fragments => {
            let conn = Conn::open(args.port, "/echo", "", args.timeout)?;
            let n = size / 7;
            let mut out = Vec::with_capacity(size + 8);
            for i in 0..n {
                let opcode = if i == 0 { 1 } else { 0 };
                frame(i + 1 == n, false, opcode, b"f", &mut out);
            }
            let stream = conn.stream.try_clone()?;
            Ok((Some(conn), stream, out))
        }
        Kind::Query | Kind::Header | Kind::HeadersMany => {
            let stream = TcpStream::connect(("127.0.0.1", args.port))?;
            stream.set_read_timeout(Some(args.timeout))?;
            let request = match args.kind {
                Kind::Query => upgrade(&format!("{chat}&pad={}", "q".repeat(size)), ""),
                Kind::Header => upgrade(chat, &format!("X-Pad: {}\r\n", "h".repeat(size))),
                _ => {
                    let many: String = (0..size / 16)
                        .map(|i| format!("X-P{i:07}: v\r\n"))
                        .collect();
                    upgrade(chat, &many)
                }
            };
            Ok((None, stream, request))
        }
    }
}

/// Raw deflate (RFC 7692: the trailing empty block's 4 bytes left off) of text that
/// compresses about 1,000 to 1, at least `size` compressed bytes: one compressed, sync-flushed
/// megabyte of `a`, repeated (each copy ends on a byte boundary, and what it refers back to
/// is `a`s in every copy).
fn bomb(size: usize) -> anyhow::Result<Vec<u8>> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut deflate = Compress::new(Compression::best(), false);
    let mut block = Vec::with_capacity(8192);
    deflate.compress_vec(&vec![b'a'; 1 << 20], &mut block, FlushCompress::Sync)?;
    anyhow::ensure!(block.ends_with(&[0, 0, 0xff, 0xff]), "not sync-flushed");
    let mut out = Vec::with_capacity(size + block.len());
    while out.len() < size {
        out.extend_from_slice(&block);
    }
    out.truncate(out.len() - 4);
    Ok(out)
}

/// One try: the time to the first byte of the answer, and the answer.
fn one(args: &Args) -> anyhow::Result<(Duration, String)> {
    let (mut conn, mut stream, input) = prepare(args)?;
    let writer = {
        let mut w = stream.try_clone()?;
        // A server that answers early (a bomb stopped at the limit) may close before the
        // whole input is written: the write's error is not the answer.
        std::thread::spawn(move || w.write_all(&input))
    };
    let start = Instant::now();
    let mut first = [0u8; 65536];
    let read = stream.read(&mut first);
    let elapsed = start.elapsed();
    let _ = writer.join();
    let mut answer = match read {
        Ok(n) => describe_answer(&first[..n], conn.as_mut()),
        // (a timeout is a failed run: its time says nothing)
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            return Err(e).context("waiting for the server's answer");
        }
        Err(e) => format!("read failed: {e}"),
    };
    if let Some(pid) = args.pid
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
    {
        answer.push_str(" (server died)");
    }
    Ok((elapsed, answer))
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let before = memory(args.pid);
    let mut times = Vec::new();
    let mut answer = String::new();
    for _ in 0..args.repeat {
        let (t, a) = one(&args)?;
        times.push(t);
        answer = a;
        if t > Duration::from_secs(5) || answer.ends_with("(server died)") {
            break;
        }
    }
    let after = memory(args.pid);
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "RESULT kind={} size={} median_ms={:.3} max_ms={:.3} hwm_before_kb={} hwm_after_kb={} \
         rss_before_kb={} rss_after_kb={} answer=\"{}\"",
        args.kind_name,
        args.size,
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
        before.0,
        after.0,
        before.1,
        after.1,
        answer
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_masked_and_sized() {
        let mut out = Vec::new();
        frame(true, false, 1, &[0; 200], &mut out);
        assert_eq!(out[0], 0x81);
        assert_eq!(out[1], 0x80 | 126);
        assert_eq!(frame_len(&[0x81, 126, 0, 200]), Some((4, 200)));
        assert_eq!(out.len(), 4 + 4 + 200);
    }

    #[test]
    fn a_bomb_is_small_and_inflates_large() -> anyhow::Result<()> {
        let compressed = bomb(4096)?;
        assert!(compressed.len() >= 4096);
        let mut inflated = Vec::new();
        let mut d = flate2::read::DeflateDecoder::new(&compressed[..]);
        let _ = d.read_to_end(&mut inflated);
        assert!(
            inflated.len() > 500 * compressed.len(),
            "{}",
            inflated.len()
        );
        Ok(())
    }
}
