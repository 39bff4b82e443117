//! [`RedisTransport`]: fan-out across instances over Redis pub/sub.
//!
//! Every instance publishes to and subscribes to one channel (Asena's `asena:ws:transport`
//! unless [`RedisTransport::channel`] names another), with the [`wire`] envelope; a random pod id per
//! instance lets it drop its own messages, so every socket gets a message exactly once.
//!
//! Two connections per instance: a publisher (multiplexed, pipelined batches sent from a task,
//! so [`Transport::publish`] never blocks) and a subscriber. Both reconnect on their own with
//! exponential backoff. While Redis is away local delivery goes on; outgoing messages are
//! dropped, and every failure is logged (target `asena::transport`) and counted
//! ([`RedisTransport::stats`]).
//!
//! # Interest-based routing (opt-in)
//! [`RedisTransport::route_by_interest`] gives each room a channel of its own
//! ([`wire::redis_room_channel`]: `<channel>:r:<topic>`), and the instance subscribes to it
//! while it has a local member in the room, so it receives its own rooms' messages instead of
//! the whole fleet's. Subscription changes are made by the subscriber task, batched, without
//! ever blocking a join; an unsubscription waits [`LINGER`](super::subscriber::LINGER) and is cancelled by a join in the
//! meantime; after a reconnection every room is subscribed again. Broadcasts, messages to
//! one socket and the fleet's announcements stay on the fleet channel. It is off by default
//! because Asena (Bun) instances listen on the fleet channel only: a fleet that mixes with
//! them keeps the single channel.
//!
//! # Redis Cluster
//! [`RedisTransport::cluster`] talks to a Redis Cluster through a cluster-aware client and
//! routes rooms by interest on *sharded* pub/sub (`SPUBLISH`/`SSUBSCRIBE`): a room's channel
//! lives on the node that owns its hash slot, so its messages cross no other node. Classic
//! pub/sub also works on a cluster (`RedisTransport::new` with one node's URL), but every
//! node then passes every message to every other node. The fleet channel stays on classic
//! pub/sub in both, so an [`Emitter`](crate::transport::Emitter) publishing to any node reaches the
//! fleet. See `cluster.rs`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::Client;
use redis::aio::{PubSub, PubSubSink, PubSubStream};
use redis::cluster::ClusterClientBuilder;
use redis::sentinel::SentinelClient;
use tokio::sync::mpsc;

use super::broker::{BrokerCore, CONNECT_TIMEOUT, Tasks, broker_methods, broker_transport_methods};
use super::counters::TransportStats;
use super::publisher::RESUBSCRIBE_GRACE;
use super::subscriber::{Event, Failed, Interest, Subscription};
use super::{BoxFuture, Inbound, Outbound, Transport, TransportError};
use crate::error::BoxError;
use crate::wire;

mod cluster;
pub(crate) mod publisher;
mod source;

use publisher::Publisher;
use source::Source;

/// The scheme of a URL naming a Redis Cluster's nodes ([`RedisTransport::from_cluster_url`]).
pub(crate) const CLUSTER_SCHEME: &str = "redis-cluster://";

/// Fan-out across instances over Redis pub/sub.
///
/// ```no_run
/// use asena_runtime::{Asena};
/// use asena_runtime::transport::RedisTransport;
/// # async fn run() -> Result<(), asena_runtime::Error> {
/// let app = Asena::builder()
///     .transport(RedisTransport::new("redis://127.0.0.1:6379"))
///     .build()
///     .await?; // fails when Redis cannot be reached
/// # Ok(()) }
/// ```
pub struct RedisTransport {
    core: BrokerCore,
    /// Room messages on their rooms' channels, or everything on one (the default).
    by_interest: bool,
    /// The nodes of a Redis Cluster ([`RedisTransport::cluster`]), or none for one server.
    cluster: Option<Vec<String>>,
    /// The app's own settings of the cluster's clients ([`RedisTransport::cluster_client`]).
    configure: Option<cluster::Configure>,
    /// A client the app configured itself ([`RedisTransport::with_client`]) or a Sentinel
    /// ([`RedisTransport::sentinel`]), used instead of a client opened from the URL.
    source: Option<Source>,
}

impl RedisTransport {
    /// A transport to the Redis at `url` (`redis://host:port[/db]`). Nothing connects until
    /// the app starts; an unreachable Redis then fails the startup.
    pub fn new(url: impl Into<String>) -> RedisTransport {
        RedisTransport {
            core: BrokerCore::new(url.into(), wire::REDIS_CHANNEL),
            by_interest: false,
            cluster: None,
            configure: None,
            source: None,
        }
    }

    /// A transport over a client the app configured itself (TLS, credentials, database,
    /// protocol), as Asena's `RedisTransport` takes an existing client. The transport opens
    /// its publishing and subscribing connections from it, and again from it after a broker
    /// outage. Logs and stats name the server by its address, without credentials.
    ///
    /// ```no_run
    /// use asena_runtime::transport::RedisTransport;
    /// # fn run() -> redis::RedisResult<()> {
    /// let client = redis::Client::open("rediss://:secret@cache.internal:6380/2")?;
    /// let transport = RedisTransport::with_client(client);
    /// # let _ = transport; Ok(()) }
    /// ```
    #[doc(alias = "RedisTransport(client)")]
    pub fn with_client(client: Client) -> RedisTransport {
        let address = client.get_connection_info().addr().to_string();
        RedisTransport {
            source: Some(Source::Client(client)),
            ..RedisTransport::new(format!("redis://{address}"))
        }
    }

    /// A transport to the master of a service that Redis Sentinel monitors, as Asena's
    /// `RedisTransport` takes a Sentinel-aware client. The sentinels are asked for the master
    /// when the app starts and again at every reconnection, so after a failover (Sentinel
    /// disconnects the old master's clients) the fleet follows the new master. What is
    /// published while no master is reachable is dropped and counted, as in any outage.
    /// Logs and stats name it `redis-sentinel`.
    ///
    /// ```no_run
    /// use asena_runtime::transport::RedisTransport;
    /// use redis::sentinel::{SentinelClient, SentinelServerType};
    /// # fn run() -> redis::RedisResult<()> {
    /// let sentinel = SentinelClient::build(
    ///     vec!["redis://10.0.0.1:26379", "redis://10.0.0.2:26379"],
    ///     String::from("mymaster"),
    ///     None,
    ///     SentinelServerType::Master,
    /// )?;
    /// let transport = RedisTransport::sentinel(sentinel);
    /// # let _ = transport; Ok(()) }
    /// ```
    #[doc(alias = "Sentinel")]
    pub fn sentinel(sentinel: SentinelClient) -> RedisTransport {
        RedisTransport {
            source: Some(Source::Sentinel(Arc::new(tokio::sync::Mutex::new(
                sentinel,
            )))),
            ..RedisTransport::new("redis-sentinel")
        }
    }

    /// A transport to the Redis Cluster that `nodes` belong to (`redis://host:port` each; one
    /// reachable node is enough, the client discovers the rest). Rooms are routed by interest
    /// on sharded pub/sub (module docs); broadcasts, messages to one socket and the fleet's
    /// announcements use the fleet channel's classic pub/sub. Every instance of the fleet
    /// must use it; Asena (Bun) instances cannot share such a fleet's rooms.
    ///
    /// ```no_run
    /// use asena_runtime::{Asena};
    /// use asena_runtime::transport::RedisTransport;
    /// # async fn run() -> Result<(), asena_runtime::Error> {
    /// let app = Asena::builder()
    ///     .transport(RedisTransport::cluster([
    ///         "redis://10.0.0.1:7000",
    ///         "redis://10.0.0.2:7000",
    ///     ]))
    ///     .build()
    ///     .await?; // fails when no node can be reached
    /// # Ok(()) }
    /// ```
    pub fn cluster<I>(nodes: I) -> RedisTransport
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let nodes: Vec<String> = nodes.into_iter().map(Into::into).collect();
        let mut transport = RedisTransport::new(nodes.join(","));
        transport.by_interest = true;
        transport.cluster = Some(nodes);
        transport
    }

    /// Configures the clients of a [`cluster`](RedisTransport::cluster) transport as the app
    /// needs (TLS, credentials, RESP version of commands, read from replicas...), as Asena's
    /// `RedisTransport` takes a cluster client the app built. `configure` gets redis-rs's
    /// builder for the nodes and returns it changed; the transport then sets its own
    /// timeouts and retries (so an unreachable node fails a send within seconds instead of
    /// stalling it) and, on its subscribing client, the pushes it listens to. It runs for
    /// each client the transport makes. No effect on a transport to one server.
    ///
    /// ```no_run
    /// use asena_runtime::transport::RedisTransport;
    /// let transport = RedisTransport::cluster(["rediss://10.0.0.1:7000"])
    ///     .cluster_client(|builder| builder.username("fleet").password("s3cret"));
    /// # let _ = transport;
    /// ```
    #[doc(alias = "Cluster")]
    pub fn cluster_client<F>(mut self, configure: F) -> Self
    where
        F: Fn(ClusterClientBuilder) -> ClusterClientBuilder + Send + Sync + 'static,
    {
        self.configure = Some(Arc::new(configure));
        self
    }

    /// A [`cluster`](RedisTransport::cluster) transport from a `redis-cluster://` URL, which
    /// names the nodes separated by commas (`redis-cluster://10.0.0.1:7000,10.0.0.2:7000`,
    /// each with its own `user:password@` if needed), as `ASENA_TRANSPORT` may. `None` for any
    /// other URL, or one without a node.
    ///
    /// ```
    /// use asena_runtime::transport::RedisTransport;
    /// let t = RedisTransport::from_cluster_url("redis-cluster://10.0.0.1:7000,10.0.0.2:7000").unwrap();
    /// assert!(t.is_cluster());
    /// assert_eq!(t.url(), "redis://10.0.0.1:7000,redis://10.0.0.2:7000");
    /// assert!(RedisTransport::from_cluster_url("redis://10.0.0.1:7000").is_none());
    /// assert!(RedisTransport::from_cluster_url("redis-cluster://").is_none());
    /// ```
    pub fn from_cluster_url(url: &str) -> Option<RedisTransport> {
        let nodes: Vec<String> = url
            .strip_prefix(CLUSTER_SCHEME)?
            .split(',')
            .map(str::trim)
            .filter(|node| !node.is_empty())
            .map(|node| format!("redis://{node}"))
            .collect();
        (!nodes.is_empty()).then(|| RedisTransport::cluster(nodes))
    }

    /// Whether this transport talks to a Redis Cluster ([`RedisTransport::cluster`]).
    pub fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// Gives every room a channel of its own, subscribed to only by the instances with a
    /// member in it (module docs). Every instance of the fleet must use it: one on the single
    /// channel (or an Asena instance) would not hear room messages. A
    /// [`cluster`](RedisTransport::cluster) transport always routes by interest.
    pub fn route_by_interest(mut self) -> Self {
        self.by_interest = true;
        self
    }

    async fn start(&self, inbound: Inbound) -> Result<(), TransportError> {
        self.core.check_startable("redis")?;
        if let Some(nodes) = &self.cluster {
            return self.start_cluster(nodes, inbound).await;
        }
        let source = match &self.source {
            Some(source) => source.clone(),
            None => Source::Client(
                Client::open(self.core.url.as_str())
                    .map_err(|_| TransportError::InvalidUrl(self.core.url.clone()))?,
            ),
        };
        let client = source
            .client()
            .await
            .map_err(|e| self.core.connect_error(e))?;
        let publisher = publisher::connect(&client)
            .await
            .map_err(|e| self.core.connect_error(e))?;
        let patterns = channel_patterns(&inbound);
        let subscriber = connect_subscriber(&client, &self.core.channel, &patterns)
            .await
            .map_err(|e| self.core.connect_error(e))?;

        let publish = Publisher {
            source: source.clone(),
            conn: publisher,
            channel: self.core.channel.clone(),
            pod_id: self.core.pod_id.clone(),
            by_interest: self.by_interest,
            counters: self.core.counters.clone(),
        };
        let subscription = Subscriber::new(source, self.core.channel.clone(), patterns, subscriber);
        self.core.run(
            Tasks {
                publish,
                subscription,
                inbound,
                by_interest: self.by_interest,
                link: Arc::default(),
                grace: RESUBSCRIBE_GRACE,
            },
            (),
        );
        Ok(())
    }

    async fn start_cluster(
        &self,
        nodes: &[String],
        inbound: Inbound,
    ) -> Result<(), TransportError> {
        if nodes.is_empty() {
            return Err(TransportError::InvalidUrl(String::new()));
        }
        let (pushes_tx, pushes) = mpsc::unbounded_channel();
        let connect = |pushes| async {
            let client = cluster::client(nodes, self.configure.as_ref(), pushes)
                .map_err(|_| TransportError::InvalidUrl(self.core.url.clone()))?;
            cluster::connect(&client)
                .await
                .map_err(|e| self.core.connect_error(e))
        };
        let publisher = connect(None).await?;
        let mut subscriber = connect(Some(pushes_tx)).await?;
        subscriber
            .subscribe(&self.core.channel)
            .await
            .map_err(|e| self.core.connect_error(e))?;
        let patterns = channel_patterns(&inbound);
        if !patterns.is_empty() {
            subscriber
                .psubscribe(&patterns)
                .await
                .map_err(|e| self.core.connect_error(e))?;
        }

        let publish = cluster::Publisher {
            conn: publisher,
            channel: self.core.channel.clone(),
            pod_id: self.core.pod_id.clone(),
            counters: self.core.counters.clone(),
        };
        self.core.run(
            Tasks {
                publish,
                subscription: cluster::Subscriber::new(subscriber, pushes),
                inbound,
                by_interest: true,
                link: Arc::default(),
                // The cluster client reconnects a node and subscribes it again within its
                // retries; what it could not send meanwhile is counted as dropped.
                grace: Duration::ZERO,
            },
            (),
        );
        Ok(())
    }
}

broker_methods! {
    RedisTransport,
    /// Uses `channel` instead of the default [`wire::REDIS_CHANNEL`]: instances (and emitters)
    /// share rooms only on the same Redis channel.
    channel,
    /// The Redis channel this transport publishes to and listens on.
    channel_name
}

impl Transport for RedisTransport {
    broker_transport_methods!("redis");

    fn publish(&self, message: Outbound) {
        self.core.enqueue("redis", message);
    }

    fn routes_by_interest(&self) -> bool {
        self.by_interest
    }

    fn subscribe(&self, topic: &str) {
        self.core
            .want(|| Interest::Add(wire::redis_room_channel(&self.core.channel, topic)));
    }

    fn unsubscribe(&self, topic: &str) {
        self.core
            .want(|| Interest::Remove(wire::redis_room_channel(&self.core.channel, topic)));
    }

    fn destroy(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if self.core.stop().await.is_some() {
                tracing::info!(target: "asena::transport", transport = "redis", pod_id = %self.core.pod_id, "disconnected");
            }
        })
    }
}

/// The Redis patterns of the named channels the app listens to: `<prefix>:*` for each.
pub(crate) fn channel_patterns(inbound: &Inbound) -> Vec<String> {
    inbound
        .channel_prefixes()
        .into_iter()
        .map(|prefix| format!("{prefix}:*"))
        .collect()
}

/// A pub/sub connection on the fleet's `channel` and the named channels' `patterns`.
async fn connect_subscriber(
    client: &Client,
    channel: &str,
    patterns: &[String],
) -> Result<PubSub, BoxError> {
    let fut = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        if !patterns.is_empty() {
            pubsub.psubscribe(patterns).await?;
        }
        Ok::<_, redis::RedisError>(pubsub)
    };
    Ok(tokio::time::timeout(CONNECT_TIMEOUT, fut)
        .await
        .map_err(|_| "timed out")??)
}

/// The subscription of one Redis server: a pub/sub connection, made again when lost.
struct Subscriber {
    source: Source,
    /// The fleet channel.
    channel: String,
    /// The named channels' patterns (`<prefix>:*`).
    patterns: Vec<String>,
    sink: PubSubSink,
    stream: PubSubStream,
}

impl Subscriber {
    fn new(source: Source, channel: String, patterns: Vec<String>, pubsub: PubSub) -> Subscriber {
        let (sink, stream) = pubsub.split();
        Subscriber {
            source,
            channel,
            patterns,
            sink,
            stream,
        }
    }
}

/// A message's bytes, left where the client put them.
struct Payload(redis::Msg);

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        self.0.get_payload_bytes()
    }
}

impl Subscription for Subscriber {
    type Payload = Payload;
    const NAME: &'static str = "redis";

    async fn next(&mut self) -> Event<Payload> {
        match self.stream.next().await {
            Some(msg) if msg.from_pattern() => {
                Event::Channel(msg.get_channel_name().to_owned(), Payload(msg))
            }
            Some(msg) => Event::Envelope(Payload(msg)),
            None => Event::Lost,
        }
    }

    async fn subscribe(&mut self, rooms: Vec<String>) -> Result<(), Failed> {
        self.sink
            .subscribe(rooms)
            .await
            .map_err(|_| Failed::Connection)
    }

    async fn unsubscribe(&mut self, rooms: Vec<String>) -> Result<(), Failed> {
        self.sink
            .unsubscribe(rooms)
            .await
            .map_err(|_| Failed::Connection)
    }

    async fn reconnect(&mut self) -> Result<(), BoxError> {
        let client = self.source.client().await?;
        let pubsub = connect_subscriber(&client, &self.channel, &self.patterns).await?;
        (self.sink, self.stream) = pubsub.split();
        Ok(())
    }
}
