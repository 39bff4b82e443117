//! A WebSocket load generator for the chat-room fan-out protocol (see `scripts/bench.sh`).
//!
//! Protocol: clients connect to `ws://127.0.0.1:PORT<PATH>?name=cN`, all are in one room, and
//! every text message a client sends is delivered (unchanged or prefixed) to every client,
//! sender included. Each message carries its send time as 16 hex digits (nanoseconds since the
//! tool started) at its end (with `--json`, just before its closing `"}`), so every receiving
//! client measures the delivery latency.
//!
//! ```text
//! loadgen chat  PORT CONNS [-u PATH] [-s SENDERS] [-b BURST] [-w WINDOW] [-d SECS] [-r RATE] [-t THREADS]
//!                          [--size BYTES] [--deflate] [--json]
//!     closed loop (default): a round = each of the first S clients sends B messages; it is
//!     done when CONNS*S*B frames arrived; W rounds are in flight.
//!     open loop (-r RATE): RATE messages per second in total, round-robin over the senders.
//!     --size BYTES: each message is BYTES long (default 16: the timestamp alone), padded
//!     in front of the timestamp with compressible JSON-like chat text.
//!     --json: each message is a JSON object, `{"text":"<padding>","sent":"<timestamp>"}`
//!     (37 bytes with empty text, the default with --json; --size pads the text), for servers
//!     that decode typed messages (bench_server's `/bench-typed`).
//!     --deflate: offer permessage-deflate (RFC 7692) and fail unless the server accepts it;
//!     messages are sent uncompressed (allowed), compressed ones received (RSV1) are inflated
//!     to read their timestamp.
//!     Prints deliveries/s every second, then one `SUMMARY` line with mean deliveries/s
//!     (first second skipped), latency mean/p50/p99/max in microseconds, and at its end the
//!     message size, whether deflate was negotiated, the frame bytes received per delivery
//!     (`wire_bytes_per_msg`, headers included: the compression ratio shows here) and the
//!     compressed messages that failed to inflate.
//! loadgen acks  PORT CONNS [-u PATH] [-d SECS] [--in-flight N] [--from server|client]
//!     the acknowledgement round trip on the channel protocol at CONNS sockets, N requests
//!     in flight over all of them (default CONNS: one per socket; 1: one at a time), against
//!     bench_server's `/bench-ack` (see `acks.rs`). Prints requests/s every second, then one
//!     `SUMMARY` line with mean requests/s (first second skipped) and the round trip's
//!     mean/p50/p99/max in microseconds.
//! loadgen idle  PORT CONNS [-u PATH] [-d SECS] [--deflate]
//!     opens CONNS connections and holds them for SECS seconds (server memory per connection).
//! loadgen floor CONNS
//!     no server: opens CONNS loopback TCP connections to itself and times one 24-byte
//!     write to each (a server frame of the chat protocol), 20 rounds. The median round is
//!     the kernel's own cost of fanning one message out to CONNS sockets on this machine: no
//!     server can deliver to the last of them sooner.
//! ```
//!
//! PORT may be a comma-separated list, the ports of several instances of one fleet: client N
//! connects to the (N mod count)-th, so one room spreads over the instances
//! (`scripts/fleet-bench.sh`).
//!
//! Bounds: the target is always 127.0.0.1; at most 60,000 connections, 300 s, 10 M msgs/s;
//! the tool stops by itself (and reports `STALL` when nothing arrives for 5 s).

// A command-line tool: its report is its stdout.
#![allow(clippy::print_stdout)]

mod acks;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use flate2::{Decompress, FlushDecompress, Status};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

const MAX_CONNS: usize = 60_000;
const MAX_SECS: u64 = 300;
const MAX_RATE: f64 = 10_000_000.0;
const CONNECT_PARALLELISM: usize = 256;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
const STALL: Duration = Duration::from_secs(5);
/// Payload: 16 hex digits of the send time (the whole message by default, its end with
/// `--size`).
const PAYLOAD_LEN: usize = 16;
/// The largest `--size`: the framework's default message limit.
const MAX_SIZE: usize = 1 << 20;
/// A `--json` message: `JSON_HEAD`, the text, `JSON_MIDDLE`, the timestamp, `JSON_TAIL`.
const JSON_HEAD: &[u8] = br#"{"text":""#;
const JSON_MIDDLE: &[u8] = br#"","sent":""#;
const JSON_TAIL: &[u8] = br#""}"#;
/// The shortest `--json` message (empty text), and its default size.
const JSON_MIN_LEN: usize = JSON_HEAD.len() + JSON_MIDDLE.len() + PAYLOAD_LEN + JSON_TAIL.len();
/// The most one compressed message may inflate to (a bound, not a protocol limit).
const MAX_INFLATED: usize = 16 << 20;
/// What every compressed message ends with before the sender strips it (RFC 7692 §7.2.1).
const DEFLATE_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// What `--deflate` offers.
const DEFLATE_OFFER: &str = "permessage-deflate; client_max_window_bits";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the command line asks for.
#[derive(Debug, Clone)]
enum Command {
    Run(Opts),
    Floor { conns: usize },
    Help,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Chat,
    Idle,
    Acks,
}

#[derive(Debug, Clone)]
struct Opts {
    mode: Mode,
    /// The server's port, or several instances' ports: client `i` connects to
    /// `ports[i % ports.len()]`.
    ports: Vec<u16>,
    conns: usize,
    path: String,
    senders: usize,
    burst: usize,
    window: u64,
    secs: u64,
    rate: Option<f64>,
    threads: usize,
    /// Message size in bytes, timestamp included.
    size: usize,
    /// Offer permessage-deflate and require it.
    deflate: bool,
    /// Send JSON objects (`{"text":..,"sent":..}`) instead of bare text.
    json: bool,
    /// `acks`: requests in flight over all sockets (0 until given: CONNS).
    in_flight: usize,
    /// `acks`: who asks.
    from: acks::Asker,
}

const USAGE: &str = "usage: loadgen chat|idle PORT CONNS [-u PATH] [-s SENDERS] [-b BURST] [-w WINDOW] \
                     [-d SECS] [-r RATE] [-t THREADS] [--size BYTES] [--deflate] [--json]\n       \
                     loadgen acks PORT CONNS [-u PATH] [-d SECS] [--in-flight N] [--from server|client]\n       \
                     loadgen floor CONNS";

fn usage() -> ! {
    eprintln!("{USAGE}");
    std::process::exit(1)
}

/// Parses the command line (without the program name). Errors name the argument; the bounds
/// are checked by [`check_bounds`].
fn parse_args<I>(args: I) -> Result<Command, lexopt::Error>
where
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString>,
{
    use lexopt::prelude::*;

    /// The value of option `name` (or of the positional `name`), parsed.
    fn num<T>(name: &str, raw: std::ffi::OsString) -> Result<T, lexopt::Error>
    where
        T: std::str::FromStr,
        T::Err: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        raw.parse().map_err(|e| format!("{name}: {e}").into())
    }

    let mut p = lexopt::Parser::from_args(args);
    let mode = match p.next()? {
        Some(Value(mode)) => mode.string()?,
        Some(Short('h') | Long("help")) => return Ok(Command::Help),
        Some(other) => return Err(other.unexpected()),
        None => return Err("missing the mode: chat, idle, acks or floor".into()),
    };
    let mode = match mode.as_str() {
        "floor" => {
            let conns = match p.next()? {
                Some(Value(v)) => num("CONNS", v)?,
                Some(Short('h') | Long("help")) => return Ok(Command::Help),
                Some(other) => return Err(other.unexpected()),
                None => return Err("missing CONNS".into()),
            };
            if let Some(extra) = p.next()? {
                return Err(extra.unexpected());
            }
            return Ok(Command::Floor { conns });
        }
        "chat" => Mode::Chat,
        "idle" => Mode::Idle,
        "acks" => Mode::Acks,
        other => return Err(format!("unknown mode {other:?}: chat, idle, acks or floor").into()),
    };
    let (mut port, mut conns) = (None, None);
    let mut o = Opts {
        mode,
        ports: Vec::new(),
        conns: 0,
        path: "/".into(),
        senders: 0,
        burst: 0,
        window: 2,
        secs: 5,
        rate: None,
        threads: 1,
        // 0 until given: `check_bounds` fills in the default, which depends on --json.
        size: 0,
        deflate: false,
        json: false,
        in_flight: 0,
        from: acks::Asker::Server,
    };
    while let Some(arg) = p.next()? {
        match arg {
            Value(v) if port.is_none() => {
                let list = v.string()?;
                let ports = list
                    .split(',')
                    .map(|p| p.parse::<u16>().map_err(|e| format!("PORT {p:?}: {e}")))
                    .collect::<Result<Vec<u16>, String>>()?;
                port = Some(ports);
            }
            Value(v) if conns.is_none() => conns = Some(num("CONNS", v)?),
            Short('u') => o.path = p.value()?.string()?,
            Short('s') => o.senders = num("-s", p.value()?)?,
            Short('b') => o.burst = num("-b", p.value()?)?,
            Short('w') => o.window = num("-w", p.value()?)?,
            Short('d') => o.secs = num("-d", p.value()?)?,
            Short('r') => o.rate = Some(num("-r", p.value()?)?),
            Short('t') => o.threads = num("-t", p.value()?)?,
            Long("size") => o.size = num("--size", p.value()?)?,
            Long("deflate") => o.deflate = true,
            Long("json") => o.json = true,
            Long("in-flight") => o.in_flight = num("--in-flight", p.value()?)?,
            Long("from") => o.from = num("--from", p.value()?)?,
            Short('h') | Long("help") => return Ok(Command::Help),
            other => return Err(other.unexpected()),
        }
    }
    o.ports = port.ok_or("missing PORT")?;
    o.conns = conns.ok_or("missing CONNS")?;
    Ok(Command::Run(o))
}

/// Checks the bounds of a run and fills in the defaults that depend on CONNS (and the
/// message size, which depends on --json).
fn check_bounds(mut o: Opts) -> Result<Opts, String> {
    if o.mode == Mode::Idle && (o.size != 0 || o.json) {
        return Err("--size, --json: idle sends no messages".into());
    }
    if o.mode == Mode::Acks && (o.size != 0 || o.json || o.deflate || o.rate.is_some()) {
        return Err("--size, --json, --deflate, -r: acks sends its own small requests".into());
    }
    if o.mode != Mode::Acks && (o.in_flight != 0 || o.from != acks::Asker::Server) {
        return Err("--in-flight, --from: acks only".into());
    }
    if o.mode == Mode::Acks && o.in_flight == 0 {
        o.in_flight = o.conns;
    }
    if o.in_flight > o.conns {
        return Err(format!(
            "--in-flight {} is more than CONNS {}",
            o.in_flight, o.conns
        ));
    }
    let min_size = if o.json { JSON_MIN_LEN } else { PAYLOAD_LEN };
    if o.size == 0 {
        o.size = min_size;
    }
    if !(1..=MAX_CONNS).contains(&o.conns)
        || !(1..=MAX_SECS).contains(&o.secs)
        || o.window < 1
        || o.ports.is_empty()
        || o.ports.contains(&0)
        || !o.path.starts_with('/')
        || o.rate.is_some_and(|r| !(r > 0.0 && r <= MAX_RATE))
        || !(1..=16).contains(&o.threads)
        || !(min_size..=MAX_SIZE).contains(&o.size)
    {
        return Err(format!(
            "bounds: 1<=CONNS<={MAX_CONNS}, 1<=SECS<={MAX_SECS}, WINDOW>=1, 0<RATE<={MAX_RATE}, \
             1<=THREADS<=16, PATH starts with /, {min_size}<=SIZE<={MAX_SIZE}"
        ));
    }
    if o.senders == 0 || o.senders > o.conns {
        o.senders = o.conns;
    }
    if o.burst == 0 {
        o.burst = if o.conns >= 256 { 1 } else { 100 };
    }
    Ok(o)
}

fn main() {
    let opts = match parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Run(o)) => check_bounds(o).unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(1)
        }),
        Ok(Command::Floor { conns }) => {
            if !(1..=MAX_CONNS).contains(&conns) {
                eprintln!("bounds: 1<=CONNS<={MAX_CONNS}");
                std::process::exit(1);
            }
            std::process::exit(floor(conns));
        }
        Ok(Command::Help) => usage(),
        Err(e) => {
            eprintln!("loadgen: {e}");
            usage()
        }
    };
    let rt = if opts.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.threads)
            .enable_all()
            .build()
    };
    let rt = rt.unwrap_or_else(|e| {
        eprintln!("runtime: {e}");
        std::process::exit(3)
    });
    let code = rt.block_on(async move {
        match opts.mode {
            Mode::Chat => chat(opts).await,
            Mode::Idle => idle(opts).await,
            Mode::Acks => acks::run(opts).await,
        }
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    std::process::exit(code);
}

/// Times one small write to each of `conns` loopback TCP sockets (see the module docs).
fn floor(conns: usize) -> i32 {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    const ROUNDS: usize = 20;
    let run = || -> std::io::Result<Vec<Duration>> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let mut pairs = Vec::with_capacity(conns);
        for _ in 0..conns {
            let client = TcpStream::connect(addr)?;
            let (server, _) = listener.accept()?;
            server.set_nodelay(true)?;
            pairs.push((server, client));
        }
        // A 24-byte unmasked text frame: what a server writes per delivery in the benchmark.
        let mut frame = vec![0x81, 22];
        frame.extend_from_slice(&[b'x'; 22]);
        let mut sink = [0u8; 4096];
        let mut rounds = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let t = Instant::now();
            for (server, _) in &mut pairs {
                server.write_all(&frame)?;
            }
            rounds.push(t.elapsed());
            for (_, client) in &mut pairs {
                let mut got = 0;
                while got < frame.len() {
                    match client.read(&mut sink)? {
                        0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                        n => got += n,
                    }
                }
            }
        }
        Ok(rounds)
    };
    match run() {
        Ok(mut rounds) => {
            rounds.sort();
            let median = rounds[rounds.len() / 2];
            println!(
                "FLOOR conns={conns} rounds={ROUNDS} median_round_us={:.0} per_write_us={:.2} \
                 min_round_us={:.0} max_round_us={:.0}",
                median.as_secs_f64() * 1e6,
                median.as_secs_f64() * 1e6 / conns as f64,
                rounds[0].as_secs_f64() * 1e6,
                rounds[rounds.len() - 1].as_secs_f64() * 1e6,
            );
            0
        }
        Err(e) => {
            eprintln!("floor: {e}");
            3
        }
    }
}

/// Nanoseconds since the tool started (the clock of the timestamps in the payloads).
fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// One open WebSocket connection.
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    /// Bytes read past the handshake.
    rest: Vec<u8>,
    /// permessage-deflate as agreed: `Some(server_no_context_takeover)`, or `None`.
    deflate: Option<bool>,
}

/// Why a connection did not open.
#[derive(Debug)]
enum OpenError {
    /// `--deflate` was given and the server did not accept the extension: the run is void.
    DeflateRefused(String),
    Other(BoxError),
}

impl From<std::io::Error> for OpenError {
    fn from(e: std::io::Error) -> Self {
        OpenError::Other(e.into())
    }
}

impl From<&str> for OpenError {
    fn from(e: &str) -> Self {
        OpenError::Other(e.into())
    }
}

impl From<String> for OpenError {
    fn from(e: String) -> Self {
        OpenError::Other(e.into())
    }
}

/// The permessage-deflate extension a 101 response accepted: `Some(server_no_context_takeover)`
/// for the first `permessage-deflate` in its `Sec-WebSocket-Extensions` headers, `None` when
/// there is none. Header names are matched without regard to case.
fn accepted_deflate(head: &str) -> Option<bool> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-extensions"))
        .flat_map(|(_, value)| value.split(','))
        .find_map(|ext| {
            let mut params = ext.split(';').map(str::trim);
            params
                .next()
                .is_some_and(|name| name.eq_ignore_ascii_case("permessage-deflate"))
                .then(|| params.any(|p| p.eq_ignore_ascii_case("server_no_context_takeover")))
        })
}

/// Opens one WebSocket connection, offering permessage-deflate if `deflate`.
async fn open(port: u16, path: &str, n: usize, deflate: bool) -> Result<Conn, OpenError> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    let sep = if path.contains('?') { '&' } else { '?' };
    let ext = if deflate {
        format!("Sec-WebSocket-Extensions: {DEFLATE_OFFER}\r\n")
    } else {
        String::new()
    };
    let req = format!(
        "GET {path}{sep}name=c{n} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n{ext}\r\n"
    );
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let r = stream.read(&mut chunk).await?;
        if r == 0 {
            return Err("connection closed during the handshake".into());
        }
        buf.extend_from_slice(&chunk[..r]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 101") {
                let line = String::from_utf8_lossy(&buf[..buf.len().min(60)]).into_owned();
                return Err(format!("handshake refused: {line}").into());
            }
            let rest = buf.split_off(end + 4);
            let head = String::from_utf8_lossy(&buf);
            let agreed = if deflate {
                match accepted_deflate(&head) {
                    Some(no_context) => Some(no_context),
                    None => {
                        return Err(OpenError::DeflateRefused(format!(
                            "the server did not accept permessage-deflate (offered \
                             {DEFLATE_OFFER:?}); its response:\n{}",
                            head.trim_end()
                        )));
                    }
                }
            } else {
                None
            };
            return Ok(Conn {
                stream,
                rest,
                deflate: agreed,
            });
        }
        if buf.len() > 8192 {
            return Err("handshake response too long".into());
        }
    }
}

/// Opens `n` connections, `CONNECT_PARALLELISM` at a time; failed ones are `None`. Fails as
/// a whole when the server refuses permessage-deflate that `--deflate` requires.
async fn open_all(o: &Opts) -> Result<Vec<Option<Conn>>, String> {
    let t0 = Instant::now();
    let mut out: Vec<Option<Conn>> = (0..o.conns).map(|_| None).collect();
    let mut set = JoinSet::new();
    let mut next = 0;
    let mut failed = 0usize;
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    while next < o.conns || !set.is_empty() {
        while next < o.conns && set.len() < CONNECT_PARALLELISM {
            let port = o.ports[next % o.ports.len()];
            let (path, i, deflate) = (o.path.clone(), next, o.deflate);
            set.spawn(async move { (i, open(port, &path, i, deflate).await) });
            next += 1;
        }
        match tokio::time::timeout_at(deadline, set.join_next()).await {
            Ok(Some(Ok((i, Ok(c))))) => out[i] = Some(c),
            Ok(Some(Ok((_, Err(OpenError::DeflateRefused(e)))))) => {
                set.abort_all();
                return Err(e);
            }
            Ok(Some(Ok((_, Err(OpenError::Other(e)))))) => {
                if failed == 0 {
                    eprintln!("connect failed: {e}");
                }
                failed += 1;
            }
            Ok(Some(Err(_))) => failed += 1,
            Ok(None) => break,
            Err(_) => {
                eprintln!("connect phase timed out");
                set.abort_all();
                break;
            }
        }
    }
    let open = out.iter().filter(|c| c.is_some()).count();
    println!(
        "connected {open}/{} in {:.2} s ({failed} failed)",
        o.conns,
        t0.elapsed().as_secs_f64()
    );
    Ok(out)
}

/// Latencies in nanoseconds, from 1 ns to 60 s (longer ones count as 60 s), to two
/// significant digits (1%): about 30 KB, and every reader keeps its own.
type Hist = Histogram<u64>;

fn new_hist() -> Hist {
    Histogram::new_with_bounds(1, 60_000_000_000, 2).expect("invariant: valid histogram bounds")
}

/// `PREFIX_samples=N PREFIX_mean_us=.. PREFIX_p50_us=.. PREFIX_p99_us=.. PREFIX_max_us=..` of
/// the nanoseconds in `hist`, for a `SUMMARY` line.
fn quantiles(prefix: &str, hist: &Mutex<Hist>) -> String {
    let hist = hist.lock().unwrap_or_else(|p| p.into_inner());
    let us = |ns: f64| ns / 1000.0;
    format!(
        "{prefix}_samples={} {prefix}_mean_us={:.1} {prefix}_p50_us={:.1} {prefix}_p99_us={:.1} \
         {prefix}_max_us={:.1}",
        hist.len(),
        us(hist.mean()),
        us(hist.value_at_quantile(0.50) as f64),
        us(hist.value_at_quantile(0.99) as f64),
        us(hist.max() as f64),
    )
}

/// State shared by the coordinator and the reader of every connection.
#[derive(Debug)]
struct Shared {
    /// Data frames received by all clients.
    delivered: AtomicU64,
    /// Bytes of the whole frames received by all clients, headers included.
    wire_bytes: AtomicU64,
    /// Compressed messages that did not inflate (or arrived without the extension).
    inflate_errors: AtomicU64,
    /// Frames per closed-loop round (0 in open-loop mode).
    per_round: u64,
    round_done: Notify,
    /// Latencies are recorded only while this is set (after the warm-up second).
    measuring: AtomicBool,
    open: AtomicUsize,
    hist: Mutex<Hist>,
}

impl Shared {
    fn new(per_round: u64, open: usize) -> Shared {
        Shared {
            delivered: AtomicU64::new(0),
            wire_bytes: AtomicU64::new(0),
            inflate_errors: AtomicU64::new(0),
            per_round,
            round_done: Notify::new(),
            measuring: AtomicBool::new(false),
            open: AtomicUsize::new(open),
            hist: Mutex::new(new_hist()),
        }
    }
}

/// Parses 16 hex digits.
fn parse_hex16(b: &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for &c in b {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | u64::from(d);
    }
    Some(v)
}

/// The send time at the end of a text message (before the closing `"}` of a `--json` one),
/// if it ends in one.
fn stamp_of(payload: &[u8]) -> Option<u64> {
    // A room with history wraps the message: `{"$room":..,"$offset":..,"data":<message>}`.
    let payload = payload
        .strip_suffix(b"}")
        .filter(|inner| inner.ends_with(JSON_TAIL))
        .unwrap_or(payload);
    let payload = payload.strip_suffix(JSON_TAIL).unwrap_or(payload);
    payload
        .len()
        .checked_sub(PAYLOAD_LEN)
        .and_then(|from| parse_hex16(&payload[from..]))
}

/// permessage-deflate state of one connection: inflates each compressed message the server
/// sends. With `server_no_context_takeover` every message is a deflate stream of its own and
/// the state is reset after each; otherwise the window carries over.
struct Inflate {
    z: Decompress,
    reset_each: bool,
    /// Opcode and compressed payload so far of a message whose last frame is still to come.
    pending: Option<(u8, Vec<u8>)>,
    /// The compressed message with the tail put back.
    input: Vec<u8>,
    /// The inflated message.
    out: Vec<u8>,
}

impl std::fmt::Debug for Inflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflate")
            .field("reset_each", &self.reset_each)
            .finish_non_exhaustive()
    }
}

impl Inflate {
    fn new(server_no_context_takeover: bool) -> Inflate {
        Inflate {
            // Raw deflate (no zlib header), the widest window: inflates any server window.
            z: Decompress::new_with_window_bits(false, 15),
            reset_each: server_no_context_takeover,
            pending: None,
            input: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Inflates one whole compressed message (its frames' payloads, tail stripped): appends
    /// `00 00 ff ff` and inflates with a sync flush. `None` if it is not valid deflate data
    /// or inflates past `MAX_INFLATED`.
    fn message(&mut self, compressed: &[u8]) -> Option<&[u8]> {
        self.input.clear();
        self.input.extend_from_slice(compressed);
        self.input.extend_from_slice(&DEFLATE_TAIL);
        self.out.clear();
        let ok = self.run();
        if self.reset_each || !ok {
            self.z.reset(false);
        }
        ok.then_some(&self.out[..])
    }

    fn run(&mut self) -> bool {
        let mut input = &self.input[..];
        loop {
            if self.out.len() == self.out.capacity() {
                if self.out.len() >= MAX_INFLATED {
                    return false;
                }
                self.out.reserve(self.out.capacity().max(4096));
            }
            let (in_before, out_before) = (self.z.total_in(), self.out.len());
            let Ok(status) = self
                .z
                .decompress_vec(input, &mut self.out, FlushDecompress::Sync)
            else {
                return false;
            };
            let consumed = (self.z.total_in() - in_before) as usize;
            input = &input[consumed..];
            if status == Status::StreamEnd {
                // A final block ends the stream (what follows is the tail): start afresh.
                self.z.reset(false);
                return true;
            }
            let room_left = self.out.len() < self.out.capacity();
            if input.is_empty() && room_left {
                return true;
            }
            if consumed == 0 && self.out.len() == out_before && room_left {
                return false;
            }
        }
    }
}

/// What one pass over a connection's receive buffer found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Scan {
    /// Bytes of the whole frames at the front of the buffer (the rest waits for more).
    consumed: usize,
    /// Data messages (text or binary), counted at their first frame.
    messages: u64,
    /// Bytes of those whole frames, headers included.
    wire_bytes: u64,
    /// Compressed messages that did not inflate, or arrived without the extension.
    inflate_errors: u64,
    /// A close frame arrived.
    closed: bool,
}

/// The frame at the front of `buf` once it is whole: its first byte (FIN, RSV1, opcode), the
/// length of its header and of its payload; `None` while bytes are missing.
fn frame_at(buf: &[u8]) -> Option<(u8, usize, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let (len, mut hl): (usize, usize) = match b1 & 0x7f {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => {
            let b: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (usize::try_from(u64::from_be_bytes(b)).ok()?, 10)
        }
        n => (n as usize, 2),
    };
    if b1 & 0x80 != 0 {
        hl += 4;
    }
    (buf.len() >= hl.checked_add(len)?).then_some((b0, hl, len))
}

/// Parses the whole server frames at the front of `buf`. Compressed messages (RSV1) are
/// inflated with `inflate`; if `stamps`, `on_stamp` gets the send time at the end of every
/// text message that ends in one.
fn scan(
    buf: &[u8],
    mut inflate: Option<&mut Inflate>,
    stamps: bool,
    mut on_stamp: impl FnMut(u64),
) -> Scan {
    // Times a whole text message by the stamp at its end.
    let mut timed = |op: u8, text: &[u8]| {
        if op == 1
            && stamps
            && let Some(sent) = stamp_of(text)
        {
            on_stamp(sent);
        }
    };
    let mut s = Scan::default();
    let mut pos = 0;
    while let Some((b0, hl, len)) = frame_at(&buf[pos..]) {
        let payload = &buf[pos + hl..pos + hl + len];
        let (fin, rsv1) = (b0 & 0x80 != 0, b0 & 0x40 != 0);
        match b0 & 0x0f {
            op @ (1 | 2) => {
                s.messages += 1;
                if rsv1 {
                    match inflate.as_deref_mut() {
                        Some(inf) if fin => match inf.message(payload) {
                            Some(text) => timed(op, text),
                            None => s.inflate_errors += 1,
                        },
                        Some(inf) => inf.pending = Some((op, payload.to_vec())),
                        None => s.inflate_errors += 1,
                    }
                } else {
                    timed(op, payload);
                }
            }
            // The next frame of a fragmented compressed message (uncompressed fragments are
            // not timed, as before).
            0 => {
                if let Some(inf) = inflate.as_deref_mut()
                    && let Some((op, mut pending)) = inf.pending.take()
                {
                    pending.extend_from_slice(payload);
                    if !fin {
                        inf.pending = Some((op, pending));
                    } else {
                        match inf.message(&pending) {
                            Some(text) => timed(op, text),
                            None => s.inflate_errors += 1,
                        }
                    }
                }
            }
            8 => s.closed = true,
            _ => {}
        }
        pos += hl + len;
        s.wire_bytes += (hl + len) as u64;
    }
    s.consumed = pos;
    s
}

/// Reads server frames until the stream ends or `stop` fires; counts data frames and their
/// bytes, and records the latency of every text message that ends in a timestamp
/// (inflating compressed ones with `inflate`).
async fn reader(
    mut r: OwnedReadHalf,
    mut buf: Vec<u8>,
    mut inflate: Option<Inflate>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    record: bool,
) {
    let mut hist = record.then(new_hist);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let now = now_ns();
        let measuring = shared.measuring.load(Ordering::Relaxed) && hist.is_some();
        let s = scan(&buf, inflate.as_mut(), measuring, |sent| {
            if let Some(h) = hist.as_mut() {
                h.saturating_record(now.saturating_sub(sent));
            }
        });
        buf.drain(..s.consumed);
        let frames = s.messages;
        if s.wire_bytes > 0 {
            shared.wire_bytes.fetch_add(s.wire_bytes, Ordering::Relaxed);
        }
        if s.inflate_errors > 0 {
            shared
                .inflate_errors
                .fetch_add(s.inflate_errors, Ordering::Relaxed);
        }
        if frames > 0 && shared.per_round > 0 {
            let before = shared.delivered.fetch_add(frames, Ordering::Relaxed);
            if (before + frames) / shared.per_round != before / shared.per_round {
                shared.round_done.notify_one();
            }
        } else if frames > 0 {
            shared.delivered.fetch_add(frames, Ordering::Relaxed);
        }
        if s.closed {
            break;
        }
        tokio::select! {
            read = r.read(&mut chunk) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            },
            _ = stop.changed() => break,
        }
    }
    shared.open.fetch_sub(1, Ordering::Relaxed);
    if let Some(h) = hist {
        shared
            .hist
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(&h)
            .expect("invariant: every histogram has the same bounds");
    }
}

/// Tells every reader to stop, closes the write halves, and waits (bounded) for the readers
/// to hand in their counts.
async fn stop_readers(stop: &watch::Sender<bool>, writers: impl Sized, readers: &mut JoinSet<()>) {
    let _ = stop.send(true);
    drop(writers);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while readers.join_next().await.is_some() {}
    })
    .await;
    readers.abort_all();
}

/// `len` bytes of JSON-like chat text that go before the timestamp of a `--size` message:
/// repeated keys and a small vocabulary, compressible about as well as real chat traffic
/// (not a run of one byte). Deterministic; empty for `len` 0.
fn padding(len: usize) -> Vec<u8> {
    const WORDS: [&str; 32] = [
        "hello", "world", "room", "message", "the", "a", "is", "on", "at", "ok", "ready", "deploy",
        "build", "test", "passed", "failed", "retry", "later", "today", "meeting", "lunch",
        "coffee", "review", "merge", "branch", "server", "client", "latency", "fast", "slow",
        "thanks", "see",
    ];
    let mut out = String::with_capacity(len + 128);
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut id = 0u32;
    while out.len() < len {
        out.push_str(&format!(
            r#"{{"type":"message","id":{id},"user":"user{}","text":""#,
            (seed >> 40) % 97
        ));
        for w in 0..6 + (seed >> 20) % 6 {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            if w > 0 {
                out.push(' ');
            }
            out.push_str(WORDS[(seed >> 59) as usize]);
        }
        out.push_str("\"},");
        id += 1;
    }
    out.truncate(len);
    out.into_bytes()
}

/// What goes before and after the timestamp of a `size`-byte message: `padding`, or with
/// `json` a JSON object whose text is `padding` (with `'` for `"`) and whose last field is
/// the timestamp.
fn message_parts(size: usize, json: bool) -> (Vec<u8>, &'static [u8]) {
    if !json {
        return (padding(size - PAYLOAD_LEN), b"");
    }
    let mut head = JSON_HEAD.to_vec();
    head.extend(
        padding(size - JSON_MIN_LEN)
            .into_iter()
            .map(|b| if b == b'"' { b'\'' } else { b }),
    );
    head.extend_from_slice(JSON_MIDDLE);
    (head, JSON_TAIL)
}

/// The length on the wire of a message frame of `size` payload bytes (masked).
fn frame_len(size: usize) -> usize {
    let len_bytes = match size {
        0..=125 => 0,
        126..=0xffff => 2,
        _ => 8,
    };
    2 + len_bytes + 4 + size
}

/// Appends one masked (all-zero key) text frame: `head`, the current time, `tail` (see
/// [`message_parts`]).
fn push_message(out: &mut Vec<u8>, head: &[u8], tail: &[u8], now: u64) {
    push_header(out, head.len() + PAYLOAD_LEN + tail.len());
    out.extend_from_slice(head);
    out.extend_from_slice(format!("{now:016x}").as_bytes());
    out.extend_from_slice(tail);
}

/// Appends the header of one masked (all-zero key) text frame of `size` payload bytes.
fn push_header(out: &mut Vec<u8>, size: usize) {
    match size {
        0..=125 => out.extend_from_slice(&[0x81, 0x80 | size as u8]),
        126..=0xffff => {
            out.extend_from_slice(&[0x81, 0x80 | 126]);
            out.extend_from_slice(&(size as u16).to_be_bytes());
        }
        _ => {
            out.extend_from_slice(&[0x81, 0x80 | 127]);
            out.extend_from_slice(&(size as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
}

/// What [`Seconds::tick`] saw.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tick {
    /// Within a second.
    Running,
    /// A second is over: its rate, and whether it was the run's last.
    Second { rate: f64, last: bool },
    /// Nothing was counted for `STALL`.
    Stalled,
}

/// The per-second rates of a run, from a running count, and whether it stalled.
#[derive(Debug)]
struct Seconds {
    last_tick: Instant,
    last_count: u64,
    last_progress: Instant,
    rates: Vec<f64>,
}

impl Seconds {
    fn new() -> Seconds {
        let now = Instant::now();
        Seconds {
            last_tick: now,
            last_count: 0,
            last_progress: now,
            rates: Vec::new(),
        }
    }

    /// Takes the running count of a run of `secs` seconds: the rate of the second just over
    /// when one is, or whether the count stood still for `STALL`.
    /// One look at the running count: prints a second's rate (`line(t, rate)`) when one is
    /// over and sets `measuring` (latencies are recorded after the warm-up second); `Some` when
    /// the run is over, `Some(true)` when it stalled (nothing counted for `STALL`, "no
    /// `what`" printed).
    fn step(
        &mut self,
        count: u64,
        secs: u64,
        measuring: &AtomicBool,
        what: &str,
        line: impl FnOnce(usize, f64) -> String,
    ) -> Option<bool> {
        match self.tick(count, secs) {
            Tick::Second { rate, last } => {
                println!("{}", line(self.len(), rate));
                measuring.store(true, Ordering::Relaxed);
                last.then_some(false)
            }
            Tick::Stalled => {
                println!("STALL: no {what} for {} s", STALL.as_secs());
                Some(true)
            }
            Tick::Running => None,
        }
    }

    fn tick(&mut self, count: u64, secs: u64) -> Tick {
        let now = Instant::now();
        if count != self.last_count {
            self.last_progress = now;
        }
        if now - self.last_tick >= Duration::from_secs(1) {
            let rate = (count - self.last_count) as f64 / (now - self.last_tick).as_secs_f64();
            self.rates.push(rate);
            (self.last_count, self.last_tick) = (count, now);
            let last = self.rates.len() as u64 >= secs;
            Tick::Second { rate, last }
        } else if now - self.last_progress > STALL {
            Tick::Stalled
        } else {
            Tick::Running
        }
    }

    /// How many seconds are over.
    fn len(&self) -> usize {
        self.rates.len()
    }

    /// The mean, least and largest rate, the first second (a warm-up) left out.
    fn summary(&self) -> (f64, f64, f64) {
        let measured = &self.rates[usize::from(self.rates.len() > 1)..];
        let mean = measured.iter().sum::<f64>() / measured.len().max(1) as f64;
        let min = measured.iter().copied().fold(f64::INFINITY, f64::min);
        let max = measured.iter().copied().fold(0.0, f64::max);
        (mean, min, max)
    }
}

/// Splits opened connections into write halves (`None` where none opened) and spawns a
/// reader for each.
fn start_readers(
    conns: Vec<Option<Conn>>,
    shared: &Arc<Shared>,
    stop: &watch::Receiver<bool>,
    record: bool,
    readers: &mut JoinSet<()>,
) -> Vec<Option<OwnedWriteHalf>> {
    conns
        .into_iter()
        .map(|c| {
            c.map(|c| {
                let (r, w) = c.stream.into_split();
                let inflate = c.deflate.map(Inflate::new);
                readers.spawn(reader(
                    r,
                    c.rest,
                    inflate,
                    shared.clone(),
                    stop.clone(),
                    record,
                ));
                w
            })
        })
        .collect()
}

/// [`open_all`], and how many of the connections are open; `None` (said on stderr) when
/// that fails.
async fn open_counted(o: &Opts) -> Option<(Vec<Option<Conn>>, usize)> {
    match open_all(o).await {
        Ok(conns) => {
            let open_count = conns.iter().filter(|c| c.is_some()).count();
            Some((conns, open_count))
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            None
        }
    }
}

async fn chat(o: Opts) -> i32 {
    let Some((conns, open_count)) = open_counted(&o).await else {
        return 3;
    };
    if open_count < o.conns {
        eprintln!("only {open_count} of {} connections open", o.conns);
    }
    let per_round = if o.rate.is_some() {
        0
    } else {
        (o.conns * o.senders * o.burst) as u64
    };
    let shared = Arc::new(Shared::new(per_round, open_count));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut readers = JoinSet::new();
    let mut writers = start_readers(conns, &shared, &stop_rx, true, &mut readers);
    let (head, tail) = message_parts(o.size, o.json);
    // Let anything sent on connect arrive before measuring.
    tokio::time::sleep(Duration::from_millis(300)).await;
    shared.delivered.store(0, Ordering::Relaxed);
    shared.wire_bytes.store(0, Ordering::Relaxed);
    match o.rate {
        Some(rate) => println!(
            "chat (open loop): conns={} senders={} rate={rate:.0} msgs/s -> {:.0} deliveries/s \
             offered, {} s",
            o.conns,
            o.senders,
            rate * o.conns as f64,
            o.secs
        ),
        None => println!(
            "chat: conns={} senders={} burst={} window={} -> {per_round} deliveries/round, {} s",
            o.conns, o.senders, o.burst, o.window, o.secs
        ),
    }

    let t0 = Instant::now();
    let mut seconds = Seconds::new();
    let mut started_rounds = 0u64;
    let mut sent_msgs = 0u64;
    let mut next_sender = 0usize;
    let mut batch = Vec::with_capacity(frame_len(o.size) * o.burst);
    let mut send_failures = 0u64;
    let stalled = loop {
        if let Some(rate) = o.rate {
            // Open loop: send what the schedule owes so far, round-robin over the senders.
            let owed = (t0.elapsed().as_secs_f64() * rate) as u64;
            while sent_msgs < owed {
                let s = next_sender % o.senders;
                next_sender += 1;
                sent_msgs += 1;
                if let Some(w) = writers[s].as_mut() {
                    batch.clear();
                    push_message(&mut batch, &head, tail, now_ns());
                    if w.write_all(&batch).await.is_err() {
                        writers[s] = None;
                        send_failures += 1;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        } else {
            let done = shared.delivered.load(Ordering::Relaxed) / per_round;
            while started_rounds.saturating_sub(done) < o.window {
                started_rounds += 1;
                for w in writers.iter_mut().take(o.senders) {
                    let Some(sink) = w.as_mut() else { continue };
                    batch.clear();
                    let now = now_ns();
                    for _ in 0..o.burst {
                        push_message(&mut batch, &head, tail, now);
                    }
                    if sink.write_all(&batch).await.is_err() {
                        *w = None;
                        send_failures += 1;
                    }
                }
            }
            let _ =
                tokio::time::timeout(Duration::from_millis(5), shared.round_done.notified()).await;
        }
        let count = shared.delivered.load(Ordering::Relaxed);
        let line = |t, rate| {
            let open = shared.open.load(Ordering::Relaxed);
            format!("t={t:2} deliveries/s={rate:10.0} open={open}")
        };
        if let Some(stall) = seconds.step(count, o.secs, &shared.measuring, "frames", line) {
            break stall;
        }
    };
    shared.measuring.store(false, Ordering::Relaxed);
    stop_readers(&stop_tx, writers, &mut readers).await;

    let (mean, min, max) = seconds.summary();
    let latency = quantiles("lat", &shared.hist);
    let delivered = shared.delivered.load(Ordering::Relaxed);
    // NaN when nothing arrived.
    let wire_per_msg = shared.wire_bytes.load(Ordering::Relaxed) as f64 / delivered as f64;
    let inflate_errors = shared.inflate_errors.load(Ordering::Relaxed);
    println!(
        "SUMMARY conns={} senders={} burst={} window={} rate={} mean_deliveries/s={mean:.0} \
         min={min:.0} max={max:.0} {latency} open={open_count} send_failures={send_failures} \
         size={} json={} deflate={} wire_bytes_per_msg={wire_per_msg:.1} inflate_errors={inflate_errors}",
        o.conns,
        o.senders,
        o.burst,
        o.window,
        o.rate.map_or("closed".to_string(), |r| format!("{r:.0}")),
        o.size,
        u8::from(o.json),
        u8::from(o.deflate),
    );
    if inflate_errors > 0 {
        eprintln!("loadgen: {inflate_errors} compressed messages did not inflate");
    }
    if stalled || open_count < o.conns || inflate_errors > 0 {
        2
    } else {
        0
    }
}

async fn idle(o: Opts) -> i32 {
    let Some((conns, open_count)) = open_counted(&o).await else {
        return 3;
    };
    let shared = Arc::new(Shared::new(0, open_count));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut readers = JoinSet::new();
    let writers = start_readers(conns, &shared, &stop_rx, false, &mut readers);
    println!("holding {open_count} connections for {} s", o.secs);
    tokio::time::sleep(Duration::from_secs(o.secs)).await;
    let still_open = shared.open.load(Ordering::Relaxed);
    stop_readers(&stop_tx, writers, &mut readers).await;
    println!(
        "idle done: {still_open} open, {} dead",
        o.conns - still_open
    );
    if still_open == o.conns { 0 } else { 2 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_close_and_long_latencies_saturate() {
        let mut h = new_hist();
        for v in 1..=100u64 {
            h.saturating_record(v * 1000);
        }
        let p50 = h.value_at_quantile(0.5) as f64;
        assert!((p50 - 50_000.0).abs() < 1_000.0, "{p50}");
        let p99 = h.value_at_quantile(0.99) as f64;
        assert!((p99 - 99_000.0).abs() < 1_000.0, "{p99}");
        h.saturating_record(u64::MAX);
        assert_eq!(h.len(), 101);
        assert!(h.max() >= 60_000_000_000, "{}", h.max());
        // Each reader keeps one: it stays small.
        assert!(h.distinct_values() * 8 < 40_000, "{}", h.distinct_values());
    }

    fn parse(args: &str) -> Result<Command, String> {
        parse_args(args.split_whitespace()).map_err(|e| e.to_string())
    }

    /// The options of a `chat` or `idle` command line, which must parse as one.
    fn run_opts(args: &str) -> Opts {
        match parse(args) {
            Ok(Command::Run(o)) => o,
            other => panic!("{args} did not parse as a run: {other:?}"),
        }
    }

    #[test]
    fn bench_sh_invocations_parse() {
        let o = run_opts("chat 4102 1000 -s 1000 -r 250 -d 5 -u /bench");
        let o = check_bounds(o).expect("within bounds");
        assert_eq!(o.mode, Mode::Chat);
        assert_eq!(
            (o.ports.clone(), o.conns, o.senders, o.secs),
            (vec![4102], 1000, 1000, 5)
        );
        assert_eq!(
            (o.rate, o.path.as_str(), o.burst),
            (Some(250.0), "/bench", 1)
        );
        assert_eq!((o.window, o.threads), (2, 1));
        assert!(matches!(
            parse("floor 1000"),
            Ok(Command::Floor { conns: 1000 })
        ));
        assert!(matches!(parse("--help"), Ok(Command::Help)));
        let o = check_bounds(run_opts("acks 4102 1000 -d 5 -u /bench-ack")).expect("in bounds");
        assert_eq!(
            (o.mode, o.conns, o.in_flight, o.from),
            (Mode::Acks, 1000, 1000, acks::Asker::Server)
        );
        let o = run_opts("acks 4102 1000 --in-flight 1 --from client -u /bench-ack");
        let o = check_bounds(o).expect("in bounds");
        assert_eq!((o.in_flight, o.from), (1, acks::Asker::Client));
        let o = run_opts("idle 4101 10");
        let o = check_bounds(o).expect("within bounds");
        assert_eq!(
            (o.mode, o.senders, o.burst, o.secs),
            (Mode::Idle, 10, 100, 5)
        );
    }

    #[test]
    fn bad_arguments_are_named() {
        for (args, says) in [
            ("", "missing the mode: chat, idle, acks or floor"),
            (
                "walk 1 2",
                "unknown mode \"walk\": chat, idle, acks or floor",
            ),
            ("chat 4101", "missing CONNS"),
            ("chat x 10", "PORT \"x\": invalid digit"),
            ("chat 4101,,4102 10", "PORT \"\": cannot parse"),
            ("chat 4101 10 -s", "missing argument for option '-s'"),
            ("chat 4101 10 -r fast", "-r: cannot parse argument \"fast\""),
            ("chat 4101 10 -q 1", "invalid option '-q'"),
            ("chat 4101 10 11", "unexpected argument \"11\""),
            ("floor", "missing CONNS"),
            ("floor 10 -d 1", "invalid option '-d'"),
        ] {
            match parse(args) {
                Err(e) => assert!(e.starts_with(says), "{args}: {e}"),
                Ok(c) => panic!("{args}: parsed as {c:?}"),
            }
        }
        let o = run_opts("chat 4101 0");
        assert!(check_bounds(o).is_err_and(|e| e.starts_with("bounds:")));
        for (args, says) in [
            (
                "acks 4101 10 --in-flight 11",
                "--in-flight 11 is more than CONNS 10",
            ),
            ("acks 4101 10 --json", "--size, --json, --deflate, -r: acks"),
            (
                "chat 4101 10 --in-flight 1",
                "--in-flight, --from: acks only",
            ),
        ] {
            let e = check_bounds(run_opts(args)).expect_err(args);
            assert!(e.starts_with(says), "{args}: {e}");
        }
        assert!(parse("acks 4101 10 --from both").is_err_and(|e| e.contains("neither")));
    }

    #[test]
    fn several_ports_spread_the_clients() {
        let o = run_opts("chat 4101,4102,4103 9 -s 3");
        assert_eq!(o.ports, [4101, 4102, 4103]);
        assert!(check_bounds(o).is_ok());
    }

    #[test]
    fn hex_timestamps_round_trip() {
        let mut out = Vec::new();
        push_message(&mut out, &[], b"", 0xdead_beef_1234);
        assert_eq!(out.len(), frame_len(PAYLOAD_LEN));
        assert_eq!(out[..6], [0x81, 0x80 | 16, 0, 0, 0, 0], "as before --size");
        assert_eq!(parse_hex16(&out[6..]), Some(0xdead_beef_1234));
    }

    #[test]
    fn size_and_deflate_parse_and_default_to_todays_messages() {
        let o = run_opts("chat 4102 1000 -s 100 -d 5 -u /bench");
        let o = check_bounds(o).expect("within bounds");
        assert_eq!((o.size, o.deflate), (PAYLOAD_LEN, false));

        let o = run_opts("chat 4102 1000 -s 100 --size 1024 --deflate -w 4 -d 5 -u /bench");
        let o = check_bounds(o).expect("within bounds");
        assert_eq!(
            (o.size, o.deflate, o.senders, o.window),
            (1024, true, 100, 4)
        );
        let o = run_opts("chat 4102 10 --size=2048");
        assert_eq!(o.size, 2048);
        let o = run_opts("idle 4102 10 --deflate");
        assert!(check_bounds(o).expect("within bounds").deflate);

        for (args, says) in [
            (
                "chat 4101 10 --size",
                "missing argument for option '--size'",
            ),
            (
                "chat 4101 10 --size big",
                "--size: cannot parse argument \"big\"",
            ),
            (
                "chat 4101 10 --deflate=yes",
                "unexpected argument for option '--deflate'",
            ),
            ("chat 4101 10 --inflate", "invalid option '--inflate'"),
        ] {
            match parse(args) {
                Err(e) => assert!(e.starts_with(says), "{args}: {e}"),
                Ok(c) => panic!("{args}: parsed as {c:?}"),
            }
        }
        for args in ["chat 4101 10 --size 15", "chat 4101 10 --size 1048577"] {
            let o = run_opts(args);
            assert!(
                check_bounds(o).is_err_and(|e| e.starts_with("bounds:")),
                "{args}"
            );
        }
        let o = run_opts("idle 4101 10 --size 1024");
        assert!(check_bounds(o).is_err_and(|e| e.starts_with("--size")));
    }

    #[test]
    fn json_messages_are_objects_with_the_timestamp_last() {
        let o = run_opts("chat 4102 1000 -s 100 --json -d 5 -u /bench-typed");
        let o = check_bounds(o).expect("within bounds");
        assert_eq!((o.size, o.json), (JSON_MIN_LEN, true));
        assert_eq!(JSON_MIN_LEN, 37);
        let o = run_opts("chat 4102 10 --json --size 36");
        assert!(check_bounds(o).is_err_and(|e| e.starts_with("bounds:")));
        let o = run_opts("idle 4102 10 --json");
        assert!(check_bounds(o).is_err_and(|e| e.contains("--json")));

        for size in [JSON_MIN_LEN, 125, 1024] {
            let (head, tail) = message_parts(size, true);
            let mut out = Vec::new();
            push_message(&mut out, &head, tail, 0xab_cdef);
            assert_eq!(out.len(), frame_len(size), "{size}");
            let body = &out[out.len() - size..];
            let v: serde_json::Value = serde_json::from_slice(body).expect("JSON");
            assert_eq!(v["sent"], "0000000000abcdef", "{size}");
            assert_eq!(v["text"].as_str().map(str::len), Some(size - JSON_MIN_LEN));
            // bench_server's BenchOut (fields in this order) sends back the same bytes.
            #[derive(serde::Serialize)]
            struct Out<'a> {
                text: &'a str,
                sent: &'a str,
            }
            let out = Out {
                text: v["text"].as_str().expect("text"),
                sent: v["sent"].as_str().expect("sent"),
            };
            assert_eq!(serde_json::to_vec(&out).expect("JSON"), body, "{size}");
            assert_eq!(stamp_of(body), Some(0xab_cdef));
        }
        assert_eq!(message_parts(16, false), (Vec::new(), &b""[..]));
    }

    #[test]
    fn sized_messages_are_padded_json_ending_in_the_timestamp() {
        assert!(padding(0).is_empty());
        let pad = padding(1024 - PAYLOAD_LEN);
        assert_eq!(pad.len(), 1024 - PAYLOAD_LEN);
        assert!(pad.starts_with(br#"{"type":"message","id":0,"user":"user"#));
        assert!(pad.is_ascii(), "valid UTF-8 text");
        // Compressible, but not trivially so.
        let z = deflate(&pad);
        assert!(
            z.len() * 2 < pad.len() && z.len() * 20 > pad.len(),
            "{}",
            z.len()
        );

        for (size, header) in [
            (16, 6),
            (125, 6),
            (126, 8),
            (1024, 8),
            (65_535, 8),
            (65_536, 14),
        ] {
            let pad = padding(size - PAYLOAD_LEN);
            let mut out = Vec::new();
            push_message(&mut out, &pad, b"", 0x1234);
            assert_eq!(out.len(), frame_len(size), "{size}");
            assert_eq!(out.len(), header + size, "{size}");
            assert_eq!(out[0], 0x81);
            assert!(out[1] & 0x80 != 0, "masked");
            assert_eq!(&out[header..header + pad.len()], &pad[..]);
            assert_eq!(stamp_of(&out[header..]), Some(0x1234));
        }
    }

    #[test]
    fn the_101_must_accept_permessage_deflate() {
        let head = "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\
                    sec-websocket-extensions: permessage-deflate; server_no_context_takeover\r\n\
                    sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
        assert_eq!(accepted_deflate(head), Some(true));
        let head = "HTTP/1.1 101 Switching Protocols\r\n\
                    Sec-WebSocket-Extensions: x-foo, permessage-deflate; server_max_window_bits=10";
        assert_eq!(accepted_deflate(head), Some(false));
        let head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                    Connection: Upgrade\r\nX-Note: permessage-deflate";
        assert_eq!(accepted_deflate(head), None);
        assert_eq!(accepted_deflate("HTTP/1.1 101 Switching Protocols"), None);
    }

    /// What the server does: raw deflate of one message on its own, sync flush, tail
    /// stripped.
    fn deflate(msg: &[u8]) -> Vec<u8> {
        let mut c = flate2::Compress::new(flate2::Compression::new(1), false);
        let mut out = Vec::with_capacity(msg.len() + 64);
        c.compress_vec(msg, &mut out, flate2::FlushCompress::Sync)
            .expect("compresses");
        assert_eq!(c.total_in() as usize, msg.len());
        assert!(out.ends_with(&DEFLATE_TAIL));
        out.truncate(out.len() - DEFLATE_TAIL.len());
        out
    }

    /// An unmasked server frame.
    fn server_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![b0];
        match payload.len() {
            n @ 0..=125 => f.push(n as u8),
            n @ 126..=0xffff => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    fn message(size: usize, stamp: u64) -> Vec<u8> {
        let mut m = padding(size - PAYLOAD_LEN);
        m.extend_from_slice(format!("{stamp:016x}").as_bytes());
        m
    }

    fn scan_all(buf: &[u8], inflate: Option<&mut Inflate>) -> (Scan, Vec<u64>) {
        let mut stamps = Vec::new();
        let s = scan(buf, inflate, true, |t| stamps.push(t));
        (s, stamps)
    }

    #[test]
    fn compressed_frames_inflate_to_their_timestamps() {
        let mut buf = Vec::new();
        let mut wire = 0;
        let mut first = 0;
        for (i, size) in [1024, 300, 4096, 1024].into_iter().enumerate() {
            let f = server_frame(0x80 | 0x40 | 1, &deflate(&message(size, 100 + i as u64)));
            assert!(f.len() < size, "compressed on the wire");
            wire += f.len();
            first = if i == 0 { f.len() } else { first };
            buf.extend_from_slice(&f);
        }
        // Short messages go out uncompressed, on the same connection.
        let plain = server_frame(0x81, &message(16, 7));
        wire += plain.len();
        buf.extend_from_slice(&plain);
        for no_context in [true, false] {
            let mut inf = Inflate::new(no_context);
            let (s, stamps) = scan_all(&buf, Some(&mut inf));
            assert_eq!(stamps, [100, 101, 102, 103, 7]);
            assert_eq!((s.messages, s.inflate_errors, s.closed), (5, 0, false));
            assert_eq!((s.consumed, s.wire_bytes), (buf.len(), wire as u64));
        }

        // Whole frames only; the rest waits for the next read.
        let mut inf = Inflate::new(true);
        let (s, stamps) = scan_all(&buf[..first + 3], Some(&mut inf));
        assert_eq!((s.consumed, s.messages, stamps), (first, 1, vec![100]));
        // Not measuring: counted and inflated, not timed.
        let s = scan(&buf, Some(&mut inf), false, |_| panic!("not measuring"));
        assert_eq!((s.messages, s.inflate_errors), (5, 0));
    }

    #[test]
    fn fragmented_compressed_messages_and_errors() {
        let z = deflate(&message(2000, 42));
        let (a, b) = z.split_at(z.len() / 3);
        let (b, c) = b.split_at(b.len() / 2);
        let mut buf = server_frame(0x40 | 1, a);
        buf.extend(server_frame(0x89, b"ping"));
        buf.extend(server_frame(0x00, b));
        buf.extend(server_frame(0x80, c));
        buf.extend(server_frame(0x88, &[0x03, 0xe8]));
        let mut inf = Inflate::new(true);
        let (s, stamps) = scan_all(&buf, Some(&mut inf));
        assert_eq!(stamps, [42]);
        assert_eq!((s.messages, s.inflate_errors, s.closed), (1, 0, true));

        // RSV1 without the extension, and data that is not deflate.
        let frame = server_frame(0xc1, &z);
        let (s, stamps) = scan_all(&frame, None);
        assert_eq!((s.messages, s.inflate_errors, stamps.len()), (1, 1, 0));
        let garbage = server_frame(0xc1, &[0xff; 40]);
        let (s, stamps) = scan_all(&garbage, Some(&mut inf));
        assert_eq!((s.messages, s.inflate_errors, stamps.len()), (1, 1, 0));
        // The connection's inflater recovers for the next message.
        let (s, stamps) = scan_all(&frame, Some(&mut inf));
        assert_eq!((s.inflate_errors, stamps), (0, vec![42]));
    }
}
