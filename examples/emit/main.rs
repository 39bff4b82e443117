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
//! - `--channel NAME`: the Redis channel or NATS subject the fleet shares (default the
//!   transports' own: `asena:ws:transport`, `asena.ws.transport`).
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
    channel: Option<String>,
    target: Target,
    message: String,
}

const USAGE: &str = "usage: emit [--url URL] [--namespace /chat] [--channel NAME] (--room NAME | --socket ID | --broadcast) (--json JSON | --text TEXT)";

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
    let mut namespace = "/chat".to_owned();
    let mut channel = None;
    let mut target = None;
    let mut message = None;
    let mut parser = lexopt::Parser::from_args(argv);
    // lexopt's errors name the argument ("invalid option '--x'", "missing argument for option
    // '--room'"); the usage follows them.
    let usage = |e: lexopt::Error| anyhow::anyhow!("{e}\n{USAGE}");
    let value = |parser: &mut lexopt::Parser| parser.value()?.string();
    let set_target = |target: &mut Option<Target>, t: Target| {
        if target.replace(t).is_some() {
            bail!("give only one of --room, --socket, --broadcast\n{USAGE}");
        }
        Ok(())
    };
    while let Some(arg) = parser.next().map_err(usage)? {
        match arg {
            Long("url") => url = value(&mut parser).map_err(usage)?,
            Long("namespace") => namespace = value(&mut parser).map_err(usage)?,
            Long("channel") => channel = Some(value(&mut parser).map_err(usage)?),
            Long("room") => {
                set_target(
                    &mut target,
                    Target::Room(value(&mut parser).map_err(usage)?),
                )?;
            }
            Long("socket") => {
                set_target(
                    &mut target,
                    Target::Socket(value(&mut parser).map_err(usage)?),
                )?;
            }
            Long("broadcast") => set_target(&mut target, Target::Broadcast)?,
            Long("json") => {
                let raw = value(&mut parser).map_err(usage)?;
                serde_json::from_str::<serde_json::Value>(&raw)
                    .context("--json is not valid JSON")?;
                // Sent exactly as given (key order kept).
                message = Some(raw);
            }
            Long("text") => message = Some(value(&mut parser).map_err(usage)?),
            Short('h') | Long("help") => bail!("{USAGE}"),
            other => return Err(usage(other.unexpected())),
        }
    }
    if !namespace.starts_with('/') {
        namespace.insert(0, '/');
    }
    Ok(Args {
        url,
        namespace,
        channel,
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
    let args = parse(std::env::args_os().skip(1))?;
    let mut emitter = Emitter::connect(&args.url)
        .await
        .with_context(|| format!("cannot reach the broker at {}", args.url))?;
    if let Some(channel) = &args.channel {
        emitter = emitter.channel(channel.clone());
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &str) -> anyhow::Result<Args> {
        parse(args.split_whitespace())
    }

    #[test]
    fn the_readme_invocation_parses() -> anyhow::Result<()> {
        let args = parse([
            "--namespace",
            "chat",
            "--room",
            "general",
            "--json",
            r#"{"type":"announcement","message":"hi"}"#,
        ])?;
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
        let err = |args: &str| match parse_str(args) {
            Ok(a) => panic!("{args}: parsed as {a:?}"),
            Err(e) => e.to_string(),
        };
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
            let e = err(args);
            assert!(e.starts_with(says), "{args}: {e}");
            assert!(e.ends_with(USAGE), "{args}: {e}");
        }
        assert_eq!(err("--room a --json {"), "--json is not valid JSON");
    }
}
