//! Publish into a running fleet from a process that serves nothing (a worker, a cron job, a
//! CLI), with [`Emitter`](asena_runtime::Emitter).
//!
//! Start two chat instances sharing Redis, then announce to a room on both:
//!
//! ```text
//! ASENA_TRANSPORT=redis://127.0.0.1:6379 PORT=3001 cargo run --example chat
//! ASENA_TRANSPORT=redis://127.0.0.1:6379 PORT=3002 cargo run --example chat
//! cargo run --example emit -- --namespace /chat --room general \
//!     --json '{"type":"announcement","message":"hi"}'
//! ```
//!
//! Options:
//! - `--url URL`: the broker (`redis://…` or `nats://…`); default `ASENA_TRANSPORT`, else
//!   `redis://127.0.0.1:6379`.
//! - `--namespace PATH`: the websocket service path (default `/chat`).
//! - one target: `--room NAME`, `--socket ID` or `--broadcast`.
//! - the message: `--json JSON` (validated, sent as JSON text) or `--text TEXT`.

use anyhow::{Context as _, bail};
use asena_runtime::Emitter;

#[derive(Debug)]
enum Target {
    Room(String),
    Socket(String),
    Broadcast,
}

#[derive(Debug)]
struct Args {
    url: String,
    namespace: String,
    target: Target,
    message: String,
}

const USAGE: &str = "usage: emit [--url URL] [--namespace /chat] (--room NAME | --socket ID | --broadcast) (--json JSON | --text TEXT)";

fn parse(mut argv: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let mut url = std::env::var("ASENA_TRANSPORT")
        .ok()
        .filter(|u| !u.trim().is_empty() && u.trim() != "local")
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let mut namespace = "/chat".to_owned();
    let mut target = None;
    let mut message = None;
    while let Some(arg) = argv.next() {
        let mut value = |name: &str| {
            argv.next()
                .with_context(|| format!("{name} needs a value\n{USAGE}"))
        };
        let set_target = |target: &mut Option<Target>, t: Target| {
            if target.replace(t).is_some() {
                bail!("give only one of --room, --socket, --broadcast\n{USAGE}");
            }
            Ok(())
        };
        match arg.as_str() {
            "--url" => url = value("--url")?,
            "--namespace" => namespace = value("--namespace")?,
            "--room" => set_target(&mut target, Target::Room(value("--room")?))?,
            "--socket" => set_target(&mut target, Target::Socket(value("--socket")?))?,
            "--broadcast" => set_target(&mut target, Target::Broadcast)?,
            "--json" => {
                let raw = value("--json")?;
                serde_json::from_str::<serde_json::Value>(&raw)
                    .context("--json is not valid JSON")?;
                // Sent exactly as given (key order kept).
                message = Some(raw);
            }
            "--text" => message = Some(value("--text")?),
            "-h" | "--help" => bail!("{USAGE}"),
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    if !namespace.starts_with('/') {
        namespace.insert(0, '/');
    }
    Ok(Args {
        url,
        namespace,
        target: target.with_context(|| format!("no target given\n{USAGE}"))?,
        message: message.with_context(|| format!("no message given\n{USAGE}"))?,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = parse(std::env::args().skip(1))?;
    let emitter = Emitter::connect(&args.url)
        .await
        .with_context(|| format!("cannot reach the broker at {}", args.url))?;
    let ns = args.namespace.as_str();
    let msg = args.message.as_str();
    match &args.target {
        Target::Room(room) => emitter.to_room(ns, room, msg).await?,
        Target::Socket(id) => emitter.to_socket(ns, id, msg).await?,
        Target::Broadcast => emitter.broadcast(ns, msg).await?,
    }
    tracing::info!(url = %args.url, namespace = ns, target = ?args.target, "sent");
    emitter.close().await;
    Ok(())
}
