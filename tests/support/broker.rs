//! The brokers of the multi-instance tests: the shared Redis and NATS `scripts/services.sh`
//! runs on their default ports, and private servers for the tests that kill and restart a
//! broker (a process on a free loopback port, killed on drop, and a transport kept typed to
//! read its counters).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use asena_runtime::transport::{NatsTransport, RedisTransport, Transport, TransportStats};

/// The shared Redis; tests on it keep apart by [`unique`](crate::unique) names.
pub const REDIS: &str = "redis://127.0.0.1:6379";

/// The shared NATS; tests on it keep apart by [`unique`](crate::unique) names.
pub const NATS: &str = "nats://127.0.0.1:4222";

/// Which broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Redis,
    Nats,
}

impl Kind {
    /// The URL of this kind of broker on loopback at `port`.
    pub fn url(self, port: u16) -> String {
        match self {
            Kind::Redis => format!("redis://127.0.0.1:{port}"),
            Kind::Nats => format!("nats://127.0.0.1:{port}"),
        }
    }
}

/// A free TCP port on loopback.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `redis-server` on 127.0.0.1:`port`, keeping nothing on disk; more arguments may follow.
pub fn redis_server(port: u16) -> Command {
    let mut c = Command::new("redis-server");
    c.args([
        "--bind",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--save",
        "",
        "--appendonly",
        "no",
    ]);
    c
}

/// A child process, its output discarded, killed and waited for on drop.
#[derive(Debug)]
pub struct Process(Child);

impl Process {
    /// Starts `cmd`.
    pub fn spawn(cmd: &mut Command) -> anyhow::Result<Process> {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {:?} (run scripts/services.sh)",
                    cmd.get_program()
                )
            })?;
        Ok(Process(child))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A private broker process on a free port, killed on drop.
#[derive(Debug)]
pub struct Broker {
    pub kind: Kind,
    pub port: u16,
    /// NATS's HTTP monitoring port (`/connz`).
    pub monitor_port: u16,
    /// NATS's `max_payload`, when not the default.
    max_payload: Option<usize>,
    child: Option<Process>,
}

impl Broker {
    /// Starts a broker of `kind` with its defaults.
    pub fn start(kind: Kind) -> anyhow::Result<Broker> {
        Broker::start_with(kind, None)
    }

    /// Starts a broker of `kind`; for NATS with `max_payload` when given.
    pub fn start_with(kind: Kind, max_payload: Option<usize>) -> anyhow::Result<Broker> {
        let mut broker = Broker {
            kind,
            port: free_port()?,
            monitor_port: free_port()?,
            max_payload,
            child: None,
        };
        broker.spawn()?;
        Ok(broker)
    }

    pub fn url(&self) -> String {
        self.kind.url(self.port)
    }

    /// Starts the process (again, after [`kill`](Self::kill)), on the same ports.
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        let port = self.port.to_string();
        let mut cmd = match self.kind {
            Kind::Redis => redis_server(self.port),
            Kind::Nats => {
                let bin = ["nats-server", "/usr/sbin/nats-server"]
                    .into_iter()
                    .find(|b| Command::new(b).arg("--version").output().is_ok())
                    .context("nats-server not installed (run scripts/services.sh)")?;
                let mut c = Command::new(bin);
                c.args([
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-m",
                    &self.monitor_port.to_string(),
                ]);
                if let Some(max) = self.max_payload {
                    // Only a configuration file sets max_payload.
                    let conf = std::env::temp_dir().join(format!("asena-broker-{port}.conf"));
                    std::fs::write(&conf, format!("max_payload: {max}\n"))?;
                    c.arg("-c").arg(conf);
                }
                c
            }
        };
        self.child = Some(Process::spawn(&mut cmd)?);
        Ok(())
    }

    /// Waits (at most `limit`) until the broker accepts connections.
    pub async fn ready(&self, limit: Duration) -> anyhow::Result<()> {
        let addr = format!("127.0.0.1:{}", self.port);
        crate::within(limit, "broker accepting connections", async || {
            tokio::net::TcpStream::connect(&addr).await.is_ok()
        })
        .await
    }

    /// Kills the process (dropping it kills it too).
    pub fn kill(&mut self) {
        self.child = None;
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A transport of `kind`, kept typed to read its stats.
#[derive(Debug, Clone)]
pub enum Typed {
    Redis(Arc<RedisTransport>),
    Nats(Arc<NatsTransport>),
}

impl Typed {
    pub fn new(kind: Kind, url: &str) -> Typed {
        match kind {
            Kind::Redis => Typed::Redis(Arc::new(RedisTransport::new(url))),
            Kind::Nats => Typed::Nats(Arc::new(NatsTransport::new(url))),
        }
    }

    pub fn stats(&self) -> TransportStats {
        match self {
            Typed::Redis(t) => t.stats(),
            Typed::Nats(t) => t.stats(),
        }
    }

    pub fn as_dyn(&self) -> Arc<dyn Transport> {
        match self {
            Typed::Redis(t) => t.clone(),
            Typed::Nats(t) => t.clone(),
        }
    }
}

/// Two multi-threaded tests running the scenario `async fn scenario(Kind) -> anyhow::Result<()>`,
/// one on the shared Redis and one on the shared NATS:
/// `on_redis_and_nats!(fleet => fleet_on_redis, fleet_on_nats);`
#[macro_export]
macro_rules! on_redis_and_nats {
    ($scenario:ident => $redis:ident, $nats:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $redis() -> anyhow::Result<()> {
            $scenario($crate::broker::Kind::Redis).await
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $nats() -> anyhow::Result<()> {
            $scenario($crate::broker::Kind::Nats).await
        }
    };
}
