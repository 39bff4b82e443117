//! Interest-based routing over NATS and Redis: an instance subscribes to a room's subject or
//! channel while it has local members, so a room message reaches exactly the instances with
//! members (each member once) and an instance without members receives none of its
//! envelopes (read from its transport's counters). Broadcasts and messages to one socket
//! still reach every instance. Against the NATS server on 127.0.0.1:4222 and the Redis on
//! 127.0.0.1:6379 (started by the test command), and against real 3-node NATS and Redis
//! clusters on loopback that the tests start, with instances on different nodes; a NATS node,
//! a Redis Cluster node and a Redis server are restarted during traffic. On the Redis Cluster
//! both ways are checked: classic pub/sub by interest (`RedisTransport::new` on one node,
//! which the cluster bus copies to every node) and sharded pub/sub (`RedisTransport::cluster`,
//! which the tests prove keeps room messages off the bus and on the room's own node). A
//! managed service on a Redis Cluster reaches its users on instances attached to other nodes.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use asena_runtime::prelude::*;
use asena_runtime::transport::{NatsTransport, RedisTransport, TransportStats};
use asena_runtime::wire;
use asena_tests::broker::free_port;
use asena_tests::{Client, TestServer, WAIT, isolated, join_hall, start, unique, within};
use tokio::time::Instant;

asena_tests::hall_service!(Hall, "/hall");

/// An instance on `url` (NATS or Redis) with the fleet subject or channel `channel`, routing
/// rooms by interest unless `single`.
async fn instance(url: &str, channel: &str, single: bool) -> anyhow::Result<TestServer> {
    let builder = isolated().websocket::<Hall>();
    let builder = match (url.starts_with("nats://"), single) {
        (true, false) => builder.transport(NatsTransport::new(url).subject(channel)),
        (true, true) => {
            builder.transport(NatsTransport::new(url).subject(channel).single_subject())
        }
        (false, false) => builder.transport(
            RedisTransport::new(url)
                .channel(channel)
                .route_by_interest(),
        ),
        (false, true) => builder.transport(RedisTransport::new(url).channel(channel)),
    };
    start(builder).await
}

/// Instances a, b and c of the fleet on `channel`, at `urls` (see [`instance`]).
async fn three(urls: [&str; 3], channel: &str, single: bool) -> anyhow::Result<[TestServer; 3]> {
    let [a, b, c] = urls;
    Ok([
        instance(a, channel, single).await?,
        instance(b, channel, single).await?,
        instance(c, channel, single).await?,
    ])
}

/// An instance on the Redis Cluster that `node` belongs to, on sharded pub/sub.
async fn sharded_instance(node: &str, channel: &str) -> anyhow::Result<TestServer> {
    start(
        isolated()
            .websocket::<Hall>()
            .transport(RedisTransport::cluster([node]).channel(channel)),
    )
    .await
}

/// The Redis channel of room `room` of `/hall` for the fleet channel `channel`.
fn room_channel(channel: &str, room: &str) -> String {
    wire::redis_room_channel(
        channel,
        &wire::room_topic(wire::namespace_topic("/hall"), room),
    )
}

/// Stops every instance in turn.
async fn stop_all(servers: impl IntoIterator<Item = TestServer>) -> anyhow::Result<()> {
    for s in servers {
        s.stop().await?;
    }
    Ok(())
}

fn stats(server: &TestServer) -> TransportStats {
    server.app.transport_stats().unwrap_or_default()
}

/// A step of an outage during [`across_a_restart`].
enum Outage {
    /// Take the node away (and wait until the instance noticed, where it can tell).
    Down,
    /// Bring it back (and wait until the instance is connected again).
    Up,
}

/// Traffic from a1 to room r across a broker node's restart: ten messages b1 must all get in
/// order, `outage(Down)`, ten more, `outage(Up)`, then messages until b1 hears from r again,
/// then a broadcast as a marker. Checks that b1 got the first ten, and everything in order and
/// never twice; logs, as `what`, how many were sent and delivered (what the outage lost is
/// the difference).
async fn across_a_restart(
    what: &str,
    a1: &mut Client,
    b1: &mut Client,
    mut outage: impl AsyncFnMut(Outage) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let (mut sent, mut got) = (0u64, Vec::<u64>::new());
    for _ in 0..10 {
        a1.send_text(&format!("{sent}")).await?;
        sent += 1;
    }
    for _ in 0..10 {
        got.push(b1.recv_text().await?.parse()?);
    }
    outage(Outage::Down).await?;
    for _ in 0..10 {
        a1.send_text(&format!("{sent}")).await?;
        sent += 1;
    }
    outage(Outage::Up).await?;
    // Keep sending until b1 hears from r again (its subscription, and a's connection to the
    // room's node, are back).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "r's messages never reached b again"
        );
        a1.send_text(&format!("{sent}")).await?;
        sent += 1;
        if let Ok(Ok(text)) = tokio::time::timeout(Duration::from_millis(200), b1.recv_text()).await
        {
            got.push(text.parse()?);
            break;
        }
    }
    a1.send_text("all:end").await?;
    loop {
        let text = b1.recv_text().await?;
        if text == "end" {
            break;
        }
        got.push(text.parse()?);
    }
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "out of order or twice: {got:?}"
    );
    assert_eq!(got[..10], (0..10).collect::<Vec<u64>>());
    assert!(got.len() >= 11, "{got:?}");
    tracing::info!(
        "{what}: {sent} sent to r, {} delivered on b, {} lost during the outage",
        got.len(),
        sent - got.len() as u64
    );
    Ok(())
}

/// A member of `a_rooms` (`r,s`) on a and one of `b_rooms` on b, once each instance
/// subscribed to its member's rooms.
async fn members(
    a: &TestServer,
    a_rooms: &str,
    b: &TestServer,
    b_rooms: &str,
) -> anyhow::Result<(Client, Client)> {
    let (a1, _) = join_hall(a, a_rooms).await?;
    let (b1, _) = join_hall(b, b_rooms).await?;
    let count = |rooms: &str| rooms.split(',').count() as u64;
    within(WAIT, "both subscribed", async || {
        stats(a).subscriptions == count(a_rooms) && stats(b).subscriptions == count(b_rooms)
    })
    .await?;
    Ok((a1, b1))
}

/// A cluster whose nodes a test takes down and brings back.
enum Restartable {
    Nats(Cluster),
    Redis(RedisCluster),
}

impl Restartable {
    fn url(&self, node: usize) -> String {
        match self {
            Restartable::Nats(cluster) => cluster.url(node),
            Restartable::Redis(cluster) => cluster.url(node),
        }
    }

    /// Kills `node` (`Down`), or starts it again on its ports and waits until it is back in
    /// the cluster (`Up`).
    async fn node(&mut self, node: usize, step: Outage) -> anyhow::Result<()> {
        match (self, step) {
            (Restartable::Nats(cluster), Outage::Down) => cluster.kill(node),
            (Restartable::Redis(cluster), Outage::Down) => cluster.kill(node),
            (Restartable::Nats(cluster), Outage::Up) => {
                cluster.spawn(node)?;
                cluster.ready(node).await?;
            }
            (Restartable::Redis(cluster), Outage::Up) => {
                cluster.children[node] = Some(cluster.spawn(node)?);
                cluster.ready(node).await?;
            }
        }
        Ok(())
    }
}

/// Instances a and b of the fleet on `channel` on the cluster's nodes 0 and 1, a member of r
/// on each, and [`across_a_restart`]'s traffic from a's member while node 1 restarts. Once
/// node 1 is down, b's transport stats must say `noticed`; once it is up again, `back` (given
/// the stats at the outage and now) must hold within 15 s.
async fn node_restart(
    mut cluster: Restartable,
    what: &str,
    channel: &str,
    noticed: impl Fn(&TransportStats) -> bool,
    back: impl Fn(&TransportStats, &TransportStats) -> bool,
) -> anyhow::Result<()> {
    let a = instance(&cluster.url(0), channel, false).await?;
    let b = instance(&cluster.url(1), channel, false).await?;
    let (mut a1, mut b1) = members(&a, "r", &b, "r").await?;
    let mut at_outage = TransportStats::default();
    across_a_restart(what, &mut a1, &mut b1, async |step| {
        let down = matches!(step, Outage::Down);
        cluster.node(1, step).await?;
        if down {
            at_outage = stats(&b);
            within(WAIT, "b noticed", async || noticed(&stats(&b))).await
        } else {
            within(Duration::from_secs(15), "b is back", async || {
                back(&at_outage, &stats(&b))
            })
            .await
        }
    })
    .await?;
    stop_all([a, b]).await
}

/// Three instances; members of `r` on a and b, c only has a member of `q`. 20 messages to
/// `r`, one message to b's member by id, then a broadcast as a marker: returns what c's
/// transport received by the time c's member got the marker, and checks b's member got the
/// 20 exactly once, in order.
async fn route_twenty(
    a: &TestServer,
    b: &TestServer,
    c: &TestServer,
    interest: bool,
) -> anyhow::Result<u64> {
    let (mut a1, _) = join_hall(a, "r").await?;
    let (mut b1, b1_id) = join_hall(b, "r").await?;
    let (mut c1, _) = join_hall(c, "q").await?;
    if interest {
        within(WAIT, "every instance subscribed to its room", async || {
            stats(a).subscriptions == 1
                && stats(b).subscriptions == 1
                && stats(c).subscriptions == 1
        })
        .await?;
    } else {
        // One subject for everything: no room subscriptions, and nothing to wait for.
        assert_eq!(stats(b).subscriptions, 0);
    }
    for i in 0..20 {
        a1.send_text(&format!("m{i}")).await?;
    }
    for i in 0..20 {
        assert_eq!(b1.recv_text().await?, format!("m{i}"), "b1, message {i}");
        assert_eq!(a1.recv_text().await?, format!("m{i}"), "a1, message {i}");
    }
    // A socket on another instance, by id: on the fleet subject.
    a1.send_text(&format!("to:{b1_id}:direct")).await?;
    assert_eq!(b1.recv_text().await?, "direct");
    a1.send_text("all:end").await?;
    assert_eq!(c1.recv_text().await?, "end");
    // b1 got nothing twice: the next thing it sees is the broadcast.
    assert_eq!(b1.recv_text().await?, "end");
    Ok(stats(c).received)
}

asena_tests::on_each_broker! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    room_messages_reach_only_instances_with_members => only_instances_with_members;
    with_one_channel_every_instance_receives_everything => everything_on_one_channel;
    the_last_member_leaving_unsubscribes => last_member_leaving_unsubscribes_on;
}

async fn only_instances_with_members(url: &str) -> anyhow::Result<()> {
    let [a, b, c] = three([url; 3], &unique("interest"), false).await?;
    let c_received = route_twenty(&a, &b, &c, true).await?;
    // None of the 20 room messages reached c: only the direct message and the broadcast,
    // which take the fleet subject every instance receives.
    assert_eq!(c_received, 2, "c's transport: {:?}", stats(&c));
    assert_eq!(
        stats(&b).received,
        22,
        "20 room messages, the direct one, the broadcast"
    );
    stop_all([a, b, c]).await
}

async fn everything_on_one_channel(url: &str) -> anyhow::Result<()> {
    // The control: the same traffic in the single-subject layout reaches c too.
    let [a, b, c] = three([url; 3], &unique("single"), true).await?;
    let c_received = route_twenty(&a, &b, &c, false).await?;
    assert_eq!(c_received, 22, "c's transport: {:?}", stats(&c));
    stop_all([a, b, c]).await
}

async fn last_member_leaving_unsubscribes_on(url: &str) -> anyhow::Result<()> {
    last_member_leaving_unsubscribes(async |channel| instance(url, channel, false).await).await
}

asena_tests::managed_service!(ManagedHall, "/managed-hall");

/// Managed services share the fleet's transport, a Redis Cluster too: a user's session on
/// an instance attached to one node receives what an instance on another node sends to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_redis_cluster_managed_users_span_nodes() -> anyhow::Result<()> {
    let cluster = RedisCluster::start().await?;
    let on_node = async |node: String| {
        start(
            isolated()
                .websocket::<ManagedHall>()
                .transport(RedisTransport::cluster([node])),
        )
        .await
    };
    let (a, b) = (
        on_node(cluster.url(0)).await?,
        on_node(cluster.url(2)).await?,
    );
    let (mut alice, _) =
        asena_tests::managed_login(&b, "/managed-hall", json!({"user": "alice"})).await?;
    let managed = a
        .app
        .ulak::<ManagedHall>()
        .context("registered")?
        .managed()
        .raw();
    let got = asena_tests::until_some(WAIT, "a delivery across nodes", async || {
        managed.to_user("alice", ("note", "across"))?;
        tokio::time::timeout(Duration::from_millis(200), alice.recv_json())
            .await
            .ok()
            .transpose()
    })
    .await?;
    assert_eq!(got, json!({"event": "note", "data": "across"}));
    let stats = b.app.transport_stats().context("a broker transport")?;
    anyhow::ensure!(stats.received >= 1, "received counted: {stats:?}");
    stop_all([a, b]).await
}

/// The app's own settings reach the cluster's clients: credentials the nodes do not expect
/// fail the start with Redis's own answer, where the same transport without them starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_transport_connects_with_the_apps_client_settings() -> anyhow::Result<()> {
    let cluster = RedisCluster::start().await?;
    let transport = RedisTransport::cluster([cluster.url(0)])
        .cluster_client(|builder| builder.password("not-the-password"));
    let refused = start(isolated().websocket::<Hall>().transport(transport)).await;
    let error = format!("{:#}", refused.err().context("the start should fail")?);
    anyhow::ensure!(error.to_lowercase().contains("auth"), "{error}");
    let plain = RedisTransport::cluster([cluster.url(0)]).cluster_client(|builder| builder);
    let app = start(isolated().websocket::<Hall>().transport(plain)).await?;
    app.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_redis_cluster_the_last_member_leaving_sunsubscribes() -> anyhow::Result<()> {
    let cluster = RedisCluster::start().await?;
    let (first, second) = (cluster.url(0), cluster.url(2));
    let mut n = 0;
    last_member_leaving_unsubscribes(async |channel| {
        n += 1;
        sharded_instance(if n == 1 { &first } else { &second }, channel).await
    })
    .await
}

/// The last member leaving unsubscribes (after the linger) and a new one subscribes again;
/// `instance` starts an instance on the fleet subject or channel it is given.
async fn last_member_leaving_unsubscribes(
    mut instance: impl AsyncFnMut(&str) -> anyhow::Result<TestServer>,
) -> anyhow::Result<()> {
    let subject = unique("leave");
    let a = instance(&subject).await?;
    let b = instance(&subject).await?;
    let (mut a1, _) = join_hall(&a, "r").await?;
    let (b1, _) = join_hall(&b, "r").await?;
    let (mut b2, _) = join_hall(&b, "other").await?;
    within(WAIT, "b subscribed to r and other", async || {
        stats(&b).subscriptions == 2
    })
    .await?;
    b1.close().await?;
    within(WAIT, "b unsubscribed from r", async || {
        stats(&b).subscriptions == 1
    })
    .await?;
    let before = stats(&b).received;
    for i in 0..10 {
        a1.send_text(&format!("m{i}")).await?;
        assert_eq!(a1.recv_text().await?, format!("m{i}"));
    }
    a1.send_text("all:marker").await?;
    assert_eq!(b2.recv_text().await?, "marker");
    assert_eq!(
        stats(&b).received,
        before + 1,
        "b received none of r's messages after its last member left"
    );
    // A new member subscribes again and gets r's messages.
    let (mut b3, _) = join_hall(&b, "r").await?;
    within(WAIT, "b subscribed to r again", async || {
        stats(&b).subscriptions == 2
    })
    .await?;
    a1.send_text("again").await?;
    assert_eq!(b3.recv_text().await?, "again");
    stop_all([a, b]).await
}

/// A 3-node NATS cluster on loopback: three `nats-server` processes with routes to each
/// other, killed on drop.
struct Cluster {
    client_ports: [u16; 3],
    cluster_ports: [u16; 3],
    monitor_ports: [u16; 3],
    children: [Option<Child>; 3],
    name: String,
}

impl Cluster {
    async fn start() -> anyhow::Result<Cluster> {
        let mut cluster = Cluster {
            client_ports: [free_port()?, free_port()?, free_port()?],
            cluster_ports: [free_port()?, free_port()?, free_port()?],
            monitor_ports: [free_port()?, free_port()?, free_port()?],
            children: [None, None, None],
            name: unique("asena-test"),
        };
        for node in 0..3 {
            cluster.spawn(node)?;
        }
        for node in 0..3 {
            cluster.ready(node).await?;
        }
        Ok(cluster)
    }

    fn url(&self, node: usize) -> String {
        format!("nats://127.0.0.1:{}", self.client_ports[node])
    }

    fn spawn(&mut self, node: usize) -> anyhow::Result<()> {
        let bin = ["nats-server", "/usr/sbin/nats-server"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").output().is_ok())
            .context("nats-server is not installed (run scripts/services.sh)")?;
        let routes: Vec<String> = (0..3)
            .filter(|n| *n != node)
            .map(|n| format!("nats://127.0.0.1:{}", self.cluster_ports[n]))
            .collect();
        let child = Command::new(bin)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.client_ports[node].to_string(),
            ])
            .args(["-m", &self.monitor_ports[node].to_string()])
            .args(["--cluster_name", &self.name])
            .args([
                "--cluster",
                &format!("nats://127.0.0.1:{}", self.cluster_ports[node]),
            ])
            .args(["--routes", &routes.join(",")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start nats-server")?;
        self.children[node] = Some(child);
        Ok(())
    }

    /// Waits until the node accepts clients and has routes to both others.
    async fn ready(&self, node: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let monitor = format!("http://127.0.0.1:{}/routez", self.monitor_ports[node]);
        loop {
            let addr: SocketAddr = ([127, 0, 0, 1], self.client_ports[node]).into();
            if tokio::net::TcpStream::connect(addr).await.is_ok()
                && let Ok(resp) = asena_tests::http_get(&monitor).await
                && resp.json()?["num_routes"].as_u64() == Some(2)
            {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "NATS node {node} did not join the cluster within 15 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(&mut self, node: usize) {
        if let Some(mut child) = self.children[node].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in 0..3 {
            self.kill(node);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_three_node_nats_cluster_with_instances_on_different_nodes() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let urls = [cluster.url(0), cluster.url(1), cluster.url(2)];
    let [a, b, c] = three(
        urls.each_ref().map(String::as_str),
        &unique("cluster"),
        false,
    )
    .await?;
    let c_received = route_twenty(&a, &b, &c, true).await?;
    assert_eq!(c_received, 2, "c's transport: {:?}", stats(&c));
    stop_all([a, b, c]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_restart_during_traffic_resubscribes_and_delivers_nothing_twice()
-> anyhow::Result<()> {
    // b (node 1) loses its node half-way, which comes back on the same ports. b must get its
    // room subscription back and see every message at most once, in order. NATS keeps b's
    // subscriptions through the outage: b is back once it reconnected.
    let cluster = Restartable::Nats(Cluster::start().await?);
    node_restart(
        cluster,
        "node restart",
        &unique("restart"),
        |_| true,
        |at_outage, now| now.reconnects > at_outage.reconnects,
    )
    .await
}

/// A 3-node Redis Cluster on loopback (three `redis-server` processes with
/// `cluster-enabled yes`, joined by `redis-cli --cluster create`), killed on drop. Classic
/// pub/sub works across its nodes: a message published on one reaches subscribers on all.
struct RedisCluster {
    ports: [u16; 3],
    /// The nodes' cluster bus ports, chosen here: Redis's default (the port + 10,000) can be
    /// past 65,535 or taken for a port from the ephemeral range.
    bus_ports: [u16; 3],
    children: Vec<Option<Child>>,
    dir: std::path::PathBuf,
}

impl RedisCluster {
    /// Starts a cluster; an attempt that does not form one (a port taken between choosing and
    /// binding it, a node slow to join) is logged and made again on fresh ports, three times
    /// at most.
    async fn start() -> anyhow::Result<RedisCluster> {
        let mut attempt = 1;
        loop {
            match Self::try_start().await {
                Ok(cluster) => return Ok(cluster),
                Err(error) if attempt < 3 => {
                    tracing::warn!("a Redis Cluster did not form (attempt {attempt}): {error:#}");
                    attempt += 1;
                }
                Err(error) => return Err(error.context("no Redis Cluster after 3 attempts")),
            }
        }
    }

    async fn try_start() -> anyhow::Result<RedisCluster> {
        let dir = std::env::temp_dir().join(unique("asena-redis-cluster"));
        std::fs::create_dir_all(&dir)?;
        let mut cluster = RedisCluster {
            ports: [free_port()?, free_port()?, free_port()?],
            bus_ports: [free_port()?, free_port()?, free_port()?],
            children: Vec::new(),
            dir,
        };
        for node in 0..3 {
            let child = cluster.spawn(node)?;
            cluster.children.push(Some(child));
        }
        for port in cluster.ports {
            within(WAIT, &format!("redis node {port} accepting"), async || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            })
            .await?;
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let created = tokio::task::spawn_blocking(move || {
            Command::new("redis-cli")
                .arg("--cluster")
                .arg("create")
                .args(&nodes)
                .args(["--cluster-replicas", "0", "--cluster-yes"])
                .output()
        })
        .await?
        .context("cannot run redis-cli (the redis-tools package; run scripts/services.sh)")?;
        // redis-cli reports its errors on stdout.
        anyhow::ensure!(
            created.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        for node in 0..3 {
            cluster.ready(node).await?;
        }
        Ok(cluster)
    }

    /// Starts node `node` (again: its cluster config file is kept, so it rejoins).
    fn spawn(&self, node: usize) -> anyhow::Result<Child> {
        let port = self.ports[node];
        Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-port", &self.bus_ports[node].to_string()])
            .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start redis-server (run scripts/services.sh)")
    }

    /// Waits until the node says the cluster is ok.
    async fn ready(&self, node: usize) -> anyhow::Result<()> {
        let port = self.ports[node];
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let info: Option<String> = self.query(node, redis::cmd("CLUSTER").arg("INFO")).await;
            if info
                .as_deref()
                .is_some_and(|i| i.contains("cluster_state:ok"))
            {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "node {port}: {info:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(&mut self, node: usize) {
        if let Some(mut child) = self.children[node].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self, node: usize) -> String {
        format!("redis://127.0.0.1:{}", self.ports[node])
    }

    /// `cmd`'s answer from node `node` alone (no redirections), or `None`.
    async fn query<T: redis::FromRedisValue>(&self, node: usize, cmd: &redis::Cmd) -> Option<T> {
        let client = redis::Client::open(self.url(node)).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        cmd.query_async(&mut conn).await.ok()
    }

    /// Classic pub/sub messages the nodes have passed to each other over the cluster bus so
    /// far (`cluster_stats_messages_publish_sent`, summed over the nodes).
    async fn bus_publishes(&self) -> anyhow::Result<u64> {
        let mut total = 0;
        for node in 0..3 {
            let info: String = self
                .query(node, redis::cmd("CLUSTER").arg("INFO"))
                .await
                .with_context(|| format!("CLUSTER INFO of node {node}"))?;
            // The line is left out while the count is 0.
            total += info
                .lines()
                .find_map(|l| l.strip_prefix("cluster_stats_messages_publish_sent:"))
                .map_or(Ok(0), |n| n.trim().parse::<u64>())?;
        }
        Ok(total)
    }

    /// Each node's count of sharded subscribers to `channel` (`PUBSUB SHARDNUMSUB`; a node
    /// that does not own the channel's slot redirects, which counts as 0).
    async fn shard_subscribers(&self, channel: &str) -> [u64; 3] {
        let mut counts = [0; 3];
        for (node, count) in counts.iter_mut().enumerate() {
            let answer: Option<(String, u64)> = self
                .query(node, redis::cmd("PUBSUB").arg("SHARDNUMSUB").arg(channel))
                .await;
            *count = answer.map_or(0, |(_, n)| n);
        }
        counts
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in 0..self.children.len() {
            self.kill(node);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three instances of the fleet on `channel`, one on each node of `cluster` (rooms on sharded
/// channels, or classic pub/sub by interest), route twenty room messages ([`route_twenty`]).
/// Returns the instances, what c's transport received, and how many messages the nodes sent
/// each other over the cluster bus meanwhile.
async fn twenty_over_the_cluster(
    cluster: &RedisCluster,
    channel: &str,
    sharded: bool,
) -> anyhow::Result<([TestServer; 3], u64, u64)> {
    let mut fleet = Vec::new();
    for node in 0..3 {
        let url = cluster.url(node);
        fleet.push(if sharded {
            sharded_instance(&url, channel).await?
        } else {
            instance(&url, channel, false).await?
        });
    }
    let [a, b, c]: [TestServer; 3] = fleet
        .try_into()
        .map_err(|_| anyhow::anyhow!("three instances"))?;
    let bus = cluster.bus_publishes().await?;
    let c_received = route_twenty(&a, &b, &c, true).await?;
    let bus = cluster.bus_publishes().await? - bus;
    Ok(([a, b, c], c_received, bus))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_three_node_redis_cluster_with_instances_on_different_nodes() -> anyhow::Result<()> {
    let cluster = RedisCluster::start().await?;
    let ([a, b, c], c_received, bus) =
        twenty_over_the_cluster(&cluster, &unique("cluster"), false).await?;
    assert_eq!(c_received, 2, "c's transport: {:?}", stats(&c));
    // Classic pub/sub: c received none of r's messages, but every node was sent every one
    // of them (the control for the sharded test below).
    assert!(bus >= 2 * 22, "{bus} messages over the cluster bus");
    stop_all([a, b, c]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_redis_cluster_sharded_rooms_stay_on_their_node() -> anyhow::Result<()> {
    let cluster = RedisCluster::start().await?;
    let channel = unique("sharded");
    let ([a, b, c], c_received, bus) = twenty_over_the_cluster(&cluster, &channel, true).await?;
    assert_eq!(c_received, 2, "c's transport: {:?}", stats(&c));
    assert_eq!(stats(&b).received, 22, "b's transport: {:?}", stats(&b));
    // Only the message to one socket and the broadcast (the fleet channel, classic pub/sub)
    // crossed the bus, to the two other nodes each; r's 20 messages crossed none.
    assert!(bus <= 2 * 2, "{bus} messages over the cluster bus");
    // r's channel has its two subscribers (a and b) on the node that owns its slot, and q's
    // has c's; no other node has any.
    for (room, members) in [("r", 2), ("q", 1)] {
        let counts = cluster
            .shard_subscribers(&room_channel(&channel, room))
            .await;
        assert_eq!(counts.iter().sum::<u64>(), members, "{room}: {counts:?}");
        assert_eq!(
            counts.iter().filter(|n| **n > 0).count(),
            1,
            "{room}: {counts:?}"
        );
    }
    stop_all([a, b, c]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sharded_fleet_from_a_cluster_url_hears_the_emitter() -> anyhow::Result<()> {
    let cluster = RedisCluster::start().await?;
    // As ASENA_TRANSPORT would give it: every node named, the first one down (the client
    // finds the cluster through the others).
    let dead = free_port()?;
    let url = format!(
        "redis-cluster://127.0.0.1:{dead},127.0.0.1:{},127.0.0.1:{}",
        cluster.ports[1], cluster.ports[2]
    );
    let transport = asena_runtime::transport::from_url(&url)?;
    let a = start(isolated().websocket::<Hall>().transport_arc(transport)).await?;
    anyhow::ensure!(
        a.app.transport_routes_by_interest(),
        "not routing by interest"
    );
    // The Emitter, given the same URL, reaches a's room from outside the fleet.
    let (mut a1, _) = join_hall(&a, "r").await?;
    within(WAIT, "a subscribed", async || stats(&a).subscriptions == 1).await?;
    let emitter = asena_runtime::transport::Emitter::connect(&url).await?;
    emitter.to_room("/hall", "r", "from the emitter").await?;
    assert_eq!(a1.recv_text().await?, "from the emitter");
    // The emitter's room message took the fleet channel (classic pub/sub), as any Asena
    // emitter's would.
    assert_eq!(stats(&a).received, 1, "{:?}", stats(&a));
    a.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_of_a_rooms_shard_resubscribes_and_delivers_nothing_twice() -> anyhow::Result<()>
{
    let mut cluster = RedisCluster::start().await?;
    let channel = unique("shard-restart");
    let a = sharded_instance(&cluster.url(0), &channel).await?;
    let b = sharded_instance(&cluster.url(1), &channel).await?;
    let (mut a1, mut b1) = members(&a, "r", &b, "r").await?;
    let r = room_channel(&channel, "r");
    let counts = cluster.shard_subscribers(&r).await;
    let owner = counts
        .iter()
        .position(|n| *n == 2)
        .with_context(|| format!("no node has both subscribers of r: {counts:?}"))?;
    // The node that owns r's slot goes away during traffic and comes back on its port.
    let reconnects = stats(&b).reconnects;
    let what = "redis cluster shard restart";
    across_a_restart(what, &mut a1, &mut b1, async |step| {
        match step {
            Outage::Down => cluster.kill(owner),
            Outage::Up => {
                cluster.children[owner] = Some(cluster.spawn(owner)?);
                cluster.ready(owner).await?;
                within(
                    Duration::from_secs(15),
                    "both subscribed on the node again",
                    async || cluster.shard_subscribers(&r).await[owner] == 2,
                )
                .await?;
            }
        }
        Ok(())
    })
    .await?;
    assert!(stats(&b).reconnects > reconnects, "{:?}", stats(&b));
    tracing::info!("{what}: {} counted dropped by a", stats(&a).dropped);
    stop_all([a, b]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restart_resubscribes_every_room() -> anyhow::Result<()> {
    let port = free_port()?;
    let spawn = || {
        Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start redis-server")
    };
    let mut server = spawn()?;
    within(WAIT, "redis accepting", async || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await?;
    let url = format!("redis://127.0.0.1:{port}");
    let channel = unique("restart");
    let a = instance(&url, &channel, false).await?;
    let b = instance(&url, &channel, false).await?;
    let (mut a1, mut b1) = members(&a, "r", &b, "r,s").await?;
    a1.send_text("before").await?;
    assert_eq!(b1.recv_text().await?, "before");

    let _ = server.kill();
    let _ = server.wait();
    within(WAIT, "b noticed", async || stats(&b).subscriptions == 0).await?;
    let mut server = spawn()?;
    within(
        Duration::from_secs(15),
        "b resubscribed both rooms",
        async || stats(&b).subscriptions == 2 && stats(&a).subscriptions == 1,
    )
    .await?;
    // The publisher may need a moment of its own to reconnect: probe until r's messages flow.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut n = 0;
    loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "r's messages never reached b again"
        );
        n += 1;
        a1.send_text(&format!("probe-{n}")).await?;
        if let Ok(Ok(text)) = tokio::time::timeout(Duration::from_millis(200), b1.recv_text()).await
        {
            assert!(text.starts_with("probe-"), "{text}");
            break;
        }
    }
    stop_all([a, b]).await?;
    let _ = server.kill();
    let _ = server.wait();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_cluster_node_restart_resubscribes_and_delivers_nothing_twice() -> anyhow::Result<()>
{
    // b's node goes away during traffic and comes back on the same port; b notices, and is
    // back once it resubscribed.
    let cluster = Restartable::Redis(RedisCluster::start().await?);
    node_restart(
        cluster,
        "redis cluster node restart",
        &unique("cluster-restart"),
        |now| now.subscriptions == 0,
        |_, now| now.subscriptions == 1,
    )
    .await
}
