//! Publish into a running fleet from a process that serves nothing (a worker, a cron job, a
//! CLI), with [`Emitter`](asena_runtime::transport::Emitter).
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
//! Managed services (Ignis's model: authenticated clients, user ids, rooms) take an event and
//! its data, in Ignis's Redis layout (`ws:user:{id}`, … with serverId `emitter`):
//!
//! ```text
//! cargo run --example emit -- --user u-42 --event notification --data '{"message":"ready"}'
//! cargo run --example emit -- --room lobby --event chat:message --data '"hi"' --exclude c-1
//! ```
//!
//! Options:
//! - `--url URL`: the broker (`redis://…` or `nats://…`; managed services: Redis only);
//!   default `ASENA_TRANSPORT`, else `redis://127.0.0.1:6379`.
//!
//! For an Asena service:
//! - `--namespace PATH`: the websocket service path (default `/chat`).
//! - `--channel NAME`: the Redis channel or NATS subject the fleet shares (default the
//!   transports' own: `asena:ws:transport`, `asena.ws.transport`).
//! - one target: `--room NAME`, `--socket ID` or `--broadcast`.
//! - the message: `--json JSON` (validated, sent as JSON text) or `--text TEXT`.
//!
//! For a managed service (`--event` makes the message a managed one):
//! - `--event NAME`: the event clients receive.
//! - `--data JSON`: its payload (validated; default `null`).
//! - one target: `--client ID`, `--user ID`, `--room NAME` or `--broadcast`.
//! - `--exclude ID` (repeatable, with `--room` or `--broadcast`): client ids to skip.
//!
//! The managed messages go through `emitter.managed(prefix)`, whose verbs (`to_client`,
//! `to_user`, `to_room`, `broadcast`) are those of the Asena sends and of `Managed`.

use anyhow::{Context as _, bail};
use asena_runtime::managed::envelope::DEFAULT_PREFIX;
use asena_runtime::transport::Emitter;

#[derive(Debug)]
enum Target {
    Room(String),
    Socket(String),
    Broadcast,
    /// A managed service's connection, by client id.
    Client(String),
    /// Every session of a managed service's user.
    User(String),
}

impl Target {
    fn flag(&self) -> &'static str {
        match self {
            Target::Room(_) => "--room",
            Target::Socket(_) => "--socket",
            Target::Broadcast => "--broadcast",
            Target::Client(_) => "--client",
            Target::User(_) => "--user",
        }
    }
}

/// A message for a managed service.
#[derive(Debug)]
struct Managed {
    event: String,
    data: serde_json::Value,
    exclude: Vec<String>,
}

#[derive(Debug)]
struct Args {
    url: String,
    namespace: String,
    channel: Option<String>,
    target: Target,
    /// The message for an Asena service (empty for a managed one).
    message: String,
    /// Set when the message is for a managed service (`--event`).
    managed: Option<Managed>,
}

const USAGE: &str = "usage: emit [--url URL] [--namespace /chat] [--channel NAME] (--room NAME | --socket ID | --broadcast) (--json JSON | --text TEXT)
       emit [--url URL] --event NAME [--data JSON] (--client ID | --user ID | (--room NAME | --broadcast) [--exclude ID]...)";

/// Parses the command line (without the program name); a wrong argument is an error that
/// names it, followed by [`USAGE`].
fn parse<I>(argv: I) -> anyhow::Result<Args>
where
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString>,
{
    use lexopt::prelude::*;

    let mut url = std::env::var("ASENA_TRANSPORT")
        .ok()
        .filter(|u| !u.trim().is_empty() && u.trim() != "local")
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let mut namespace = None;
    let mut channel = None;
    let mut target = None;
    let mut message = None;
    let mut event = None;
    let mut data = None;
    let mut exclude = Vec::new();
    let mut parser = lexopt::Parser::from_args(argv);
    // lexopt's errors name the argument ("invalid option '--x'", "missing argument for option
    // '--room'"); the usage follows them.
    let usage = |e: lexopt::Error| anyhow::anyhow!("{e}\n{USAGE}");
    let value = |parser: &mut lexopt::Parser| -> anyhow::Result<String> {
        parser.value().and_then(|v| v.string()).map_err(usage)
    };
    let set_target = |target: &mut Option<Target>, t: Target| {
        if target.replace(t).is_some() {
            bail!("give only one of --room, --socket, --client, --user, --broadcast\n{USAGE}");
        }
        Ok(())
    };
    while let Some(arg) = parser.next().map_err(usage)? {
        match arg {
            Long("url") => url = value(&mut parser)?,
            Long("namespace") => namespace = Some(value(&mut parser)?),
            Long("channel") => channel = Some(value(&mut parser)?),
            Long("room") => set_target(&mut target, Target::Room(value(&mut parser)?))?,
            Long("socket") => set_target(&mut target, Target::Socket(value(&mut parser)?))?,
            Long("client") => set_target(&mut target, Target::Client(value(&mut parser)?))?,
            Long("user") => set_target(&mut target, Target::User(value(&mut parser)?))?,
            Long("broadcast") => set_target(&mut target, Target::Broadcast)?,
            Long("json") => {
                let raw = value(&mut parser)?;
                serde_json::from_str::<serde_json::Value>(&raw)
                    .context("--json is not valid JSON")?;
                // Sent exactly as given (key order kept).
                message = Some(raw);
            }
            Long("text") => message = Some(value(&mut parser)?),
            Long("event") => event = Some(value(&mut parser)?),
            Long("data") => {
                let raw = value(&mut parser)?;
                data = Some(serde_json::from_str(&raw).context("--data is not valid JSON")?);
            }
            Long("exclude") => exclude.push(value(&mut parser)?),
            Short('h') | Long("help") => bail!("{USAGE}"),
            other => return Err(usage(other.unexpected())),
        }
    }
    let target = target.with_context(|| format!("no target given\n{USAGE}"))?;
    let Some(event) = event else {
        // A message for an Asena service.
        if let Target::Client(_) | Target::User(_) = target {
            bail!(
                "{} addresses a managed service: give --event (and --data)\n{USAGE}",
                target.flag()
            );
        }
        if data.is_some() || !exclude.is_empty() {
            bail!("--data and --exclude are for managed services: give --event\n{USAGE}");
        }
        let mut namespace = namespace.unwrap_or_else(|| "/chat".to_owned());
        if !namespace.starts_with('/') {
            namespace.insert(0, '/');
        }
        return Ok(Args {
            url,
            namespace,
            channel,
            target,
            message: message.with_context(|| format!("no message given\n{USAGE}"))?,
            managed: None,
        });
    };
    // A message for a managed service.
    if namespace.is_some() || channel.is_some() {
        bail!(
            "--namespace and --channel are for Asena services; managed services use Ignis's ws:* channels\n{USAGE}"
        );
    }
    if message.is_some() {
        bail!("a managed message carries --data, not --json or --text\n{USAGE}");
    }
    if let Target::Socket(_) = target {
        bail!(
            "--socket addresses an Asena service; a managed message goes to --client, --user, --room or --broadcast\n{USAGE}"
        );
    }
    if url.starts_with("nats://") {
        bail!("managed services talk over Redis: give a redis:// --url\n{USAGE}");
    }
    if !exclude.is_empty() && !matches!(target, Target::Room(_) | Target::Broadcast) {
        bail!("--exclude goes with --room or --broadcast\n{USAGE}");
    }
    Ok(Args {
        url,
        namespace: String::new(),
        channel: None,
        target,
        message: String::new(),
        managed: Some(Managed {
            event,
            data: data.unwrap_or_default(),
            exclude,
        }),
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
    let args = parse(std::env::args_os().skip(1))?;
    let mut emitter = Emitter::connect(&args.url)
        .await
        .with_context(|| format!("cannot reach the broker at {}", args.url))?;
    if let Some(channel) = &args.channel {
        emitter = emitter.channel(channel.clone());
    }
    if let Some(m) = &args.managed {
        let (event, data) = (m.event.as_str(), &m.data);
        let managed = emitter.managed(DEFAULT_PREFIX);
        let exclude: Vec<&str> = m.exclude.iter().map(String::as_str).collect();
        match &args.target {
            Target::Client(id) => managed.to_client(id, (event, data)).await?,
            Target::User(id) => managed.to_user(id, (event, data)).await?,
            Target::Room(room) => managed.to_room(room, (event, data), &exclude).await?,
            Target::Broadcast => managed.broadcast((event, data), &exclude).await?,
            Target::Socket(_) => bail!("--socket addresses an Asena service"),
        }
        tracing::info!(url = %args.url, event, target = ?args.target, "sent to managed services");
        emitter.close().await;
        return Ok(());
    }
    let ns = args.namespace.as_str();
    let msg = args.message.as_str();
    match &args.target {
        Target::Room(room) => emitter.to_room(ns, room, msg).await?,
        Target::Socket(id) => emitter.to_socket(ns, id, msg).await?,
        Target::Broadcast => emitter.broadcast(ns, msg).await?,
        Target::Client(_) | Target::User(_) => bail!("--client and --user need --event"),
    }
    tracing::info!(url = %args.url, namespace = ns, target = ?args.target, "sent");
    emitter.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &str) -> anyhow::Result<Args> {
        parse(args.split_whitespace())
    }

    /// What parsing `args` says, which must fail.
    fn parse_err(args: &str) -> String {
        match parse_str(args) {
            Ok(a) => panic!("{args}: parsed as {a:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_readme_invocation_parses() -> anyhow::Result<()> {
        let args = parse_str(
            r#"--namespace chat --room general --json {"type":"announcement","message":"hi"}"#,
        )?;
        assert_eq!(args.namespace, "/chat");
        assert!(matches!(&args.target, Target::Room(r) if r == "general"));
        assert_eq!(args.message, r#"{"type":"announcement","message":"hi"}"#);
        let args = parse_str("--url nats://127.0.0.1:4222 --broadcast --text hi")?;
        assert_eq!(args.url, "nats://127.0.0.1:4222");
        assert_eq!(args.namespace, "/chat");
        assert!(matches!(args.target, Target::Broadcast));
        assert_eq!(args.channel, None);
        let args = parse_str("--channel my:fleet --socket abc --text hi")?;
        assert_eq!(args.channel.as_deref(), Some("my:fleet"));
        assert!(matches!(&args.target, Target::Socket(id) if id == "abc"));
        Ok(())
    }

    #[test]
    fn bad_arguments_are_named_and_followed_by_the_usage() {
        for (args, says) in [
            (
                "--room a --frobnicate --text x",
                "invalid option '--frobnicate'",
            ),
            ("--room a --text x stray", "unexpected argument \"stray\""),
            ("--text x --room", "missing argument for option '--room'"),
            ("--room a --broadcast --text x", "give only one of"),
            ("--text x", "no target given"),
            ("--room a", "no message given"),
            ("--help", "usage: emit"),
        ] {
            let e = parse_err(args);
            assert!(e.starts_with(says), "{args}: {e}");
            assert!(e.ends_with(USAGE), "{args}: {e}");
        }
        assert_eq!(parse_err("--room a --json {"), "--json is not valid JSON");
    }

    fn managed(args: &Args) -> &Managed {
        args.managed.as_ref().expect("a managed message")
    }

    #[test]
    fn event_makes_a_managed_message() -> anyhow::Result<()> {
        let args = parse_str(r#"--user u-42 --event notification --data {"message":"ready"}"#)?;
        assert!(matches!(&args.target, Target::User(u) if u == "u-42"));
        assert_eq!(managed(&args).event, "notification");
        assert_eq!(managed(&args).data, serde_json::json!({"message": "ready"}));
        assert!(managed(&args).exclude.is_empty());

        let args = parse_str("--url redis://r:6379 --event e --client c-1")?;
        assert_eq!(args.url, "redis://r:6379");
        assert!(matches!(&args.target, Target::Client(c) if c == "c-1"));
        assert_eq!(managed(&args).data, serde_json::Value::Null);

        let args = parse_str("--room lobby --event e --data 1 --exclude c-1 --exclude c-2")?;
        assert!(matches!(&args.target, Target::Room(r) if r == "lobby"));
        assert_eq!(managed(&args).exclude, ["c-1", "c-2"]);

        let args = parse_str("--broadcast --event system:maintenance")?;
        assert!(matches!(args.target, Target::Broadcast));
        assert_eq!(managed(&args).event, "system:maintenance");

        // Without --event, --room and --broadcast keep addressing Asena services.
        let args = parse_str("--room lobby --text hi")?;
        assert!(args.managed.is_none());
        Ok(())
    }

    #[test]
    fn managed_and_asena_flags_do_not_mix() {
        for (args, says) in [
            ("--user u --text x", "--user addresses a managed service"),
            (
                "--client c --json 1",
                "--client addresses a managed service",
            ),
            (
                "--room r --data 1 --text x",
                "--data and --exclude are for managed",
            ),
            (
                "--room r --exclude c --text x",
                "--data and --exclude are for managed",
            ),
            (
                "--socket s --event e",
                "--socket addresses an Asena service",
            ),
            (
                "--user u --event e --text x",
                "a managed message carries --data",
            ),
            (
                "--user u --event e --namespace /chat",
                "--namespace and --channel",
            ),
            (
                "--user u --event e --channel c",
                "--namespace and --channel",
            ),
            (
                "--user u --event e --exclude c",
                "--exclude goes with --room or --broadcast",
            ),
            ("--user u --client c --event e", "give only one of"),
            (
                "--url nats://n:4222 --user u --event e",
                "managed services talk over Redis",
            ),
            ("--event e", "no target given"),
            ("--user u --event", "missing argument for option '--event'"),
        ] {
            let e = parse_err(args);
            assert!(e.starts_with(says), "{args}: {e}");
            assert!(e.ends_with(USAGE), "{args}: {e}");
        }
        assert_eq!(
            parse_err("--user u --event e --data {"),
            "--data is not valid JSON"
        );
    }
}
