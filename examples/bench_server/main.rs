//! Fan-out benchmark server built with the framework (see `scripts/bench.sh`).
//!
//! Protocol: every client connects to `ws://127.0.0.1:$PORT/bench` (query ignored), is
//! subscribed to one room, and every text message it sends goes unchanged to the whole room,
//! sender included. `PORT` defaults to 3000; the runtime is multi-threaded (one worker per
//! core unless `TOKIO_WORKER_THREADS` says otherwise).
//!
//! The same protocol, typed, at `/bench-typed`: a service declared with
//! `receives = BenchIn, sends = BenchOut`. Clients send `{"text":"..","sent":"<16 hex>"}`
//! (what `loadgen chat --json` sends); each message is decoded and validated into a
//! [`BenchIn`], and a [`BenchOut`] with the same fields goes to the room, serialized once for
//! all recipients (byte for byte the JSON that came in, so the load clients read their
//! timestamps as before). The server counts the typed messages it received and the times a
//! `BenchOut` was serialized, and prints both to stderr when they change
//! (`typed: received=N serialized=M`, at most once a second): one serialization per room
//! message, however many sockets receive it.
//!
//! Acknowledgement round trips at `/bench-ack` (`loadgen acks`, `scripts/bench.sh acks`), both
//! ways on the channel protocol: a client's text `ask` makes the server request
//! `{"$req":id,"data":null}` of it with `SocketRef::request` and, once the client replied,
//! send it `{"took_ns":N}`, the time from the request to its reply on the server's clock (what
//! a handler awaiting `request` waits), or `{"error":".."}`; a client's own request
//! `{"$req":id,"data":..}` is answered `{"$ack":id,"data":true}`.
//!
//! For fleets (`scripts/fleet-bench.sh`): `ASENA_TRANSPORT` (`redis://…`, `nats://…`) joins
//! the instance to a fleet, `BENCH_NATS_SINGLE=1` makes NATS use one subject for everything
//! instead of routing rooms by interest, `BENCH_REDIS_INTEREST=1` makes Redis route rooms by
//! interest (a channel per room) instead of using one channel, `BENCH_REDIS_CLUSTER=1` treats the
//! Redis URL as a node of a Redis Cluster (`RedisTransport::cluster`: rooms on sharded pub/sub),
//! `BENCH_HISTORY=redis://…` makes every room keep history there (`HistoryOptions`: each
//! message numbered and appended to Redis, members receive `{"$room","$offset","data"}`;
//! `scripts/bench.sh history` measures its cost),
//! `/bench/rooms/{room}` puts each socket in the room
//! its path names (every message goes to that room), and `/metrics` serves the counters
//! (the broker messages each instance received among them).

use clap::Parser;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use asena_runtime::Asena;
use asena_runtime::ack::{Answer, Answers};
use asena_runtime::prelude::*;
use serde::ser::SerializeStruct;
use serde_json::Value;

/// The one room every socket joins.
const ROOM: &str = "room";

/// The benchmark service: one room, echo-to-everyone.
#[websocket(path = "/bench")]
#[derive(Debug)]
pub struct BenchSocket;

impl WebSocketService for BenchSocket {
    type Data = ();

    async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
        ws.subscribe(ROOM)?;
        Ok(())
    }

    async fn on_message(&self, ws: &Socket<Self>, msg: Message) -> Result<()> {
        if let Message::Text(_) = &msg {
            ws.namespace().to(ROOM, &msg)?;
        }
        Ok(())
    }
}

/// `/bench/rooms/{room}`'s path parameter.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct RoomPath {
    /// The room's name.
    pub room: String,
}

/// One room per path: a socket at `/bench/rooms/a` is in the room `/bench/rooms/a` (every
/// socket of a parametrised service joins the room its concrete path names), and its
/// messages go to that room.
#[websocket(path = "/bench/rooms/{room}", params = RoomPath)]
#[derive(Debug)]
pub struct RoomBenchSocket;

impl WebSocketService for RoomBenchSocket {
    type Data = ();

    async fn on_message(&self, ws: &Socket<Self>, msg: Message) -> Result<()> {
        if let Message::Text(_) = &msg {
            ws.namespace().to(ws.path(), &msg)?;
        }
        Ok(())
    }
}

/// Typed messages received by [`TypedBenchSocket`].
static RECEIVED: AtomicU64 = AtomicU64::new(0);
/// Times a [`BenchOut`] was serialized.
static SERIALIZED: AtomicU64 = AtomicU64::new(0);

/// What clients send to `/bench-typed`: some text and the sender's timestamp.
#[derive(Debug, Deserialize, JsonSchema, Validate)]
pub struct BenchIn {
    /// Anything (`loadgen --json --size N` pads with chat-like words).
    #[garde(length(max = 1_048_576))]
    text: String,
    /// The send time, 16 lowercase hex digits (the load clients' clock).
    #[garde(ascii, length(equal = 16))]
    sent: String,
}

/// What `/bench-typed` sends to the room: the message as received.
#[derive(Debug, JsonSchema)]
pub struct BenchOut {
    text: String,
    sent: String,
}

/// `#[derive(Serialize)]`'s output, plus a count of the calls.
impl Serialize for BenchOut {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        SERIALIZED.fetch_add(1, Ordering::Relaxed);
        let mut out = s.serialize_struct("BenchOut", 2)?;
        out.serialize_field("text", &self.text)?;
        out.serialize_field("sent", &self.sent)?;
        out.end()
    }
}

/// The benchmark service, typed: one room, every message decoded, validated and sent to
/// everyone as a `BenchOut`.
#[websocket(path = "/bench-typed", receives = BenchIn, sends = BenchOut)]
#[derive(Debug)]
pub struct TypedBenchSocket;

impl WebSocketService for TypedBenchSocket {
    type Data = ();

    async fn on_open(&self, ws: &Socket<Self>) -> Result<()> {
        ws.subscribe(ROOM)?;
        Ok(())
    }

    async fn on_message(&self, ws: &Socket<Self>, msg: BenchIn) -> Result<()> {
        RECEIVED.fetch_add(1, Ordering::Relaxed);
        let out = BenchOut {
            text: msg.text,
            sent: msg.sent,
        };
        ws.namespace().to(ROOM, &out)?;
        Ok(())
    }
}

/// How long the server waits for a client's reply to its request.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// The acknowledgement benchmark: the server asks on `ask` and reports how long the reply
/// took; it answers every request of the client (see the module docs).
#[websocket(path = "/bench-ack")]
#[derive(Debug)]
pub struct AckBenchSocket;

impl WebSocketService for AckBenchSocket {
    type Data = ();
    const ANSWERS: Answers<Self> = Answers::ON_REQUEST;

    async fn on_message(&self, ws: &Socket<Self>, msg: Message) -> Result<()> {
        if msg.as_text() == Some("ask") {
            // In a task of its own: the reply is read only once this handler returned.
            let socket = ws.raw();
            tokio::spawn(async move {
                let started = Instant::now();
                let asked = socket
                    .request::<Value>(Value::Null)
                    .timeout(ACK_TIMEOUT)
                    .await;
                let report = match asked {
                    Ok(_) => json!({"took_ns": started.elapsed().as_nanos() as u64}),
                    Err(e) => json!({"error": e.to_string()}),
                };
                // (A socket that closed meanwhile needs no report.)
                let _ = socket.send_json(&report);
            });
        }
        Ok(())
    }
}

impl Answer for AckBenchSocket {
    type Request = Message;
    type Reply = bool;

    async fn on_request(&self, _: &Socket<Self>, _: Message) -> Result<bool> {
        Ok(true)
    }
}

/// Prints the typed counters when they changed, at most once a second.
async fn report_typed_counts() {
    let mut last = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let serialized = SERIALIZED.load(Ordering::Relaxed);
        if serialized != last {
            last = serialized;
            let received = RECEIVED.load(Ordering::Relaxed);
            eprintln!("typed: received={received} serialized={serialized}");
        }
    }
}

/// The benchmark app: its services, no idle timeout, no inbound rate limit; with
/// `BENCH_INSPECTOR_TOKEN` set, the inspector at `/_asena` too (to measure it with many
/// sockets), guarded by [`InspectorToken`](asena_runtime::InspectorToken): the token as a
/// bearer token.
pub fn builder() -> asena_runtime::AsenaBuilder {
    let builder = Asena::builder()
        .without_auto_registration()
        .websocket::<BenchSocket>()
        .websocket::<TypedBenchSocket>()
        .websocket::<RoomBenchSocket>()
        .websocket::<AckBenchSocket>()
        .metrics_route("/metrics")
        // Idle benchmark connections must survive the whole run.
        .idle_timeout(None)
        // A load client sends as fast as the server answers (C=32 B=100 is thousands of
        // messages a second per socket), far over the default 1,000 a second.
        .rate_limit(None);
    match std::env::var("BENCH_INSPECTOR_TOKEN") {
        Ok(token) if !token.is_empty() => {
            builder.inspector("/_asena", asena_runtime::InspectorToken::new(token))
        }
        _ => builder,
    }
}

/// Serves the example; `--asyncapi` prints its protocol instead.
#[derive(Parser)]
struct Cli {
    /// Print the protocol as an AsyncAPI 3.0 document on stdout instead of serving.
    #[arg(long)]
    asyncapi: bool,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    if Cli::parse().asyncapi {
        // The protocol as an AsyncAPI 3.0 document, on stdout.
        return Ok(builder().build().await?.print_asyncapi()?);
    }
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let builder = match std::env::var("ASENA_TRANSPORT") {
        Ok(url)
            if url.starts_with("nats://") && std::env::var_os("BENCH_NATS_SINGLE").is_some() =>
        {
            builder().transport(asena_runtime::transport::NatsTransport::new(url).single_subject())
        }
        Ok(url)
            if url.starts_with("redis://") && std::env::var_os("BENCH_REDIS_CLUSTER").is_some() =>
        {
            builder().transport(asena_runtime::transport::RedisTransport::cluster([url]))
        }
        Ok(url)
            if url.starts_with("redis://")
                && std::env::var_os("BENCH_REDIS_INTEREST").is_some() =>
        {
            builder()
                .transport(asena_runtime::transport::RedisTransport::new(url).route_by_interest())
        }
        _ => builder().transport_from_env()?,
    };
    let builder = match std::env::var("BENCH_HISTORY") {
        Ok(url) if !url.is_empty() => {
            builder.history(asena_runtime::history::HistoryOptions::redis(url))
        }
        _ => builder,
    };
    let app = builder.build().await?;
    eprintln!(
        "bench_server pid {} listening ws://127.0.0.1:{port}/bench, /bench-typed and /bench-ack",
        std::process::id()
    );
    tokio::spawn(report_typed_counts());
    app.serve(format!("127.0.0.1:{port}")).await?;
    Ok(())
}
