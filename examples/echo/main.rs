//! The echo server the Autobahn|Testsuite fuzzing client runs against
//! (`bash scripts/autobahn.sh`): every text message goes back as text, every binary message
//! as binary, to the socket that sent it.
//!
//! `cargo run --example echo`, then connect to `ws://127.0.0.1:9001/echo`. `PORT` changes
//! the port; `--asyncapi` prints the protocol as an AsyncAPI 3.0 document. The limits fit
//! the suite's largest messages (16 MiB) and its slow cases; the
//! log level defaults to `warn` because the suite's deliberately broken frames would
//! otherwise flood it (`RUST_LOG=info` to see everything).

use std::time::Duration;

use asena_runtime::Asena;
use asena_runtime::prelude::*;

#[path = "../launch.rs"]
mod launch;

/// Largest message the server accepts and the most its send queue holds per socket: the
/// suite sends messages of up to 16 MiB and expects them back.
const LIMIT: usize = 64 << 20;

/// `/echo`: sends every message back as it came.
#[websocket(path = "/echo")]
#[derive(Debug)]
pub struct Echo;

impl WebSocketService for Echo {
    type Data = ();

    async fn on_message(&self, ws: &Socket<Self>, msg: Message) -> Result<()> {
        ws.send(&msg)?;
        Ok(())
    }
}

/// The app as the Autobahn run serves it.
pub fn builder() -> asena_runtime::AsenaBuilder {
    Asena::builder()
        .without_auto_registration()
        .websocket::<Echo>()
        .max_message_size(LIMIT)
        .max_queued_bytes(LIMIT)
        // The suite sends its cases as fast as it can (up to 16 MiB messages, and 1,000
        // messages in a row), far over the default inbound rate limit.
        .rate_limit(None)
        // The suite keeps connections open while it waits, and a ping of ours in the middle
        // of a case would be an event it did not expect.
        .idle_timeout(None)
        .ping(None, Duration::from_secs(30))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(port) = launch::start(builder, "warn", "9001").await? else {
        return Ok(());
    };
    let app = builder().build().await?;
    eprintln!("echo listening on ws://127.0.0.1:{port}/echo");
    app.serve(format!("127.0.0.1:{port}")).await?;
    Ok(())
}
