//! A WebSocket load generator for the chat-room fan-out protocol (see `scripts/bench.sh`).
//!
//! Protocol: clients connect to `ws://127.0.0.1:PORT<PATH>?name=cN`, all are in one room, and
//! every text message a client sends is delivered (unchanged or prefixed) to every client,
//! sender included. Each message carries its send time as 16 hex digits (nanoseconds since the
//! tool started) at its end, so every receiving client measures the delivery latency.
//!
//! ```text
//! loadgen chat  PORT CONNS [-u PATH] [-s SENDERS] [-b BURST] [-w WINDOW] [-d SECS] [-r RATE] [-t THREADS]
//!     closed loop (default): a round = each of the first S clients sends B messages; it is
//!     done when CONNS*S*B frames arrived; W rounds are in flight.
//!     open loop (-r RATE): RATE messages per second in total, round-robin over the senders.
//!     Prints deliveries/s every second, then one `SUMMARY` line with mean deliveries/s
//!     (first second skipped) and latency mean/p50/p99/max in microseconds.
//! loadgen idle  PORT CONNS [-u PATH] [-d SECS]
//!     opens CONNS connections and holds them for SECS seconds (server memory per connection).
//! loadgen floor CONNS
//!     no server: opens CONNS loopback TCP connections to itself and times one 24-byte
//!     write to each (a server frame of the chat protocol), 20 rounds. The median round is
//!     the kernel's own cost of fanning one message out to CONNS sockets on this machine: no
//!     server can deliver to the last of them sooner.
//! ```
//!
//! Bounds: the target is always 127.0.0.1; at most 60,000 connections, 300 s, 10 M msgs/s;
//! the tool stops by itself (and reports `STALL` when nothing arrives for 5 s).

// A command-line tool: its report is its stdout.
#![allow(clippy::print_stdout)]

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

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
/// Payload: 16 hex digits of the send time.
const PAYLOAD_LEN: usize = 16;
/// Masked client text frame: 2 header bytes, 4 mask bytes (all zero), payload.
const FRAME_LEN: usize = 6 + PAYLOAD_LEN;

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
}

#[derive(Debug, Clone)]
struct Opts {
    mode: Mode,
    port: u16,
    conns: usize,
    path: String,
    senders: usize,
    burst: usize,
    window: u64,
    secs: u64,
    rate: Option<f64>,
    threads: usize,
}

const USAGE: &str = "usage: loadgen chat|idle PORT CONNS [-u PATH] [-s SENDERS] [-b BURST] [-w WINDOW] \
                     [-d SECS] [-r RATE] [-t THREADS]\n       loadgen floor CONNS";

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
        None => return Err("missing the mode: chat, idle or floor".into()),
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
        other => return Err(format!("unknown mode {other:?}: chat, idle or floor").into()),
    };
    let (mut port, mut conns) = (None, None);
    let mut o = Opts {
        mode,
        port: 0,
        conns: 0,
        path: "/".into(),
        senders: 0,
        burst: 0,
        window: 2,
        secs: 5,
        rate: None,
        threads: 1,
    };
    while let Some(arg) = p.next()? {
        match arg {
            Value(v) if port.is_none() => port = Some(num("PORT", v)?),
            Value(v) if conns.is_none() => conns = Some(num("CONNS", v)?),
            Short('u') => o.path = p.value()?.string()?,
            Short('s') => o.senders = num("-s", p.value()?)?,
            Short('b') => o.burst = num("-b", p.value()?)?,
            Short('w') => o.window = num("-w", p.value()?)?,
            Short('d') => o.secs = num("-d", p.value()?)?,
            Short('r') => o.rate = Some(num("-r", p.value()?)?),
            Short('t') => o.threads = num("-t", p.value()?)?,
            Short('h') | Long("help") => return Ok(Command::Help),
            other => return Err(other.unexpected()),
        }
    }
    o.port = port.ok_or("missing PORT")?;
    o.conns = conns.ok_or("missing CONNS")?;
    Ok(Command::Run(o))
}

/// Checks the bounds of a run and fills in the defaults that depend on CONNS.
fn check_bounds(mut o: Opts) -> Result<Opts, String> {
    if !(1..=MAX_CONNS).contains(&o.conns)
        || !(1..=MAX_SECS).contains(&o.secs)
        || o.window < 1
        || o.port == 0
        || !o.path.starts_with('/')
        || o.rate.is_some_and(|r| !(r > 0.0 && r <= MAX_RATE))
        || !(1..=16).contains(&o.threads)
    {
        return Err(format!(
            "bounds: 1<=CONNS<={MAX_CONNS}, 1<=SECS<={MAX_SECS}, WINDOW>=1, 0<RATE<={MAX_RATE}, \
             1<=THREADS<=16, PATH starts with /"
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

/// Opens one WebSocket connection; returns the stream and any bytes read past the handshake.
async fn open(port: u16, path: &str, n: usize) -> Result<(TcpStream, Vec<u8>), BoxError> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    let sep = if path.contains('?') { '&' } else { '?' };
    let req = format!(
        "GET {path}{sep}name=c{n} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
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
            return Ok((stream, rest));
        }
        if buf.len() > 8192 {
            return Err("handshake response too long".into());
        }
    }
}

/// Opens `n` connections, `CONNECT_PARALLELISM` at a time; failed ones are `None`.
async fn open_all(o: &Opts) -> Vec<Option<(TcpStream, Vec<u8>)>> {
    let t0 = Instant::now();
    let mut out: Vec<Option<(TcpStream, Vec<u8>)>> = (0..o.conns).map(|_| None).collect();
    let mut set = JoinSet::new();
    let mut next = 0;
    let mut failed = 0usize;
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    while next < o.conns || !set.is_empty() {
        while next < o.conns && set.len() < CONNECT_PARALLELISM {
            let (port, path, i) = (o.port, o.path.clone(), next);
            set.spawn(async move { (i, open(port, &path, i).await) });
            next += 1;
        }
        match tokio::time::timeout_at(deadline, set.join_next()).await {
            Ok(Some(Ok((i, Ok(c))))) => out[i] = Some(c),
            Ok(Some(Ok((_, Err(e))))) => {
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
    out
}

/// Latencies in nanoseconds, from 1 ns to 60 s (longer ones count as 60 s), to two
/// significant digits (1%): about 30 KB, and every reader keeps its own.
type Hist = Histogram<u64>;

fn new_hist() -> Hist {
    Histogram::new_with_bounds(1, 60_000_000_000, 2).expect("invariant: valid histogram bounds")
}

/// State shared by the coordinator and the reader of every connection.
#[derive(Debug)]
struct Shared {
    /// Data frames received by all clients.
    delivered: AtomicU64,
    /// Frames per closed-loop round (0 in open-loop mode).
    per_round: u64,
    round_done: Notify,
    /// Latencies are recorded only while this is set (after the warm-up second).
    measuring: AtomicBool,
    open: AtomicUsize,
    hist: Mutex<Hist>,
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

/// Reads server frames until the stream ends or `stop` fires; counts data frames and records
/// the latency of every text frame that ends in a timestamp.
async fn reader(
    mut r: OwnedReadHalf,
    mut buf: Vec<u8>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    record: bool,
) {
    let mut hist = record.then(new_hist);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let mut pos = 0;
        let mut frames = 0u64;
        let now = now_ns();
        let measuring = shared.measuring.load(Ordering::Relaxed);
        let mut closed = false;
        while buf.len() - pos >= 2 {
            let b0 = buf[pos];
            let b1 = buf[pos + 1];
            let (len, mut hl) = match b1 & 0x7f {
                126 if buf.len() - pos >= 4 => {
                    (u16::from_be_bytes([buf[pos + 2], buf[pos + 3]]) as usize, 4)
                }
                127 if buf.len() - pos >= 10 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&buf[pos + 2..pos + 10]);
                    (u64::from_be_bytes(b) as usize, 10)
                }
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if b1 & 0x80 != 0 {
                hl += 4;
            }
            if buf.len() - pos < hl + len {
                break;
            }
            match b0 & 0x0f {
                op @ (1 | 2) => {
                    frames += 1;
                    if op == 1
                        && len >= PAYLOAD_LEN
                        && measuring
                        && let Some(h) = hist.as_mut()
                    {
                        let end = pos + hl + len;
                        if let Some(sent) = parse_hex16(&buf[end - PAYLOAD_LEN..end]) {
                            h.saturating_record(now.saturating_sub(sent));
                        }
                    }
                }
                8 => closed = true,
                _ => {}
            }
            pos += hl + len;
        }
        buf.drain(..pos);
        if frames > 0 && shared.per_round > 0 {
            let before = shared.delivered.fetch_add(frames, Ordering::Relaxed);
            if (before + frames) / shared.per_round != before / shared.per_round {
                shared.round_done.notify_one();
            }
        } else if frames > 0 {
            shared.delivered.fetch_add(frames, Ordering::Relaxed);
        }
        if closed {
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

/// Appends one masked (all-zero key) text frame carrying the current time.
fn push_message(out: &mut Vec<u8>, now: u64) {
    out.extend_from_slice(&[0x81, 0x80 | PAYLOAD_LEN as u8, 0, 0, 0, 0]);
    out.extend_from_slice(format!("{now:016x}").as_bytes());
}

async fn chat(o: Opts) -> i32 {
    let conns = open_all(&o).await;
    let open_count = conns.iter().filter(|c| c.is_some()).count();
    if open_count < o.conns {
        eprintln!("only {open_count} of {} connections open", o.conns);
    }
    let per_round = if o.rate.is_some() {
        0
    } else {
        (o.conns * o.senders * o.burst) as u64
    };
    let shared = Arc::new(Shared {
        delivered: AtomicU64::new(0),
        per_round,
        round_done: Notify::new(),
        measuring: AtomicBool::new(false),
        open: AtomicUsize::new(open_count),
        hist: Mutex::new(new_hist()),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut writers: Vec<Option<OwnedWriteHalf>> = Vec::with_capacity(o.conns);
    let mut readers = JoinSet::new();
    for c in conns {
        match c {
            Some((stream, rest)) => {
                let (r, w) = stream.into_split();
                writers.push(Some(w));
                readers.spawn(reader(r, rest, shared.clone(), stop_rx.clone(), true));
            }
            None => writers.push(None),
        }
    }
    // Let anything sent on connect arrive before measuring.
    tokio::time::sleep(Duration::from_millis(300)).await;
    shared.delivered.store(0, Ordering::Relaxed);
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
    let mut samples: Vec<f64> = Vec::new();
    let mut last_tick = t0;
    let mut last_delivered = 0u64;
    let mut last_progress = t0;
    let mut started_rounds = 0u64;
    let mut sent_msgs = 0u64;
    let mut next_sender = 0usize;
    let mut batch = Vec::with_capacity(FRAME_LEN * o.burst);
    let mut stalled = false;
    let mut send_failures = 0u64;
    loop {
        if let Some(rate) = o.rate {
            // Open loop: send what the schedule owes so far, round-robin over the senders.
            let owed = (t0.elapsed().as_secs_f64() * rate) as u64;
            while sent_msgs < owed {
                let s = next_sender % o.senders;
                next_sender += 1;
                sent_msgs += 1;
                if let Some(w) = writers[s].as_mut() {
                    batch.clear();
                    push_message(&mut batch, now_ns());
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
                        push_message(&mut batch, now);
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
        let now = Instant::now();
        let delivered = shared.delivered.load(Ordering::Relaxed);
        if delivered != last_delivered {
            last_progress = now;
        }
        if now - last_tick >= Duration::from_secs(1) {
            let rate = (delivered - last_delivered) as f64 / (now - last_tick).as_secs_f64();
            samples.push(rate);
            println!(
                "t={:2} deliveries/s={rate:10.0} open={}",
                samples.len(),
                shared.open.load(Ordering::Relaxed)
            );
            last_delivered = delivered;
            last_tick = now;
            // Latencies are recorded after the warm-up second.
            shared.measuring.store(true, Ordering::Relaxed);
            if samples.len() as u64 >= o.secs {
                break;
            }
        }
        if now - last_progress > STALL {
            println!("STALL: no frames for {} s", STALL.as_secs());
            stalled = true;
            break;
        }
    }
    shared.measuring.store(false, Ordering::Relaxed);
    stop_readers(&stop_tx, writers, &mut readers).await;

    let from = usize::from(samples.len() > 1);
    let measured = &samples[from..];
    let mean = measured.iter().sum::<f64>() / measured.len().max(1) as f64;
    let min = measured.iter().copied().fold(f64::INFINITY, f64::min);
    let max = measured.iter().copied().fold(0.0, f64::max);
    let hist = shared
        .hist
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let us = |ns: u64| ns as f64 / 1000.0;
    println!(
        "SUMMARY conns={} senders={} burst={} window={} rate={} mean_deliveries/s={mean:.0} \
         min={min:.0} max={max:.0} lat_samples={} lat_mean_us={:.1} lat_p50_us={:.1} \
         lat_p99_us={:.1} lat_max_us={:.1} open={open_count} send_failures={send_failures}",
        o.conns,
        o.senders,
        o.burst,
        o.window,
        o.rate.map_or("closed".to_string(), |r| format!("{r:.0}")),
        hist.len(),
        hist.mean() / 1000.0,
        us(hist.value_at_quantile(0.50)),
        us(hist.value_at_quantile(0.99)),
        us(hist.max()),
    );
    if stalled || open_count < o.conns {
        2
    } else {
        0
    }
}

async fn idle(o: Opts) -> i32 {
    let conns = open_all(&o).await;
    let open_count = conns.iter().filter(|c| c.is_some()).count();
    let shared = Arc::new(Shared {
        delivered: AtomicU64::new(0),
        per_round: 0,
        round_done: Notify::new(),
        measuring: AtomicBool::new(false),
        open: AtomicUsize::new(open_count),
        hist: Mutex::new(new_hist()),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut writers = Vec::with_capacity(open_count);
    let mut readers = JoinSet::new();
    for (stream, rest) in conns.into_iter().flatten() {
        let (r, w) = stream.into_split();
        writers.push(w);
        readers.spawn(reader(r, rest, shared.clone(), stop_rx.clone(), false));
    }
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

    #[test]
    fn bench_sh_invocations_parse() {
        let Ok(Command::Run(o)) = parse("chat 4102 1000 -s 1000 -r 250 -d 5 -u /bench") else {
            panic!("chat did not parse");
        };
        let o = check_bounds(o).expect("within bounds");
        assert_eq!(o.mode, Mode::Chat);
        assert_eq!((o.port, o.conns, o.senders, o.secs), (4102, 1000, 1000, 5));
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
        let Ok(Command::Run(o)) = parse("idle 4101 10") else {
            panic!("idle did not parse");
        };
        let o = check_bounds(o).expect("within bounds");
        assert_eq!(
            (o.mode, o.senders, o.burst, o.secs),
            (Mode::Idle, 10, 100, 5)
        );
    }

    #[test]
    fn bad_arguments_are_named() {
        for (args, says) in [
            ("", "missing the mode: chat, idle or floor"),
            ("walk 1 2", "unknown mode \"walk\": chat, idle or floor"),
            ("chat 4101", "missing CONNS"),
            ("chat x 10", "PORT: cannot parse argument \"x\""),
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
        let Ok(Command::Run(o)) = parse("chat 4101 0") else {
            panic!("chat did not parse");
        };
        assert!(check_bounds(o).is_err_and(|e| e.starts_with("bounds:")));
    }

    #[test]
    fn hex_timestamps_round_trip() {
        let mut out = Vec::new();
        push_message(&mut out, 0xdead_beef_1234);
        assert_eq!(out.len(), FRAME_LEN);
        assert_eq!(parse_hex16(&out[6..]), Some(0xdead_beef_1234));
    }
}
