//! Broker outages are counted, never silent: two instances share a private broker (Redis or
//! NATS, its own process on a free port), a client on one streams numbered messages to a
//! room whose member is on the other, and the broker is killed and restarted mid-stream.
//! Every message either reaches the member or is counted in the sending transport's
//! `dropped`; the two add up to exactly what was sent.
//!
//! The member's instance reaches the broker through a proxy that lets it back in only once
//! the sender's instance has reconnected: every instance reconnects on its own backoff, and
//! this makes the one that receives the last to re-subscribe, every time (the order in which
//! a real fleet comes back is chance). It then reconnects within one backoff delay (at most
//! 2.4 s), inside the sender's re-subscribe grace (3 s).
//!
//! The kill happens between messages (the member has received everything sent so far):
//! what a broker holds in flight when it dies is lost with it, and no fire-and-forget
//! transport can count that. Everything sent while it is away and after it is back is the
//! subject: buffered and flushed into a fleet that has not re-subscribed, it would vanish.
//!
//! Also here: a NATS publish larger than the server's `max_payload` is refused up front and
//! counted, and the [`Emitter`] returns an error for it.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use asena_runtime::prelude::*;
use asena_runtime::transport::Emitter;
use asena_tests::broker::{Broker, Kind, Typed};
use asena_tests::{Client, TestServer, isolated, start, stop_all, tungstenite};
use futures_util::StreamExt;
use tokio::sync::watch;

/// Upper bound for anything that polls (reconnects, catching up).
const DEADLINE: Duration = Duration::from_secs(30);

/// The pace of the stream: one message every 20 ms (50 messages/s).
const PACE: Duration = Duration::from_millis(20);

/// The room the stream goes to.
const ROOM: &str = "stream";

/// With `?listen=1` joins the room; every text message it receives goes to the room.
#[websocket(path = "/stream")]
#[derive(Debug)]
struct Stream;

asena_tests::impl_message_service!(
    Stream,
    open = |ws| {
        if ws.query("listen").is_some() {
            ws.subscribe(ROOM)?;
        }
        ws.send("ready")?;
        Ok(())
    },
    // Sends the message to the room; a send the namespace refuses is answered with
    // `refused:<code>`.
    |ws, msg| {
        if let Err(e) = ws.namespace().to(ROOM, msg) {
            ws.send(format!("refused:{}", e.code))?;
        }
        Ok(())
    }
);

/// A TCP proxy to a broker whose gate, when closed, hangs up on new connections at once (an
/// instance's reconnection attempts then fail until it opens). A broker that dies takes the
/// proxied connections with it.
struct Proxy {
    port: u16,
    gate: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: u16) -> anyhow::Result<Proxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (gate, open) = watch::channel(true);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*open.borrow() {
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
            }
        });
        Ok(Proxy { port, gate, task })
    }

    fn url(&self, kind: Kind) -> String {
        kind.url(self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn instance(t: &Typed) -> anyhow::Result<TestServer> {
    start(isolated().websocket::<Stream>().transport_arc(t.as_dyn())).await
}

/// The numbers a client received, recorded by a task until `stop`.
struct Received {
    numbers: Arc<Mutex<Vec<u64>>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Received {
    fn record(mut client: Client) -> Received {
        let numbers = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = watch::channel(false);
        let task = {
            let numbers = numbers.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stopped.wait_for(|s| *s) => return,
                        msg = client.ws.next() => match msg {
                            Some(Ok(tungstenite::Message::Text(t))) => {
                                if let Some(n) = t.strip_prefix("m-").and_then(|n| n.parse().ok()) {
                                    numbers.lock().unwrap().push(n);
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(_)) | None => return,
                        }
                    }
                }
            })
        };
        Received {
            numbers,
            stop,
            task,
        }
    }

    fn count(&self) -> usize {
        self.numbers.lock().unwrap().len()
    }

    fn has(&self, n: u64) -> bool {
        self.numbers.lock().unwrap().contains(&n)
    }

    fn count_from(&self, from: u64) -> usize {
        self.numbers
            .lock()
            .unwrap()
            .iter()
            .filter(|&&n| n >= from)
            .count()
    }

    async fn finish(self) -> anyhow::Result<Vec<u64>> {
        let _ = self.stop.send(true);
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .context("the receiving task did not stop")??;
        Ok(Arc::try_unwrap(self.numbers)
            .map_err(|_| anyhow::anyhow!("numbers still shared"))?
            .into_inner()
            .unwrap())
    }
}

/// Connects to `/stream` (listening to the room or not) and waits for its `ready`.
async fn connect(s: &TestServer, listen: bool) -> anyhow::Result<Client> {
    let path = if listen {
        "/stream?listen=1"
    } else {
        "/stream"
    };
    let mut c = s.connect(path).await?;
    ensure!(c.recv_text().await? == "ready");
    asena_tests::subscribed(s).await?;
    Ok(c)
}

/// The stream from `sender`: numbered messages at [`PACE`].
struct Sender {
    client: Client,
    next: u64,
    ticks: tokio::time::Interval,
}

impl Sender {
    fn new(client: Client) -> Sender {
        let mut ticks = tokio::time::interval(PACE);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Sender {
            client,
            next: 0,
            ticks,
        }
    }

    async fn send_one(&mut self) -> anyhow::Result<u64> {
        self.ticks.tick().await;
        let n = self.next;
        self.client.send_text(&format!("m-{n}")).await?;
        self.next += 1;
        Ok(n)
    }

    async fn send(&mut self, count: usize) -> anyhow::Result<()> {
        for _ in 0..count {
            self.send_one().await?;
        }
        Ok(())
    }
}

/// The scenario of the module docs, against a broker of `kind`.
async fn outage_is_counted(kind: Kind) -> anyhow::Result<()> {
    let mut broker = Broker::start(kind)?;
    broker.ready(DEADLINE).await?;
    let url = broker.url();
    let proxy = Proxy::start(broker.port).await?;
    let (ta, tb) = (Typed::new(kind, &url), Typed::new(kind, &proxy.url(kind)));
    let a = instance(&ta).await?;
    let b = instance(&tb).await?;
    let received = Received::record(connect(&b, true).await?);
    let mut sender = Sender::new(connect(&a, false).await?);

    // Before: every message arrives.
    sender.send(20).await?;
    let sent = sender.next;
    asena_tests::within(
        DEADLINE,
        "the stream arrives before the outage",
        async || received.count() as u64 == sent,
    )
    .await?;
    let dropped_before = ta.stats().dropped;
    ensure!(dropped_before == 0, "nothing dropped yet: {:?}", ta.stats());

    // The broker dies between two messages; both instances notice.
    let (errors_a, errors_b) = (ta.stats().errors, tb.stats().errors);
    proxy.gate.send_replace(false);
    broker.kill();
    asena_tests::within(DEADLINE, "both transports notice the outage", async || {
        ta.stats().errors > errors_a && tb.stats().errors > errors_b
    })
    .await?;
    // While it is away, the stream goes on.
    sender.send(25).await?;

    // It comes back, the member's instance once the sender's has reconnected; the stream
    // goes on until 25 messages sent after the restart arrived.
    let reconnects = ta.stats().reconnects;
    broker.spawn()?;
    broker.ready(DEADLINE).await?;
    let after_restart = sender.next;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut gated = true;
    while received.count_from(after_restart) < 25 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "delivery did not resume after the restart: {:?}",
            ta.stats()
        );
        if gated && ta.stats().reconnects > reconnects {
            proxy.gate.send_replace(true);
            gated = false;
        }
        sender.send_one().await?;
    }
    let sent = sender.next;
    // Everything sent is settled: arrived, or counted as dropped.
    let settled = asena_tests::within(
        DEADLINE,
        "every message arrived or was counted",
        async || received.count() as u64 + ta.stats().dropped == sent,
    )
    .await;
    let last = sent - 1;
    ensure!(received.has(last), "the last message arrived");
    let numbers = received.finish().await?;
    let unique: BTreeSet<u64> = numbers.iter().copied().collect();
    let stats = ta.stats();
    let missed = sent - unique.len() as u64;
    ensure!(
        unique.len() == numbers.len(),
        "{kind:?}: duplicates received"
    );
    settled.with_context(|| {
        format!(
            "{kind:?}: {sent} sent, {} received, {missed} missed, but the sender's transport counted {} dropped ({stats:?})",
            unique.len(),
            stats.dropped
        )
    })?;
    ensure!(
        missed == stats.dropped && missed > 0,
        "{kind:?}: {missed} missed, {} counted ({stats:?})",
        stats.dropped
    );
    ensure!(
        stats.reconnects >= 1,
        "{kind:?}: a reconnection counted: {stats:?}"
    );
    stop_all([a, b]).await
}

asena_tests::on_each_broker! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    an_outage_is_counted => outage_is_counted(Kind);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nats_publish_larger_than_max_payload_is_refused_and_counted() -> anyhow::Result<()> {
    const MAX: usize = 4096;
    let broker = Broker::start_with(Kind::Nats, Some(MAX))?;
    broker.ready(DEADLINE).await?;
    let url = broker.url();
    let ta = Typed::new(Kind::Nats, &url);
    let a = instance(&ta).await?;
    let b = instance(&Typed::new(Kind::Nats, &url)).await?;
    let Typed::Nats(nats) = &ta else {
        unreachable!()
    };
    ensure!(
        nats.max_payload() == Some(MAX),
        "max_payload {:?}",
        nats.max_payload()
    );
    let mut listener = connect(&b, true).await?;
    let mut sender = connect(&a, false).await?;

    // Too large however it is measured: the sender is told, nobody gets it. Too large once
    // wrapped in the envelope: the transport refuses and counts it. Small: it crosses.
    let huge = "x".repeat(MAX + 1);
    let wrapped = "y".repeat(MAX - 20);
    sender.send_text(&huge).await?;
    let answer = sender.recv_text().await?;
    ensure!(answer == "refused:MESSAGE_TOO_LARGE", "{answer}");
    sender.send_text(&wrapped).await?;
    sender.send_text("small").await?;
    ensure!(
        listener.recv_text().await? == "small",
        "only the small message crossed"
    );
    asena_tests::within(DEADLINE, "the transport's refusal counted", async || {
        ta.stats().oversize == 1
    })
    .await?;
    let stats = ta.stats();
    ensure!(stats.dropped == 1, "refusals count as dropped: {stats:?}");
    ensure!(stats.published == 1, "{stats:?}");
    let refused_up_front = a.app.namespace("/stream").map(|n| n.stats().too_large());
    ensure!(refused_up_front == Some(1), "{refused_up_front:?}");

    // The metrics.
    let text = a.app.metrics_text();
    ensure!(
        text.contains("asena_transport_oversize_total 1"),
        "the exposition counts the transport's refusal:\n{text}"
    );
    ensure!(
        text.contains("asena_too_large_sends_total{namespace=\"/stream\"} 1"),
        "the exposition counts the refusal up front:\n{text}"
    );

    // The emitter has a caller to tell.
    let emitter = Emitter::connect(&url).await?;
    let error = emitter
        .to_room("/stream", ROOM, huge.as_str())
        .await
        .err()
        .context("the emitter refuses an oversize message")?;
    ensure!(
        format!("{error}").contains("exceeded"),
        "the error says why: {error}"
    );
    emitter.to_room("/stream", ROOM, "emitted").await?;
    ensure!(listener.recv_text().await? == "emitted");
    emitter.close().await;
    stop_all([a, b]).await
}

// ---------------------------------------------------------------------------------------
// Redis Sentinel: the fleet follows a failover

asena_tests::hall_service!(Hall, "/hall");

/// Asks the sentinel at `url` something, as a `redis-cli` would.
async fn sentinel_cmd(url: &str, args: &[&str]) -> anyhow::Result<redis::Value> {
    let client = redis::Client::open(url)?;
    let mut conn = tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await??;
    Ok(redis::cmd("SENTINEL")
        .arg(args)
        .query_async(&mut conn)
        .await?)
}

/// The port of the master the sentinel at `url` names for `m`.
async fn master_port(url: &str) -> anyhow::Result<Option<u16>> {
    let value = sentinel_cmd(url, &["get-master-addr-by-name", "m"]).await?;
    let addr: Option<(String, String)> = redis::from_redis_value(value).ok();
    Ok(addr.and_then(|(_, port)| port.parse().ok()))
}

/// Two instances reach a Sentinel-monitored Redis through the sentinel, then the sentinel
/// fails the master over to its replica and the old master dies: the instances, told by
/// the sentinel where the new master is when they reconnect, keep sharing the room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_transport_follows_a_failover() -> anyhow::Result<()> {
    use asena_runtime::transport::RedisTransport;
    use asena_tests::broker::{Process, redis_server};
    use redis::sentinel::{SentinelClient, SentinelServerType};

    let (primary_port, replica_port, sentinel_port) = (
        asena_tests::broker::free_port()?,
        asena_tests::broker::free_port()?,
        asena_tests::broker::free_port()?,
    );
    // Replication writes snapshots: they go to a directory of the test's own.
    let dir = std::env::temp_dir().join(asena_tests::unique("asena-sentinel"));
    std::fs::create_dir_all(&dir)?;
    let mut primary = Some(Process::spawn(
        redis_server(primary_port).current_dir(&dir),
    )?);
    let primary_addr = format!("127.0.0.1 {primary_port}");
    let _replica = Process::spawn(
        redis_server(replica_port)
            .args(["--replicaof", &primary_addr])
            .current_dir(&dir),
    )?;
    let conf = dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {sentinel_port}\nbind 127.0.0.1\ndir {}\n\
             sentinel monitor m 127.0.0.1 {primary_port} 1\n\
             sentinel down-after-milliseconds m 5000\n\
             sentinel failover-timeout m 10000\n",
            dir.display()
        ),
    )?;
    let sentinel = Process::spawn(
        std::process::Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel"),
    )?;
    let sentinel_url = format!("redis://127.0.0.1:{sentinel_port}");
    // The sentinel names the master and knows its replica (it must, to fail over).
    asena_tests::within(
        DEADLINE,
        "the sentinel knows master and replica",
        async || {
            let replicas = sentinel_cmd(&sentinel_url, &["replicas", "m"]).await;
            // What a Sentinel client accepts: the named master, up and answering as one.
            let named = match SentinelClient::build(
                vec![sentinel_url.as_str()],
                String::from("m"),
                None,
                SentinelServerType::Master,
            ) {
                Ok(mut client) => client.async_get_client().await.is_ok(),
                Err(_) => false,
            };
            named
                && matches!(master_port(&sentinel_url).await, Ok(Some(p)) if p == primary_port)
                && matches!(replicas, Ok(redis::Value::Array(r)) if !r.is_empty())
        },
    )
    .await?;

    let instance = async || {
        let sentinel = SentinelClient::build(
            vec![sentinel_url.as_str()],
            String::from("m"),
            None,
            SentinelServerType::Master,
        )?;
        start(
            isolated()
                .websocket::<Hall>()
                .transport(RedisTransport::sentinel(sentinel)),
        )
        .await
    };
    let (a, b) = (instance().await?, instance().await?);
    let (mut sender, _) = asena_tests::join_hall(&a, "r").await?;
    let (mut member, _) = asena_tests::join_hall(&b, "r").await?;
    let crossed = async |sender: &mut Client, member: &mut Client, text: &str| {
        asena_tests::until_some(DEADLINE, "a room message across instances", async || {
            sender.send_text(text).await?;
            Ok(
                tokio::time::timeout(Duration::from_millis(300), member.recv_text())
                    .await
                    .ok()
                    .transpose()?
                    .filter(|got| got == text),
            )
        })
        .await
    };
    crossed(&mut sender, &mut member, "before").await?;

    // Fail over to the replica, then take the old master away for good.
    asena_tests::within(DEADLINE, "the failover to the replica", async || {
        let _ = sentinel_cmd(&sentinel_url, &["failover", "m"]).await;
        matches!(master_port(&sentinel_url).await, Ok(Some(p)) if p == replica_port)
    })
    .await?;
    drop(primary.take());
    crossed(&mut sender, &mut member, "after").await?;
    for s in [&a, &b] {
        let stats = s.app.transport_stats().context("a broker transport")?;
        ensure!(
            stats.reconnects >= 1,
            "reconnected to the new master: {stats:?}"
        );
    }
    stop_all([a, b]).await?;
    drop(sentinel);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
